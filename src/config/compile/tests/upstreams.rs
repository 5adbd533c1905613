//! `[upstreams.NAME]`: every default, values as written, the pool key, and errors.

use super::{assert_errors, balancing, compiled, secs, upstream};
use crate::balance::BalanceKind;
use crate::upstream::{DnsSpec, Family, Http2Settings, Protocol, RetryBudget};

#[test]
fn upstream_defaults() {
    let snap = compiled(&[
        "[upstreams.a]",
        r#"endpoints = ["127.0.0.1:9000", { address = "[::1]:9001" }]"#,
    ]);
    let up = upstream(&snap, "a");
    let endpoints: Vec<(String, u32, &[u8])> = up
        .endpoints
        .iter()
        .map(|e| (e.addr.to_string(), e.weight, e.host_value.as_bytes()))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("127.0.0.1:9000".to_string(), 1, &b"127.0.0.1:9000"[..]),
            ("[::1]:9001".to_string(), 1, &b"[::1]:9001"[..]),
        ]
    );
    let b = balancing(&snap, "a");
    assert_eq!(b.kind, BalanceKind::RoundRobin);
    assert!(b.hash.is_none());
    assert_eq!(up.connect_timeout, secs(5));
    assert_eq!(up.response_header_timeout, secs(60));
    assert_eq!(up.body_idle_timeout, secs(60));
    assert_eq!(up.pool.idle_timeout, secs(60));
    assert_eq!(up.pool.max_idle_per_endpoint, 64);
    assert!(up.health_check.is_none());
    assert_eq!(up.max_requests, None);
    assert_eq!(up.max_connections, None);
    assert_eq!(up.max_pending, 1024);
    assert!(up.outlier.is_none());
    let budget = RetryBudget {
        percent: 20,
        min_per_second: 3,
    };
    assert_eq!(up.retry_budget, budget);
    assert!(up.names.is_empty());
    let dns = DnsSpec {
        refresh: secs(30),
        family: Family::Any,
    };
    assert_eq!(up.dns, dns);
    assert_eq!(up.protocol, Protocol::Http1);
    let http2 = Http2Settings {
        max_concurrent_streams: 100,
        max_connections: 4,
    };
    assert_eq!(up.http2, http2);
    assert!(up.tls.is_none());
    assert_eq!(up.transport, 0);

    // Emptied for maintenance: allowed, its routes answer 503.
    let snap = compiled(&["[upstreams.empty]", "endpoints = []"]);
    assert!(upstream(&snap, "empty").endpoints.is_empty());
}

#[test]
fn upstream_settings_as_written() {
    let snap = compiled(&[
        "[upstreams.w]",
        r#"endpoints = [{ address = "127.0.0.1:9000", weight = 3 }, "127.0.0.1:9001"]"#,
        r#"connect_timeout = "1s""#,
        r#"response_header_timeout = "2s""#,
        r#"body_idle_timeout = "3s""#,
        r#"idle_timeout = "4s""#,
        "max_idle_per_endpoint = 0",
        "max_requests = 10",
        "max_connections = 20",
        "max_pending = 0",
        "retry_budget = { percent = 0, min_per_second = 100000 }",
        r#"dns_refresh = "1h""#,
        r#"dns_family = "ipv6""#,
        r#"protocol = "h2c""#,
        "http2_max_concurrent_streams = 100000",
        "http2_max_connections = 1000",
        "[upstreams.x]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        r#"balance = "least_request""#,
        r#"protocol = "h2c""#,
    ]);
    let w = upstream(&snap, "w");
    let weights: Vec<u32> = w.endpoints.iter().map(|e| e.weight).collect();
    assert_eq!(weights, [3, 1]);
    // Unequal weights imply weighted balancing.
    assert_eq!(balancing(&snap, "w").kind, BalanceKind::Weighted);
    assert_eq!(w.connect_timeout, secs(1));
    assert_eq!(w.response_header_timeout, secs(2));
    assert_eq!(w.body_idle_timeout, secs(3));
    assert_eq!(w.pool.idle_timeout, secs(4));
    assert_eq!(w.pool.max_idle_per_endpoint, 0);
    assert_eq!(w.max_requests, Some(10));
    assert_eq!(w.max_connections, Some(20));
    assert_eq!(w.max_pending, 0);
    let budget = RetryBudget {
        percent: 0,
        min_per_second: 100_000,
    };
    assert_eq!(w.retry_budget, budget);
    let dns = DnsSpec {
        refresh: secs(3600),
        family: Family::Ipv6,
    };
    assert_eq!(w.dns, dns);
    assert_eq!(w.protocol, Protocol::H2c);
    let http2 = Http2Settings {
        max_concurrent_streams: 100_000,
        max_connections: 1000,
    };
    assert_eq!(w.http2, http2);
    assert_eq!(w.transport & 1, 1, "h2c is not plain HTTP/1.1's pool key 0");

    let x = upstream(&snap, "x");
    assert_eq!(balancing(&snap, "x").kind, BalanceKind::LeastRequest);
    // The same way of connecting: the same pool key, so connections are shared.
    assert_eq!(x.transport, w.transport);
}

#[test]
fn upstream_errors() {
    assert_errors(&[(
        &[
            "[upstreams.a]",
            r#"endpoints = ["127.0.0.1", { address = "127.0.0.1:9000", weight = 0 }]"#,
            r#"balance = "fastest""#,
            r#"connect_timeout = "5 seconds""#,
            "max_pending = 10",
            "http2_max_connections = 2",
            r#"dns_refresh = "100ms""#,
            r#"dns_family = "inet6""#,
            "[upstreams.b]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            r#"protocol = "h3""#,
            "http2_max_concurrent_streams = 0",
            "max_requests = 0",
            "retry_budget = { percent = 1001 }",
        ],
        &[
            r#"2:14: upstream "a": invalid endpoint address "127.0.0.1": expected IP:port or host:port, e.g. "127.0.0.1:9000""#,
            r#"2:27: endpoint "127.0.0.1:9000" of upstream "a": weight 0 is out of range: expected 1 to 10000"#,
            r#"3:11: unknown balance algorithm "fastest": expected one of "round_robin", "weighted", "random", "least_request", "peak_ewma", "ring", "maglev""#,
            r#"4:19: upstreams.a.connect_timeout: invalid duration "5 seconds": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
            r#"5:15: upstreams.a.max_pending applies only with max_connections (requests wait for a connection only when that limit is reached)"#,
            r#"6:25: upstreams.a.http2_max_connections applies only to HTTP/2: set protocol = "h2c", "h2" or "auto""#,
            r#"7:15: upstreams.a.dns_refresh = "100ms" is out of range: expected 1s to 1h"#,
            r#"8:14: upstreams.a.dns_family: unknown dns_family "inet6": expected "any", "ipv4" or "ipv6""#,
            r#"11:12: upstreams.b.protocol: unknown protocol "h3": expected "http1", "h2c", "h2" or "auto""#,
            r#"12:32: upstreams.b.http2_max_concurrent_streams = 0 is out of range: expected 1 to 100000"#,
            r#"13:16: upstreams.b.max_requests = 0 is out of range: expected 1 to 1000000"#,
            r#"14:28: upstreams.b.retry_budget.percent = 1001 is out of range: expected 0 to 1000"#,
        ],
    )]);
}
