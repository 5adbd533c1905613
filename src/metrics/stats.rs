//! The statistics a snapshot's routes, upstreams, endpoints and pool
//! addresses count into (each an `Arc` the control plane carries from one
//! snapshot to the next by name), the per-request indexes into them, the
//! outcome a request counts when its response body ends, and the gateway's
//! own figures. Read helpers for the admin API sum the shards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{
    EndpointCounters, PolicyCounters, PoolCounters, Refusal, RouteCounters, UpstreamCounters,
    WorkerCounters,
};
use super::shard::{status_class, Shards};

/// A route's statistics, carried across reloads by name.
#[derive(Debug)]
pub(crate) struct RouteStats {
    pub(crate) name: Box<str>,
    pub(crate) shards: Shards<RouteCounters>,
}

/// An upstream's statistics, carried across reloads by name.
#[derive(Debug)]
pub(crate) struct UpstreamStats {
    pub(crate) name: Box<str>,
    pub(crate) shards: Shards<UpstreamCounters>,
}

/// A policy middleware's refusals (`ip_filter`, `request_limits`, `cors`), carried
/// across reloads by its `[middlewares.NAME]` name.
#[derive(Debug)]
pub(crate) struct PolicyStats {
    pub(crate) name: Box<str>,
    /// Its `type`, for the metric's label.
    pub(crate) kind: &'static str,
    pub(crate) shards: Shards<PolicyCounters>,
}

/// The pool figures of one address, carried across reloads while some
/// upstream lists it.
#[derive(Debug)]
pub(crate) struct PoolStats {
    pub(crate) addr: SocketAddr,
    pub(crate) shards: Shards<PoolCounters>,
}

impl EndpointStats {
    pub(crate) fn new(addr: SocketAddr, workers: usize) -> Self {
        EndpointStats {
            addr,
            shards: Shards::new(workers),
        }
    }
}

/// An endpoint's statistics, carried across reloads by (upstream name,
/// address). Its health and ejection state are the upstream side's
/// (`upstream/health_state.rs`).
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub(crate) addr: SocketAddr,
    pub(crate) shards: Shards<EndpointCounters>,
}

/// The statistics a snapshot's routes and upstreams count into, indexed like
/// `Snapshot::routes` and `Snapshot::upstreams` (and their endpoints). Empty
/// until the control plane's publish fills it (`control/publish.rs`); the
/// data plane then counts nothing.
#[derive(Debug, Default)]
pub(crate) struct SnapshotStats {
    pub(crate) routes: Vec<Arc<RouteStats>>,
    pub(crate) upstreams: Vec<Arc<UpstreamStats>>,
    pub(crate) endpoints: Vec<Vec<Arc<EndpointStats>>>,
    /// By endpoint address.
    pub(crate) pools: HashMap<SocketAddr, Arc<PoolStats>>,
    /// Indexed like `Snapshot::policies`.
    pub(crate) policies: Vec<Arc<PolicyStats>>,
}

/// Where a request counts: its route and, once picked, its endpoint. Plain
/// indexes into the snapshot the request runs on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StatIds {
    // `u32`, not `usize`: this sits in every request's future, which hyper
    // keeps allocated per connection.
    route: Option<u32>,
    /// `(upstream, endpoint)`.
    endpoint: Option<(u32, u32)>,
    /// The policy middleware that refused the request, and why: counted
    /// with the request's outcome.
    refusal: Option<(u16, Refusal)>,
}

impl StatIds {
    pub(crate) fn set_route(&mut self, route: usize) {
        self.route = u32::try_from(route).ok();
    }

    pub(crate) fn set_endpoint(&mut self, upstream: usize, endpoint: usize) {
        self.endpoint = u32::try_from(upstream)
            .ok()
            .zip(u32::try_from(endpoint).ok());
    }

    pub(crate) fn route(&self) -> Option<usize> {
        self.route.map(|r| r as usize)
    }

    /// Policy `policy` (an index into `Snapshot::policies`) refused the
    /// request for `reason`.
    pub(crate) fn set_refusal(&mut self, policy: u16, reason: Refusal) {
        self.refusal = Some((policy, reason));
    }

    pub(crate) fn refusal(&self) -> Option<(usize, Refusal)> {
        self.refusal.map(|(p, r)| (p as usize, r))
    }

    pub(crate) fn endpoint(&self) -> Option<(usize, usize)> {
        self.endpoint.map(|(u, e)| (u as usize, e as usize))
    }
}

impl SnapshotStats {
    #[inline]
    pub(crate) fn route(&self, route: usize, worker: usize) -> Option<&RouteCounters> {
        self.routes.get(route)?.shards.get(worker)
    }

    #[inline]
    pub(crate) fn upstream(&self, upstream: usize, worker: usize) -> Option<&UpstreamCounters> {
        self.upstreams.get(upstream)?.shards.get(worker)
    }

    #[inline]
    pub(crate) fn endpoint(
        &self,
        (upstream, endpoint): (usize, usize),
        worker: usize,
    ) -> Option<&EndpointCounters> {
        self.endpoints
            .get(upstream)?
            .get(endpoint)?
            .shards
            .get(worker)
    }

    /// Counts a finished request: its route's status class, latency and
    /// bytes sent, and the end of its stay at the endpoint.
    pub(crate) fn request_done(
        &self,
        worker: usize,
        ids: StatIds,
        status: u16,
        elapsed: Duration,
        bytes_out: u64,
    ) {
        if let Some(r) = ids.route().and_then(|r| self.route(r, worker)) {
            r.responses[status_class(status)].inc();
            r.latency.observe(elapsed);
            r.bytes_out.add(bytes_out);
        }
        if let Some((policy, reason)) = ids.refusal() {
            if let Some(p) = self.policies.get(policy).and_then(|p| p.shards.get(worker)) {
                p.refusals[reason as usize].inc();
            }
        }
        if let Some((u, e)) = ids.endpoint() {
            if let Some(e) = self.endpoint((u, e), worker) {
                e.in_flight.dec();
            }
            if let Some(u) = self.upstream(u, worker) {
                u.in_flight.dec();
            }
        }
    }
}

/// What holds a snapshot's statistics: the snapshot itself (implemented
/// where the snapshot is defined), so a body can count into them without
/// this layer knowing what a snapshot is.
pub(crate) trait HoldsStats {
    fn stats(&self) -> &SnapshotStats;
}

impl HoldsStats for SnapshotStats {
    fn stats(&self) -> &SnapshotStats {
        self
    }
}

/// A worker's handle to the statistics of the snapshot a request runs on:
/// the worker's own `Rc` of the snapshot, so requests and their bodies clone
/// it with a plain increment on this thread; cloning the snapshot's `Arc`
/// would write one shared refcount from every worker on every request.
pub(crate) type StatsRef = Rc<dyn HoldsStats>;

/// What a request counts into when its response body ends: its route's
/// status class, latency and bytes sent, and the end of its stay at the
/// endpoint. Built once the answer is known; carried by the response body.
pub(crate) struct RequestOutcome {
    pub(crate) stats: StatsRef,
    pub(crate) worker: usize,
    pub(crate) ids: StatIds,
    pub(crate) status: u16,
    pub(crate) started: Instant,
}

impl RequestOutcome {
    /// Counts the request, which sent `bytes_out` body bytes.
    pub(crate) fn count(self, bytes_out: u64) {
        self.stats.stats().request_done(
            self.worker,
            self.ids,
            self.status,
            self.started.elapsed(),
            bytes_out,
        );
    }
}

/// Every figure of a running gateway: the per-worker shards and the control
/// plane's own counters. Owned by the control plane; workers hold `Arc`s to
/// the parts they write.
pub(crate) struct Metrics {
    pub(crate) worker: Shards<WorkerCounters>,
    /// Reloads published.
    pub(crate) reloads_ok: AtomicU64,
    /// Reloads refused (invalid configuration, unreadable file).
    pub(crate) reloads_failed: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(workers: usize) -> Self {
        Metrics {
            worker: Shards::new(workers),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }
    }

    /// Counts a reload's outcome.
    pub(crate) fn reloaded(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(published, refused)` reloads since start.
    pub(crate) fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }
}

impl EndpointStats {
    /// Requests in flight at the endpoint, over every worker.
    pub(crate) fn in_flight(&self) -> i64 {
        self.shards.sum_i64(|c| c.in_flight.get()).max(0)
    }

    /// Unix time (ms) of the most recent failure on any worker, if any.
    pub(crate) fn last_failure_ms(&self) -> Option<u64> {
        self.shards
            .iter()
            .map(|c| c.last_failure_ms.get())
            .max()
            .filter(|&ms| ms > 0)
    }
}

impl PoolStats {
    /// `(idle, active)` connections to this address, over every worker.
    pub(crate) fn connections(&self) -> (i64, i64) {
        (
            self.shards.sum_i64(|c| c.idle.get()).max(0),
            self.shards.sum_i64(|c| c.active.get()).max(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gauges_and_failures_sum_over_workers() {
        let e = EndpointStats::new("127.0.0.1:1".parse().unwrap(), 2);
        assert_eq!(e.last_failure_ms(), None);
        e.shards.get(0).unwrap().in_flight.inc();
        e.shards.get(1).unwrap().in_flight.inc();
        e.shards.get(1).unwrap().failed();
        assert_eq!(e.in_flight(), 2);
        assert!(e.last_failure_ms().is_some());
    }

    #[test]
    fn an_outcome_counts_its_route_and_ends_its_endpoint_stay() {
        let mut stats = SnapshotStats::default();
        stats.routes.push(Arc::new(RouteStats {
            name: "r".into(),
            shards: Shards::new(2),
        }));
        stats.upstreams.push(Arc::new(UpstreamStats {
            name: "u".into(),
            shards: Shards::new(2),
        }));
        stats.endpoints.push(vec![Arc::new(EndpointStats::new(
            "127.0.0.1:1".parse().unwrap(),
            2,
        ))]);
        let stats: StatsRef = Rc::new(stats);
        let mut ids = StatIds::default();
        ids.set_route(0);
        ids.set_endpoint(0, 0);
        let s = stats.stats();
        s.endpoint((0, 0), 1).unwrap().in_flight.inc();
        s.upstream(0, 1).unwrap().in_flight.inc();
        RequestOutcome {
            stats: stats.clone(),
            worker: 1,
            ids,
            status: 503,
            started: Instant::now(),
        }
        .count(42);
        let s = stats.stats();
        let r = s.route(0, 1).unwrap();
        assert_eq!(r.responses[4].get(), 1);
        assert_eq!(r.bytes_out.get(), 42);
        assert_eq!(s.endpoint((0, 0), 1).unwrap().in_flight.get(), 0);
        assert_eq!(s.upstream(0, 1).unwrap().in_flight.get(), 0);
    }
}
