//! Per-worker counter lines: a counter and a gauge that one thread writes and
//! any thread reads, a fixed-bucket latency histogram, and `Shards`, one value
//! per worker on cache lines of its own. Worker `i` only ever writes shard `i`
//! (a relaxed load and store, no locked instruction); the control plane sums
//! the shards when asked.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
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
    fn classes_sum_over_workers() {
        #[derive(Default)]
        struct C {
            responses: [Counter; 5],
        }
        let shards: Shards<C> = Shards::new(3);
        shards.get(0).unwrap().responses[1].add(2);
        shards.get(2).unwrap().responses[1].inc();
        shards.get(1).unwrap().responses[4].inc();
        assert_eq!(sum_classes(&shards, |c| &c.responses), [0, 3, 0, 0, 1]);
        assert_eq!(status_class(204), 1);
        assert_eq!(status_class(99), 0);
        assert_eq!(status_class(700), 4);
    }
}
