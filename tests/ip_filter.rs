//! `type = "ip_filter"` over real sockets: the loopback client allowed,
//! denied and not allowed (the origin then sees nothing), the address a
//! trusted proxy forwards deciding instead of the peer's (and an untrusted
//! peer's `X-Forwarded-For` ignored), an IPv6 loopback client when the host
//! has one, the connection kept after a 403, and the refusals in `/metrics`
//! and the lists in `/config`. Load errors are in `tests/config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

/// A gateway with one catch-all route to `origin` through the `ip_filter`
/// named `gate` with these keys, and `server` lines (trusted proxies).
fn config(origin: SocketAddr, keys: &str, server: &str) -> String {
    format!(
        "[server]\n{server}\n[middlewares.gate]\ntype = \"ip_filter\"\n{keys}\n{}",
        simple_config(&[origin], r#""gate""#)
    )
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

#[tokio::test]
async fn an_allowed_loopback_client_reaches_the_origin() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        r#"allow = ["127.0.0.0/8", "::1"]"#,
        "",
    ));
    let r = within(get(gw.addr(), "/in", &[])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["path"], "/in");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_denied_client_gets_403_and_the_origin_sees_nothing() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        r#"allow = ["127.0.0.0/8"]
deny = ["127.0.0.1"]"#,
        "",
    ));
    let mut client = H1::connect(gw.addr()).await;
    // Deny wins over allow; the connection serves the next request.
    for _ in 0..3 {
        let r = within(client.get("/x")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            r.text(),
            "403 Forbidden: the client address is not allowed on this route\n"
        );
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(origin.requests(), 0, "a refused request went upstream");
}

#[tokio::test]
async fn an_allow_list_without_the_client_refuses_it() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        r#"allow = ["10.0.0.0/8", "2001:db8::/32"]"#,
        "",
    ));
    let r = within(get(gw.addr(), "/", &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_address_decides() {
    let origin = Origin::echo();
    // The test client is the trusted proxy (127.0.0.1); 10.0.0.0/8 are
    // proxies too, skipped from the right.
    let gw = gateway(&config(
        origin.addr,
        r#"deny = ["203.0.113.0/24"]"#,
        r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#,
    ));
    let mut client = H1::connect(gw.addr()).await;
    let cases: &[(&[(&str, &str)], StatusCode)] = &[
        (&[("x-forwarded-for", "203.0.113.7")], StatusCode::FORBIDDEN),
        (&[("x-forwarded-for", "198.51.100.1")], StatusCode::OK),
        // The nearest untrusted hop is the client, whatever is left of it.
        (
            &[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.1.2.3")],
            StatusCode::FORBIDDEN,
        ),
        (
            &[("x-forwarded-for", "203.0.113.7, 198.51.100.1, 10.1.2.3")],
            StatusCode::OK,
        ),
        // Two lines are one list, the last nearest.
        (
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
            StatusCode::FORBIDDEN,
        ),
        // No header: the peer itself, which is not denied.
        (&[], StatusCode::OK),
    ];
    for (headers, want) in cases {
        let r = within(client.send(request("GET", "/", headers))).await;
        assert_eq!(r.status, *want, "{headers:?}: {}", r.text());
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn an_allowed_forwarded_address_passes_and_the_rest_do_not() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        r#"allow = ["198.51.100.0/24"]"#,
        r#"trusted_proxies = ["127.0.0.1"]"#,
    ));
    let mut client = H1::connect(gw.addr()).await;
    let ok =
        within(client.send(request("GET", "/", &[("x-forwarded-for", "198.51.100.20")]))).await;
    assert_eq!(ok.status, StatusCode::OK);
    // The origin gets the list with the proxy appended, as always.
    assert_eq!(ok.seen("x-forwarded-for"), ["198.51.100.20, 127.0.0.1"]);
    let refused =
        within(client.send(request("GET", "/", &[("x-forwarded-for", "192.0.2.1")]))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // The proxy itself is not in the allow list.
    let bare = within(client.get("/")).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_untrusted_peer_s_forwarded_for_is_ignored() {
    let origin = Origin::echo();
    let gw = gateway(&config(
        origin.addr,
        r#"allow = ["198.51.100.0/24"]
deny = ["203.0.113.7"]"#,
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
    ));
    let mut client = H1::connect(gw.addr()).await;
    // A forged allowed address does not let the client in...
    let forged =
        within(client.send(request("GET", "/", &[("x-forwarded-for", "198.51.100.1")]))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(origin.requests(), 0);
    // ...and a forged denied one is not what is denied: with the loopback
    // allowed, it passes.
    drop(gw);
    let gw = gateway(&config(
        origin.addr,
        r#"deny = ["203.0.113.7"]"#,
        r#"trusted_proxies = ["10.0.0.0/8"]"#,
    ));
    let r = within(get(gw.addr(), "/", &[("x-forwarded-for", "203.0.113.7")])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn an_ipv6_loopback_client_is_matched_as_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let origin = Origin::echo();
    let on_v6 = |keys: &str| config(origin.addr, keys, "").replace("127.0.0.1:0", "[::1]:0");
    let allowed = gateway(&on_v6(r#"allow = ["::1"]"#));
    assert!(allowed.addr().is_ipv6(), "{}", allowed.addr());
    let r = within(get(allowed.addr(), "/", &[])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let denied = gateway(&on_v6(
        r#"deny = ["::1/128"]
allow = ["::/0"]"#,
    ));
    let r = within(get(denied.addr(), "/", &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // An IPv4 list does not match an IPv6 client.
    let v4_only = gateway(&on_v6(r#"allow = ["127.0.0.0/8"]"#));
    let r = within(get(v4_only.addr(), "/", &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn refusals_are_counted_and_the_lists_shown() {
    let origin = Origin::echo();
    let gw = gateway_with_admin(
        &config(
            origin.addr,
            r#"allow = ["10.0.0.0/8"]
deny = ["127.0.0.1", "2001:db8::/32"]"#,
            r#"trusted_proxies = ["127.0.0.1"]"#,
        ),
        2,
    );
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..2 {
        assert_eq!(within(client.get("/")).await.status, StatusCode::FORBIDDEN);
    }
    let forwarded = request("GET", "/", &[("x-forwarded-for", "192.0.2.1")]);
    assert_eq!(
        within(client.send(forwarded)).await.status,
        StatusCode::FORBIDDEN
    );
    let admin = gw.admin_addr().unwrap();
    let denied = r#"strait_middleware_refusals_total{middleware="gate",type="ip_filter",reason="ip_denied"}"#;
    let not_allowed = r#"strait_middleware_refusals_total{middleware="gate",type="ip_filter",reason="ip_not_allowed"}"#;
    assert_eq!(within(metric_becomes(admin, denied, 2.0, LIMIT)).await, 2.0);
    assert_eq!(
        within(metric_becomes(admin, not_allowed, 1.0, LIMIT)).await,
        1.0
    );
    // The route counts them as its 4xx, like any answer.
    let route_4xx = r#"strait_route_responses_total{route="all",class="4xx"}"#;
    assert_eq!(
        within(metric_becomes(admin, route_4xx, 3.0, LIMIT)).await,
        3.0
    );
    // A reload that keeps the name keeps the count.
    let reloaded = config(
        origin.addr,
        r#"deny = ["127.0.0.1", "2001:db8::/32"]
allow = ["10.0.0.0/8"]"#,
        r#"trusted_proxies = ["127.0.0.1"]"#,
    );
    gw.reload_toml("test.toml", &reloaded).expect("reload");
    assert_eq!(within(client.get("/")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(within(metric_becomes(admin, denied, 3.0, LIMIT)).await, 3.0);
    let config = within(get(admin, "/config", &[])).await.json();
    assert_eq!(
        config["middlewares"]["gate"],
        serde_json::json!({
            "type": "ip_filter",
            "allow": ["10.0.0.0/8"],
            "deny": ["127.0.0.1/32", "2001:db8::/32"],
        })
    );
}
