//! Outlier detection (passive health): endpoints that fail real traffic are
//! held out for a while. Each worker counts the failures in a row it sees
//! itself (its own shard, no shared write per request); the worker whose
//! count reaches the threshold ejects the endpoint for every worker by
//! writing one shared atomic, the "ejected until" time that every pick
//! already reads. Ejections are rare, so that write is too. Nobody needs to
//! act for an endpoint to come back; the control plane's tick only clears
//! the time and logs the return once ([`clear_returned`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::health_state::EndpointState;
use super::{OutlierSpec, UpstreamSpec};
use crate::metrics::SnapshotStats;
pub(crate) use crate::util::time::unix_ms;

/// What an exchange with an endpoint showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A response below 500.
    Success,
    /// A 5xx response, or a failure after the connection was made (reset,
    /// invalid response, response timeout).
    ServerError,
    /// The connection could not be made.
    ConnectFailure,
}

/// Counts one exchange of `worker` with endpoint `index` of upstream
/// `upstream`, and ejects the endpoint when a threshold is reached.
pub(crate) fn observe(
    stats: &SnapshotStats,
    states: &[Vec<Arc<EndpointState>>],
    spec: &UpstreamSpec,
    worker: usize,
    (upstream, index): (usize, usize),
    what: Observed,
) {
    let Some(outlier) = &spec.outlier else {
        return;
    };
    let Some(c) = stats.endpoint((upstream, index), worker) else {
        return;
    };
    let (row, threshold) = match what {
        Observed::Success => {
            c.consecutive_5xx.set(0);
            c.consecutive_connect_failures.set(0);
            return;
        }
        Observed::ServerError => (&c.consecutive_5xx, outlier.consecutive_5xx),
        Observed::ConnectFailure => (
            &c.consecutive_connect_failures,
            outlier.consecutive_connect_failures,
        ),
    };
    row.inc();
    if threshold == 0 || row.get() < u64::from(threshold) {
        return;
    }
    row.set(0);
    let Some(endpoints) = states.get(upstream) else {
        return;
    };
    eject(endpoints, index, outlier, &spec.name, what);
}

/// Ejects `endpoints[index]` unless that would hold out more than the allowed
/// share of the upstream. The n-th ejection lasts n × the base time, capped.
fn eject(
    endpoints: &[Arc<EndpointState>],
    index: usize,
    outlier: &OutlierSpec,
    upstream: &str,
    why: Observed,
) {
    let Some(e) = endpoints.get(index) else {
        return;
    };
    let now = unix_ms();
    if e.is_ejected(now) {
        return;
    }
    let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
    let allowed = endpoints.len() * outlier.max_ejection_percent as usize / 100;
    if ejected + 1 > allowed {
        tracing::warn!(
            upstream,
            endpoint = %e.addr,
            ejected,
            max_ejection_percent = outlier.max_ejection_percent,
            "outlier not ejected: the upstream's ejection limit is reached"
        );
        return;
    }
    let n = e.ejections.fetch_add(1, Ordering::Relaxed) + 1;
    let length = outlier
        .base_ejection_time
        .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
        .min(outlier.max_ejection_time);
    let until = now.saturating_add(length.as_millis() as u64);
    e.ejected_until_ms.0.store(until, Ordering::Relaxed);
    tracing::warn!(
        upstream,
        endpoint = %e.addr,
        cause = match why {
            Observed::ConnectFailure => "consecutive connect failures",
            _ => "consecutive 5xx",
        },
        ejection = n,
        for_ms = length.as_millis() as u64,
        "endpoint ejected"
    );
}

/// Clears the ejections of `upstreams` (their endpoints' states in
/// `endpoints`) that have ended by `now_ms`, and logs each return once.
pub(crate) fn clear_returned(
    upstreams: &[UpstreamSpec],
    endpoints: &[Vec<Arc<EndpointState>>],
    now_ms: u64,
) {
    for (u, endpoints) in endpoints.iter().enumerate() {
        for e in endpoints {
            let until = e.ejected_until_ms.0.load(Ordering::Relaxed);
            // Only one clearer wins (a tick racing a new ejection loses).
            if until != 0
                && until <= now_ms
                && e.ejected_until_ms
                    .0
                    .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::info!(
                    upstream = upstreams.get(u).map_or("", |s| &*s.name),
                    endpoint = %e.addr,
                    "ejected endpoint returned"
                );
            }
        }
    }
}

/// How long the n-th ejection lasts (for docs and tests).
#[cfg(test)]
fn ejection_length(outlier: &OutlierSpec, n: u32) -> std::time::Duration {
    outlier
        .base_ejection_time
        .saturating_mul(n)
        .min(outlier.max_ejection_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(pct: u32) -> OutlierSpec {
        OutlierSpec {
            consecutive_5xx: 3,
            consecutive_connect_failures: 2,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: pct,
        }
    }

    #[test]
    fn ejections_grow_and_are_capped() {
        let o = spec(50);
        assert_eq!(ejection_length(&o, 1), Duration::from_secs(10));
        assert_eq!(ejection_length(&o, 2), Duration::from_secs(20));
        assert_eq!(ejection_length(&o, 3), Duration::from_secs(25));
    }

    #[test]
    fn the_ejection_share_holds() {
        let eps: Vec<Arc<EndpointState>> = (0..4)
            .map(|i| Arc::new(EndpointState::new(([127, 0, 0, 1], 1000 + i).into())))
            .collect();
        let o = spec(50);
        for i in 0..4 {
            eject(&eps, i, &o, "u", Observed::ServerError);
        }
        let now = unix_ms();
        let ejected: Vec<bool> = eps.iter().map(|e| e.is_ejected(now)).collect();
        assert_eq!(ejected, [true, true, false, false]);
        // 0 %: never.
        let eps2: Vec<Arc<EndpointState>> = (0..2)
            .map(|i| Arc::new(EndpointState::new(([127, 0, 0, 1], 2000 + i).into())))
            .collect();
        eject(&eps2, 0, &spec(0), "u", Observed::ServerError);
        assert!(!eps2[0].is_ejected(unix_ms()));
    }

    #[test]
    fn ended_ejections_are_cleared_once() {
        let eps: Vec<Arc<EndpointState>> = (0..2)
            .map(|i| Arc::new(EndpointState::new(([127, 0, 0, 1], 3000 + i).into())))
            .collect();
        eps[0].ejected_until_ms.0.store(100, Ordering::Relaxed);
        eps[1].ejected_until_ms.0.store(300, Ordering::Relaxed);
        let all = [eps];
        clear_returned(&[], &all, 200);
        assert_eq!(all[0][0].ejected_until_ms.0.load(Ordering::Relaxed), 0);
        assert_eq!(all[0][1].ejected_until_ms.0.load(Ordering::Relaxed), 300);
        assert!(all[0][1].is_ejected(200));
    }
}
