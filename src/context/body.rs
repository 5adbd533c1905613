//! The two bodies every phase sees, streaming with backpressure in both
//! directions: `RequestBody` (client → upstream) and `ProxyBody` (→ client).
//! They enforce the body idle timeout; when a response body ends it gives its
//! upstream connection back to whoever lent it ([`Lease`]), finishes the
//! access-log line with the bytes actually sent and counts the request into
//! its route ([`RequestOutcome`]). What lends the connection (the worker's
//! upstream pool) and what the figures mean are left to their layers.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::future::Future as _;
use tokio::time::Sleep;

use std::cell::Cell;
use std::rc::Rc;

use crate::http1::conn::WireBody;
use crate::http1::server::WireClientBody;
use crate::limit::ConnGuard;
use crate::log::LogTail;
use crate::metrics::{RequestOutcome, StatsRef};

/// Errors a proxied body can end with.
#[derive(Debug)]
pub enum BodyError {
    /// No bytes moved for the body idle timeout.
    Idle(Duration),
    /// The peer's side of the body failed.
    Peer(hyper::Error),
    /// The upstream connection failed while its body was read (closed
    /// early, bad chunked framing).
    Upstream(std::io::Error),
    /// The client's request body grew past the route's `max_body`
    /// (`request_limits`); what was over it was not passed on.
    TooLarge(u64),
    /// A custom error from a middleware that replaced the body.
    Other(Box<dyn StdError + Send + Sync>),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Idle(d) => write!(f, "body idle for {d:?}"),
            BodyError::Peer(e) => write!(f, "peer body error: {e}"),
            BodyError::Upstream(e) => write!(f, "upstream body error: {e}"),
            BodyError::TooLarge(max) => write!(f, "request body larger than {max} bytes"),
            BodyError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl StdError for BodyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BodyError::Peer(e) => Some(e),
            BodyError::Upstream(e) => Some(e),
            _ => None,
        }
    }
}

/// Fires when no frame moved for `timeout`. The timer is made only the
/// first time the inner body is pending (boxed, so the bodies stay `Unpin`
/// and can be polled in place), so a body that is always ready never
/// touches it.
struct IdleTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    last: Instant,
}

impl IdleTimer {
    fn new(timeout: Duration) -> Self {
        IdleTimer {
            sleep: None,
            timeout,
            last: Instant::now(),
        }
    }

    fn activity(&mut self) {
        self.last = Instant::now();
    }

    /// Polls the timer while the inner body is pending: ready with
    /// `BodyError::Idle` once the body has been idle for the timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<BodyError> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::from_std(self.last + timeout);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).map(|()| BodyError::Idle(timeout))
    }
}

/// A request body as the client sends it: through hyper's server (HTTP/2,
/// TLS, upgrades), or off a client connection of our own.
pub(crate) enum ClientBody {
    Hyper(Incoming),
    Wire(WireClientBody),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::Peer))),
            ClientBody::Wire(body) => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::Upstream))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(body) => body.is_end_stream(),
            ClientBody::Wire(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(body) => body.size_hint(),
            ClientBody::Wire(body) => match body.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

pin_project! {
    /// The client's request body on its way upstream: streamed as it arrives,
    /// or, for a request that may be retried, replayed from a buffer.
    pub struct RequestBody {
        inner: Source,
        idle: IdleTimer,
        meter: Option<BytesIn>,
        // `request_limits` `max_body`; `None`: not counted.
        limit: Option<Limit>,
    }
}

enum Source {
    Client(ClientBody),
    /// The whole body, read before the first attempt (`None` once sent).
    Replay(Option<Bytes>),
    /// The client's body went over its limit (of this many bytes): the
    /// client's side is dropped and every later poll fails too, so no
    /// byte after the limit, and no end of the body, ever goes upstream.
    Over(u64),
}

/// A request body's limit: the bytes still allowed, the limit, and the flag
/// raised when the body went over it.
struct Limit {
    left: u64,
    max: u64,
    over: Rc<Cell<bool>>,
}

/// Tells whether a limited body went over its limit: an HTTP/2 upstream's
/// client reports only the stream it reset when the body fails, not why.
pub(crate) struct Overrun(Rc<Cell<bool>>);

impl Overrun {
    pub(crate) fn happened(&self) -> bool {
        self.0.get()
    }
}

/// Counts request body bytes into the route's `bytes_in` as they pass.
pub(crate) struct BytesIn {
    /// The statistics of the snapshot the request runs on (a worker-local
    /// handle: cloning it writes no shared refcount).
    pub(crate) stats: StatsRef,
    pub(crate) route: usize,
    pub(crate) worker: usize,
}

impl RequestBody {
    pub(crate) fn new(inner: ClientBody, idle_timeout: Duration, meter: Option<BytesIn>) -> Self {
        RequestBody {
            inner: Source::Client(inner),
            idle: IdleTimer::new(idle_timeout),
            meter,
            limit: None,
        }
    }

    /// Fails the body (`BodyError::TooLarge`) instead of passing on the
    /// frame that would take it past `max` bytes. One allocation (the
    /// flag), only for a route with the limit.
    pub(crate) fn limited(&mut self, max: u64) -> Overrun {
        let over = Rc::new(Cell::new(false));
        self.limit = Some(Limit {
            left: max,
            max,
            over: over.clone(),
        });
        Overrun(over)
    }

    /// A body sent from a buffer (counted once, when it was read).
    pub(crate) fn replay(data: Bytes) -> Self {
        RequestBody {
            inner: Source::Replay((!data.is_empty()).then_some(data)),
            idle: IdleTimer::new(Duration::MAX),
            meter: None,
            limit: None,
        }
    }
}

impl RequestBody {
    /// Forwards an upstream's interim response (1xx) to the client, when
    /// the client's connection is one of our own (hyper's server cannot
    /// send one).
    pub(crate) fn interim(&self, cx: &mut Context<'_>, head: &[u8]) {
        if let Source::Client(ClientBody::Wire(body)) = &self.inner {
            body.interim(cx, head);
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let body = match this.inner {
            Source::Client(body) => body,
            Source::Replay(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Source::Over(max) => return Poll::Ready(Some(Err(BodyError::TooLarge(*max)))),
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.activity();
                if let (Some(limit), Some(data)) = (this.limit.as_mut(), frame.data_ref()) {
                    match limit.left.checked_sub(data.len() as u64) {
                        Some(rest) => limit.left = rest,
                        None => {
                            limit.over.set(true);
                            *this.inner = Source::Over(limit.max);
                            return Poll::Ready(Some(Err(BodyError::TooLarge(limit.max))));
                        }
                    }
                }
                if let (Some(m), Some(data)) = (this.meter.as_ref(), frame.data_ref()) {
                    if let Some(r) = m.stats.stats().route(m.route, m.worker) {
                        r.bytes_in.add(data.len() as u64);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => this.idle.poll_idle(cx).map(|e| Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::Client(body) => body.is_end_stream(),
            Source::Replay(data) => data.is_none(),
            Source::Over(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::Client(body) => body.size_hint(),
            Source::Over(_) => SizeHint::default(),
            Source::Replay(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Upstream { #[pin] inner: Incoming, idle: IdleTimer },
        Wire { inner: WireBody, idle: IdleTimer },
        Full { data: Option<Bytes> },
        Boxed { inner: Pin<Box<dyn Body<Data = Bytes, Error = BodyError> + 'static>> },
        Empty,
    }
}

/// What lends a response body its upstream connection, and takes it back when
/// the body ends (the worker's upstream pool).
pub(crate) trait Lender {
    /// The connection on loan as `id` is back: kept for the next exchange if
    /// `reusable` (the body ended cleanly), closed otherwise.
    fn give_back(&self, id: u32, reusable: bool);
}

/// An upstream connection on loan to one response body. Released when the
/// body ends cleanly; dropped early (client gone, upstream failure), it is
/// given back as not reusable, which closes it.
pub(crate) struct Lease {
    lender: Option<Rc<dyn Lender>>,
    id: u32,
}

impl Lease {
    pub(crate) fn new(lender: Rc<dyn Lender>, id: u32) -> Self {
        Lease {
            lender: Some(lender),
            id,
        }
    }

    /// The exchange completed cleanly: the connection may serve the next one.
    pub(crate) fn release(mut self) {
        if let Some(lender) = self.lender.take() {
            lender.give_back(self.id, true);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(lender) = self.lender.take() {
            lender.give_back(self.id, false);
        }
    }
}

/// What is told when a response body is dropped, after everything else the
/// body counts: the worker's count of requests in flight (the drain waits
/// for it). An `Rc` the worker already holds, so setting it allocates
/// nothing.
pub(crate) trait Tracker {
    fn ended(&self);
}

/// A request its worker counts (in flight, for the drain), from its head
/// until its response body is dropped: the guard rides in the request's
/// future and is handed to the response body with the answer. Dropped
/// without an answer (the client went away), it ends the count itself.
pub(crate) struct Tracked(Option<Rc<dyn Tracker>>);

impl Tracked {
    /// A body's guard before the request's is handed to it: counts nothing.
    const NONE: Tracked = Tracked(None);

    pub(crate) fn new(tracker: Rc<dyn Tracker>) -> Self {
        Tracked(Some(tracker))
    }

    /// Hands the count over to `body`, which ends it when it is dropped.
    pub(crate) fn attach(self, body: &mut ProxyBody) {
        body.done.tracked = self;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(tracker) = self.0.take() {
            tracker.ended();
        }
    }
}

/// What happens when the body ends: the leased connection goes back, the
/// log line is completed, the request is counted. Kept outside the pinned
/// part so `Drop` can run it.
struct Completion {
    lease: Option<Lease>,
    log: Option<LogTail>,
    bytes: u64,
    /// Counted into the route's figures when hyper drops the body.
    outcome: Option<RequestOutcome>,
    /// The request's `connection_limit` counts, given back when the body
    /// is done or dropped.
    held: Option<ConnGuard>,
    /// The request's count in flight: ended last, as the fields drop after
    /// `Drop::drop` has run.
    tracked: Tracked,
}

impl Completion {
    const NONE: Completion = Completion {
        lease: None,
        log: None,
        bytes: 0,
        outcome: None,
        held: None,
        tracked: Tracked::NONE,
    };

    fn finish(&mut self, completed: bool) {
        if let Some(lease) = self.lease.take() {
            if completed {
                lease.release();
            }
        }
        if let Some(log) = self.log.take() {
            log.finish(self.bytes, completed);
        }
        // The body is done (or gone): its requests in flight are over.
        self.held = None;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // Ended early (client gone, error): the connection is closed by
        // giving it back as not reusable.
        self.finish(false);
        if let Some(outcome) = self.outcome.take() {
            outcome.count(self.bytes);
        }
    }
}

pin_project! {
    /// A response body sent to the client: streamed from upstream, or local.
    pub struct ProxyBody {
        #[pin]
        kind: Kind,
        done: Completion,
    }
}

impl ProxyBody {
    /// A body with these bytes (no copy for `Bytes::from_static`).
    pub fn full(data: Bytes) -> Self {
        Self::with_kind(Kind::Full {
            data: (!data.is_empty()).then_some(data),
        })
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::with_kind(Kind::Empty)
    }

    /// Any other body, boxed (for middlewares that transform a body).
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BodyError> + 'static,
    {
        Self::with_kind(Kind::Boxed {
            inner: Box::pin(body),
        })
    }

    /// The upstream's response body; the connection on `lease` goes back
    /// when it ends.
    pub(crate) fn upstream(inner: Incoming, lease: Option<Lease>, idle_timeout: Duration) -> Self {
        let ended = inner.is_end_stream();
        let mut body = ProxyBody {
            kind: Kind::Upstream {
                inner,
                idle: IdleTimer::new(idle_timeout),
            },
            done: Completion {
                lease,
                log: None,
                bytes: 0,
                outcome: None,
                held: None,
                tracked: Tracked::NONE,
            },
        };
        if ended {
            // No body to wait for (HEAD, 204, 304, Content-Length: 0).
            if let Some(lease) = body.done.lease.take() {
                lease.release();
            }
        }
        body
    }

    /// A response body read off one of our upstream HTTP/1.1 connections
    /// (which it hands back at its end), under the body idle timeout.
    pub(crate) fn wire(inner: WireBody, idle_timeout: Duration) -> Self {
        Self::with_kind(Kind::Wire {
            inner,
            idle: IdleTimer::new(idle_timeout),
        })
    }

    fn with_kind(kind: Kind) -> Self {
        ProxyBody {
            kind,
            done: Completion::NONE,
        }
    }

    /// Counts the request into its route's figures when this body is
    /// dropped (its status, latency and the bytes it sent).
    pub(crate) fn set_outcome(&mut self, outcome: RequestOutcome) {
        self.done.outcome = Some(outcome);
    }

    /// Gives the request's `connection_limit` counts back when this body
    /// is done or dropped.
    pub(crate) fn set_held(&mut self, held: Option<ConnGuard>) {
        self.done.held = held;
        if self.is_end_stream() {
            self.done.held = None;
        }
    }

    /// Attaches the access-log line to be finished when the body ends.
    pub(crate) fn set_log_tail(&mut self, tail: LogTail) {
        self.done.log = Some(tail);
        if self.is_end_stream() {
            self.done.finish(true);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let done = this.done;
        match this.kind.project() {
            KindProj::Upstream { mut inner, idle } => match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.activity();
                    if let Some(data) = frame.data_ref() {
                        done.bytes += data.len() as u64;
                    }
                    if inner.is_end_stream() {
                        done.finish(true);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    // A broken upstream connection is never pooled.
                    done.lease = None;
                    Poll::Ready(Some(Err(BodyError::Peer(e))))
                }
                Poll::Ready(None) => {
                    done.finish(true);
                    Poll::Ready(None)
                }
                Poll::Pending => idle.poll_idle(cx).map(|e| {
                    // An idle upstream connection is never pooled.
                    done.lease = None;
                    Some(Err(e))
                }),
            },
            KindProj::Wire { inner, idle } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.activity();
                    if let Some(data) = frame.data_ref() {
                        done.bytes += data.len() as u64;
                    }
                    if inner.is_end_stream() {
                        done.finish(true);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Upstream(e)))),
                Poll::Ready(None) => {
                    done.finish(true);
                    Poll::Ready(None)
                }
                // Dropped on the idle error, the body closes its connection.
                Poll::Pending => idle.poll_idle(cx).map(|e| Some(Err(e))),
            },
            KindProj::Full { data } => match data.take() {
                Some(d) => {
                    done.bytes += d.len() as u64;
                    done.finish(true);
                    Poll::Ready(Some(Ok(Frame::data(d))))
                }
                None => {
                    done.finish(true);
                    Poll::Ready(None)
                }
            },
            KindProj::Boxed { inner } => {
                let polled = ready!(inner.as_mut().poll_frame(cx));
                match &polled {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            done.bytes += data.len() as u64;
                        }
                        if inner.is_end_stream() {
                            done.finish(true);
                        }
                    }
                    Some(Err(_)) => {}
                    None => done.finish(true),
                }
                Poll::Ready(polled)
            }
            KindProj::Empty => {
                done.finish(true);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
            Kind::Wire { inner, .. } => inner.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Boxed { inner } => inner.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Wire { inner, .. } => match inner.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Boxed { inner } => inner.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Upstream { .. } => "upstream",
            Kind::Wire { .. } => "wire",
            Kind::Full { .. } => "full",
            Kind::Boxed { .. } => "boxed",
            Kind::Empty => "empty",
        };
        f.debug_struct("ProxyBody").field("kind", &kind).finish()
    }
}
