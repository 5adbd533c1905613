//! Publishing a snapshot: the one place the two planes meet. The control
//! plane gives a compiled snapshot its statistics and endpoint states
//! (carried over by name from the previous one, so counters, health,
//! ejections and in-flight gauges keep counting)
//! and its generation, and stores it with one atomic swap into the
//! [`Published`] cell the workers read. One publisher at a time, so
//! generations only grow; requests in flight keep the snapshot they started
//! with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::Snapshot;
use crate::metrics::{
    EndpointStats, PolicyStats, PoolStats, RouteStats, Shards, SnapshotStats, UpstreamStats,
};
use crate::upstream::health_state::EndpointState;
use crate::util::published::Published;

/// Publishes snapshots into the cell the workers read.
pub(crate) struct Publisher {
    store: Arc<Published<Snapshot>>,
    /// Serialises publishers (control plane only) and holds the statistics
    /// the running snapshot references, by name.
    live: Mutex<Live>,
    /// Worker shards each new statistic gets.
    workers: usize,
}

/// The statistics currently referenced by a snapshot, by name.
#[derive(Default)]
struct Live {
    routes: HashMap<Box<str>, Arc<RouteStats>>,
    upstreams: HashMap<Box<str>, Arc<UpstreamStats>>,
    endpoints: HashMap<(Box<str>, SocketAddr), Endpoint>,
    pools: HashMap<SocketAddr, Arc<PoolStats>>,
    /// By middleware name and type.
    policies: HashMap<(Box<str>, &'static str), Arc<PolicyStats>>,
}

/// One endpoint's statistics and health state.
type Endpoint = (Arc<EndpointStats>, Arc<EndpointState>);

impl Publisher {
    /// A publisher whose first snapshot is `first` (its statistics fresh).
    pub(crate) fn new(mut first: Snapshot, workers: usize) -> Self {
        let mut live = Live::default();
        live.attach(&mut first, workers);
        let generation = first.generation;
        Publisher {
            store: Arc::new(Published::new(first, generation)),
            live: Mutex::new(live),
            workers,
        }
    }

    /// The cell the workers read.
    pub(crate) fn store(&self) -> &Arc<Published<Snapshot>> {
        &self.store
    }

    /// The running snapshot.
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.store.load()
    }

    /// Attaches statistics to `snapshot`, gives it the next generation and
    /// publishes it; returns the generation.
    pub(crate) fn publish(&self, mut snapshot: Snapshot) -> u64 {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.attach(&mut snapshot, self.workers);
        super::jwks::adopt(&self.current(), &snapshot);
        let generation = self.store.generation() + 1;
        snapshot.generation = generation;
        self.store.store(snapshot, generation);
        generation
    }
}

/// Gives `snap` fresh statistics for `workers` workers, as a first publish
/// would (for tests that build a snapshot by hand).
#[cfg(test)]
pub(crate) fn attach_fresh(snap: &mut Snapshot, workers: usize) {
    Live::default().attach(snap, workers);
}

impl Live {
    /// Fills `snap.stats`, reusing the statistics of routes, upstreams and
    /// endpoints that the previous snapshot had under the same name (and
    /// address); the others start at zero and the ones no longer named are
    /// forgotten.
    fn attach(&mut self, snap: &mut Snapshot, workers: usize) {
        let mut next = Live::default();
        let mut stats = SnapshotStats::default();
        let mut states = Vec::with_capacity(snap.upstreams.len());
        for route in &snap.routes {
            let s = self.routes.remove(&route.name).unwrap_or_else(|| {
                Arc::new(RouteStats {
                    name: route.name.clone(),
                    shards: Shards::new(workers),
                })
            });
            next.routes.insert(route.name.clone(), s.clone());
            stats.routes.push(s);
        }
        for up in &snap.upstreams {
            let s = self.upstreams.remove(&up.name).unwrap_or_else(|| {
                Arc::new(UpstreamStats {
                    name: up.name.clone(),
                    shards: Shards::new(workers),
                })
            });
            next.upstreams.insert(up.name.clone(), s.clone());
            stats.upstreams.push(s);
            let mut eps = Vec::with_capacity(up.endpoints.len());
            let mut up_states = Vec::with_capacity(up.endpoints.len());
            for ep in up.endpoints.iter() {
                let key = (up.name.clone(), ep.addr);
                let (e, state) = self
                    .endpoints
                    .remove(&key)
                    .or_else(|| next.endpoints.get(&key).cloned())
                    .unwrap_or_else(|| {
                        let stats = Arc::new(EndpointStats::new(ep.addr, workers));
                        (stats, Arc::new(EndpointState::new(ep.addr)))
                    });
                state.health.0.set_checked(up.health_check.is_some());
                next.endpoints.insert(key, (e.clone(), state.clone()));
                eps.push(e);
                up_states.push(state);
                let p = self
                    .pools
                    .remove(&ep.addr)
                    .or_else(|| next.pools.get(&ep.addr).cloned())
                    .unwrap_or_else(|| {
                        Arc::new(PoolStats {
                            addr: ep.addr,
                            shards: Shards::new(workers),
                        })
                    });
                next.pools.insert(ep.addr, p.clone());
                stats.pools.insert(ep.addr, p);
            }
            stats.endpoints.push(eps);
            states.push(up_states);
        }
        for (name, kind) in &snap.policies {
            let key = (name.clone(), *kind);
            let s = self.policies.remove(&key).unwrap_or_else(|| {
                Arc::new(PolicyStats {
                    name: name.clone(),
                    kind,
                    shards: Shards::new(workers),
                })
            });
            next.policies.insert(key, s.clone());
            stats.policies.push(s);
        }
        *self = next;
        snap.stats = stats;
        snap.endpoint_states = states;
    }
}
