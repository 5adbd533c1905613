//! Listener and upstream TLS: configurations built from the `tests/` fixtures or
//! none, and the errors that need no files.

use super::{assert_errors, compiled, secs, upstream};
use crate::tls::server::CertificateSummary;

/// Where the TLS fixtures of `tests/` are (valid until the year 4096).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/configs/broken/tls/");

#[test]
fn listener_tls_compiled() {
    let cert = format!(r#"cert = "{FIXTURES}example.pem""#);
    let key = format!(r#"key = "{FIXTURES}example.key""#);
    let snap = compiled(&[
        "[server]",
        r#"header_read_timeout = "7s""#,
        "[[listeners]]",
        r#"name = "strict""#,
        r#"address = "127.0.0.1:8443""#,
        "[listeners.tls]",
        r#"min_version = "1.3""#,
        r#"alpn = ["http/1.1", "h2", "http/1.1"]"#,
        r#"handshake_timeout = "3s""#,
        "[[listeners.tls.certificates]]",
        &cert,
        &key,
        "[[listeners]]",
        r#"name = "defaults""#,
        r#"address = "127.0.0.1:8444""#,
        "[listeners.tls]",
        "[[listeners.tls.certificates]]",
        &cert,
        &key,
        r#"names = ["www.example.com"]"#,
    ]);
    let certificate = |names: &[&str]| CertificateSummary {
        cert: format!("{FIXTURES}example.pem"),
        names: names.iter().map(|n| n.to_string()).collect(),
        default: true,
        // 4096-01-01T00:00:00Z, the fixture's expiry.
        not_after: 67_090_118_400,
    };
    let strict = snap.listeners[0].tls.as_ref().unwrap();
    assert_eq!(&*strict.listener, "strict");
    assert_eq!(strict.handshake_timeout, secs(3));
    assert_eq!(strict.summary.min_version, "1.3");
    assert_eq!(strict.summary.alpn, ["http/1.1", "h2"]);
    assert_eq!(
        strict.config.alpn_protocols,
        [b"http/1.1".to_vec(), b"h2".to_vec()]
    );
    assert_eq!(strict.summary.client_auth, "none");
    assert_eq!(strict.summary.client_ca, None);
    assert_eq!(
        strict.summary.certificates,
        [certificate(&["example.com", "www.example.com"])]
    );

    // Unset: the server's header timeout, TLS 1.2 and up, both protocols.
    let defaults = snap.listeners[1].tls.as_ref().unwrap();
    assert_eq!(defaults.handshake_timeout, secs(7));
    assert_eq!(defaults.summary.min_version, "1.2");
    assert_eq!(defaults.summary.alpn, ["h2", "http/1.1"]);
    assert_eq!(
        defaults.summary.certificates,
        [certificate(&["www.example.com"])]
    );
    assert!(snap.listeners[2].tls.is_none());
}

#[test]
fn listener_tls_errors() {
    assert_errors(&[(
        &[
            "[[listeners]]",
            r#"address = "127.0.0.1:8443""#,
            r#"tls = { min_version = "1.1", alpn = [], client_auth = "required" }"#,
        ],
        &[
            r#"3:7: listener "listener-1": [listeners.tls] has no certificates: expected at least one [[listeners.tls.certificates]] with cert and key"#,
            r#"3:23: listener "listener-1": tls.min_version = "1.1" is not supported: expected "1.2" or "1.3""#,
            r#"3:37: listener "listener-1": tls.alpn is empty: expected one or both of "h2", "http/1.1" (omit it for both)"#,
            r#"3:55: listener "listener-1": tls.client_auth is set but tls.client_ca is not: client certificates are verified against client_ca"#,
        ],
    )]);
}

#[test]
fn upstream_tls_compiled() {
    let snap = compiled(&[
        "[upstreams.secure]",
        r#"endpoints = ["127.0.0.1:9443", "127.0.0.2:9443"]"#,
        r#"protocol = "auto""#,
        r#"tls = { server_name = "api.internal" }"#,
        "[upstreams.plain]",
        r#"endpoints = ["127.0.0.1:9443"]"#,
        "tls = {}",
    ]);
    let secure = upstream(&snap, "secure");
    let tls = secure.tls.as_ref().unwrap();
    let names: Vec<String> = tls.server_names.iter().map(|n| n.to_str().into()).collect();
    assert_eq!(names, ["api.internal", "api.internal"]);
    assert_eq!(tls.keys[0], tls.keys[1]);
    assert_eq!(
        tls.keys[0] & 1,
        1,
        "TLS pool keys are never 0, plain HTTP/1.1's"
    );
    assert_eq!(tls.summary.server_name.as_deref(), Some("api.internal"));
    assert_eq!(tls.summary.ca_file, None);
    assert_eq!(tls.summary.client_cert, None);
    assert!(!tls.summary.insecure_skip_verify);
    assert_eq!(
        tls.config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    // Upgrades need HTTP/1.1 whatever the protocol.
    assert_eq!(tls.http1_config.alpn_protocols, [b"http/1.1".to_vec()]);
    // Cleartext `auto` is HTTP/1.1: the shared plain key.
    assert_eq!(secure.transport, 0);

    let plain = upstream(&snap, "plain");
    let tls = plain.tls.as_ref().unwrap();
    assert_eq!(tls.server_names[0].to_str(), "127.0.0.1");
    assert_eq!(tls.config.alpn_protocols, [b"http/1.1".to_vec()]);
    assert_ne!(
        tls.keys[0],
        upstream(&snap, "secure").tls.as_ref().unwrap().keys[0]
    );
    assert_eq!(plain.transport, 0);
}

#[test]
fn upstream_tls_errors() {
    assert_errors(&[(
        &[
            "[upstreams.a]",
            r#"endpoints = ["127.0.0.1:9443"]"#,
            r#"protocol = "h2""#,
            "[upstreams.b]",
            r#"endpoints = ["127.0.0.1:9443"]"#,
            r#"protocol = "h2c""#,
            "tls = {}",
            "[upstreams.c]",
            r#"endpoints = ["127.0.0.1:9443"]"#,
            r#"tls = { client_cert = "c.pem" }"#,
            "[upstreams.d]",
            r#"endpoints = ["127.0.0.1:9443"]"#,
            r#"tls = { server_name = "bad name" }"#,
        ],
        &[
            r#"3:12: upstreams.a.protocol = "h2" needs TLS ([upstreams.a.tls]): for HTTP/2 without TLS use "h2c""#,
            r#"6:12: upstreams.b.protocol = "h2c" is cleartext HTTP/2 and cannot be used with [upstreams.b.tls]: use "h2" or "auto" for HTTP/2 over TLS"#,
            r#"10:23: upstreams.c.tls.client_cert needs upstreams.c.tls.client_key (the certificate's private key)"#,
            r#"13:23: upstreams.d.tls.server_name: "bad name" is not a valid DNS name or IP address"#,
        ],
    )]);
}
