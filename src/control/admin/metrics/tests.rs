//! Renders a snapshot and metrics filled by hand in both text formats and
//! checks the sums over the shards, the family types and the framing.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use super::*;
use crate::config::DetachedSinks;
use crate::middleware::CustomRegistry;

const CONFIG: &str = r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.a]
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]

[upstreams.b]
endpoints = ["127.0.0.1:9002"]

[[routes]]
name = "ra"
match = { path_prefix = "/a" }
upstream = "a"

[[routes]]
name = "rb"
upstream = "b"
"#;

/// A collector over a snapshot and metrics made by hand.
struct Fixed(Arc<Snapshot>, Arc<Metrics>);

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fixed")
    }
}

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        encode(
            encoder,
            &Figures {
                snapshot: &self.0,
                metrics: &self.1,
                connections: (4, 1000),
                workers: 2,
                uptime: 1.5,
                names: &[NameRow {
                    upstream: "a".into(),
                    host: "api.internal:9001".into(),
                    refreshes: 6,
                    failures: 2,
                }],
            },
        )
    }
}

fn fixture() -> (Arc<Snapshot>, Arc<Metrics>) {
    let mut snap = crate::config::compile(
        "t.toml",
        CONFIG,
        7,
        &CustomRegistry::default(),
        &DetachedSinks,
        &crate::config::names::Names::fresh(&crate::config::names::SystemResolver),
        &crate::limit::LimitTables::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(Metrics::new(2));
    crate::control::publish::attach_fresh(&mut snap, 2);
    let s = &snap.stats;
    // Route "ra": 3 × 2xx on worker 0, 1 × 2xx and 1 × 5xx on worker 1.
    let (w0, w1) = (
        s.routes[0].shards.get(0).unwrap(),
        s.routes[0].shards.get(1).unwrap(),
    );
    w0.responses[1].add(3);
    w1.responses[1].inc();
    w1.responses[4].inc();
    w0.bytes_in.add(100);
    w1.bytes_out.add(250);
    for ms in [1, 2, 3, 20, 20_000] {
        w0.latency.observe(Duration::from_millis(ms));
    }
    let u = s.upstreams[0].shards.get(1).unwrap();
    u.pool_new.inc();
    u.pool_reused.add(4);
    u.connect_failures.add(2);
    u.timeouts.inc();
    let e = s.endpoints[0][1].shards.get(0).unwrap();
    e.requests.add(5);
    e.failed();
    e.in_flight.inc();
    snap.endpoint_states[1][0].health.0.set_healthy(false);
    let p = s.pools[&"127.0.0.1:9002".parse().unwrap()]
        .shards
        .get(1)
        .unwrap();
    p.idle.add(2);
    p.active.inc();
    let c = metrics.worker.get(0).unwrap();
    c.connections_total.add(3);
    c.connections_active.inc();
    c.tls_handshakes.add(4);
    c.tls_handshake_failures[0].inc();
    metrics.worker.get(1).unwrap().tls_handshake_failures[0].add(2);
    c.tunnels_active.inc();
    c.tunnels_upgrade.add(2);
    metrics.worker.get(1).unwrap().tunnels_connect.inc();
    metrics.worker.get(1).unwrap().tunnels_upgrade.inc();
    c.tunnels_idle_closed.inc();
    c.tunnel_bytes_up.add(10);
    c.tunnel_bytes_down.add(20);
    metrics.reloaded(true);
    metrics.reloaded(false);
    metrics.reloaded(false);
    (Arc::new(snap), metrics)
}

fn render(openmetrics: bool) -> String {
    let (snap, metrics) = fixture();
    Exposition::with(Box::new(Fixed(snap, metrics)))
        .render(openmetrics)
        .unwrap()
        .0
}

/// `name{labels}` → value, for counters, gauges and untyped samples.
fn samples(scrape: &Scrape) -> HashMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter_map(|s| {
            let v = match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            Some((format!("{}{{{}}}", s.metric, labels.join(",")), v))
        })
        .collect()
}

#[test]
fn classic_text_parses_and_sums_the_shards() {
    let text = render(false);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let s = samples(&scrape);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(get("strait_route_responses_total{class=2xx,route=ra}"), 4.0);
    assert_eq!(get("strait_route_responses_total{class=5xx,route=ra}"), 1.0);
    assert_eq!(get("strait_route_responses_total{class=2xx,route=rb}"), 0.0);
    assert_eq!(get("strait_route_received_bytes_total{route=ra}"), 100.0);
    assert_eq!(get("strait_route_sent_bytes_total{route=ra}"), 250.0);
    assert_eq!(
        get("strait_upstream_connections_total{reused=true,upstream=a}"),
        4.0
    );
    assert_eq!(
        get("strait_upstream_connections_total{reused=false,upstream=a}"),
        1.0
    );
    assert_eq!(
        get("strait_upstream_connect_failures_total{upstream=a}"),
        2.0
    );
    assert_eq!(get("strait_upstream_timeouts_total{upstream=a}"), 1.0);
    assert_eq!(
        get("strait_endpoint_requests_total{endpoint=127.0.0.1:9002,upstream=a}"),
        5.0
    );
    assert_eq!(
        get("strait_endpoint_failures_total{endpoint=127.0.0.1:9002,upstream=a}"),
        1.0
    );
    assert_eq!(
        get("strait_endpoint_in_flight{endpoint=127.0.0.1:9002,upstream=a}"),
        1.0
    );
    assert_eq!(
        get("strait_endpoint_healthy{endpoint=127.0.0.1:9002,upstream=a}"),
        1.0
    );
    assert_eq!(
        get("strait_endpoint_healthy{endpoint=127.0.0.1:9002,upstream=b}"),
        0.0
    );
    assert_eq!(
        get("strait_pool_idle_connections{endpoint=127.0.0.1:9002}"),
        2.0
    );
    assert_eq!(
        get("strait_pool_active_connections{endpoint=127.0.0.1:9001}"),
        0.0
    );
    assert_eq!(get("strait_client_connections_total{}"), 3.0);
    assert_eq!(get("strait_client_connections_active{}"), 1.0);
    assert_eq!(get("strait_tls_handshakes_total{}"), 4.0);
    assert_eq!(
        get("strait_tls_handshake_failures_total{reason=timeout}"),
        3.0
    );
    assert_eq!(
        get("strait_tls_handshake_failures_total{reason=protocol}"),
        0.0
    );
    assert_eq!(get("strait_tunnels_active{}"), 1.0);
    assert_eq!(get("strait_tunnels_total{kind=upgrade}"), 3.0);
    assert_eq!(get("strait_tunnels_total{kind=connect}"), 1.0);
    assert_eq!(get("strait_tunnels_idle_timeout_total{}"), 1.0);
    assert_eq!(
        get("strait_tunnel_bytes_total{direction=client_to_upstream}"),
        10.0
    );
    assert_eq!(
        get("strait_tunnel_bytes_total{direction=upstream_to_client}"),
        20.0
    );
    assert_eq!(get("strait_reloads_total{result=ok}"), 1.0);
    assert_eq!(get("strait_reloads_total{result=failed}"), 2.0);
    assert_eq!(get("strait_config_generation{}"), 7.0);
    assert_eq!(
        get("strait_dns_refreshes_total{host=api.internal:9001,upstream=a}"),
        6.0
    );
    assert_eq!(
        get("strait_dns_resolution_failures_total{host=api.internal:9001,upstream=a}"),
        2.0
    );
    assert_eq!(get("strait_workers{}"), 2.0);
    assert_eq!(get("strait_uptime_seconds{}"), 1.5);
    assert_eq!(
        get(&format!(
            "strait_build_info{{version={}}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(
        get("strait_route_request_duration_seconds_count{route=ra}"),
        5.0
    );
    assert!((get("strait_route_request_duration_seconds_sum{route=ra}") - 20.026).abs() < 1e-9);

    // The histogram: cumulative buckets ending with +Inf = count.
    let h = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "strait_route_request_duration_seconds"
                && s.labels.get("route") == Some("ra")
        })
        .unwrap_or_else(|| panic!("no histogram in\n{text}"));
    let Value::Histogram(buckets) = &h.value else {
        panic!("{h:?}")
    };
    let at = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .unwrap_or_else(|| panic!("no le={le}: {buckets:?}"))
            .count
    };
    assert_eq!(buckets.len(), 15);
    assert_eq!(at(0.001), 1.0);
    assert_eq!(at(0.0025), 2.0);
    assert_eq!(at(0.005), 3.0);
    assert_eq!(at(0.025), 4.0);
    assert_eq!(at(10.0), 4.0);
    assert_eq!(at(f64::INFINITY), 5.0);

    // Every family is typed, and nothing but comments and samples.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP strait_")
                || line.starts_with("# TYPE strait_")
                || line.starts_with("strait_"),
            "unexpected line {line:?}"
        );
    }
    assert!(text.contains("# TYPE strait_route_responses_total counter\n"));
    assert!(text.contains("# TYPE strait_route_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE strait_endpoint_in_flight gauge\n"));
}

#[test]
fn openmetrics_text_ends_with_eof() {
    let text = render(true);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE strait_route_responses counter\n"),
        "{text}"
    );
    assert!(text.contains("strait_route_responses_total{route=\"ra\",class=\"2xx\"} 4\n"));
    assert!(
        text.contains("strait_route_request_duration_seconds_bucket{le=\"+Inf\",route=\"ra\"} 5\n"),
        "{text}"
    );
}

/// Every family the exposition has, in its order: an encoder that drops or
/// renames one fails here (a scrape helper that sums to 0 for a missing
/// family would not notice), and each is documented in docs/admin-api.md.
#[test]
fn every_family_is_exposed_in_its_order_and_documented() {
    let text = render(false);
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let expected = [
        "strait_route_responses_total counter",
        "strait_route_request_duration_seconds histogram",
        "strait_route_received_bytes_total counter",
        "strait_route_sent_bytes_total counter",
        "strait_middleware_refusals_total counter",
        "strait_cors_preflights_total counter",
        "strait_limit_keys gauge",
        "strait_limit_key_slots gauge",
        "strait_connection_limit_in_flight gauge",
        "strait_upstream_responses_total counter",
        "strait_upstream_response_duration_seconds histogram",
        "strait_upstream_connect_failures_total counter",
        "strait_upstream_timeouts_total counter",
        "strait_upstream_in_flight gauge",
        "strait_upstream_limit_rejections_total counter",
        "strait_upstream_open_connections gauge",
        "strait_upstream_pending gauge",
        "strait_upstream_retries_total counter",
        "strait_upstream_retry_budget_exhausted_total counter",
        "strait_upstream_connections_total counter",
        "strait_endpoint_requests_total counter",
        "strait_endpoint_failures_total counter",
        "strait_endpoint_in_flight gauge",
        "strait_endpoint_healthy gauge",
        "strait_endpoint_ejected gauge",
        "strait_endpoint_ejections_total counter",
        "strait_pool_idle_connections gauge",
        "strait_pool_active_connections gauge",
        "strait_dns_refreshes_total counter",
        "strait_dns_resolution_failures_total counter",
        "strait_client_connections_active gauge",
        "strait_client_connections_total counter",
        "strait_client_connections_limit gauge",
        "strait_client_connections_refused_total counter",
        "strait_client_connections_closed_total counter",
        "strait_client_connection_errors_total counter",
        "strait_accept_errors_total counter",
        "strait_tls_handshakes_total counter",
        "strait_tls_handshake_failures_total counter",
        "strait_tunnels_active gauge",
        "strait_tunnels_total counter",
        "strait_tunnel_bytes_total counter",
        "strait_tunnels_idle_timeout_total counter",
        "strait_reloads_total counter",
        "strait_config_generation gauge",
        "strait_workers gauge",
        "strait_uptime_seconds gauge",
        "strait_build_info gauge",
    ];
    assert_eq!(families, expected);
    let docs = include_str!("../../../../docs/admin-api.md");
    for family in expected {
        let name = family.split(' ').next().unwrap_or(family);
        let name = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            docs.contains(name),
            "docs/admin-api.md does not name {name}"
        );
    }
}
