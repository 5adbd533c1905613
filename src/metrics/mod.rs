//! Counters the data plane writes and the control plane reads.
//!
//! Every figure is sharded by worker: worker `i` only ever writes shard `i`
//! (a relaxed load and store, no locked instruction, its own cache lines), and
//! the control plane sums the shards when the admin API is asked. Nothing here
//! is written by two threads, so the request path never contends on a line.
//!
//! The statistics of a route, an upstream and an endpoint live in `Arc`s that
//! the control plane carries from one snapshot to the next by name (see
//! [`Metrics::attach`]), so counters keep counting across reloads and requests
//! still running on an old snapshot count into the same place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Snapshot;

/// A counter written by one thread (its worker) and read by any.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this, so a relaxed load and store
    /// (plain moves) is exact and needs no locked instruction.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value (for "last seen" timestamps).
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge written by one thread and read by any.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub(crate) fn add(&self, n: i64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub(crate) fn dec(&self) {
        self.add(-1);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in microseconds, for the comparison on the request path.
const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets; one per shard.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Non-cumulative counts per bucket; observations above the last bound
    /// only count in `count`.
    buckets: [Counter; 14],
    count: Counter,
    sum_us: Counter,
}

impl Histogram {
    #[inline]
    pub(crate) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].inc();
        }
        self.count.inc();
        self.sum_us.add(us);
    }
}

/// The sum of several shards' histograms, in the exposition's form.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HistogramSum {
    /// Cumulative counts, one per bound of [`LATENCY_BUCKETS`].
    pub(crate) cumulative: [u64; 14],
    pub(crate) count: u64,
    /// Seconds.
    pub(crate) sum: f64,
}

impl HistogramSum {
    pub(crate) fn of<'h>(shards: impl Iterator<Item = &'h Histogram>) -> HistogramSum {
        let mut out = HistogramSum::default();
        let mut per_bucket = [0u64; 14];
        let mut sum_us = 0u64;
        for h in shards {
            for (acc, b) in per_bucket.iter_mut().zip(&h.buckets) {
                *acc += b.get();
            }
            out.count += h.count.get();
            sum_us += h.sum_us.get();
        }
        let mut running = 0;
        for (c, b) in out.cumulative.iter_mut().zip(per_bucket) {
            running += b;
            *c = running;
        }
        // Read while a worker observes, a bucket may already count an
        // observation that `count` does not yet: never expose count < buckets.
        out.count = out.count.max(running);
        out.sum = sum_us as f64 / 1e6;
        out
    }

    /// `(upper bound, count in that bucket alone)` pairs ending with the
    /// `+Inf` bucket, as prometheus-client's `encode_histogram` wants them (it
    /// accumulates them itself, and the OpenMetrics encoder adds no `+Inf`).
    pub(crate) fn buckets(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        let mut out = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (&bound, cumulative) in LATENCY_BUCKETS.iter().zip(self.cumulative) {
            out.push((bound, cumulative - below));
            below = cumulative;
        }
        out.push((f64::INFINITY, self.count.saturating_sub(below)));
        out
    }
}

/// Keeps each worker's shard on its own cache lines (128 bytes: adjacent-line
/// prefetching pairs lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One `T` per worker.
#[derive(Debug)]
pub(crate) struct Shards<T>(Box<[Padded<T>]>);

impl<T: Default> Shards<T> {
    pub(crate) fn new(workers: usize) -> Self {
        Shards((0..workers.max(1)).map(|_| Padded::default()).collect())
    }
}

impl<T> Shards<T> {
    /// The shard of worker `worker`; `None` only for a worker the statistics
    /// were not sized for (never, once attached).
    #[inline]
    pub(crate) fn get(&self, worker: usize) -> Option<&T> {
        self.0.get(worker).map(|p| &p.0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }

    /// Sums `f` over every shard.
    pub(crate) fn sum(&self, f: impl Fn(&T) -> u64) -> u64 {
        self.iter().map(f).sum()
    }

    /// Sums a gauge over every shard.
    pub(crate) fn sum_i64(&self, f: impl Fn(&T) -> i64) -> i64 {
        self.iter().map(f).sum()
    }
}

/// The status class index of a status code: 0 for 1xx … 4 for 5xx.
#[inline]
pub(crate) fn status_class(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// Labels of the status classes, indexed like [`status_class`].
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One worker's figures for one route.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    /// Responses by status class.
    pub(crate) responses: [Counter; 5],
    /// Request body bytes received from clients.
    pub(crate) bytes_in: Counter,
    /// Response body bytes sent to clients.
    pub(crate) bytes_out: Counter,
    /// From the request head to the end of the response body.
    pub(crate) latency: Histogram,
}

/// A route's statistics, carried across reloads by name.
#[derive(Debug)]
pub(crate) struct RouteStats {
    pub(crate) name: Box<str>,
    pub(crate) shards: Shards<RouteCounters>,
}

/// One worker's figures for one upstream.
#[derive(Debug, Default)]
pub(crate) struct UpstreamCounters {
    /// Responses by status class (from the upstream, or the proxy's own 5xx
    /// when the upstream failed).
    pub(crate) responses: [Counter; 5],
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub(crate) connect_failures: Counter,
    /// Requests that got no response head within `response_header_timeout`.
    pub(crate) timeouts: Counter,
    /// Requests in flight to the upstream (for `max_requests`).
    pub(crate) in_flight: Gauge,
    /// Requests refused with 503 because `max_requests` was reached.
    pub(crate) limit_rejections: Counter,
    /// Connections open that this upstream opened (for `max_connections`).
    pub(crate) connections: Gauge,
    /// Requests waiting for a connection (for `max_pending`).
    pub(crate) pending: Gauge,
    /// Requests refused with 503: no connection within `connect_timeout`
    /// while `max_connections` were open.
    pub(crate) max_connections_rejections: Counter,
    /// Requests refused with 503 because `max_pending` were waiting.
    pub(crate) max_pending_rejections: Counter,
    /// Retries sent (attempts after the first).
    pub(crate) retries: Counter,
    /// Retries not sent because the upstream's retry budget was spent.
    pub(crate) retry_budget_exhausted: Counter,
    /// This worker's retry budget, in milli-retries (owned by the worker).
    pub(crate) retry_tokens: Counter,
    /// When the budget was last refilled (ms, monotonic).
    pub(crate) retry_refilled_ms: Counter,
    /// Exchanges sent over a pooled connection.
    pub(crate) pool_reused: Counter,
    /// Exchanges that needed a new connection.
    pub(crate) pool_new: Counter,
    /// From sending the request to the upstream's response head.
    pub(crate) latency: Histogram,
}

/// An upstream's statistics, carried across reloads by name.
#[derive(Debug)]
pub(crate) struct UpstreamStats {
    pub(crate) name: Box<str>,
    pub(crate) shards: Shards<UpstreamCounters>,
}

/// One worker's figures for one endpoint.
#[derive(Debug, Default)]
pub(crate) struct EndpointCounters {
    /// Requests sent to the endpoint.
    pub(crate) requests: Counter,
    /// Requests that failed at the endpoint (connect failure, reset, timeout,
    /// invalid response).
    pub(crate) failures: Counter,
    /// Unix time (ms) of the last failure, 0 if none.
    pub(crate) last_failure_ms: Counter,
    /// Requests in flight at the endpoint.
    pub(crate) in_flight: Gauge,
    /// Outlier detection: 5xx responses in a row seen by this worker.
    pub(crate) consecutive_5xx: Counter,
    /// Outlier detection: failed connection attempts in a row.
    pub(crate) consecutive_connect_failures: Counter,
}

/// One worker's connection pool figures for one address (shared by every
/// upstream that lists it, like the pool itself).
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    /// Idle keep-alive connections.
    pub(crate) idle: Gauge,
    /// Connections carrying an exchange.
    pub(crate) active: Gauge,
}

/// The pool figures of one address, carried across reloads while some
/// upstream lists it.
#[derive(Debug)]
pub(crate) struct PoolStats {
    pub(crate) addr: SocketAddr,
    pub(crate) shards: Shards<PoolCounters>,
}

impl EndpointCounters {
    /// Records a failed exchange.
    pub(crate) fn failed(&self) {
        self.failures.inc();
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_failure_ms.set(ms);
    }
}

/// Health as the balancers see it: written by the health checker (control
/// plane) on a change of state only, read with one relaxed load per pick.
/// The probe bookkeeping (`streak`, `last_probe`, `last_error`) is written by
/// the checker once per probe interval and never read by a worker.
#[derive(Debug)]
pub(crate) struct Health {
    healthy: AtomicBool,
    /// Whether an active check runs for this endpoint.
    checked: AtomicBool,
    /// Consecutive probe results in the current direction (control plane).
    pub(crate) streak: AtomicU64,
    /// The last probe's outcome: 0 none yet, 1 passed, 2 failed.
    pub(crate) last_probe: AtomicU8,
    /// Why the last failed probe failed ("connection refused", "status 503");
    /// control plane only.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            checked: AtomicBool::new(false),
            streak: AtomicU64::new(0),
            last_probe: AtomicU8::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl EndpointStats {
    pub(crate) fn new(addr: SocketAddr, workers: usize) -> Self {
        EndpointStats {
            addr,
            health: Padded(Health::default()),
            ejected_until_ms: Padded(AtomicU64::new(0)),
            ejections: AtomicU64::new(0),
            shards: Shards::new(workers),
        }
    }

    /// Whether outlier detection holds the endpoint out at `now_ms`.
    #[inline]
    pub(crate) fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.0.load(Ordering::Relaxed) > now_ms
    }
}

impl Health {
    #[inline]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the state; returns whether it changed.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub(crate) fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    pub(crate) fn set_checked(&self, checked: bool) {
        self.checked.store(checked, Ordering::Relaxed);
    }

    /// The cause of the last failed probe.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, cause: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = cause;
    }
}

/// An endpoint's statistics and health, carried across reloads by
/// (upstream name, address).
#[derive(Debug)]
pub(crate) struct EndpointStats {
    pub(crate) addr: SocketAddr,
    /// Read on every pick; written only when the state changes.
    pub(crate) health: Padded<Health>,
    /// Outlier detection: ejected until this Unix time (ms); read on every
    /// pick of an upstream with outlier detection, written on an ejection
    /// (by the worker that decides it) and on the return (control plane).
    pub(crate) ejected_until_ms: Padded<AtomicU64>,
    /// Ejections so far (each lasts longer than the one before).
    pub(crate) ejections: AtomicU64,
    pub(crate) shards: Shards<EndpointCounters>,
}

/// One worker's process-wide figures.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    /// Client connections open.
    pub(crate) connections_active: Gauge,
    /// Client connections accepted.
    pub(crate) connections_total: Counter,
    /// TLS handshakes completed on client connections.
    pub(crate) tls_handshakes: Counter,
    /// TLS handshakes that failed, by reason (indexed like
    /// `HandshakeFailure::ALL`).
    pub(crate) tls_handshake_failures: [Counter; 7],
    /// Tunnels open (upgraded connections and CONNECT tunnels).
    pub(crate) tunnels_active: Gauge,
    /// Tunnels opened by an `Upgrade` (or an HTTP/2 extended CONNECT).
    pub(crate) tunnels_upgrade: Counter,
    /// Tunnels opened by a plain `CONNECT`.
    pub(crate) tunnels_connect: Counter,
    /// Tunnels closed because no byte moved for their idle timeout.
    pub(crate) tunnels_idle_closed: Counter,
    /// Bytes carried by tunnels from the client to the upstream.
    pub(crate) tunnel_bytes_up: Counter,
    /// Bytes carried by tunnels from the upstream to the client.
    pub(crate) tunnel_bytes_down: Counter,
}

/// The statistics a snapshot's routes and upstreams count into, indexed like
/// `Snapshot::routes` and `Snapshot::upstreams` (and their endpoints). Empty
/// until [`Metrics::attach`] fills it; the data plane then counts nothing.
#[derive(Debug, Default)]
pub(crate) struct SnapshotStats {
    pub(crate) routes: Vec<Arc<RouteStats>>,
    pub(crate) upstreams: Vec<Arc<UpstreamStats>>,
    pub(crate) endpoints: Vec<Vec<Arc<EndpointStats>>>,
    /// By endpoint address.
    pub(crate) pools: HashMap<SocketAddr, Arc<PoolStats>>,
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

/// The statistics currently referenced by a snapshot, by name.
#[derive(Default)]
struct Live {
    routes: HashMap<Box<str>, Arc<RouteStats>>,
    upstreams: HashMap<Box<str>, Arc<UpstreamStats>>,
    endpoints: HashMap<(Box<str>, SocketAddr), Arc<EndpointStats>>,
    pools: HashMap<SocketAddr, Arc<PoolStats>>,
}

/// Every figure of a running gateway: the per-worker shards and the control
/// plane's own counters. Owned by the control plane; workers hold `Arc`s to
/// the parts they write.
pub(crate) struct Metrics {
    workers: usize,
    pub(crate) worker: Shards<WorkerCounters>,
    /// Reloads published.
    pub(crate) reloads_ok: AtomicU64,
    /// Reloads refused (invalid configuration, unreadable file).
    pub(crate) reloads_failed: AtomicU64,
    live: Mutex<Live>,
}

impl Metrics {
    pub(crate) fn new(workers: usize) -> Self {
        Metrics {
            workers,
            worker: Shards::new(workers),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            live: Mutex::new(Live::default()),
        }
    }

    /// Fills `snap.stats`, reusing the statistics of routes, upstreams and
    /// endpoints that the previous snapshot had under the same name (and
    /// address), so counters, health and in-flight gauges carry over; the
    /// others start at zero and the ones no longer named are forgotten.
    pub(crate) fn attach(&self, snap: &mut Snapshot) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Live::default();
        let workers = self.workers;
        let mut stats = SnapshotStats::default();
        for route in &snap.routes {
            let s = live.routes.remove(&route.name).unwrap_or_else(|| {
                Arc::new(RouteStats {
                    name: route.name.clone(),
                    shards: Shards::new(workers),
                })
            });
            next.routes.insert(route.name.clone(), s.clone());
            stats.routes.push(s);
        }
        for up in &snap.upstreams {
            let s = live.upstreams.remove(&up.name).unwrap_or_else(|| {
                Arc::new(UpstreamStats {
                    name: up.name.clone(),
                    shards: Shards::new(workers),
                })
            });
            next.upstreams.insert(up.name.clone(), s.clone());
            stats.upstreams.push(s);
            let mut eps = Vec::with_capacity(up.endpoints.len());
            for ep in up.endpoints.iter() {
                let key = (up.name.clone(), ep.addr);
                let e = live
                    .endpoints
                    .remove(&key)
                    .or_else(|| next.endpoints.get(&key).cloned())
                    .unwrap_or_else(|| Arc::new(EndpointStats::new(ep.addr, workers)));
                e.health.0.set_checked(up.health_check.is_some());
                next.endpoints.insert(key, e.clone());
                eps.push(e);
                let p = live
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
        }
        *live = next;
        snap.stats = stats;
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
}

// Read helpers for the admin API and the metrics exposition (control plane).

/// Sums per-status-class counters over every shard, indexed like
/// [`STATUS_CLASSES`].
pub(crate) fn sum_classes<T>(shards: &Shards<T>, f: impl Fn(&T) -> &[Counter; 5]) -> [u64; 5] {
    let mut out = [0u64; 5];
    for shard in shards.iter() {
        for (acc, c) in out.iter_mut().zip(f(shard)) {
            *acc += c.get();
        }
    }
    out
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

impl Metrics {
    /// `(published, refused)` reloads since start.
    pub(crate) fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_per_bucket_and_end_with_inf() {
        let shards: Shards<Histogram> = Shards::new(2);
        let h0 = shards.get(0).unwrap();
        let h1 = shards.get(1).unwrap();
        h0.observe(Duration::from_micros(300)); // <= 0.5 ms
        h1.observe(Duration::from_micros(300));
        h0.observe(Duration::from_millis(20)); // <= 25 ms
        h1.observe(Duration::from_secs(30)); // above every bound
        let sum = HistogramSum::of(shards.iter());
        assert_eq!(sum.count, 4);
        assert_eq!(sum.cumulative[0], 2);
        assert_eq!(sum.cumulative[13], 3);
        let b = sum.buckets();
        assert_eq!(b.len(), 15);
        assert_eq!(b[0], (0.0005, 2));
        assert_eq!(b[5], (0.025, 1));
        assert_eq!(b[14], (f64::INFINITY, 1));
        assert_eq!(b.iter().map(|&(_, n)| n).sum::<u64>(), sum.count);
        assert!((sum.sum - 30.0206).abs() < 1e-9, "{}", sum.sum);
    }

    #[test]
    fn classes_and_gauges_sum_over_workers() {
        let shards: Shards<RouteCounters> = Shards::new(3);
        shards.get(0).unwrap().responses[1].add(2);
        shards.get(2).unwrap().responses[1].inc();
        shards.get(1).unwrap().responses[4].inc();
        assert_eq!(sum_classes(&shards, |c| &c.responses), [0, 3, 0, 0, 1]);

        let e = EndpointStats::new("127.0.0.1:1".parse().unwrap(), 2);
        assert_eq!(e.last_failure_ms(), None);
        e.shards.get(0).unwrap().in_flight.inc();
        e.shards.get(1).unwrap().in_flight.inc();
        e.shards.get(1).unwrap().failed();
        assert_eq!(e.in_flight(), 2);
        assert!(e.last_failure_ms().is_some());
    }
}
