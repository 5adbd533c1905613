//! One exchange with an upstream endpoint: getting a connection (an idle
//! HTTP/1.1 one from the worker's pool, a stream slot on a shared HTTP/2 one,
//! or a new one within the upstream's limits), handing the request to it
//! (HTTP/1.1 inline, HTTP/2 boxed), and sending again, once, a request the
//! endpoint did not process. Everything rare or HTTP/2 is boxed, so the
//! future of an ordinary HTTP/1.1 request, which hyper keeps allocated per
//! client connection, stays small.

use std::rc::Rc;
use std::sync::Arc;

use bumpalo::Bump;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::connect::{self, Connected};
use super::pool::{Conn, H2Conn, H2Stream, UpstreamPool};
use super::wire::{self, Answer};
use super::{Error, PoolKey, Protocol, UpstreamSpec};
use crate::context::body::RequestBody;
use crate::context::Headers;
use crate::http1::conn::WireConn;
use crate::metrics::{UpstreamCounters, UpstreamStats};
use crate::util::deadline::Elapsed;

/// Which upstream a request goes to and what it counts into: the upstream,
/// its place in the snapshot, its statistics and how many workers share its
/// limits. Built once per request; everything the exchange needs besides
/// the pool, the endpoint and the request.
pub(crate) struct Target<'a> {
    pub(crate) spec: &'a UpstreamSpec,
    /// The upstream's index in the snapshot (its statistics, its balancer).
    pub(crate) id: usize,
    /// The upstream's statistics (`max_connections` counts, rejections).
    pub(crate) stats: Option<&'a Arc<UpstreamStats>>,
    /// Workers the upstream's limits are shared out over.
    pub(crate) workers: usize,
    /// The most bytes a response head may take (`server.max_header_bytes`).
    pub(crate) max_head: usize,
    /// The request's arena: an HTTP/1.1 response head's field list.
    pub(crate) arena: &'a Bump,
}

impl Target<'_> {
    /// The pool key of endpoint `index` (recomputed where needed rather than
    /// kept across awaits: it is 40 bytes of every request's future).
    #[inline]
    pub(crate) fn key(&self, index: usize) -> PoolKey {
        self.spec.pool_key(index, self.spec.endpoints[index].addr)
    }

    /// This worker's counters of the upstream.
    #[inline]
    fn counters(&self, worker: usize) -> Option<&UpstreamCounters> {
        self.stats.and_then(|s| s.shards.get(worker))
    }

    /// This worker's share of an upstream-wide limit (rounded up).
    fn share(&self, max: u32) -> u32 {
        max.div_ceil(self.workers.max(1) as u32)
    }
}

/// A ready connection to endpoint `index` of the target, and whether it was reused:
/// for HTTP/1.1 the newest idle one from this worker's pool, or a new one;
/// an upstream that may speak HTTP/2 takes the boxed path of
/// [`acquire_multiplexed`].
pub(crate) async fn acquire(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
) -> Result<(Conn, bool, Option<Instant>), Error> {
    let spec = target.spec;
    if spec.may_use_http2() {
        let started = Instant::now();
        let (conn, reused) = Box::pin(acquire_multiplexed(pool, target, index, None)).await?;
        return Ok((conn, reused, Some(started)));
    }
    if let Some(conn) = pool.checkout(target.key(index)) {
        // An idle keep-alive connection, taken at once: no connect time
        // (nginx's `$upstream_connect_time` is 0 for one too).
        return Ok((Conn::Http1(conn), true, None));
    }
    let started = Instant::now();
    if let Some(max) = spec.max_connections {
        let share = target.share(max);
        if let Some(u) = target.counters(pool.worker()) {
            if u.connections.get() >= i64::from(share) {
                // At the limit: rare, hence boxed.
                let waited = Box::pin(wait_for_connection(pool, target, index, share));
                let (conn, reused) = waited.await?;
                return Ok((conn, reused, Some(started)));
            }
        }
    }
    let conn = new_connection(pool, target, index).await?;
    Ok((conn, false, Some(started)))
}

/// What an exchange answered: a response head read off one of our HTTP/1.1
/// connections (its body still on the connection), or hyper's HTTP/2
/// response and the stream it came on.
pub(crate) enum Exchanged {
    Http1 {
        answer: Answer,
        conn: WireConn,
    },
    Http2 {
        response: Response<Incoming>,
        stream: H2Stream,
    },
}

/// Sends `request` over `conn` (to endpoint `index`) and awaits the
/// response head within `timeout`. HTTP/1.1 runs here, in the request's
/// future; HTTP/2 is boxed. A pooled HTTP/1.1 connection the endpoint had
/// closed meanwhile (nothing of a response came back, and the request can
/// go again as it was) is replaced by a new one, once. `again` is the body
/// to send again if an HTTP/2 stream is refused (`None`: it cannot be),
/// `reused` whether `conn` came from the pool, `sent` when the exchange
/// started.
/// A request on its way upstream: its method, target, headers (a map, or
/// the views of a head of our own with their edits) and body.
pub(crate) struct Outgoing<'h> {
    pub(crate) method: http::Method,
    pub(crate) uri: http::Uri,
    pub(crate) headers: Headers<'h>,
    pub(crate) body: RequestBody,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn send<'a>(
    pool: &'a Rc<UpstreamPool>,
    target: &'a Target<'a>,
    index: usize,
    conn: Conn,
    request: Outgoing<'_>,
    again: Option<Bytes>,
    timeout: Duration,
    (reused, sent): (bool, Instant),
) -> Sending<'a, impl Future<Output = Result<Result<Exchanged, Error>, Elapsed>> + 'a> {
    match conn {
        Conn::Http1(mut conn) => {
            // The head is encoded now and the request's parts dropped: only
            // the bytes and the body cross the awaits (a plain function, so
            // the future does not keep the request it was called with).
            let Outgoing {
                method,
                uri,
                headers,
                body,
            } = request;
            let head = wire::encode(&mut conn.buf, (&method, &uri, &headers), &body);
            drop(headers);
            let deadline = tokio::time::Instant::from_std(sent + timeout);
            let exchange = send_wire(pool, target, index, conn, head, body, reused);
            Sending::Wire {
                inner: pool.deadlines.within(deadline, timeout, exchange),
            }
        }
        Conn::Http2(stream) => {
            let mut h2 = Request::new(request.body);
            *h2.method_mut() = request.method;
            *h2.uri_mut() = request.uri;
            *h2.headers_mut() = request.headers.into_map();
            Sending::Boxed {
                inner: Box::pin(exchange_h2(pool, target, index, stream, h2, again, timeout)),
            }
        }
    }
}

pin_project! {
    /// An exchange in progress: HTTP/1.1 inline, HTTP/2 boxed.
    #[project = SendingProj]
    pub(crate) enum Sending<'a, F> {
        Wire { #[pin] inner: F },
        Boxed { inner: Pin<Box<dyn Future<Output = Result<Exchanged, Error>> + 'a>> },
    }
}

impl<F: Future<Output = Result<Result<Exchanged, Error>, Elapsed>>> Future for Sending<'_, F> {
    type Output = Result<Exchanged, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SendingProj::Wire { inner } => inner
                .poll(cx)
                .map(|within| within.unwrap_or(Err(Error::ResponseTimeout))),
            SendingProj::Boxed { inner } => inner.as_mut().poll(cx),
        }
    }
}

/// The HTTP/1.1 exchange of an encoded head and its body over `conn` (under
/// the deadline `send` sets, in the worker's `Deadlines`). A pooled
/// connection the endpoint had closed meanwhile (nothing of a response came
/// back, and the request can go again as it was) is replaced by a new one,
/// once; not for an upstream that may speak HTTP/2 (the bytes are
/// HTTP/1.1's).
async fn send_wire<'a>(
    pool: &'a Rc<UpstreamPool>,
    target: &'a Target<'a>,
    index: usize,
    mut conn: WireConn,
    head: wire::Head,
    mut body: RequestBody,
    reused: bool,
) -> Result<Exchanged, Error> {
    let failed = match wire::exchange(&mut conn, &head, &mut body, reused, target, pool).await {
        Ok(answer) => return Ok(Exchanged::Http1 { answer, conn }),
        Err(failed) => failed,
    };
    if !failed.again || target.spec.may_use_http2() {
        return Err(failed.error);
    }
    // The same bytes once more over a new connection, within what is left
    // of the deadline. Rare, hence boxed.
    drop(conn);
    tracing::debug!(
        upstream = %target.spec.name,
        endpoint = %target.key(index).0,
        "pooled connection closed by the endpoint: sending the request again on a new one"
    );
    let retry = Box::pin(async move {
        let Conn::Http1(mut conn) = new_connection(pool, target, index).await? else {
            return Err(Error::Reset);
        };
        match wire::exchange(&mut conn, &head, &mut body, false, target, pool).await {
            Ok(answer) => Ok(Exchanged::Http1 { answer, conn }),
            Err(failed) => Err(failed.error),
        }
    });
    retry.await
}

/// The pool keys of the upstream's other endpoints (whose idle connections
/// may be closed to make room under `max_connections`).
fn other_keys(spec: &UpstreamSpec, key: PoolKey) -> impl Iterator<Item = PoolKey> + '_ {
    spec.endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| spec.pool_key(i, e.addr))
        .filter(move |k| *k != key)
}

/// At `max_connections` (this worker's `share`): wait, as one of at most
/// `max_pending` (shared out), for a connection to this endpoint to be
/// checked in or for room to open a new one, until `connect_timeout`.
/// Idle connections to the upstream's other endpoints are closed to make
/// room.
async fn wait_for_connection(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
    share: u32,
) -> Result<(Conn, bool), Error> {
    let spec = target.spec;
    let Some(u) = target.counters(pool.worker()) else {
        return Err(Error::MaxConnections);
    };
    if u.pending.get() >= i64::from(target.share(spec.max_pending)) {
        u.max_pending_rejections.inc();
        return Err(Error::MaxPending);
    }
    u.pending.inc();
    let key = target.key(index);
    let deadline = tokio::time::Instant::now() + spec.connect_timeout;
    let result = loop {
        if let Some(conn) = pool.checkout(key) {
            break Ok((Conn::Http1(conn), true));
        }
        if u.connections.get() < i64::from(share) {
            break new_connection(pool, target, index)
                .await
                .map(|c| (c, false));
        }
        // Closing an idle connection of this upstream frees room once its
        // task has ended, which wakes this wait.
        pool.evict_idle(other_keys(spec, key));
        if !pool.room.wait(deadline).await {
            u.max_connections_rejections.inc();
            break Err(Error::MaxConnections);
        }
    };
    u.pending.dec();
    result
}

/// A stream on an HTTP/2 connection to the target (the open one with the
/// fewest streams in flight below the cap, other than `avoid`), or, for
/// `auto`, an idle HTTP/1.1 connection the endpoint chose; else a new
/// connection while under `http2_max_connections` (and `max_connections`);
/// else a wait, until `connect_timeout`, for a stream to end or a connection
/// being opened to be ready. Only one connection per key is opened at a
/// time: the requests that arrive meanwhile wait for it rather than open
/// more.
async fn acquire_multiplexed(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
    avoid: Option<&Rc<H2Conn>>,
) -> Result<(Conn, bool), Error> {
    let spec = target.spec;
    let key = target.key(index);
    let deadline = tokio::time::Instant::now() + spec.connect_timeout;
    let max_streams = spec.http2.max_concurrent_streams;
    let stats = target.counters(pool.worker());
    loop {
        if let Some(stream) = pool.h2_take(key, max_streams, avoid) {
            return Ok((Conn::Http2(stream), true));
        }
        if spec.protocol == Protocol::Auto {
            if let Some(conn) = pool.checkout(key) {
                return Ok((Conn::Http1(conn), true));
            }
        }
        let count = pool.h2_count(key);
        let at_limit = match (spec.max_connections, stats) {
            (Some(max), Some(u)) => u.connections.get() >= i64::from(target.share(max)),
            _ => false,
        };
        let room = count.open + (count.opening as usize) < spec.http2.max_connections as usize;
        if count.opening == 0 && room && !at_limit {
            pool.h2_opening(key, true);
            let opening = Opening { pool, key };
            let result = new_connection(pool, target, index).await;
            drop(opening);
            return result.map(|c| (c, false));
        }
        if at_limit {
            pool.evict_idle(other_keys(spec, key));
        }
        if !pool.room.wait(deadline).await {
            return Err(match (at_limit, stats) {
                (true, Some(u)) => {
                    u.max_connections_rejections.inc();
                    Error::MaxConnections
                }
                _ => Error::MaxStreams,
            });
        }
    }
}

/// Counts an HTTP/2 connection being opened until the attempt ends, however
/// it ends (a route timeout may drop it), and wakes the requests waiting
/// for it.
struct Opening<'a> {
    pool: &'a UpstreamPool,
    key: PoolKey,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.pool.h2_opening(self.key, false);
        self.pool.room.freed();
    }
}

/// Sends a request the endpoint did not process once more over a new
/// connection (or, for an upstream that may speak HTTP/2, a stream other
/// than on `avoid`). Only on the rare, boxed path.
async fn resend(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
    mut request: Request<RequestBody>,
    avoid: Option<&Rc<H2Conn>>,
) -> Result<Exchanged, Error> {
    let spec = target.spec;
    let conn = if spec.may_use_http2() {
        acquire_multiplexed(pool, target, index, avoid).await?.0
    } else {
        new_connection(pool, target, index).await?
    };
    match conn {
        Conn::Http1(mut conn) => {
            connect::http1_target(&mut request);
            let (parts, mut body) = request.into_parts();
            let headers = Headers::from_map(parts.headers);
            let head = wire::encode(&mut conn.buf, (&parts.method, &parts.uri, &headers), &body);
            drop(headers);
            match wire::exchange(&mut conn, &head, &mut body, false, target, pool).await {
                Ok(answer) => Ok(Exchanged::Http1 { answer, conn }),
                Err(failed) => Err(failed.error),
            }
        }
        Conn::Http2(stream) => {
            connect::http2_target(&mut request, spec.tls.is_some());
            let response = stream
                .conn
                .send(request)
                .await
                .map_err(|e| Error::of_exchange(e.error()))?;
            Ok(Exchanged::Http2 { response, stream })
        }
    }
}

/// One exchange over an HTTP/2 stream, waiting up to `timeout` for the
/// response head. A request the endpoint did not process (handed back
/// unsent, refused stream, above a GOAWAY's last stream) goes again once on
/// another connection, if its body (`again`) can be sent again.
async fn exchange_h2(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
    stream: H2Stream,
    mut request: Request<RequestBody>,
    again: Option<Bytes>,
    timeout: Duration,
) -> Result<Exchanged, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    connect::http2_target(&mut request, target.spec.tls.is_some());
    // A copy of the head, to rebuild the request if its stream is refused
    // (hyper does not hand back a request once its stream opened).
    let head = again.map(|body| {
        (
            request.method().clone(),
            request.uri().clone(),
            request.headers().clone(),
            body,
        )
    });
    let mut failed = match tokio::time::timeout_at(deadline, stream.conn.send(request)).await {
        Err(_) => return Err(Error::ResponseTimeout),
        Ok(Ok(response)) => return Ok(Exchanged::Http2 { response, stream }),
        Ok(Err(e)) => e,
    };
    let request = match (failed.take_message(), head) {
        (Some(unsent), _) => unsent,
        (None, Some((method, uri, headers, body))) if unprocessed(failed.error()) => {
            let mut request = Request::new(RequestBody::replay(body));
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            request
        }
        _ => return Err(Error::of_exchange(failed.error())),
    };
    tracing::debug!(
        upstream = %target.spec.name,
        endpoint = %target.key(index).0,
        error = %failed.error(),
        "HTTP/2 request not processed by the upstream: sending it again"
    );
    let avoid = stream.conn.clone();
    drop(stream);
    let again = resend(pool, target, index, request, Some(&avoid));
    match tokio::time::timeout_at(deadline, again).await {
        Err(_) => Err(Error::ResponseTimeout),
        Ok(result) => result,
    }
}

/// Whether an HTTP/2 error says the endpoint did not process the request:
/// its stream was refused (REFUSED_STREAM), or it was above the last stream
/// of a graceful GOAWAY (RFC 9113 §8.7). A GOAWAY with an error code is not
/// trusted: h2 reports it to every stream the connection loses.
fn unprocessed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let reason = h2.reason();
            return h2.is_remote()
                && ((h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM))
                    || (h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR)));
        }
        source = err.source();
    }
    false
}

/// Opens a new upstream connection (TCP, TLS, HTTP handshake). Boxed on
/// purpose: connecting is rare next to reusing a pooled connection, and its
/// state (socket connect, timer, handshakes) would otherwise be inlined into
/// every request's future, which hyper keeps allocated per client
/// connection, idle or not.
async fn new_connection(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
) -> Result<Conn, Error> {
    Box::pin(open_connection(pool, target, index)).await
}

/// The body of [`new_connection`]. An HTTP/2 connection is listed in the
/// pool and its first stream taken.
async fn open_connection(
    pool: &Rc<UpstreamPool>,
    target: &Target<'_>,
    index: usize,
) -> Result<Conn, Error> {
    let spec = target.spec;
    let key = target.key(index);
    let open = OpenUpstreamConnection::new(pool, target.stats);
    let tls = spec
        .tls
        .as_deref()
        .and_then(|t| Some((&t.config, t.server_names.get(index)?)));
    let how = connect::Target {
        addr: key.0,
        protocol: spec.protocol,
        tls,
        http2: spec.http2,
        timeout: spec.connect_timeout,
    };
    match connect::connect(&how, open).await? {
        Connected::Http1(conn) => Ok(Conn::Http1(conn)),
        Connected::Http2(sender) => Ok(Conn::Http2(pool.h2_add(key, sender, spec.pool))),
    }
}

/// Counts a connection an upstream opened, for `max_connections`, until the
/// connection's task ends (it closed); then wakes requests waiting for room.
struct OpenUpstreamConnection {
    pool: Rc<UpstreamPool>,
    stats: Option<Arc<UpstreamStats>>,
}

impl OpenUpstreamConnection {
    fn new(pool: &Rc<UpstreamPool>, stats: Option<&Arc<UpstreamStats>>) -> Self {
        // An `Arc` clone per new connection (not per request).
        let stats = stats.cloned();
        if let Some(c) = stats.as_ref().and_then(|s| s.shards.get(pool.worker())) {
            c.connections.inc();
        }
        OpenUpstreamConnection {
            pool: pool.clone(),
            stats,
        }
    }
}

impl Drop for OpenUpstreamConnection {
    fn drop(&mut self) {
        if let Some(c) = self
            .stats
            .as_ref()
            .and_then(|s| s.shards.get(self.pool.worker()))
        {
            c.connections.dec();
        }
        self.pool.room.freed();
    }
}
