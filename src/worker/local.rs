//! What one worker owns. Always inside an `Rc`; never leaves its thread. Each
//! field is the state of the layer that owns it; the worker's own part is
//! the snapshot it serves new requests with, the connection settings of
//! that snapshot, its client connections and the count of requests in
//! flight.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::watch;

use super::budget::ConnectionBudget;
use super::connection::ClientErrorLog;
use super::connections::Registry;
use super::in_flight::InFlightCount;
use super::protocols::Protocols;
use crate::balance::set::BalancerSet;
use crate::config::{Snapshot, SnapshotRef};
use crate::context::arena::ArenaPool;
use crate::context::tools::WorkerTools;
use crate::metrics::{Metrics, WorkerCounters};
use crate::proxy::ProxyState;
use crate::upstream::pool::UpstreamPool;
use crate::util::published::Published;

/// The state one worker owns.
pub(crate) struct WorkerLocal {
    /// This worker's index: its metric shard, the seed of its balancers.
    pub(crate) id: usize,
    /// The cell the control plane publishes snapshots into.
    snapshots: Arc<Published<Snapshot>>,
    /// The generation this worker serves new requests with, and its handle
    /// to that snapshot: checked against the cell with one atomic load per
    /// request; the shared `Arc` is touched once per worker per reload.
    current: RefCell<(u64, SnapshotRef)>,
    /// What the proxy keeps between requests: arenas, the worker's tools,
    /// its balancers, its upstream pool.
    pub(crate) proxy: Rc<ProxyState>,
    /// The hyper builders and TLS listeners of the current snapshot, built
    /// once per generation.
    protocols: RefCell<Rc<Protocols>>,
    /// Requests in flight, for the drain.
    pub(crate) in_flight: Rc<InFlightCount>,
    /// The client connections open on this worker, under their timers.
    pub(crate) connections: Rc<Registry>,
    /// The process-wide connection limits, shared with the other workers.
    pub(crate) budget: Arc<ConnectionBudget>,
    /// Client-caused connection errors since the last summary line.
    pub(crate) client_errors: ClientErrorLog,
}

impl WorkerLocal {
    pub(crate) fn new(
        id: usize,
        snapshots: Arc<Published<Snapshot>>,
        metrics: Arc<Metrics>,
        budget: Arc<ConnectionBudget>,
        shutdown: watch::Receiver<bool>,
    ) -> Rc<Self> {
        let snapshot = snapshots.load();
        let generation = snapshot.generation;
        let proxy = ProxyState {
            arenas: ArenaPool::default(),
            tools: WorkerTools::new(id),
            balancers: BalancerSet::new(&snapshot.upstreams, &snapshot.balancing, generation, id),
            pool: UpstreamPool::new(id, &snapshot.upstreams, &snapshot.stats.pools),
            metrics,
            shutdown,
        };
        let in_flight = Rc::<InFlightCount>::default();
        Rc::new(WorkerLocal {
            id,
            snapshots,
            protocols: RefCell::new(Rc::new(Protocols::new(&snapshot))),
            current: RefCell::new((generation, Rc::new(snapshot))),
            proxy: Rc::new(proxy),
            connections: Registry::new(in_flight.clone()),
            in_flight,
            budget,
            client_errors: ClientErrorLog::default(),
        })
    }

    /// The current snapshot: one atomic load; the shared `Arc` is only
    /// touched (once per worker) when a new generation was published.
    pub(crate) fn snapshot(&self) -> SnapshotRef {
        let generation = self.snapshots.generation();
        let mut current = self.current.borrow_mut();
        if current.0 != generation {
            let snapshot = self.snapshots.load();
            // Rare: once per reload. Pools of endpoints no longer configured
            // drain (their idle connections close now, busy ones when their
            // exchange ends); new connections get the new server settings.
            self.proxy
                .pool
                .retarget(&snapshot.upstreams, &snapshot.stats.pools);
            *self.protocols.borrow_mut() = Rc::new(Protocols::new(&snapshot));
            *current = (snapshot.generation, Rc::new(snapshot));
        }
        current.1.clone()
    }

    /// The connection settings of the current snapshot.
    pub(crate) fn protocols(&self) -> Rc<Protocols> {
        let _ = self.snapshot();
        self.protocols.borrow().clone()
    }

    /// This worker's process-wide counters.
    pub(crate) fn counters(&self) -> Option<&WorkerCounters> {
        self.proxy.counters()
    }
}
