//! The client connections one worker has open, and the timers that end them.
//! Each connection is in one phase: sending a request head (`Head`, from its
//! accept or from the first byte after an idle spell), waiting between
//! requests (`Idle` on HTTP/1.1, `Http2Idle` on HTTP/2 with no stream open),
//! or serving (`Busy`, no timer of ours: the request's own timeouts apply).
//! Connections under a timer sit in one list per phase, oldest first; every
//! connection in a list has the same timeout, so the list is also in
//! deadline order and the sweep only ever looks at list heads. Moving
//! between lists is a few index writes, with no allocation and no timer
//! per request. The same lists give "the oldest idle connection" when the
//! process is full (`close_oldest`), and every connection when the worker
//! stops (`close_all`).
//!
//! The connection's task learns that it must end from [`Conn::closing`];
//! what it then does (drop at once, or finish with a GOAWAY or
//! `Connection: close`) is `connection.rs`'s business.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::in_flight::InFlightCount;
use crate::context::body::{Tracked, Tracker};

/// Why the worker ended a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// No whole request head within `header_read_timeout`.
    HeaderTimeout,
    /// HTTP/1.1: idle between requests for `keepalive_timeout`.
    Idle,
    /// HTTP/2: no stream open for `http2_idle_timeout`.
    Http2Idle,
    /// The process was at `max_connections`: the oldest idle connection
    /// made room for a new one.
    Room,
    /// It served `max_requests_per_connection` requests.
    MaxRequests,
    /// The gateway is shutting down (or handing over to a new binary).
    Shutdown,
}

impl Close {
    /// Every reason, in the order of their counters.
    pub(crate) const ALL: [Close; 6] = [
        Close::HeaderTimeout,
        Close::Idle,
        Close::Http2Idle,
        Close::Room,
        Close::MaxRequests,
        Close::Shutdown,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::Idle => "idle",
            Close::Http2Idle => "http2_idle",
            Close::Room => "room",
            Close::MaxRequests => "max_requests",
            Close::Shutdown => "shutdown",
        }
    }

    /// The index of its counter.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether what the connection is doing is finished first (HTTP/2: a
    /// GOAWAY, open streams complete; HTTP/1.1: the response under way goes
    /// out with `Connection: close`). The others end a connection that is
    /// doing nothing, or nothing useful, at once.
    pub(crate) fn graceful(self) -> bool {
        matches!(self, Close::MaxRequests | Close::Shutdown)
    }
}

/// The phase of a connection; the first three are the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head = 0,
    Idle = 1,
    Http2Idle = 2,
    Busy,
    /// Told to close, or gone: no list, no more moves.
    Done,
}

const LISTS: usize = 3;
const NIL: u32 = u32::MAX;

/// The timeouts of the three lists, from the current snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) head: Duration,
    pub(crate) idle: Duration,
    pub(crate) http2_idle: Duration,
}

impl Timeouts {
    fn of(&self, list: usize) -> (Duration, Close) {
        match list {
            0 => (self.head, Close::HeaderTimeout),
            1 => (self.idle, Close::Idle),
            _ => (self.http2_idle, Close::Http2Idle),
        }
    }

    /// How often the sweep runs: a tenth of the shortest timeout, between
    /// 10 ms and one second. A connection is closed at most this late.
    pub(crate) fn granularity(&self) -> Duration {
        let shortest = self.head.min(self.idle).min(self.http2_idle);
        (shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

struct Slot {
    conn: Option<Rc<Conn>>,
    prev: u32,
    next: u32,
    since: Instant,
}

#[derive(Default)]
struct Lists {
    slots: Vec<Slot>,
    free: Vec<u32>,
    head: [u32; LISTS],
    tail: [u32; LISTS],
    open: usize,
}

/// One worker's open client connections.
pub(crate) struct Registry {
    lists: RefCell<Lists>,
    in_flight: Rc<InFlightCount>,
    /// Woken when the last connection goes, for the drain.
    emptied: Notify,
}

impl Registry {
    pub(crate) fn new(in_flight: Rc<InFlightCount>) -> Rc<Self> {
        Rc::new(Registry {
            lists: RefCell::new(Lists {
                head: [NIL; LISTS],
                tail: [NIL; LISTS],
                ..Lists::default()
            }),
            in_flight,
            emptied: Notify::new(),
        })
    }

    /// Resolves once no connection is open (the drain waits for this after
    /// [`Registry::close_all`]).
    pub(crate) async fn none_open(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.lists.borrow().open == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Registers a connection just accepted: in `Head` from now. It stays
    /// registered until the returned guard is dropped.
    pub(crate) fn open(self: &Rc<Self>) -> Registered {
        let now = Instant::now();
        let mut lists = self.lists.borrow_mut();
        let index = match lists.free.pop() {
            Some(i) => i,
            None => {
                lists.slots.push(Slot {
                    conn: None,
                    prev: NIL,
                    next: NIL,
                    since: now,
                });
                (lists.slots.len() - 1) as u32
            }
        };
        let conn = Rc::new(Conn {
            registry: self.clone(),
            index,
            phase: Cell::new(Phase::Head),
            http2: Cell::new(false),
            active: Cell::new(0),
            requests: Cell::new(0),
            max_requests: Cell::new(None),
            close: Cell::new(None),
            pending: Cell::new(None),
            waker: Cell::new(None),
            reads: Arc::default(),
        });
        lists.slots[index as usize].conn = Some(conn.clone());
        lists.open += 1;
        lists.push(index, Phase::Head as usize, now);
        Registered(conn)
    }

    /// Connections registered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lists.borrow().open
    }

    /// Closes every connection whose timer ran out; returns how many.
    pub(crate) fn sweep(&self, now: Instant, timeouts: &Timeouts) -> usize {
        let mut closed = 0;
        for list in 0..LISTS {
            let (timeout, reason) = timeouts.of(list);
            loop {
                let expired = {
                    let lists = self.lists.borrow();
                    let first = lists.head[list];
                    if first == NIL {
                        None
                    } else {
                        let slot = &lists.slots[first as usize];
                        (slot.since + timeout <= now)
                            .then(|| slot.conn.clone())
                            .flatten()
                    }
                };
                let Some(conn) = expired else { break };
                conn.close(reason);
                closed += 1;
            }
        }
        closed
    }

    /// Closes the connection that has waited longest without a request in
    /// flight (idle, or still sending its head), to make room for a new
    /// one; `false` if there is none.
    pub(crate) fn close_oldest(&self) -> bool {
        let oldest = {
            let lists = self.lists.borrow();
            (0..LISTS)
                .filter_map(|l| {
                    let i = lists.head[l];
                    (i != NIL).then(|| &lists.slots[i as usize])
                })
                .min_by_key(|slot| slot.since)
                .and_then(|slot| slot.conn.clone())
        };
        match oldest {
            Some(conn) => {
                conn.close(Close::Room);
                true
            }
            None => false,
        }
    }

    /// Tells every connection to close for `reason`.
    pub(crate) fn close_all(&self, reason: Close) {
        let all: Vec<Rc<Conn>> = self
            .lists
            .borrow()
            .slots
            .iter()
            .filter_map(|s| s.conn.clone())
            .collect();
        for conn in all {
            conn.close(reason);
        }
    }

    /// Ends the graceful closes still waiting for a request (see
    /// [`Conn::close`]): the drain gives such connections a moment only.
    pub(crate) fn close_heads(&self) {
        let waiting: Vec<Rc<Conn>> = self
            .lists
            .borrow()
            .slots
            .iter()
            .filter_map(|s| s.conn.clone())
            .filter(|c| c.pending.get().is_some())
            .collect();
        for conn in waiting {
            if let Some(reason) = conn.pending.take() {
                conn.close_now(reason);
            }
        }
    }

    fn moved(&self, index: u32, from: Phase, to: Phase) {
        let mut lists = self.lists.borrow_mut();
        if (from as usize) < LISTS {
            lists.unlink(index, from as usize);
        }
        if (to as usize) < LISTS {
            lists.push(index, to as usize, Instant::now());
        }
    }
}

impl Lists {
    fn push(&mut self, index: u32, list: usize, now: Instant) {
        let tail = self.tail[list];
        let slot = &mut self.slots[index as usize];
        slot.prev = tail;
        slot.next = NIL;
        slot.since = now;
        if tail == NIL {
            self.head[list] = index;
        } else {
            self.slots[tail as usize].next = index;
        }
        self.tail[list] = index;
    }

    fn unlink(&mut self, index: u32, list: usize) {
        let (prev, next) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head[list] = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail[list] = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }
}

/// One client connection as its worker tracks it; shared by the
/// connection's task, its service and the requests in flight on it.
pub(crate) struct Conn {
    registry: Rc<Registry>,
    index: u32,
    phase: Cell<Phase>,
    /// Served as HTTP/2 (its idle spells are under the HTTP/2 timer).
    http2: Cell<bool>,
    /// Requests (HTTP/2: streams) in flight on it.
    active: Cell<u32>,
    /// Requests it has served.
    requests: Cell<u32>,
    /// `server.max_requests_per_connection` when it was served.
    max_requests: Cell<Option<u32>>,
    /// Set once, when the worker decides the connection ends.
    close: Cell<Option<Close>>,
    /// A graceful close waiting for the request of a connection in `Head`.
    pending: Cell<Option<Close>>,
    /// The connection's task, waiting in [`Conn::closing`].
    waker: Cell<Option<Waker>>,
    /// Set by [`Watched`] when bytes are read; looked at by
    /// [`Conn::closing`] each time the connection's task runs. (An atomic,
    /// though only this thread touches it: hyper requires a `Send` stream
    /// for upgrades.)
    reads: Arc<AtomicBool>,
}

impl Conn {
    /// The protocol is known: HTTP/2 connections wait for their first
    /// stream under the HTTP/2 idle timer; HTTP/1.1 ones stay in `Head`
    /// until their first request arrives. `max_requests` ends it gracefully
    /// after that many requests.
    pub(crate) fn serving(&self, http2: bool, max_requests: Option<u32>) {
        self.max_requests.set(max_requests);
        self.http2.set(http2);
        if http2 {
            self.enter(Phase::Http2Idle);
        }
    }

    /// A request has arrived on this connection: counted in flight (on the
    /// connection and for the worker's drain) until the returned guard, or
    /// the response body it is handed to, is dropped.
    pub(crate) fn request(self: &Rc<Self>) -> Tracked {
        self.registry.in_flight.begin();
        let active = self.active.get() + 1;
        self.active.set(active);
        if active == 1 {
            self.enter(Phase::Busy);
        }
        let requests = self.requests.get().saturating_add(1);
        self.requests.set(requests);
        if self.max_requests.get().is_some_and(|max| requests >= max) {
            self.close(Close::MaxRequests);
        }
        Tracked::new(self.clone())
    }

    /// Bytes arrived: after an idle spell they start a request head.
    pub(crate) fn bytes_arrived(&self) {
        if self.phase.get() == Phase::Idle {
            self.enter(Phase::Head);
        }
    }

    fn enter(&self, to: Phase) {
        let from = self.phase.get();
        if from == Phase::Done || from == to {
            return;
        }
        self.phase.set(to);
        self.registry.moved(self.index, from, to);
        // A graceful close that waited for the request: it has come.
        if to != Phase::Head && to != Phase::Done {
            if let Some(reason) = self.pending.take() {
                self.close_now(reason);
            }
        }
    }

    /// Tells the connection's task to end for `reason` (the first reason
    /// given wins); it leaves every list. A graceful close of a connection
    /// still in its head (accepted, or after an idle spell with bytes on the
    /// way) waits for that request instead, under the header timer, so a
    /// request already sent is answered (with `Connection: close`) rather
    /// than reset: see [`Registry::close_heads`].
    pub(crate) fn close(&self, reason: Close) {
        if reason.graceful() && self.phase.get() == Phase::Head {
            if self.close.get().is_none() && self.pending.get().is_none() {
                self.pending.set(Some(reason));
            }
            return;
        }
        self.close_now(reason);
    }

    fn close_now(&self, reason: Close) {
        if self.close.get().is_some() {
            return;
        }
        self.pending.set(None);
        self.close.set(Some(reason));
        self.enter(Phase::Done);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves with the reason once the worker has decided this connection
    /// ends. Polled after hyper's connection each time the task runs (a
    /// `biased` select), it also sees the bytes [`Watched`] noted: after an
    /// idle spell they start the header timer.
    pub(crate) async fn closing(&self) -> Close {
        poll_fn(|cx| match self.close.get() {
            Some(reason) => Poll::Ready(reason),
            None => {
                if self.reads.load(Ordering::Relaxed) {
                    self.reads.store(false, Ordering::Relaxed);
                    self.bytes_arrived();
                }
                let waker = self.waker.take();
                self.waker.set(Some(match waker {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                }));
                Poll::Pending
            }
        })
        .await
    }

    /// Whether no request is in flight on it.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.get() == 0
    }

    /// Why the connection was told to end, if it was.
    pub(crate) fn closed_for(&self) -> Option<Close> {
        self.close.get()
    }
}

impl Tracker for Conn {
    fn ended(&self) {
        self.registry.in_flight.end();
        let active = self.active.get().saturating_sub(1);
        self.active.set(active);
        if active == 0 {
            // Bytes read so far belonged to the request that just ended.
            self.reads.store(false, Ordering::Relaxed);
            self.enter(if self.http2.get() {
                Phase::Http2Idle
            } else {
                Phase::Idle
            });
        }
    }
}

/// A connection's registration: dropping it (when the connection's task
/// ends) takes the connection out of the worker's registry.
pub(crate) struct Registered(Rc<Conn>);

impl Registered {
    pub(crate) fn conn(&self) -> &Rc<Conn> {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.enter(Phase::Done);
        let mut lists = conn.registry.lists.borrow_mut();
        lists.slots[conn.index as usize].conn = None;
        lists.free.push(conn.index);
        lists.open -= 1;
        if lists.open == 0 {
            conn.registry.emptied.notify_waiters();
        }
    }
}

/// An HTTP/1.1 connection's stream, watched for the first bytes of a
/// request head after an idle spell (they start the header timer).
pub(crate) struct Watched<S> {
    inner: S,
    reads: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, conn: &Conn) -> Self {
        Watched {
            inner,
            reads: conn.reads.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(ms: u64) -> Timeouts {
        let d = Duration::from_millis(ms);
        Timeouts {
            head: d,
            idle: d * 2,
            http2_idle: d * 3,
        }
    }

    #[test]
    fn each_phase_has_its_timer_and_a_request_stops_it() {
        let registry = Registry::new(Rc::default());
        let start = Instant::now();
        let t = timeouts(100);
        let silent = registry.open();
        let h1 = registry.open();
        h1.conn().serving(false, None);
        let h2 = registry.open();
        h2.conn().serving(true, None);
        // A request in flight: no timer.
        let busy = h1.conn().request();
        assert_eq!(registry.sweep(start + Duration::from_millis(150), &t), 1);
        assert_eq!(silent.conn().closed_for(), Some(Close::HeaderTimeout));
        assert_eq!(h1.conn().closed_for(), None);
        // The request ends: the keep-alive timer starts now.
        drop(busy);
        let idle_since = Instant::now();
        assert_eq!(
            registry.sweep(idle_since + Duration::from_millis(150), &t),
            0
        );
        assert_eq!(registry.sweep(start + Duration::from_millis(350), &t), 2);
        assert_eq!(h1.conn().closed_for(), Some(Close::Idle));
        assert_eq!(h2.conn().closed_for(), Some(Close::Http2Idle));
        // Closed connections leave every list; registrations end with them.
        assert_eq!(registry.sweep(start + Duration::from_secs(10), &t), 0);
        drop((silent, h1, h2));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn room_is_made_by_the_connection_waiting_longest() {
        let registry = Registry::new(Rc::default());
        let first = registry.open();
        first.conn().serving(false, None);
        let second = registry.open();
        second.conn().serving(true, None);
        let busy = registry.open();
        busy.conn().serving(false, None);
        let _request = busy.conn().request();
        assert!(registry.close_oldest());
        assert_eq!(first.conn().closed_for(), Some(Close::Room));
        assert!(registry.close_oldest());
        assert_eq!(second.conn().closed_for(), Some(Close::Room));
        // Only a connection with a request in flight is left.
        assert!(!registry.close_oldest());
        assert_eq!(busy.conn().closed_for(), None);
        registry.close_all(Close::Shutdown);
        assert_eq!(busy.conn().closed_for(), Some(Close::Shutdown));
        // The first reason given stays.
        assert_eq!(first.conn().closed_for(), Some(Close::Room));
    }

    #[test]
    fn the_last_allowed_request_closes_its_connection_gracefully() {
        let registry = Registry::new(Rc::default());
        let open = registry.open();
        open.conn().serving(false, Some(2));
        drop(open.conn().request());
        assert_eq!(open.conn().closed_for(), None);
        drop(open.conn().request());
        assert_eq!(open.conn().closed_for(), Some(Close::MaxRequests));
        assert!(Close::MaxRequests.graceful());
    }

    #[test]
    fn a_stop_lets_a_connection_in_its_head_send_its_request_first() {
        let registry = Registry::new(Rc::default());
        let answered = registry.open();
        answered.conn().serving(false, None);
        let silent = registry.open();
        let idle = registry.open();
        idle.conn().serving(false, None);
        drop(idle.conn().request());
        registry.close_all(Close::Shutdown);
        // Idle: closed now. In its head: not yet.
        assert_eq!(idle.conn().closed_for(), Some(Close::Shutdown));
        assert_eq!(answered.conn().closed_for(), None);
        assert_eq!(silent.conn().closed_for(), None);
        // Its request arrives: it is served, then closed gracefully.
        let _request = answered.conn().request();
        assert_eq!(answered.conn().closed_for(), Some(Close::Shutdown));
        // The one that never sends anything is closed when the grace ends.
        registry.close_heads();
        assert_eq!(silent.conn().closed_for(), Some(Close::Shutdown));
    }

    #[test]
    fn the_sweep_runs_a_tenth_of_the_shortest_timeout_apart() {
        assert_eq!(timeouts(1000).granularity(), Duration::from_millis(100));
        assert_eq!(timeouts(30).granularity(), Duration::from_millis(10));
        assert_eq!(timeouts(60_000).granularity(), Duration::from_secs(1));
    }
}
