//! The process-wide cap on client connections (`server.max_connections`,
//! `server.max_connections_per_ip`), shared by every worker. Admitting a
//! connection is one atomic add on one counter (and, only when a per-IP
//! limit is set, one short lock of one of 64 shards of the per-IP table):
//! once per connection, never per request. When the process is full, the
//! accepting worker closes its own oldest idle connection; if it has none,
//! it asks the other workers to close one of theirs and waits briefly for
//! the room before it refuses the new connection.

use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::{FxBuildHasher, FxHashMap};
use tokio::sync::Notify;

/// Shards of the per-IP table.
const IP_SHARDS: usize = 64;

/// Descriptors kept back from the automatic `max_connections` for
/// listeners, log files, the admin API and the like.
const RESERVED_DESCRIPTORS: u64 = 100;

/// How long a connection over the limit waits for other workers to make
/// room before it is refused.
pub(crate) const ROOM_WAIT: Duration = Duration::from_millis(250);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The process had `max_connections` open and none could be closed.
    MaxConnections,
    /// Its address had `max_connections_per_ip` open.
    PerIp,
}

impl Refused {
    pub(crate) const ALL: [Refused; 2] = [Refused::MaxConnections, Refused::PerIp];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The connections the process has open, against its limits.
pub(crate) struct ConnectionBudget {
    open: AtomicUsize,
    /// `max_connections` when the configuration does not set it.
    auto_limit: usize,
    /// The limit in force (the configuration's, or `auto_limit`), for
    /// `/metrics`.
    limit: AtomicUsize,
    /// Open connections by client address; used only with a per-IP limit.
    per_ip: Box<[Mutex<FxHashMap<IpAddr, u32>>]>,
    /// One per worker: rung when another worker needs room.
    doors: Box<[Notify]>,
    /// Rung when a connection closes while another one waits for room.
    freed: Notify,
    waiting: AtomicUsize,
}

impl ConnectionBudget {
    /// A budget for `workers` workers under a descriptor limit of
    /// `descriptors` (its soft value, already raised).
    pub(crate) fn new(workers: usize, descriptors: u64) -> Arc<Self> {
        let auto_limit = Self::auto_limit(descriptors);
        Arc::new(ConnectionBudget {
            open: AtomicUsize::new(0),
            auto_limit,
            limit: AtomicUsize::new(auto_limit),
            per_ip: (0..IP_SHARDS).map(|_| Mutex::default()).collect(),
            doors: (0..workers).map(|_| Notify::new()).collect(),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// The default `max_connections` under `descriptors` open files: each
    /// client connection may need an upstream connection too, so half of
    /// what is left after a reserve.
    pub(crate) fn auto_limit(descriptors: u64) -> usize {
        (descriptors.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(1) as usize
    }

    /// The limit for a configured `max_connections` (`None`: automatic).
    pub(crate) fn limit(&self, configured: Option<usize>) -> usize {
        let limit = configured.unwrap_or(self.auto_limit);
        if self.limit.load(Ordering::SeqCst) != limit {
            self.limit.store(limit, Ordering::SeqCst);
        }
        limit
    }

    /// The limit last in force.
    pub(crate) fn current_limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Client connections open in the process (admitted ones waiting for
    /// room included).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Counts a connection from `ip`, refused if that address is at
    /// `per_ip`. Whether the process is over its limit is for the caller to
    /// see with [`Ticket::over`].
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_ip: Option<usize>,
    ) -> Result<Ticket, Refused> {
        let ip = match per_ip {
            Some(max) => {
                let mut table = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
                let count = table.entry(ip).or_insert(0);
                if *count as usize >= max {
                    return Err(Refused::PerIp);
                }
                *count += 1;
                Some(ip)
            }
            None => None,
        };
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Ticket {
            budget: self.clone(),
            ip,
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<FxHashMap<IpAddr, u32>> {
        &self.per_ip[FxBuildHasher.hash_one(ip) as usize % IP_SHARDS]
    }

    /// Asks every worker but `from` to close one idle connection.
    pub(crate) fn ask_for_room(&self, from: usize) {
        for (i, door) in self.doors.iter().enumerate() {
            if i != from {
                door.notify_one();
            }
        }
    }

    /// Resolves when another worker asks worker `id` for room.
    pub(crate) async fn room_wanted(&self, id: usize) {
        match self.doors.get(id) {
            Some(door) => door.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Waits (up to `limit`) until the process is within `max`.
    pub(crate) async fn wait_for_room(&self, max: usize, limit: Duration) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waited = tokio::time::timeout(limit, async {
            loop {
                let freed = self.freed.notified();
                if self.open() <= max {
                    return;
                }
                freed.await;
            }
        })
        .await
        .is_ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        waited
    }
}

/// One admitted connection; dropping it gives its place back.
pub(crate) struct Ticket {
    budget: Arc<ConnectionBudget>,
    ip: Option<IpAddr>,
}

impl Ticket {
    /// Whether the process is over `max` with this connection counted.
    pub(crate) fn over(&self, max: usize) -> bool {
        self.budget.open() > max
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let budget = &self.budget;
        if let Some(ip) = self.ip {
            let mut table = budget.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
            if let Entry::Occupied(mut e) = table.entry(ip) {
                if *e.get() <= 1 {
                    e.remove();
                } else {
                    *e.get_mut() -= 1;
                }
            }
        }
        budget.open.fetch_sub(1, Ordering::SeqCst);
        if budget.waiting.load(Ordering::SeqCst) > 0 {
            budget.freed.notify_waiters();
        }
    }
}
