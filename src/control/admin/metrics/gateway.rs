//! The process-wide families (client connections, TLS handshakes, tunnels,
//! reloads, workers, uptime, build), summed over every worker; nothing here is
//! per route, upstream or endpoint.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, counters, gauge, gauges, Figures};
use crate::metrics::{Metrics, Shards, WorkerCounters};
use crate::tls::server::HandshakeFailure;

pub(super) fn encode(enc: &mut DescriptorEncoder, f: &Figures<'_>) -> fmt::Result {
    let worker = &f.metrics.worker;
    client_connections(enc, worker)?;
    tls_handshakes(enc, worker)?;
    tunnels(enc, worker)?;
    process(enc, f)
}

fn client_connections(enc: &mut DescriptorEncoder, worker: &Shards<WorkerCounters>) -> fmt::Result {
    gauge(
        enc,
        "strait_client_connections_active",
        "Client connections open.",
        worker.sum_i64(|c| c.connections_active.get()).max(0),
    )?;
    counter(
        enc,
        "strait_client_connections",
        "Client connections accepted.",
        worker.sum(|c| c.connections_total.get()),
    )
}

fn tls_handshakes(enc: &mut DescriptorEncoder, worker: &Shards<WorkerCounters>) -> fmt::Result {
    counter(
        enc,
        "strait_tls_handshakes",
        "TLS handshakes completed on client connections.",
        worker.sum(|c| c.tls_handshakes.get()),
    )?;
    counters(
        enc,
        "strait_tls_handshake_failures",
        "TLS handshakes on client connections that failed, by reason: timeout, no_certificate (client), bad_certificate (client), alert (the client aborted), protocol, eof, other.",
        HandshakeFailure::ALL.iter().enumerate().map(|(i, r)| {
            (
                [("reason", r.label())],
                worker.sum(|c| c.tls_handshake_failures[i].get()),
            )
        }),
    )
}

fn tunnels(enc: &mut DescriptorEncoder, worker: &Shards<WorkerCounters>) -> fmt::Result {
    gauge(
        enc,
        "strait_tunnels_active",
        "Tunnels open: upgraded connections (WebSocket and other Upgrade protocols) and CONNECT tunnels.",
        worker.sum_i64(|c| c.tunnels_active.get()).max(0),
    )?;
    counters(
        enc,
        "strait_tunnels",
        "Tunnels opened: kind=\"upgrade\" by an Upgrade or an HTTP/2 extended CONNECT, kind=\"connect\" by a plain CONNECT.",
        [
            ([("kind", "upgrade")], worker.sum(|c| c.tunnels_upgrade.get())),
            ([("kind", "connect")], worker.sum(|c| c.tunnels_connect.get())),
        ],
    )?;
    counters(
        enc,
        "strait_tunnel_bytes",
        "Bytes carried by tunnels, by direction.",
        [
            (
                [("direction", "client_to_upstream")],
                worker.sum(|c| c.tunnel_bytes_up.get()),
            ),
            (
                [("direction", "upstream_to_client")],
                worker.sum(|c| c.tunnel_bytes_down.get()),
            ),
        ],
    )?;
    counter(
        enc,
        "strait_tunnels_idle_timeout",
        "Tunnels closed because no byte moved either way for their idle timeout.",
        worker.sum(|c| c.tunnels_idle_closed.get()),
    )
}

/// The figures that belong to the process rather than to any worker's shard.
fn process(enc: &mut DescriptorEncoder, f: &Figures<'_>) -> fmt::Result {
    reloads(enc, f.metrics)?;
    gauge(
        enc,
        "strait_config_generation",
        "Generation of the running configuration (1 at start, +1 per published reload).",
        f.snapshot.generation,
    )?;
    gauge(enc, "strait_workers", "Worker threads.", f.workers as u64)?;
    gauge(
        enc,
        "strait_uptime_seconds",
        "Seconds since the gateway started.",
        f.uptime,
    )?;
    gauges(
        enc,
        "strait_build_info",
        "Always 1; the labels describe the build.",
        [([("version", env!("CARGO_PKG_VERSION"))], 1i64)],
    )
}

fn reloads(enc: &mut DescriptorEncoder, metrics: &Metrics) -> fmt::Result {
    let (ok, failed) = metrics.reloads();
    counters(
        enc,
        "strait_reloads",
        "Configuration reloads: result=\"ok\" published, result=\"failed\" refused (the running configuration stayed).",
        [([("result", "ok")], ok), ([("result", "failed")], failed)],
    )
}
