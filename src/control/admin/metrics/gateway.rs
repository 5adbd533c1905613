//! The process-wide families (client connections, TLS handshakes, tunnels,
//! reloads, workers, uptime, build), summed over every worker; nothing here is
//! per route, upstream or endpoint.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, counters, gauge, gauges, Figures};
use crate::metrics::{Metrics, Shards, WorkerCounters};
use crate::tls::server::HandshakeFailure;
use crate::worker::budget::Refused;
use crate::worker::connection::ClientError;
use crate::worker::connections::Close;

pub(super) fn encode(enc: &mut DescriptorEncoder, f: &Figures<'_>) -> fmt::Result {
    let worker = &f.metrics.worker;
    client_connections(enc, worker, f.connections.1)?;
    tls_handshakes(enc, worker)?;
    tunnels(enc, worker)?;
    process(enc, f)
}

fn client_connections(
    enc: &mut DescriptorEncoder,
    worker: &Shards<WorkerCounters>,
    limit: usize,
) -> fmt::Result {
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
    )?;
    gauge(
        enc,
        "strait_client_connections_limit",
        "Client connections the process keeps open at most (server.max_connections, or derived from the descriptor limit).",
        limit as u64,
    )?;
    counters(
        enc,
        "strait_client_connections_refused",
        "Client connections closed at accept, by reason: max_connections (the process was full and no idle connection could make room), max_connections_per_ip.",
        Refused::ALL.iter().map(|r| {
            (
                [("reason", r.label())],
                worker.sum(|c| c.connections_refused[r.index()].get()),
            )
        }),
    )?;
    counters(
        enc,
        "strait_client_connections_closed",
        "Client connections the gateway closed, by reason: header_timeout, idle (HTTP/1.1 keep-alive), http2_idle (GOAWAY), room (the oldest idle one, for a new connection while full), max_requests, shutdown.",
        Close::ALL.iter().map(|r| {
            (
                [("reason", r.label())],
                worker.sum(|c| c.connections_closed[r.index()].get()),
            )
        }),
    )?;
    counters(
        enc,
        "strait_client_connection_errors",
        "Client connections that ended with an error, by kind: bad_request (unparsable head, answered by the server), http2 (protocol errors and floods, answered with GOAWAY), timeout (no PING answer), io (reset, closed mid-message), other.",
        ClientError::ALL.iter().map(|k| {
            (
                [("kind", k.label())],
                worker.sum(|c| c.connection_errors[k.index()].get()),
            )
        }),
    )?;
    counter(
        enc,
        "strait_accept_errors",
        "accept() calls on the listeners that failed (out of descriptors and the like); each is followed by a 50 ms pause.",
        worker.sum(|c| c.accept_errors.get()),
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
