//! Peak EWMA (as Finagle's and linkerd's): each endpoint's cost is a moving
//! average of its observed latency times (requests in flight + 1), and the
//! pick is the cheaper of two random endpoints. "Peak": a latency above the
//! average replaces it at once, so an endpoint that turns slow is avoided
//! from its first slow answer, while a faster answer only pulls the average
//! down with a weight that grows with the time since the last observation.
//! The average also decays with time (time constant `tau`, 10 s): an
//! endpoint that was slow and got no traffic since looks cheaper again
//! after a while and gets probed.
//!
//! Everything is per worker: each worker's averages are fed by the latencies
//! its own requests observe (`WorkerLocal::observe`), and the requests in
//! flight are the worker's own gauges.

use std::time::{Duration, Instant};

use super::least_request::p2c;
use super::random::Rng;
use crate::upstream::EndpointSpec;

/// The decay time constant of the averages.
pub(super) const DEFAULT_TAU: Duration = Duration::from_secs(10);

/// The cost of an endpoint that has requests in flight but no latency
/// observed yet (Finagle's penalty): larger than any real latency (about 28
/// hours in nanoseconds), so an unmeasured endpoint gets one request at a
/// time until its first answer arrives.
const PENALTY: f64 = 1e14;

/// One endpoint's moving average.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ewma {
    /// Latency in nanoseconds; 0 until the first observation.
    rtt_ns: f64,
    /// When `rtt_ns` was last updated.
    stamp: Instant,
}

impl Ewma {
    fn new(now: Instant) -> Self {
        Ewma {
            rtt_ns: 0.0,
            stamp: now,
        }
    }

    /// The average decayed to `now`: `rtt × e^(−elapsed / tau)`.
    #[inline]
    fn decayed(&self, now: Instant, tau_ns: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        self.rtt_ns * (-elapsed / tau_ns).exp()
    }
}

/// Peak-EWMA state: one average per endpoint, the worker's generator.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    pub(crate) rng: Rng,
    pub(crate) ewma: Vec<Ewma>,
    tau_ns: f64,
}

impl PeakEwma {
    pub(crate) fn new(endpoints: usize, seed: usize, tau: Duration) -> Self {
        let now = Instant::now();
        PeakEwma {
            rng: Rng::new(seed),
            ewma: vec![Ewma::new(now); endpoints],
            tau_ns: tau.as_nanos().max(1) as f64,
        }
    }

    /// The cheaper of two random healthy endpoints, cost = decayed average ×
    /// (in flight + 1) / weight.
    #[inline]
    pub(crate) fn pick(
        &mut self,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        if self.ewma.len() != endpoints.len() {
            self.ewma = vec![Ewma::new(Instant::now()); endpoints.len()];
        }
        let now = Instant::now();
        let (ewma, tau) = (&self.ewma, self.tau_ns);
        let cost = |i: usize| {
            let pending = in_flight(i);
            let rtt = ewma[i].decayed(now, tau);
            if rtt == 0.0 && pending > 0 {
                PENALTY + pending as f64
            } else {
                rtt * (pending + 1) as f64 / f64::from(endpoints[i].weight)
            }
        };
        p2c(&mut self.rng, endpoints.len(), healthy, cost, |a, b| a < b)
    }

    /// Records a latency observed at endpoint `index`: a peak replaces the
    /// average, a lower value is averaged in with weight `1 − e^(−elapsed/tau)`.
    #[inline]
    pub(crate) fn observe(&mut self, index: usize, rtt: Duration, now: Instant) {
        let tau = self.tau_ns;
        let Some(e) = self.ewma.get_mut(index) else {
            return;
        };
        let rtt = rtt.as_nanos() as f64;
        let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
        let w = (-elapsed / tau).exp();
        e.rtt_ns = if rtt > e.rtt_ns {
            rtt
        } else {
            e.rtt_ns * w + rtt * (1.0 - w)
        };
        e.stamp = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u16) -> Vec<EndpointSpec> {
        (0..n)
            .map(|i| EndpointSpec::new(([127, 0, 0, 1], 9000 + i).into(), 1))
            .collect()
    }

    #[test]
    fn a_slow_endpoint_is_avoided_and_decays_back() {
        let e = eps(2);
        let mut p = PeakEwma::new(2, 0, DEFAULT_TAU);
        let t0 = Instant::now();
        p.observe(0, Duration::from_millis(50), t0);
        p.observe(1, Duration::from_millis(1), t0);
        for _ in 0..50 {
            assert_eq!(p.pick(&e, |_| true, |_| 0), Some(1));
        }
        // In flight counts: 60 requests waiting at the fast one cost more
        // than an idle slow one (1 ms × 61 > 50 ms × 1).
        assert_eq!(p.pick(&e, |_| true, |i| [0, 60][i]), Some(0));
        // A peak replaces the average at once; a fast answer right after
        // barely moves it (elapsed ≈ 0 gives weight ≈ 0 to the new value).
        p.observe(1, Duration::from_millis(80), t0);
        assert!((p.ewma[1].rtt_ns - 80e6).abs() < 1.0);
        p.observe(1, Duration::from_millis(1), t0);
        assert!(p.ewma[1].rtt_ns > 79e6);
        // 10 s later (one tau) the average has moved about 63 % of the way.
        p.observe(1, Duration::from_millis(1), t0 + Duration::from_secs(10));
        let r = p.ewma[1].rtt_ns / 1e6;
        assert!((r - (80.0 * 0.3679 + 1.0 * 0.6321)).abs() < 0.5, "{r}");
        // Decay without observations.
        let d = p.ewma[0].decayed(t0 + Duration::from_secs(20), p.tau_ns) / 1e6;
        assert!((d - 50.0 * 0.1353).abs() < 0.1, "{d}");
    }

    #[test]
    fn unmeasured_endpoints_with_requests_in_flight_are_penalised() {
        let e = eps(2);
        let mut p = PeakEwma::new(2, 0, DEFAULT_TAU);
        p.observe(1, Duration::from_secs(2), Instant::now());
        assert_eq!(p.pick(&e, |_| true, |i| [1, 3][i]), Some(1));
        assert_eq!(p.pick(&e, |_| true, |_| 0), Some(0));
        assert_eq!(p.pick(&e, |i| i == 1, |_| 0), Some(1));
        assert_eq!(p.pick(&e, |_| false, |_| 0), None);
    }
}
