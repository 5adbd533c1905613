//! The per-endpoint families (requests, failures, in flight, health, outlier
//! ejection), labelled by upstream and address; the connections to an address,
//! shared by every upstream that lists it, are left to `pools`.

use std::fmt;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counters, gauges};
use crate::config::Snapshot;
use crate::metrics::EndpointStats;
use crate::upstream::health_state::EndpointState;

/// One endpoint of one upstream; an address listed by two upstreams is two
/// rows, each counting its own upstream's traffic.
struct Row<'a> {
    upstream: &'a str,
    /// Formatted once per scrape, not once per family.
    addr: String,
    stats: &'a EndpointStats,
    state: &'a EndpointState,
}

impl Row<'_> {
    fn labels(&self) -> [(&'static str, &str); 2] {
        [
            ("upstream", self.upstream),
            ("endpoint", self.addr.as_str()),
        ]
    }
}

pub(super) fn encode(enc: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let upstream_name = |i: usize| snapshot.upstreams.get(i).map_or("", |u| &*u.name);
    // Published snapshots hold both per endpoint (`control/publish.rs`
    // builds them together); a zip would hide rows of one without the other.
    debug_assert_eq!(
        snapshot
            .stats
            .endpoints
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        snapshot
            .endpoint_states
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        "endpoint statistics and states differ"
    );
    let rows: Vec<Row<'_>> = snapshot
        .stats
        .endpoints
        .iter()
        .zip(&snapshot.endpoint_states)
        .enumerate()
        .flat_map(|(i, (eps, states))| {
            eps.iter().zip(states).map(move |(e, state)| Row {
                upstream: upstream_name(i),
                addr: e.addr.to_string(),
                stats: e,
                state,
            })
        })
        .collect();
    traffic(enc, &rows)?;
    state(enc, &rows)
}

fn traffic(enc: &mut DescriptorEncoder, rows: &[Row<'_>]) -> fmt::Result {
    counters(
        enc,
        "strait_endpoint_requests",
        "Requests sent to an upstream endpoint.",
        rows.iter()
            .map(|e| (e.labels(), e.stats.shards.sum(|c| c.requests.get()))),
    )?;
    counters(
        enc,
        "strait_endpoint_failures",
        "Requests that failed at an upstream endpoint (connect failure, reset, timeout, invalid response).",
        rows.iter()
            .map(|e| (e.labels(), e.stats.shards.sum(|c| c.failures.get()))),
    )?;
    gauges(
        enc,
        "strait_endpoint_in_flight",
        "Requests in flight at an upstream endpoint.",
        rows.iter().map(|e| (e.labels(), e.stats.in_flight())),
    )
}

/// Whether the balancers may pick the endpoint: health checks and outlier
/// detection.
fn state(enc: &mut DescriptorEncoder, rows: &[Row<'_>]) -> fmt::Result {
    gauges(
        enc,
        "strait_endpoint_healthy",
        "1 if the balancers send traffic to the endpoint, 0 if health checks took it out.",
        rows.iter()
            .map(|e| (e.labels(), i64::from(e.state.health.0.is_healthy()))),
    )?;
    let now_ms = crate::upstream::outlier::unix_ms();
    gauges(
        enc,
        "strait_endpoint_ejected",
        "1 while outlier detection holds the endpoint out, else 0.",
        rows.iter()
            .map(|e| (e.labels(), i64::from(e.state.is_ejected(now_ms)))),
    )?;
    counters(
        enc,
        "strait_endpoint_ejections",
        "Times outlier detection ejected the endpoint.",
        rows.iter()
            .map(|e| (e.labels(), e.state.ejections.load(Ordering::Relaxed))),
    )
}
