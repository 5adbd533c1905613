//! `GET /metrics`: the Prometheus exposition, encoded by `prometheus-client`.
//!
//! Workers count into their own shards (`crate::metrics`); nothing is
//! registered per request or kept here. On each scrape a [`Collector`] loads
//! the published snapshot, sums every shard of its routes, upstreams,
//! endpoints and pools, and encodes constant counters, gauges and histograms.
//! A route or upstream removed by a reload disappears from the next scrape;
//! one kept (by name) keeps counting.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Control;
use crate::config::Snapshot;
use crate::metrics::{sum_classes, EndpointStats, HistogramSum, Metrics, STATUS_CLASSES};

/// The `Content-Type` of the OpenMetrics text format.
pub(super) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry whose one collector reads the running gateway.
pub(super) struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub(super) fn new(control: Arc<Control>) -> Self {
        Exposition::with(Box::new(Live(control)))
    }

    fn with(collector: Box<dyn Collector>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(collector);
        Exposition { registry }
    }

    /// The text and its content type: OpenMetrics 1.0 (ending in `# EOF`) or
    /// the classic Prometheus text format 0.0.4.
    pub(super) fn render(&self, openmetrics: bool) -> Result<(String, &'static str), fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            text::encode(&mut out, &self.registry)?;
            Ok((out, OPENMETRICS))
        } else {
            prometheus_text::encode(&mut out, &self.registry)?;
            Ok((out, prometheus_text::CONTENT_TYPE))
        }
    }
}

/// Reads the running gateway on each scrape.
struct Live(Arc<Control>);

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("strait collector")
    }
}

impl Collector for Live {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let c = &self.0;
        let snapshot = c.snapshot();
        let mut names: Vec<NameRow> = c
            .name_table()
            .into_iter()
            .map(|(k, s)| NameRow {
                upstream: k.upstream.into(),
                host: format!("{}:{}", k.host, k.port),
                refreshes: s.refreshes,
                failures: s.failures,
            })
            .collect();
        names.sort_by(|a, b| (&a.upstream, &a.host).cmp(&(&b.upstream, &b.host)));
        encode(
            encoder,
            &Figures {
                snapshot: &snapshot,
                metrics: &c.metrics,
                workers: c.workers,
                uptime: c.started.elapsed().as_secs_f64(),
                names: &names,
            },
        )
    }
}

/// What one scrape reads.
struct Figures<'a> {
    snapshot: &'a Snapshot,
    metrics: &'a Metrics,
    workers: usize,
    uptime: f64,
    /// The endpoint names, by upstream and `host:port`.
    names: &'a [NameRow],
}

/// The refresh counters of one endpoint name.
struct NameRow {
    upstream: String,
    host: String,
    refreshes: u64,
    failures: u64,
}

/// Every metric, in a fixed order.
fn encode(mut enc: DescriptorEncoder, f: &Figures<'_>) -> fmt::Result {
    let stats = &f.snapshot.stats;
    let upstream_name = |i: usize| f.snapshot.upstreams.get(i).map_or("", |u| &*u.name);

    // Routes.
    counters(
        &mut enc,
        "strait_route_responses",
        "Responses sent to clients, by route and status class.",
        stats.routes.iter().flat_map(|r| {
            let classes = sum_classes(&r.shards, |c| &c.responses);
            STATUS_CLASSES
                .iter()
                .zip(classes)
                .map(move |(&class, n)| ([("route", &*r.name), ("class", class)], n))
        }),
    )?;
    histograms(
        &mut enc,
        "strait_route_request_duration_seconds",
        "Time from the request head to the end of the response body, by route.",
        stats.routes.iter().map(|r| {
            (
                [("route", &*r.name)],
                HistogramSum::of(r.shards.iter().map(|c| &c.latency)),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_route_received_bytes",
        "Request body bytes received from clients, by route.",
        stats
            .routes
            .iter()
            .map(|r| ([("route", &*r.name)], r.shards.sum(|c| c.bytes_in.get()))),
    )?;
    counters(
        &mut enc,
        "strait_route_sent_bytes",
        "Response body bytes sent to clients, by route.",
        stats
            .routes
            .iter()
            .map(|r| ([("route", &*r.name)], r.shards.sum(|c| c.bytes_out.get()))),
    )?;

    // Upstreams.
    counters(
        &mut enc,
        "strait_upstream_responses",
        "Responses from upstreams (or the proxy's own 5xx when the upstream failed), by upstream and status class.",
        stats.upstreams.iter().flat_map(|u| {
            let classes = sum_classes(&u.shards, |c| &c.responses);
            STATUS_CLASSES
                .iter()
                .zip(classes)
                .map(move |(&class, n)| ([("upstream", &*u.name), ("class", class)], n))
        }),
    )?;
    histograms(
        &mut enc,
        "strait_upstream_response_duration_seconds",
        "Time from sending the request upstream to its response head, by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                HistogramSum::of(u.shards.iter().map(|c| &c.latency)),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_upstream_connect_failures",
        "Upstream connection attempts that failed (refused, unreachable, timed out), by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                u.shards.sum(|c| c.connect_failures.get()),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_upstream_timeouts",
        "Requests that got no response head within response_header_timeout, by upstream.",
        stats
            .upstreams
            .iter()
            .map(|u| ([("upstream", &*u.name)], u.shards.sum(|c| c.timeouts.get()))),
    )?;
    gauges(
        &mut enc,
        "strait_upstream_in_flight",
        "Requests in flight to the upstream (what max_requests limits), by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                u.shards.sum_i64(|c| c.in_flight.get()).max(0),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_upstream_limit_rejections",
        "Requests answered 503 because an upstream limit was reached, by upstream and limit.",
        stats.upstreams.iter().flat_map(|u| {
            [
                (
                    [("upstream", &*u.name), ("limit", "max_requests")],
                    u.shards.sum(|c| c.limit_rejections.get()),
                ),
                (
                    [("upstream", &*u.name), ("limit", "max_connections")],
                    u.shards.sum(|c| c.max_connections_rejections.get()),
                ),
                (
                    [("upstream", &*u.name), ("limit", "max_pending")],
                    u.shards.sum(|c| c.max_pending_rejections.get()),
                ),
            ]
        }),
    )?;
    gauges(
        &mut enc,
        "strait_upstream_open_connections",
        "Connections open that the upstream opened (what max_connections limits), by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                u.shards.sum_i64(|c| c.connections.get()).max(0),
            )
        }),
    )?;
    gauges(
        &mut enc,
        "strait_upstream_pending",
        "Requests waiting for a connection under max_connections (what max_pending limits), by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                u.shards.sum_i64(|c| c.pending.get()).max(0),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_upstream_retries",
        "Retries sent (attempts after the first), by upstream.",
        stats
            .upstreams
            .iter()
            .map(|u| ([("upstream", &*u.name)], u.shards.sum(|c| c.retries.get()))),
    )?;
    counters(
        &mut enc,
        "strait_upstream_retry_budget_exhausted",
        "Retries not sent because the upstream's retry budget was spent, by upstream.",
        stats.upstreams.iter().map(|u| {
            (
                [("upstream", &*u.name)],
                u.shards.sum(|c| c.retry_budget_exhausted.get()),
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_upstream_connections",
        "Upstream exchanges by connection: reused=\"true\" over a pooled keep-alive connection, reused=\"false\" over a new one.",
        stats.upstreams.iter().flat_map(|u| {
            [
                (
                    [("upstream", &*u.name), ("reused", "true")],
                    u.shards.sum(|c| c.pool_reused.get()),
                ),
                (
                    [("upstream", &*u.name), ("reused", "false")],
                    u.shards.sum(|c| c.pool_new.get()),
                ),
            ]
        }),
    )?;

    // Endpoints, labelled by upstream and address.
    let endpoints: Vec<EndpointRow<'_>> = stats
        .endpoints
        .iter()
        .enumerate()
        .flat_map(|(i, eps)| {
            eps.iter()
                .map(move |e| (upstream_name(i), e.addr.to_string(), &**e))
        })
        .collect();
    counters(
        &mut enc,
        "strait_endpoint_requests",
        "Requests sent to an upstream endpoint.",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), e.2.shards.sum(|c| c.requests.get()))),
    )?;
    counters(
        &mut enc,
        "strait_endpoint_failures",
        "Requests that failed at an upstream endpoint (connect failure, reset, timeout, invalid response).",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), e.2.shards.sum(|c| c.failures.get()))),
    )?;
    gauges(
        &mut enc,
        "strait_endpoint_in_flight",
        "Requests in flight at an upstream endpoint.",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), e.2.in_flight())),
    )?;
    gauges(
        &mut enc,
        "strait_endpoint_healthy",
        "1 if the balancers send traffic to the endpoint, 0 if health checks took it out.",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), i64::from(e.2.health.0.is_healthy()))),
    )?;

    let now_ms = crate::upstream::outlier::unix_ms();
    gauges(
        &mut enc,
        "strait_endpoint_ejected",
        "1 while outlier detection holds the endpoint out, else 0.",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), i64::from(e.2.is_ejected(now_ms)))),
    )?;
    counters(
        &mut enc,
        "strait_endpoint_ejections",
        "Times outlier detection ejected the endpoint.",
        endpoints.iter().map(|e| {
            (
                endpoint_labels(e),
                e.2.ejections.load(std::sync::atomic::Ordering::Relaxed),
            )
        }),
    )?;

    // Pools, by endpoint address (shared by the upstreams that list it).
    let mut pools: Vec<_> = stats.pools.values().collect();
    pools.sort_by_key(|p| p.addr);
    let pools: Vec<(String, (i64, i64))> = pools
        .iter()
        .map(|p| (p.addr.to_string(), p.connections()))
        .collect();
    gauges(
        &mut enc,
        "strait_pool_idle_connections",
        "Idle keep-alive connections to an endpoint address, over every worker's pool.",
        pools
            .iter()
            .map(|(a, (idle, _))| ([("endpoint", a.as_str())], *idle)),
    )?;
    gauges(
        &mut enc,
        "strait_pool_active_connections",
        "Upstream connections carrying an exchange, by endpoint address.",
        pools
            .iter()
            .map(|(a, (_, active))| ([("endpoint", a.as_str())], *active)),
    )?;

    // Endpoint names.
    counters(
        &mut enc,
        "strait_dns_refreshes",
        "Periodic look-ups of an endpoint name (host = host:port as configured), by upstream.",
        f.names.iter().map(|n| {
            (
                [("upstream", n.upstream.as_str()), ("host", n.host.as_str())],
                n.refreshes,
            )
        }),
    )?;
    counters(
        &mut enc,
        "strait_dns_resolution_failures",
        "Periodic look-ups of an endpoint name that failed or found no usable address (the last good addresses stayed), by upstream.",
        f.names
            .iter()
            .map(|n| ([("upstream", n.upstream.as_str()), ("host", n.host.as_str())], n.failures)),
    )?;

    // Process.
    let worker = &f.metrics.worker;
    gauge(
        &mut enc,
        "strait_client_connections_active",
        "Client connections open.",
        worker.sum_i64(|c| c.connections_active.get()).max(0),
    )?;
    counter(
        &mut enc,
        "strait_client_connections",
        "Client connections accepted.",
        worker.sum(|c| c.connections_total.get()),
    )?;
    counter(
        &mut enc,
        "strait_tls_handshakes",
        "TLS handshakes completed on client connections.",
        worker.sum(|c| c.tls_handshakes.get()),
    )?;
    counters(
        &mut enc,
        "strait_tls_handshake_failures",
        "TLS handshakes on client connections that failed, by reason: timeout, no_certificate (client), bad_certificate (client), alert (the client aborted), protocol, eof, other.",
        crate::tls::server::HandshakeFailure::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    [("reason", r.label())],
                    worker.sum(|c| c.tls_handshake_failures[i].get()),
                )
            }),
    )?;
    gauge(
        &mut enc,
        "strait_tunnels_active",
        "Tunnels open: upgraded connections (WebSocket and other Upgrade protocols) and CONNECT tunnels.",
        worker.sum_i64(|c| c.tunnels_active.get()).max(0),
    )?;
    counters(
        &mut enc,
        "strait_tunnels",
        "Tunnels opened: kind=\"upgrade\" by an Upgrade or an HTTP/2 extended CONNECT, kind=\"connect\" by a plain CONNECT.",
        [
            ([("kind", "upgrade")], worker.sum(|c| c.tunnels_upgrade.get())),
            ([("kind", "connect")], worker.sum(|c| c.tunnels_connect.get())),
        ],
    )?;
    counters(
        &mut enc,
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
        &mut enc,
        "strait_tunnels_idle_timeout",
        "Tunnels closed because no byte moved either way for their idle timeout.",
        worker.sum(|c| c.tunnels_idle_closed.get()),
    )?;
    let (ok, failed) = f.metrics.reloads();
    counters(
        &mut enc,
        "strait_reloads",
        "Configuration reloads: result=\"ok\" published, result=\"failed\" refused (the running configuration stayed).",
        [([("result", "ok")], ok), ([("result", "failed")], failed)],
    )?;
    gauge(
        &mut enc,
        "strait_config_generation",
        "Generation of the running configuration (1 at start, +1 per published reload).",
        f.snapshot.generation,
    )?;
    gauge(
        &mut enc,
        "strait_workers",
        "Worker threads.",
        f.workers as u64,
    )?;
    gauge(
        &mut enc,
        "strait_uptime_seconds",
        "Seconds since the gateway started.",
        f.uptime,
    )?;
    gauges(
        &mut enc,
        "strait_build_info",
        "Always 1; the labels describe the build.",
        [([("version", env!("CARGO_PKG_VERSION"))], 1i64)],
    )
}

type EndpointRow<'a> = (&'a str, String, &'a EndpointStats);

fn endpoint_labels<'a>((upstream, addr, _): &'a EndpointRow<'a>) -> [(&'static str, &'a str); 2] {
    [("upstream", upstream), ("endpoint", addr)]
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// A counter family; `name` without `_total` (the encoder appends it).
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histograms<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, HistogramSum)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum,
            h.count,
            &h.buckets(),
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
