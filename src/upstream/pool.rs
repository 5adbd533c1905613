//! The per-worker keep-alive pool of upstream connections, keyed by endpoint
//! address so that it survives configuration reloads that keep the endpoint.
//! Single-threaded (`RefCell`), never shared with another worker. It keeps its
//! idle and active counts in the worker's shard of the pool metrics.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::connect::Sender;
use super::PoolSettings;
use crate::config::Snapshot;
use crate::metrics::{PoolCounters, PoolStats};

struct Idle {
    sender: Sender,
    since: Instant,
    settings: PoolSettings,
}

/// The pool of one address.
struct Entry {
    /// Listed by the current snapshot; otherwise the entry drains: nothing is
    /// checked in, and it goes once its last busy connection ends.
    live: bool,
    idle: Vec<Idle>,
    /// Connections of this worker carrying an exchange.
    active: usize,
    stats: Option<Arc<PoolStats>>,
}

/// One worker's upstream connections.
pub(crate) struct UpstreamPool {
    worker: usize,
    /// Keyed by configured addresses (never by client input), so a fast
    /// non-keyed hash is safe here: three lookups per exchange.
    entries: RefCell<FxHashMap<SocketAddr, Entry>>,
}

impl Entry {
    fn counters(&self, worker: usize) -> Option<&PoolCounters> {
        self.stats.as_ref().and_then(|s| s.shards.get(worker))
    }
}

impl UpstreamPool {
    pub(crate) fn new(worker: usize, snap: &Snapshot) -> Self {
        let pool = UpstreamPool {
            worker,
            entries: RefCell::new(FxHashMap::default()),
        };
        pool.retarget(snap);
        pool
    }

    /// Follows a new snapshot: the addresses it lists are live; the pools of
    /// the others close their idle connections now and the rest when their
    /// exchanges end.
    pub(crate) fn retarget(&self, snap: &Snapshot) {
        let mut entries = self.entries.borrow_mut();
        for e in entries.values_mut() {
            e.live = false;
        }
        for up in &snap.upstreams {
            for ep in up.endpoints.iter() {
                let stats = snap.stats.pools.get(&ep.addr).cloned();
                let e = entries.entry(ep.addr).or_insert_with(|| Entry {
                    live: true,
                    idle: Vec::new(),
                    active: 0,
                    stats: None,
                });
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
            }
            e.live || e.active > 0
        });
    }

    /// The most recently used idle connection to `addr` that is still open.
    /// It counts as active once a [`PooledConn`] holds it. The caller still waits for `ready()` (the
    /// connection task may not have seen the end of the previous exchange).
    pub(crate) fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut entries = self.entries.borrow_mut();
        let e = entries.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(conn) = e.idle.pop() {
            if let Some(c) = e.counters(self.worker) {
                c.idle.dec();
            }
            if conn.sender.is_closed()
                || now.duration_since(conn.since) >= conn.settings.idle_timeout
            {
                continue;
            }
            return Some(conn.sender);
        }
        None
    }

    /// Counts a connection to `addr` as active: a [`PooledConn`] holds it.
    /// (Counted here rather than when it is checked out or opened, so an
    /// exchange that fails before its response head has nothing to undo,
    /// and the request's future carries no guard for it.)
    fn activate(&self, addr: SocketAddr) {
        let mut entries = self.entries.borrow_mut();
        let e = entries.entry(addr).or_insert_with(|| Entry {
            live: false,
            idle: Vec::new(),
            active: 0,
            stats: None,
        });
        e.active += 1;
        if let Some(c) = e.counters(self.worker) {
            c.active.inc();
        }
    }

    /// An active connection ended its exchange: keep it if `reuse` and the
    /// address is still configured and under its idle limit, else close it.
    fn done(&self, addr: SocketAddr, sender: Sender, settings: PoolSettings, reuse: bool) {
        let mut entries = self.entries.borrow_mut();
        let Some(e) = entries.get_mut(&addr) else {
            return;
        };
        e.active = e.active.saturating_sub(1);
        if let Some(c) = e.counters(self.worker) {
            c.active.dec();
        }
        if reuse && e.live && !sender.is_closed() && e.idle.len() < settings.max_idle_per_endpoint {
            e.idle.push(Idle {
                sender,
                since: Instant::now(),
                settings,
            });
            if let Some(c) = e.counters(self.worker) {
                c.idle.inc();
            }
        } else if !e.live && e.active == 0 {
            entries.remove(&addr);
        }
    }

    /// Closes the oldest idle connection to one of `addrs` (making room
    /// under a connection limit); false if there is none.
    pub(crate) fn evict_idle(&self, addrs: impl Iterator<Item = SocketAddr>) -> bool {
        let mut entries = self.entries.borrow_mut();
        for addr in addrs {
            if let Some(e) = entries.get_mut(&addr) {
                if !e.idle.is_empty() {
                    e.idle.remove(0);
                    if let Some(c) = e.counters(self.worker) {
                        c.idle.dec();
                    }
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
                !c.sender.is_closed() && now.duration_since(c.since) < c.settings.idle_timeout
            });
            if let Some(c) = e.counters(worker) {
                c.idle.add(e.idle.len() as i64 - before as i64);
            }
        }
    }
}

/// A connection on loan for one exchange. `release` returns it to the pool;
/// dropping it closes the connection.
pub(crate) struct PooledConn {
    sender: Option<Sender>,
    addr: SocketAddr,
    settings: PoolSettings,
    local: Rc<crate::data::worker::WorkerLocal>,
}

impl PooledConn {
    pub(crate) fn new(
        sender: Sender,
        addr: SocketAddr,
        settings: PoolSettings,
        local: Rc<crate::data::worker::WorkerLocal>,
    ) -> Self {
        local.pool.activate(addr);
        PooledConn {
            sender: Some(sender),
            addr,
            settings,
            local,
        }
    }

    /// The exchange completed cleanly: keep the connection for the next one.
    pub(crate) fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            self.local.pool.done(self.addr, sender, self.settings, true);
            self.local.room_freed();
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.local
                .pool
                .done(self.addr, sender, self.settings, false);
        }
    }
}
