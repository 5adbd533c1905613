//! `[server]`, `[admin]` and `[connect]`: their defaults, values as written, and
//! errors (serde's own messages included).

use std::time::Duration;

use super::{assert_errors, compiled, errors, secs};
use crate::config::snapshot::{AdminSettings, ConnectTarget};

#[test]
fn server_admin_and_connect_defaults() {
    let snap = compiled(&[]);
    let s = &snap.server;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(s.workers, cores);
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.header_read_timeout, secs(30));
    assert_eq!(s.keepalive_timeout, secs(75));
    assert_eq!(s.http2_idle_timeout, secs(75));
    assert_eq!(s.http2_keepalive_interval, secs(60));
    assert_eq!(s.http2_keepalive_timeout, secs(20));
    assert_eq!(s.max_connections, None);
    assert_eq!(s.max_connections_per_ip, None);
    assert_eq!(s.max_requests_per_connection, None);
    assert_eq!(s.max_header_bytes, 65_536);
    assert_eq!(s.max_headers, 100);
    assert_eq!(s.http2_max_concurrent_streams, 256);
    assert!(s.add_forwarded_headers);
    assert!(s.preserve_host);
    assert_eq!(s.drain_timeout, secs(30));
    assert!(s.watch_config);
    let listen = Some("127.0.0.1:9901".parse().unwrap());
    assert_eq!(
        snap.admin,
        AdminSettings {
            listen,
            token: None
        }
    );
    assert!(snap.connect.is_none());
    assert!(snap.fallback_log.is_none());

    let snap = compiled(&["[connect]"]);
    let connect = snap.connect.as_ref().unwrap();
    assert!(connect.allow.is_empty());
    assert_eq!(connect.connect_timeout, secs(5));
    assert_eq!(connect.idle_timeout, secs(300));

    let snap = compiled(&["[admin]", "enabled = false"]);
    assert_eq!(
        snap.admin,
        AdminSettings {
            listen: None,
            token: None
        }
    );
}

#[test]
fn server_admin_and_connect_as_written() {
    let snap = compiled(&[
        "[server]",
        "workers = 3",
        r#"trusted_proxies = ["10.0.0.0/8", "::1"]"#,
        r#"header_read_timeout = "1m30s""#,
        r#"keepalive_timeout = "5s""#,
        r#"http2_idle_timeout = "10m""#,
        r#"http2_keepalive_interval = "15s""#,
        r#"http2_keepalive_timeout = "3s""#,
        "max_connections = 50000",
        "max_connections_per_ip = 100",
        "max_requests_per_connection = 1000",
        "max_header_bytes = 8192",
        "max_headers = 1000",
        "http2_max_concurrent_streams = 65535",
        "add_forwarded_headers = false",
        "preserve_host = false",
        r#"drain_timeout = "250ms""#,
        "watch_config = false",
        "[admin]",
        r#"listen = "0.0.0.0:9000""#,
        r#"token = "0123456789abcdef""#,
        "[connect]",
        r#"allow = ["DB.Internal.:5432", "10.1.2.3/8:443", "[::1]:22"]"#,
        r#"connect_timeout = "2s""#,
        r#"idle_timeout = "1h""#,
    ]);
    let s = &snap.server;
    assert_eq!(s.workers, 3);
    let proxies: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(s.header_read_timeout, secs(90));
    assert_eq!(s.keepalive_timeout, secs(5));
    assert_eq!(s.http2_idle_timeout, secs(600));
    assert_eq!(s.http2_keepalive_interval, secs(15));
    assert_eq!(s.http2_keepalive_timeout, secs(3));
    assert_eq!(s.max_connections, Some(50_000));
    assert_eq!(s.max_connections_per_ip, Some(100));
    assert_eq!(s.max_requests_per_connection, Some(1000));
    assert_eq!(s.max_header_bytes, 8192);
    assert_eq!(s.max_headers, 1000);
    assert_eq!(s.http2_max_concurrent_streams, 65535);
    assert!(!s.add_forwarded_headers);
    assert!(!s.preserve_host);
    assert_eq!(s.drain_timeout, Duration::from_millis(250));
    assert!(!s.watch_config);
    let admin = AdminSettings {
        listen: Some("0.0.0.0:9000".parse().unwrap()),
        token: Some("0123456789abcdef".into()),
    };
    assert_eq!(snap.admin, admin);
    let connect = snap.connect.as_ref().unwrap();
    let allow = [
        ConnectTarget::Name("db.internal".into(), 5432),
        ConnectTarget::Net("10.0.0.0/8".parse().unwrap(), 443),
        ConnectTarget::Net("::1/128".parse().unwrap(), 22),
    ];
    assert_eq!(*connect.allow, allow);
    assert_eq!(connect.connect_timeout, secs(2));
    assert_eq!(connect.idle_timeout, secs(3600));
}

#[test]
fn server_admin_and_connect_errors() {
    assert_errors(&[
        (
            &["[server]", "workers = 1025"],
            &[r#"2:11: server.workers = 1025 is out of range: expected 0 to 1024"#],
        ),
        (
            &["[server]", r#"header_read_timeout = "0s""#],
            &[r#"2:23: server.header_read_timeout must be greater than zero"#],
        ),
        (
            &["[server]", "max_header_bytes = 8191", "max_headers = 0"],
            &[
                r#"2:20: server.max_header_bytes = 8191 is out of range: expected 8192 to 1048576"#,
                r#"3:15: server.max_headers = 0 is out of range: expected 1 to 1000"#,
            ],
        ),
        (
            &[
                "[server]",
                "max_connections = 0",
                "max_connections_per_ip = -1",
                "max_requests_per_connection = 4294967296",
                r#"keepalive_timeout = "0s""#,
                r#"http2_idle_timeout = "forever""#,
            ],
            &[
                r#"2:19: server.max_connections = 0 is out of range: expected 1 to 16777216"#,
                r#"3:26: server.max_connections_per_ip = -1 is out of range: expected 0 to 16777216"#,
                r#"4:31: server.max_requests_per_connection = 4294967296 is out of range: expected 0 to 4294967295"#,
                r#"5:21: server.keepalive_timeout must be greater than zero"#,
                r#"6:22: server.http2_idle_timeout: invalid duration "forever": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
            ],
        ),
        (
            &["[server]", "http2_max_concurrent_streams = 65536"],
            &[
                r#"2:32: server.http2_max_concurrent_streams = 65536 is out of range: expected 1 to 65535"#,
            ],
        ),
        (
            &[
                "[server]",
                r#"trusted_proxies = ["10.0.0.1", "10.0.0.0/33"]"#,
            ],
            &[
                r#"2:32: invalid trusted proxy "10.0.0.0/33": expected an IP address or CIDR, e.g. "10.0.0.0/8""#,
            ],
        ),
        (
            &["[server]", r#"drain_timeout = "soon""#],
            &[
                r#"2:17: server.drain_timeout: invalid duration "soon": expected a number with a unit (ms, s, m, h), e.g. "500ms" or "30s""#,
            ],
        ),
        // Serde's own messages, in an operator's words.
        (
            &["[server]", r#"workers = "four""#],
            &[r#"2:11: invalid type: string "four", expected an integer"#],
        ),
        (
            &["[server]", "add_forwarded_headers = 1"],
            &[r#"2:25: invalid type: integer `1`, expected true or false"#],
        ),
        (
            &["[admin]", r#"token = "   ""#],
            &[r#"2:9: admin.token is empty: remove it or set a secret of at least 16 characters"#],
        ),
        (
            &["[admin]", r#"token = "short""#],
            &[r#"2:9: admin.token is too short: expected at least 16 characters"#],
        ),
        (
            &["[admin]", r#"listen = "0.0.0.0:9901""#],
            &[
                r#"2:10: admin.listen = "0.0.0.0:9901" is not a loopback address and admin.token is not set: anyone who can reach it could reload the configuration; set admin.token, or listen on 127.0.0.1"#,
            ],
        ),
        (
            &["[admin]", r#"listen = "localhost:9901""#],
            &[
                r#"2:10: admin.listen: invalid listen address "localhost:9901": expected IP:port, e.g. "127.0.0.1:8080" or "[::]:8080""#,
            ],
        ),
        (
            &[
                "[connect]",
                r#"allow = ["db.internal:0", "-bad-.test:80"]"#,
                r#"idle_timeout = "0s""#,
            ],
            &[
                r#"2:10: connect.allow: invalid entry "db.internal:0": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
                r#"2:27: connect.allow: invalid entry "-bad-.test:80": expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. "db.internal:5432" or "10.0.0.0/8:443""#,
                r#"3:16: connect.idle_timeout must be greater than zero"#,
            ],
        ),
    ]);
}

#[test]
fn missing_listeners_and_routes_are_file_wide_errors() {
    let no_listeners = [
        "[upstreams.a]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        "[[routes]]",
        r#"upstream = "a""#,
    ];
    assert_eq!(
        errors(&no_listeners.join("\n")),
        [r#"0:0: no [[listeners]]: expected at least one, e.g. address = "127.0.0.1:8080""#]
    );
    let no_routes = ["[[listeners]]", r#"address = "127.0.0.1:8080""#];
    assert_eq!(
        errors(&no_routes.join("\n")),
        ["0:0: no [[routes]]: every request would get 404; expected at least one route with an upstream"]
    );
}
