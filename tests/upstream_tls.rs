//! TLS to upstreams: verification against a test CA (rcgen), the server name
//! sent as SNI (configured, or the endpoint's host name), refused
//! certificates answered 502 naming verification, `insecure_skip_verify`,
//! client certificates, and configuration errors with their exact
//! messages. The origins are hyper servers behind tokio-rustls on
//! 127.0.0.1 that record the SNI, ALPN and client certificate they saw.

mod common;
#[path = "common/origins.rs"]
mod origins;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use http::{StatusCode, Version};
use origins::*;
use strait::{CustomRegistry, Gateway};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

/// One upstream `backend` at `endpoint` with `tls` as its TLS table.
fn config(endpoint: &str, upstream: &str, tls: &str) -> String {
    backend_config(
        endpoint,
        &format!("{upstream}\n\n[upstreams.backend.tls]\n{tls}"),
    )
}

async fn one_get(gw: &Gateway) -> Reply {
    tokio::time::timeout(LIMIT, get(gw.addr(), "/hello", &[]))
        .await
        .expect("within the limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_over_tls_with_a_test_ca() {
    let ca = TestCa::new("test CA");
    let origin = ProtoOrigin::tls(server_tls(&ca.server(&["127.0.0.1"]), &["http/1.1"], None));
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let gw = gateway(&config(
        &origin.addr.to_string(),
        "",
        &format!("ca_file = {ca_file:?}"),
    ));
    let reply = one_get(&gw).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "/hello");
    assert_eq!(origin_version(&reply.headers), Version::HTTP_11);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    // An endpoint given as an IP is verified against its IP (SAN); rustls
    // sends no SNI for an IP.
    assert_eq!(seen[0].sni, None);
    assert_eq!(seen[0].alpn.as_deref(), Some("http/1.1"));
    assert!(!seen[0].client_cert);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_is_the_configured_server_name() {
    let ca = TestCa::new("test CA");
    let origin = ProtoOrigin::tls(server_tls(
        &ca.server(&["api.internal"]),
        &["http/1.1"],
        None,
    ));
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let gw = gateway(&config(
        &origin.addr.to_string(),
        "",
        &format!("ca_file = {ca_file:?}\nserver_name = \"api.internal\""),
    ));
    let reply = one_get(&gw).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(origin.seen()[0].sni.as_deref(), Some("api.internal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_is_the_endpoint_host_name() {
    let ca = TestCa::new("test CA");
    let origin = ProtoOrigin::tls(server_tls(
        &ca.server(&["origin.test"]),
        &["http/1.1"],
        None,
    ));
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let at = origin.addr;
    // `origin.test` resolves to the origin (127.0.0.1 and its port).
    let resolver = move |host: &str, _port: u16| -> io::Result<Vec<SocketAddr>> {
        match host {
            "origin.test" => Ok(vec![at]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    };
    let gw = Gateway::builder()
        .workers(2)
        .admin_listen(None)
        .resolver(resolver)
        .start_toml(
            "test.toml",
            &config(
                &format!("origin.test:{}", at.port()),
                "",
                &format!("ca_file = {ca_file:?}"),
            ),
        )
        .expect("starts");
    let reply = one_get(&gw).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(origin.seen()[0].sni.as_deref(), Some("origin.test"));
}

/// A gateway to `origin` trusting `ca`, naming `server_name`: the reply.
async fn through(origin: &ProtoOrigin, ca: &TestCa, server_name: &str) -> Reply {
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let gw = gateway(&config(
        &origin.addr.to_string(),
        "",
        &format!("ca_file = {ca_file:?}\nserver_name = {server_name:?}"),
    ));
    one_get(&gw).await
}

fn assert_verification_failed(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "502 Bad Gateway: upstream TLS certificate verification failed\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_fails_verification() {
    let ca = TestCa::new("origin's CA");
    let other = TestCa::new("some other CA");
    let origin = ProtoOrigin::tls(server_tls(&ca.server(&["api.internal"]), &[], None));
    let reply = through(&origin, &other, "api.internal").await;
    assert_verification_failed(&reply);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_misnamed_certificate_fails_verification() {
    let ca = TestCa::new("test CA");
    let expired = ProtoOrigin::tls(server_tls(
        &ca.leaf(&["api.internal"], true, false),
        &[],
        None,
    ));
    assert_verification_failed(&through(&expired, &ca, "api.internal").await);
    let misnamed = ProtoOrigin::tls(server_tls(&ca.server(&["other.internal"]), &[], None));
    assert_verification_failed(&through(&misnamed, &ca, "api.internal").await);
    // The same origin with the name its certificate has: fine.
    assert_eq!(
        through(&misnamed, &ca, "other.internal").await.status,
        StatusCode::OK
    );
}

/// The captured warnings containing `text`.
fn warnings(text: &str) -> Vec<String> {
    logged(text)
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_rustls_reason_for_a_refused_certificate() {
    capture_logs();
    let ca = TestCa::new("origin's CA");
    let other = TestCa::new("some other CA");
    let origin = ProtoOrigin::tls(server_tls(&ca.server(&["logged.internal"]), &[], None));
    assert_verification_failed(&through(&origin, &other, "logged.internal").await);
    let lines = warnings("upstream TLS certificate verification failed");
    let line = lines
        .iter()
        .find(|l| l.contains("logged.internal"))
        .unwrap_or_else(|| panic!("no log line: {lines:?}"));
    assert!(line.contains("UnknownIssuer"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_any_certificate_and_warns_at_load() {
    capture_logs();
    let ca = TestCa::new("unknown CA");
    let origin = ProtoOrigin::tls(server_tls(&ca.server(&["wrong.name"]), &[], None));
    let toml = config(&origin.addr.to_string(), "", "insecure_skip_verify = true")
        .replace("[upstreams.backend]", "[upstreams.insecure_one]")
        .replace("[upstreams.backend.tls]", "[upstreams.insecure_one.tls]")
        .replace("upstream = \"backend\"", "upstream = \"insecure_one\"");
    let gw = gateway(&toml);
    let warned = warnings("insecure_skip_verify = true");
    assert!(
        warned.iter().any(|l| l.contains("upstreams.insecure_one.tls.insecure_skip_verify = true: the endpoints' certificates are NOT verified (for test setups only)")),
        "{warned:?}"
    );
    let reply = one_get(&gw).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // A reload warns again.
    gw.reload_toml("test.toml", &toml).expect("reload");
    assert!(warnings("upstreams.insecure_one.tls.insecure_skip_verify").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_to_an_origin_that_requires_one() {
    let ca = TestCa::new("test CA");
    let clients = TestCa::new("client CA");
    let origin = ProtoOrigin::tls(server_tls(
        &ca.server(&["api.internal"]),
        &["http/1.1"],
        Some(&clients),
    ));
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let client = clients.leaf(&["proxy.internal"], false, true);
    let PemFiles { cert, key } = client.write(&d, "proxy");
    let gw = gateway(&config(
        &origin.addr.to_string(),
        "",
        &format!(
            "ca_file = {ca_file:?}\nserver_name = \"api.internal\"\nclient_cert = {cert:?}\nclient_key = {key:?}"
        ),
    ));
    let reply = one_get(&gw).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(origin.seen()[0].client_cert);

    // Without one the origin refuses the connection: 502.
    let gw = gateway(&config(
        &origin.addr.to_string(),
        "",
        &format!("ca_file = {ca_file:?}\nserver_name = \"api.internal\""),
    ));
    assert_eq!(one_get(&gw).await.status, StatusCode::BAD_GATEWAY);
}

/// The error `strait::check` reports for `toml`.
fn refused(toml: &str) -> String {
    match strait::check("gw.toml", toml, &CustomRegistry::new()) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn key_files_that_do_not_fit_are_refused_with_precise_messages() {
    let ca = TestCa::new("test CA");
    let d = TempDir::new("upstream-tls");
    let a = ca.leaf(&["proxy"], false, true);
    let b = ca.leaf(&["proxy"], false, true);
    let cert = d.write("a.pem", &a.cert_pem);
    let other_key = d.write("b.key", &b.key_pem);
    let not_a_key = d.write("cert-as-key.pem", &a.cert_pem);
    let toml = |key: &Path| {
        config(
            "127.0.0.1:9443",
            "",
            &format!("client_cert = {cert:?}\nclient_key = {key:?}"),
        )
    };
    // The client_key value sits on line 13, from column 14.
    assert_eq!(
        refused(&toml(&other_key)),
        format!(
            "gw.toml:13:14: upstreams.backend.tls.client_key: the private key in {other_key:?} does not match the certificate in {cert:?}"
        )
    );
    assert_eq!(
        refused(&toml(&not_a_key)),
        format!(
            "gw.toml:13:14: upstreams.backend.tls.client_key: no private key in {not_a_key:?}: expected a PEM \"PRIVATE KEY\" block (PKCS#8, RSA or EC)"
        )
    );
    // A key alone.
    let toml = config("127.0.0.1:9443", "", &format!("client_key = {other_key:?}"));
    assert_eq!(
        refused(&toml),
        "gw.toml:12:14: upstreams.backend.tls.client_key needs upstreams.backend.tls.client_cert (the certificate it belongs to)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_checks_use_the_upstream_tls_and_protocol() {
    let ca = TestCa::new("test CA");
    let other = TestCa::new("some other CA");
    let h2_origin = ProtoOrigin::tls(server_tls(&ca.server(&["api.internal"]), &["h2"], None));
    let d = TempDir::new("upstream-tls");
    let ca_file = d.write("ca.pem", &ca.cert_pem);
    let wrong_ca = d.write("other.pem", &other.cert_pem);
    let check = "\n[upstreams.backend.health_check]\ntype = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n";
    let good = config(
        &h2_origin.addr.to_string(),
        "protocol = \"h2\"",
        &format!("ca_file = {ca_file:?}\nserver_name = \"api.internal\"\n{check}"),
    );
    let gw = gateway(&good);
    // Probes pass (over TLS, in HTTP/2 as ALPN chose).
    let deadline = std::time::Instant::now() + LIMIT;
    while h2_origin.requests() < 2 {
        assert!(std::time::Instant::now() < deadline, "no probe arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = gw.endpoint_health("backend", h2_origin.addr).unwrap();
    assert!(health.healthy && health.last_error.is_none(), "{health:?}");
    assert!(h2_origin
        .seen()
        .iter()
        .all(|s| s.alpn.as_deref() == Some("h2")));

    // Trusting another CA: probes fail naming the verification error.
    let bad = good.replace(&format!("{ca_file:?}"), &format!("{wrong_ca:?}"));
    gw.reload_toml("test.toml", &bad).expect("reload");
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let health = gw.endpoint_health("backend", h2_origin.addr).unwrap();
        if !health.healthy {
            let cause = health.last_error.unwrap_or_default();
            assert!(
                cause.starts_with("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
                "{cause}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never marked down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
