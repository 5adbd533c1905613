//! The per-worker pool of upstream connections, keyed by endpoint address and
//! transport (protocol, TLS settings, server name) so that it survives
//! configuration reloads that keep them. Single-threaded (`RefCell`), never
//! shared with another worker. It keeps its idle and active counts in the
//! worker's shard of the pool metrics.
//!
//! HTTP/1.1 connections carry one exchange at a time: idle ones wait in a
//! stack, a busy one is on loan to its response body (a [`Lease`] on the
//! pool's list of lent connections). HTTP/2 connections are shared: each key
//! lists up to `http2_max_connections` of them, and an exchange takes a
//! stream slot on the one with the fewest streams in flight ([`H2Stream`])
//! until its response body ends. For the gauges an HTTP/2 connection is idle
//! while no stream is in flight, active otherwise.
//!
//! Requests that wait for room (a connection checked in or closed, a stream
//! ended) under `max_connections` or a full HTTP/2 connection wait on the
//! pool's [`Room`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::connect::H2Sender;
use super::{PoolKey, PoolSettings, UpstreamSpec};
use crate::context::body::{Lease, Lender, RequestBody};
use crate::http1::conn::{Home, WireConn, READ_BUFFER};
use crate::metrics::{PoolCounters, PoolStats};
use crate::util::deadline::Deadlines;

struct Idle {
    conn: WireConn,
    since: Instant,
    settings: PoolSettings,
}

/// The pool of one key.
struct Entry {
    /// Listed by the current snapshot; otherwise the entry drains: nothing is
    /// checked in, and it goes once its last busy connection ends.
    live: bool,
    idle: Vec<Idle>,
    /// HTTP/1.1 connections of this worker carrying an exchange.
    active: usize,
    /// HTTP/2 connections accepting streams.
    h2: Vec<Rc<H2Conn>>,
    /// HTTP/2 connections being opened (they count toward the limit).
    h2_opening: u32,
    stats: Option<Arc<PoolStats>>,
}

impl Entry {
    fn new(live: bool) -> Self {
        Entry {
            live,
            idle: Vec::new(),
            active: 0,
            h2: Vec::new(),
            h2_opening: 0,
            stats: None,
        }
    }

    fn counters(&self, worker: usize) -> Option<&PoolCounters> {
        self.stats.as_ref().and_then(|s| s.shards.get(worker))
    }

    fn unused(&self) -> bool {
        !self.live && self.active == 0 && self.h2.is_empty() && self.h2_opening == 0
    }

    /// Takes the HTTP/2 connections that can no longer take streams (closed,
    /// or going away) off the list.
    fn prune_h2(&mut self) {
        if self.h2.iter().all(|c| c.usable()) {
            return;
        }
        self.h2.retain(|c| {
            let keep = c.usable();
            if !keep {
                c.unlist();
            }
            keep
        });
    }
}

/// One multiplexed HTTP/2 connection.
pub(crate) struct H2Conn {
    sender: RefCell<hyper::client::conn::http2::SendRequest<RequestBody>>,
    /// Set by the connection's reader when the endpoint sent GOAWAY.
    going_away: Rc<Cell<bool>>,
    /// Streams in flight, counted on our side: from the pick to the end of
    /// the response body (or the failure of the exchange).
    streams: Cell<u32>,
    /// Still listed in the pool (counted in its idle or active gauge).
    listed: Cell<bool>,
    /// When the last stream ended (for the idle timeout).
    idle_since: Cell<Instant>,
    settings: PoolSettings,
    stats: Option<Arc<PoolStats>>,
    worker: usize,
}

impl H2Conn {
    fn usable(&self) -> bool {
        !self.going_away.get() && !self.sender.borrow().is_closed()
    }

    fn counters(&self) -> Option<&PoolCounters> {
        self.stats.as_ref().and_then(|s| s.shards.get(self.worker))
    }

    /// Leaves the pool: an idle one leaves the idle gauge now, a busy one
    /// leaves the active gauge when its last stream ends.
    fn unlist(&self) {
        if self.listed.replace(false) && self.streams.get() == 0 {
            if let Some(c) = self.counters() {
                c.idle.dec();
            }
        }
    }

    fn take_stream(&self) {
        let n = self.streams.get();
        self.streams.set(n + 1);
        if n == 0 {
            if let Some(c) = self.counters() {
                if self.listed.get() {
                    c.idle.dec();
                }
                c.active.inc();
            }
        }
    }

    fn end_stream(&self) {
        let n = self.streams.get().saturating_sub(1);
        self.streams.set(n);
        if n == 0 {
            self.idle_since.set(Instant::now());
            if let Some(c) = self.counters() {
                c.active.dec();
                if self.listed.get() {
                    c.idle.inc();
                }
            }
        }
    }

    /// Hands `request` to the connection (synchronously; the returned
    /// future waits for the response head).
    pub(crate) fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> impl std::future::Future<
        Output = Result<
            http::Response<hyper::body::Incoming>,
            hyper::client::conn::TrySendError<http::Request<RequestBody>>,
        >,
    > {
        self.sender.borrow_mut().try_send_request(request)
    }
}

/// One stream slot on an HTTP/2 connection, held by one exchange; dropping it
/// ends the stream on our count and wakes requests waiting for room.
pub(crate) struct H2Stream {
    pub(crate) conn: Rc<H2Conn>,
    pool: Rc<UpstreamPool>,
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.conn.end_stream();
        self.pool.room.freed();
    }
}

/// What requests waiting for an upstream connection wait on: a connection
/// checked in or closed, a stream ended, an HTTP/2 connection opened.
#[derive(Default)]
pub(crate) struct Room {
    waiters: Cell<usize>,
    notify: Notify,
}

impl Room {
    /// Wakes the waiting requests, if any (a `Cell` read otherwise: this
    /// runs whenever a connection is freed).
    #[inline]
    pub(crate) fn freed(&self) {
        if self.waiters.get() > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Waits until room is freed, or `deadline`; false on the deadline.
    pub(crate) async fn wait(&self, deadline: tokio::time::Instant) -> bool {
        let notified = self.notify.notified();
        self.waiters.set(self.waiters.get() + 1);
        let woke = tokio::time::timeout_at(deadline, notified).await.is_ok();
        self.waiters.set(self.waiters.get() - 1);
        woke
    }
}

/// A connection on loan to a response body.
struct Lent {
    /// The HTTP/2 stream lent to a response body; `None` for an HTTP/1.1
    /// connection, which the body owns and hands back itself ([`Home`]).
    _stream: Option<H2Stream>,
    key: PoolKey,
    settings: PoolSettings,
}

/// The connections on loan, by lease id; freed slots are reused.
#[derive(Default)]
struct LentList {
    slots: Vec<Option<Lent>>,
    free: Vec<u32>,
}

/// How many HTTP/2 connections a key has, open and being opened.
pub(crate) struct H2Count {
    pub(crate) open: usize,
    pub(crate) opening: u32,
}

/// Spare read buffers a worker keeps (16 KiB each): enough for the
/// exchanges that end and start within one turn of the worker's loop.
const MAX_SPARE_BUFFERS: usize = 64;

/// Spare header maps a worker keeps for HTTP/1.1 response heads, and the
/// most fields one may have room for to be kept (a map grown for a huge
/// head is dropped rather than held).
const MAX_SPARE_MAPS: usize = 64;
const MAX_SPARE_MAP_FIELDS: usize = 64;

/// Response header names a worker keeps, parsed (`UpstreamPool::header_name`);
/// past this many the table starts over.
const MAX_NAMES: usize = 256;

/// One worker's upstream connections. Always inside an `Rc`: what it lends
/// (leases, stream slots) points back to it.
pub(crate) struct UpstreamPool {
    /// This worker's index: its shard of the pool gauges.
    worker: usize,
    /// Keyed by configured addresses and transports (never by client input),
    /// so a fast non-keyed hash is safe here: three lookups per exchange.
    entries: RefCell<FxHashMap<PoolKey, Entry>>,
    /// HTTP/1.1 connections (and HTTP/2 stream slots) on loan to response
    /// bodies.
    lent: RefCell<LentList>,
    /// Read buffers of connections not in an exchange, for the next one
    /// (an idle connection holds none).
    buffers: RefCell<Vec<BytesMut>>,
    /// Emptied header maps of response heads already written to their
    /// client, with their room: the next HTTP/1.1 response head fills one
    /// instead of allocating its own.
    maps: RefCell<Vec<HeaderMap>>,
    /// Response header names as the upstreams spelled them, parsed: a
    /// `HeaderName` is a hash-table lookup and a clone, not a parse (and,
    /// for a name that is not a standard one, an allocation) per field.
    names: RefCell<FxHashMap<Box<[u8]>, HeaderName>>,
    /// Where requests wait for a connection to be freed.
    pub(crate) room: Room,
    /// The worker's deadlines for the exchanges over these connections
    /// (driven by a task of the worker's: `Deadlines::run`).
    pub(crate) deadlines: Deadlines,
}

impl UpstreamPool {
    /// The pool of worker `worker`, for these upstreams (with the pool
    /// statistics of their addresses).
    pub(crate) fn new(
        worker: usize,
        upstreams: &[UpstreamSpec],
        stats: &HashMap<SocketAddr, Arc<PoolStats>>,
    ) -> Rc<Self> {
        let pool = UpstreamPool {
            worker,
            buffers: RefCell::default(),
            maps: RefCell::default(),
            names: RefCell::default(),
            entries: RefCell::new(FxHashMap::default()),
            lent: RefCell::default(),
            room: Room::default(),
            deadlines: Deadlines::default(),
        };
        pool.retarget(upstreams, stats);
        Rc::new(pool)
    }

    /// This worker's index.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }

    /// Follows a new snapshot's upstreams: the keys they list are live; the
    /// pools of the others close their idle connections now and the rest
    /// when their exchanges end.
    pub(crate) fn retarget(
        &self,
        upstreams: &[UpstreamSpec],
        pool_stats: &HashMap<SocketAddr, Arc<PoolStats>>,
    ) {
        let mut entries = self.entries.borrow_mut();
        for e in entries.values_mut() {
            e.live = false;
        }
        for up in upstreams {
            for (i, ep) in up.endpoints.iter().enumerate() {
                let stats = pool_stats.get(&ep.addr).cloned();
                let e = entries
                    .entry(up.pool_key(i, ep.addr))
                    .or_insert_with(|| Entry::new(true));
                e.live = true;
                if e.stats.is_none() {
                    e.stats = stats;
                }
            }
        }
        let worker = self.worker;
        entries.retain(|_, e| {
            if !e.live {
                if let Some(c) = e.counters(worker) {
                    c.idle.add(-(e.idle.len() as i64));
                }
                e.idle.clear();
                for c in e.h2.drain(..) {
                    c.unlist();
                }
            }
            !e.unused()
        });
    }

    /// The newest idle HTTP/1.1 connection to `key` that is still open,
    /// with a read buffer from the pool's spares (an idle connection holds
    /// none). Connections found closed or past their idle timeout are
    /// dropped on the way.
    pub(crate) fn checkout(&self, key: PoolKey) -> Option<WireConn> {
        let mut entries = self.entries.borrow_mut();
        let e = entries.get_mut(&key)?;
        let now = Instant::now();
        while let Some(idle) = e.idle.pop() {
            if let Some(c) = e.counters(self.worker) {
                c.idle.dec();
            }
            if now.duration_since(idle.since) >= idle.settings.idle_timeout
                || idle.conn.stream.gone_while_idle()
            {
                continue;
            }
            let mut conn = idle.conn;
            conn.buf = self.buffer();
            return Some(conn);
        }
        None
    }

    /// A read buffer for an exchange: a spare one, or a new one.
    pub(crate) fn buffer(&self) -> BytesMut {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_BUFFER))
    }

    /// Keeps a connection's buffer for the next exchange. The last frame
    /// of the body that just ended may still hold part of it (on its way to
    /// the client): its room is reclaimed when the buffer is next used
    /// (`BytesMut::try_reclaim`), by which time that frame is usually gone.
    pub(crate) fn spare(&self, mut buf: BytesMut) {
        buf.clear();
        let mut spares = self.buffers.borrow_mut();
        if spares.len() < MAX_SPARE_BUFFERS {
            spares.push(buf);
        }
    }

    /// An empty header map for a response head: a spare one, with the
    /// room it had, or a new one (which allocates only when filled).
    pub(crate) fn header_map(&self) -> HeaderMap {
        self.maps.borrow_mut().pop().unwrap_or_default()
    }

    /// The `HeaderName` of a response field name as received, or `None` if
    /// it is not a valid one. Names seen before on this worker are found in
    /// a bounded table (which starts over when full: an upstream sending
    /// ever new names costs a parse each, as without it).
    pub(crate) fn header_name(&self, name: &[u8]) -> Option<HeaderName> {
        let mut names = self.names.borrow_mut();
        if let Some(known) = names.get(name) {
            return Some(known.clone());
        }
        let parsed = HeaderName::from_bytes(name).ok()?;
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(name.into(), parsed.clone());
        Some(parsed)
    }

    /// Keeps a written response head's map, emptied, for the next one.
    pub(crate) fn spare_map(&self, mut map: HeaderMap) {
        if map.capacity() == 0 || map.capacity() > MAX_SPARE_MAP_FIELDS {
            return;
        }
        map.clear();
        let mut spares = self.maps.borrow_mut();
        if spares.len() < MAX_SPARE_MAPS {
            spares.push(map);
        }
    }

    /// A stream slot on the open HTTP/2 connection to `key` with the fewest
    /// streams in flight below `max_streams` (other than `avoid`), if any.
    pub(crate) fn h2_take(
        self: &Rc<Self>,
        key: PoolKey,
        max_streams: u32,
        avoid: Option<&Rc<H2Conn>>,
    ) -> Option<H2Stream> {
        let mut entries = self.entries.borrow_mut();
        let e = entries.get_mut(&key)?;
        e.prune_h2();
        let best =
            e.h2.iter()
                .filter(|c| c.streams.get() < max_streams)
                .filter(|c| !avoid.is_some_and(|a| Rc::ptr_eq(a, c)))
                .min_by_key(|c| c.streams.get())?;
        best.take_stream();
        Some(H2Stream {
            conn: best.clone(),
            pool: self.clone(),
        })
    }

    /// The HTTP/2 connections of `key`.
    pub(crate) fn h2_count(&self, key: PoolKey) -> H2Count {
        let mut entries = self.entries.borrow_mut();
        match entries.get_mut(&key) {
            None => H2Count {
                open: 0,
                opening: 0,
            },
            Some(e) => {
                e.prune_h2();
                H2Count {
                    open: e.h2.len(),
                    opening: e.h2_opening,
                }
            }
        }
    }

    /// Counts an HTTP/2 connection being opened to `key` (`up`), or no
    /// longer (`!up`).
    pub(crate) fn h2_opening(&self, key: PoolKey, up: bool) {
        let mut entries = self.entries.borrow_mut();
        let e = entries.entry(key).or_insert_with(|| Entry::new(false));
        if up {
            e.h2_opening += 1;
        } else {
            e.h2_opening = e.h2_opening.saturating_sub(1);
            if e.unused() {
                entries.remove(&key);
            }
        }
    }

    /// Lists a new HTTP/2 connection to `key` (unless the key is no longer
    /// configured) and takes its first stream slot.
    pub(crate) fn h2_add(
        self: &Rc<Self>,
        key: PoolKey,
        conn: H2Sender,
        settings: PoolSettings,
    ) -> H2Stream {
        let mut entries = self.entries.borrow_mut();
        let e = entries.entry(key).or_insert_with(|| Entry::new(false));
        let listed = e.live;
        let conn = Rc::new(H2Conn {
            sender: RefCell::new(conn.sender),
            going_away: conn.going_away,
            streams: Cell::new(0),
            listed: Cell::new(listed),
            idle_since: Cell::new(Instant::now()),
            settings,
            stats: e.stats.clone(),
            worker: self.worker,
        });
        if listed {
            if let Some(c) = conn.counters() {
                c.idle.inc();
            }
            e.h2.push(conn.clone());
        } else if e.unused() {
            // A key no longer configured: the connection serves this
            // request only.
            entries.remove(&key);
        }
        conn.take_stream();
        H2Stream {
            conn,
            pool: self.clone(),
        }
    }

    /// Counts an HTTP/1.1 connection to `key` as active: it is on loan to a
    /// response body. (Counted here rather than when it is checked out or
    /// opened, so an exchange that fails before its response head has
    /// nothing to undo, and the request's future carries no guard for it.)
    fn activate(&self, key: PoolKey) {
        let mut entries = self.entries.borrow_mut();
        let e = entries.entry(key).or_insert_with(|| Entry::new(false));
        e.active += 1;
        if let Some(c) = e.counters(self.worker) {
            c.active.inc();
        }
    }

    /// An active HTTP/1.1 connection ended its exchange: keep it if `reuse`
    /// and the key is still configured and under its idle limit, else close
    /// it.
    fn done(&self, key: PoolKey, conn: Option<WireConn>, settings: PoolSettings) {
        let mut entries = self.entries.borrow_mut();
        let Some(e) = entries.get_mut(&key) else {
            return;
        };
        e.active = e.active.saturating_sub(1);
        if let Some(c) = e.counters(self.worker) {
            c.active.dec();
        }
        let Some(mut conn) = conn else {
            if e.unused() {
                entries.remove(&key);
            }
            return;
        };
        if e.live && e.idle.len() < settings.max_idle_per_endpoint {
            self.spare(std::mem::take(&mut conn.buf));
            e.idle.push(Idle {
                conn,
                since: Instant::now(),
                settings,
            });
            if let Some(c) = e.counters(self.worker) {
                c.idle.inc();
            }
        } else if e.unused() {
            entries.remove(&key);
        }
    }

    /// Closes the oldest idle connection to one of `keys` (making room
    /// under a connection limit); false if there is none.
    pub(crate) fn evict_idle(&self, keys: impl Iterator<Item = PoolKey>) -> bool {
        let mut entries = self.entries.borrow_mut();
        for key in keys {
            if let Some(e) = entries.get_mut(&key) {
                if !e.idle.is_empty() {
                    e.idle.remove(0);
                    if let Some(c) = e.counters(self.worker) {
                        c.idle.dec();
                    }
                    return true;
                }
                if let Some(i) = e.h2.iter().position(|c| c.streams.get() == 0) {
                    e.h2.remove(i).unlist();
                    return true;
                }
            }
        }
        false
    }

    /// Closes idle connections past their idle timeout or already closed.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let worker = self.worker;
        let mut entries = self.entries.borrow_mut();
        for e in entries.values_mut() {
            let before = e.idle.len();
            e.idle.retain(|c| {
                now.duration_since(c.since) < c.settings.idle_timeout
                    && !c.conn.stream.gone_while_idle()
            });
            if let Some(c) = e.counters(worker) {
                c.idle.add(e.idle.len() as i64 - before as i64);
            }
            e.h2.retain(|c| {
                let expired = c.streams.get() == 0
                    && now.duration_since(c.idle_since.get()) >= c.settings.idle_timeout;
                let keep = c.usable() && !expired;
                if !keep {
                    c.unlist();
                }
                keep
            });
        }
    }
}

/// A connection carrying one exchange: an HTTP/1.1 connection on loan, or a
/// stream slot on a shared HTTP/2 connection.
pub(crate) enum Conn {
    Http1(WireConn),
    Http2(H2Stream),
}

impl UpstreamPool {
    /// Lends an HTTP/2 stream to a response body until the body ends.
    pub(crate) fn lend(
        self: &Rc<Self>,
        stream: H2Stream,
        key: PoolKey,
        settings: PoolSettings,
    ) -> Lease {
        let id = self.loan(Lent {
            _stream: Some(stream),
            key,
            settings,
        });
        Lease::new(self.clone(), id)
    }

    /// Notes an HTTP/1.1 connection to `key` as lent to a response body,
    /// which owns it and hands it back ([`Home`]) with the returned loan id.
    pub(crate) fn lend_wire(&self, key: PoolKey, settings: PoolSettings) -> u32 {
        self.activate(key);
        self.loan(Lent {
            _stream: None,
            key,
            settings,
        })
    }

    fn loan(&self, lent: Lent) -> u32 {
        let mut list = self.lent.borrow_mut();
        match list.free.pop() {
            Some(id) => {
                list.slots[id as usize] = Some(lent);
                id
            }
            None => {
                list.slots.push(Some(lent));
                (list.slots.len() - 1) as u32
            }
        }
    }

    fn end_loan(&self, id: u32) -> Option<Lent> {
        let mut list = self.lent.borrow_mut();
        let lent = list.slots.get_mut(id as usize).and_then(Option::take);
        if lent.is_some() {
            list.free.push(id);
        }
        lent
    }
}

impl Lender for UpstreamPool {
    fn give_back(&self, id: u32, _reusable: bool) {
        // The stream slot frees up as it drops.
        drop(self.end_loan(id));
    }
}

impl Home for UpstreamPool {
    fn back(&self, id: u32, conn: Option<WireConn>) {
        let Some(lent) = self.end_loan(id) else {
            return;
        };
        let reusable = conn.is_some();
        self.done(lent.key, conn, lent.settings);
        // A closed connection frees its room when it drops (its count).
        if reusable {
            self.room.freed();
        }
    }
}
