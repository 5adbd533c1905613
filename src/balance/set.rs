//! One worker's balancers, one per upstream of the snapshot it serves, and
//! the pick a request makes: the health predicate (active checks and
//! outlier ejections, one relaxed load per candidate), the hash table of a
//! `ring` or `maglev` upstream for a request with a key, the worker's own
//! balancer state otherwise. Rebuilt lazily when the worker first picks for
//! a newer snapshot, carrying over what each balancer learnt. Owned by one
//! worker (interior mutability, never shared).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BalancePolicy, Balancer, RoundRobin};
use crate::metrics::SnapshotStats;
use crate::upstream::health_state::EndpointState;
use crate::upstream::{EndpointSpec, UpstreamSpec};

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PickError {
    /// The upstream has no endpoints.
    NoEndpoint,
    /// Every endpoint is down (health check) or ejected (outlier
    /// detection), and the check does not fail open.
    NoHealthyEndpoint,
}

/// What a pick looks at besides the balancer state: the snapshot the
/// request runs on (its generation, upstreams and statistics), which worker
/// picks, and that worker's coarse clock (for ejections).
#[derive(Clone, Copy)]
pub(crate) struct PickView<'a> {
    pub(crate) generation: u64,
    pub(crate) upstreams: &'a [UpstreamSpec],
    /// How each upstream picks, indexed like `upstreams`.
    pub(crate) policies: &'a [BalancePolicy],
    /// Each endpoint's health and ejection, indexed like the upstreams'
    /// endpoints.
    pub(crate) states: &'a [Vec<Arc<EndpointState>>],
    pub(crate) stats: &'a SnapshotStats,
    pub(crate) worker: usize,
    pub(crate) now_ms: u64,
}

/// One worker's balancer state for every upstream.
pub(crate) struct BalancerSet {
    inner: RefCell<States>,
    /// The worker id: staggers the workers' rotations and random sequences.
    seed: usize,
}

/// Per-upstream balancer state for one snapshot generation.
struct States {
    generation: u64,
    states: Vec<Balancer>,
    /// Each upstream's name and endpoint addresses, as `states` was built
    /// for: what a rebuild compares to carry state over.
    shapes: Vec<(Box<str>, Box<[SocketAddr]>)>,
    /// Used for requests still running on an older snapshot during a reload.
    fallback: RoundRobin,
}

impl BalancerSet {
    /// Fresh state for the upstreams of generation `generation`, which pick
    /// by `policies` (indexed like `upstreams`).
    pub(crate) fn new(
        upstreams: &[UpstreamSpec],
        policies: &[BalancePolicy],
        generation: u64,
        seed: usize,
    ) -> Self {
        let states = States::build(upstreams, policies, generation, seed, None);
        BalancerSet {
            inner: RefCell::new(states),
            seed,
        }
    }

    /// Picks an endpoint of upstream `upstream`, skipping the endpoints the
    /// health checker marked down and those outlier detection ejected (one
    /// relaxed load per candidate; upstreams without either load nothing).
    /// `key` is the hash of the request's key for a `ring` or `maglev`
    /// upstream (`None`: no key, the fallback balancer picks). When every
    /// endpoint is down: all of them if the check fails open, else
    /// `NoHealthyEndpoint`.
    pub(crate) fn pick(
        &self,
        view: &PickView<'_>,
        upstream: usize,
        key: Option<u64>,
    ) -> Result<usize, PickError> {
        let Some(spec) = view.upstreams.get(upstream) else {
            return Err(PickError::NoEndpoint);
        };
        if spec.endpoints.is_empty() {
            return Err(PickError::NoEndpoint);
        }
        if spec.health_check.is_none() && spec.outlier.is_none() {
            return self
                .choose(view, upstream, spec, key, |_| true)
                .ok_or(PickError::NoEndpoint);
        }
        let health = view.states.get(upstream).map_or(&[][..], |h| &h[..]);
        // Statistics are attached to every published snapshot; an endpoint
        // without them (none) counts as healthy. An endpoint ejected by
        // outlier detection is out until its time is up (by this worker's
        // coarse clock, at most one housekeeping tick late).
        let now_ms = view.now_ms;
        let healthy = |i: usize| health.get(i).map_or(true, |e| e.is_available(now_ms));
        match self.choose(view, upstream, spec, key, healthy) {
            Some(i) => Ok(i),
            None if spec.health_check.as_ref().is_some_and(|c| c.fail_open) => self
                .choose(view, upstream, spec, key, |_| true)
                .ok_or(PickError::NoEndpoint),
            None => Err(PickError::NoHealthyEndpoint),
        }
    }

    /// One pick: by the snapshot's hash table when the request has a key,
    /// else by this worker's balancer state (rebuilt, carrying over what
    /// it can, when the snapshot is newer than the state).
    #[inline]
    fn choose(
        &self,
        view: &PickView<'_>,
        upstream: usize,
        spec: &UpstreamSpec,
        key: Option<u64>,
        healthy: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let hash = view.policies.get(upstream).and_then(|p| p.hash.as_ref());
        if let (Some(hash), Some(key)) = (hash, key) {
            return hash.table.pick(key, healthy);
        }
        let mut b = self.inner.borrow_mut();
        if b.generation < view.generation {
            let (upstreams, policies) = (view.upstreams, view.policies);
            let fresh = States::build(upstreams, policies, view.generation, self.seed, Some(&b));
            *b = fresh;
        }
        // This worker's own shard: a relaxed load of a line only it writes.
        let in_flight = |i: usize| {
            view.stats
                .endpoint((upstream, i), view.worker)
                .map_or(0, |e| e.in_flight.get().max(0) as u64)
        };
        b.pick(
            view.generation,
            upstream,
            &spec.endpoints,
            healthy,
            in_flight,
        )
    }

    /// Feeds the latency `rtt` of a request to endpoint `index` of
    /// `upstream`, answered at `now`, to the balancer (only `peak_ewma`
    /// keeps it). A request that ran on an older snapshot than the balancer
    /// state is not counted (rare: around a reload).
    pub(crate) fn observe(
        &self,
        generation: u64,
        upstream: usize,
        index: usize,
        rtt: Duration,
        now: Instant,
    ) {
        let mut b = self.inner.borrow_mut();
        if b.generation == generation {
            if let Some(state) = b.states.get_mut(upstream) {
                state.observe(index, rtt, now);
            }
        }
    }
}

impl States {
    /// The states for `upstreams`. With `previous` (this worker's states for
    /// an older snapshot), an upstream of the same name and algorithm keeps
    /// what it learnt: see [`Balancer::carry_over`].
    fn build(
        upstreams: &[UpstreamSpec],
        policies: &[BalancePolicy],
        generation: u64,
        seed: usize,
        previous: Option<&States>,
    ) -> Self {
        let states = upstreams
            .iter()
            .zip(policies)
            .map(|(u, policy)| {
                let mut state = Balancer::new(policy.state_kind(), &u.endpoints, seed);
                let old = previous.and_then(|p| {
                    let j = p.shapes.iter().position(|(name, _)| **name == *u.name)?;
                    Some((p.states.get(j)?, &p.shapes[j].1))
                });
                if let Some((old, addrs)) = old {
                    state.carry_over(old, addrs, &u.endpoints);
                }
                state
            })
            .collect();
        States {
            generation,
            states,
            shapes: upstreams
                .iter()
                .map(|u| (u.name.clone(), u.endpoints.iter().map(|e| e.addr).collect()))
                .collect(),
            fallback: previous.map_or_else(|| RoundRobin::new(seed), |p| p.fallback.clone()),
        }
    }

    /// The pick among the (non-empty) `endpoints` of `upstream` that
    /// `healthy` accepts: by the upstream's balancer, or, for a request still
    /// on a snapshot older than these states, by a plain rotation.
    #[inline]
    fn pick(
        &mut self,
        generation: u64,
        upstream: usize,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        match self.states.get_mut(upstream) {
            Some(state) if self.generation == generation => {
                state.pick(endpoints, healthy, in_flight)
            }
            _ => self.fallback.pick(endpoints.len(), healthy),
        }
    }
}
