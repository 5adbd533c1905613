//! The per-worker keep-alive pool of upstream connections, keyed by endpoint
//! address so that it survives configuration reloads that keep the endpoint.
//! Single-threaded (`RefCell`), never shared with another worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::connect::Sender;
use super::PoolSettings;

struct Idle {
    sender: Sender,
    since: Instant,
    settings: PoolSettings,
}

/// One worker's idle upstream connections.
#[derive(Default)]
pub(crate) struct UpstreamPool {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl UpstreamPool {
    /// The most recently used idle connection to `addr` that is still open.
    /// The caller still waits for `ready()` (the connection task may not have
    /// seen the end of the previous exchange yet).
    pub(crate) fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(conn) = list.pop() {
            if conn.sender.is_closed()
                || now.duration_since(conn.since) >= conn.settings.idle_timeout
            {
                continue;
            }
            return Some(conn.sender);
        }
        None
    }

    fn checkin(&self, addr: SocketAddr, sender: Sender, settings: PoolSettings) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= settings.max_idle_per_endpoint {
            return;
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
            settings,
        });
    }

    /// Closes idle connections past their idle timeout or already closed.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|c| {
                !c.sender.is_closed() && now.duration_since(c.since) < c.settings.idle_timeout
            });
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

/// A connection on loan for one exchange. `release` returns it to the pool;
/// dropping it closes the connection.
pub(crate) struct PooledConn {
    pub(crate) sender: Sender,
    addr: SocketAddr,
    settings: PoolSettings,
    pool: Rc<crate::data::worker::WorkerLocal>,
}

impl PooledConn {
    pub(crate) fn new(
        sender: Sender,
        addr: SocketAddr,
        settings: PoolSettings,
        pool: Rc<crate::data::worker::WorkerLocal>,
    ) -> Self {
        PooledConn {
            sender,
            addr,
            settings,
            pool,
        }
    }

    /// The exchange completed cleanly: keep the connection for the next one.
    pub(crate) fn release(self) {
        self.pool
            .pool
            .checkin(self.addr, self.sender, self.settings);
    }
}
