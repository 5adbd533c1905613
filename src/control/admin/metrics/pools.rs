//! The connection-pool gauges, one row per endpoint address over every
//! worker's pool; which upstream reused a connection is left to `upstreams`
//! (`strait_upstream_connections`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::gauges;
use crate::metrics::PoolStats;

/// Pools are keyed by address alone because upstreams that list the same
/// address share its connections.
pub(super) fn encode(
    enc: &mut DescriptorEncoder,
    pools: &HashMap<SocketAddr, Arc<PoolStats>>,
) -> fmt::Result {
    let mut pools: Vec<_> = pools.values().collect();
    // A map's order is arbitrary and differs between snapshots.
    pools.sort_by_key(|p| p.addr);
    let pools: Vec<(String, (i64, i64))> = pools
        .iter()
        .map(|p| (p.addr.to_string(), p.connections()))
        .collect();
    gauges(
        enc,
        "strait_pool_idle_connections",
        "Idle keep-alive connections to an endpoint address, over every worker's pool.",
        pools
            .iter()
            .map(|(a, (idle, _))| ([("endpoint", a.as_str())], *idle)),
    )?;
    gauges(
        enc,
        "strait_pool_active_connections",
        "Upstream connections carrying an exchange, by endpoint address.",
        pools
            .iter()
            .map(|(a, (_, active))| ([("endpoint", a.as_str())], *active)),
    )
}
