//! Health checks and outlier detection: defaults, values as written, and errors.

use http::Method;

use super::{assert_errors, compiled, secs, upstream};
use crate::upstream::{HealthCheckSpec, OutlierSpec, Probe};

#[test]
fn health_check_and_outlier_defaults() {
    let snap = compiled(&[
        "[upstreams.a]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        "health_check = {}",
        "outlier_detection = {}",
        "[upstreams.long]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        r#"outlier_detection = { base_ejection_time = "10m" }"#,
    ]);
    let a = upstream(&snap, "a");
    let health = HealthCheckSpec {
        probe: Probe::Http {
            method: Method::GET,
            path: "/".into(),
            host: None,
            statuses: vec![(200, 399)],
        },
        interval: secs(5),
        timeout: secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        fail_open: false,
    };
    assert_eq!(a.health_check.as_ref(), Some(&health));
    let outlier = OutlierSpec {
        consecutive_5xx: 5,
        consecutive_connect_failures: 3,
        base_ejection_time: secs(30),
        max_ejection_time: secs(300),
        max_ejection_percent: 50,
    };
    assert_eq!(a.outlier.as_ref(), Some(&outlier));
    // An unset maximum is never below the base.
    let long = upstream(&snap, "long").outlier.as_ref().unwrap();
    assert_eq!(long.base_ejection_time, secs(600));
    assert_eq!(long.max_ejection_time, secs(600));
}

#[test]
fn health_check_and_outlier_as_written() {
    let snap = compiled(&[
        "[upstreams.h]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        "outlier_detection = { consecutive_5xx = 0, consecutive_connect_failures = 1000, max_ejection_percent = 100 }",
        "[upstreams.h.health_check]",
        r#"type = "http""#,
        r#"method = "HEAD""#,
        r#"path = "/healthz?full=1""#,
        r#"host = "health.internal""#,
        r#"expected_statuses = [204, "2xx", "300-304"]"#,
        r#"interval = "10s""#,
        r#"timeout = "10s""#,
        "healthy_threshold = 1",
        "unhealthy_threshold = 100",
        "fail_open = true",
        "[upstreams.t]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        r#"health_check = { type = "tcp" }"#,
    ]);
    let h = upstream(&snap, "h");
    let health = HealthCheckSpec {
        probe: Probe::Http {
            method: Method::HEAD,
            path: "/healthz?full=1".into(),
            host: Some("health.internal".into()),
            statuses: vec![(204, 204), (200, 299), (300, 304)],
        },
        interval: secs(10),
        timeout: secs(10),
        healthy_threshold: 1,
        unhealthy_threshold: 100,
        fail_open: true,
    };
    assert_eq!(h.health_check.as_ref(), Some(&health));
    let outlier = h.outlier.as_ref().unwrap();
    assert_eq!(outlier.consecutive_5xx, 0);
    assert_eq!(outlier.consecutive_connect_failures, 1000);
    assert_eq!(outlier.max_ejection_percent, 100);
    let tcp = upstream(&snap, "t").health_check.as_ref().unwrap();
    assert_eq!(tcp.probe, Probe::Tcp);
}

#[test]
fn health_check_and_outlier_errors() {
    assert_errors(&[(
        &[
            "[upstreams.a]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            "[upstreams.a.health_check]",
            r#"type = "tcp""#,
            r#"path = "/healthz""#,
            "[upstreams.b]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            "[upstreams.b.health_check]",
            r#"method = "GE T""#,
            r#"path = "healthz""#,
            r#"expected_statuses = [200, "6xx", "300-200", true]"#,
            r#"interval = "1s""#,
            r#"timeout = "2s""#,
            "unhealthy_threshold = 0",
            "[upstreams.c]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            r#"health_check = { type = "udp" }"#,
            r#"outlier_detection = { base_ejection_time = "1m", max_ejection_time = "30s", max_ejection_percent = 101 }"#,
        ],
        &[
            r#"5:8: upstreams.a.health_check.path applies to type = "http" only, not "tcp""#,
            r#"9:10: upstreams.b.health_check.method: invalid method "GE T": expected a token like "GET""#,
            r#"10:8: upstreams.b.health_check.path: invalid path "healthz": expected an absolute path like "/healthz""#,
            r#"11:27: upstreams.b.health_check.expected_statuses: invalid status "6xx": expected a status like 200, a range like "200-399", or a class like "2xx""#,
            r#"11:34: upstreams.b.health_check.expected_statuses: invalid status "300-200": expected a status like 200, a range like "200-399", or a class like "2xx""#,
            r#"11:45: upstreams.b.health_check.expected_statuses: invalid status true: expected a status from 100 to 599, a range like "200-399", or a class like "2xx""#,
            r#"13:11: upstreams.b.health_check.timeout (2s) is longer than the interval (1s): probes would overlap"#,
            r#"14:23: upstreams.b.health_check.unhealthy_threshold = 0 is out of range: expected 1 to 100"#,
            r#"17:25: upstreams.c.health_check.type: unknown type "udp": expected "http" or "tcp""#,
            r#"18:70: upstreams.c.outlier_detection.max_ejection_time (30s) is shorter than base_ejection_time (60s)"#,
            r#"18:100: upstreams.c.outlier_detection.max_ejection_percent = 101 is out of range: expected 0 to 100"#,
        ],
    )]);
}
