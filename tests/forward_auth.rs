//! `type = "forward_auth"` over real sockets, against an auth service
//! started in the test: an allowed request reaches the origin with the
//! service's chosen headers (and never the client's own of those names),
//! the subrequest carries the original method, URI, host, scheme, client
//! address and the chosen headers but no body; a refusal goes back to the
//! client as the service gave it; a slow or absent service is a 503, or
//! passes with `fail_open`; a worker reuses its connection to the service;
//! refusals in `/metrics`, settings in `/config`. Load errors are in
//! `tests/config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::{Response, StatusCode};
use serde_json::{json, Value};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// The subrequests the service saw: method, target, headers, body bytes.
type Seen = Arc<Mutex<Vec<Value>>>;

/// An auth service: `Bearer good` is alice (200 with `x-user` and two
/// `x-roles`), `Bearer slow` answers after 3 s, anything else 401 with a
/// challenge, a header and a body of its own.
fn auth_service(seen: Seen) -> Origin {
    Origin::start(Arc::new(move |req| {
        let seen = seen.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut headers = serde_json::Map::new();
            for (n, v) in &parts.headers {
                headers.insert(n.as_str().into(), json!(v.to_str().unwrap_or("?")));
            }
            let auth = parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            let body_bytes = drain(http::Request::from_parts(parts.clone(), body)).await;
            seen.lock().unwrap().push(json!({
                "method": parts.method.as_str(),
                "target": parts.uri.to_string(),
                "headers": headers,
                "body_bytes": body_bytes,
            }));
            match auth.as_deref() {
                Some("Bearer good") => Response::builder()
                    .header("x-user", "alice")
                    .header("x-roles", "admin")
                    .header("x-roles", "ops")
                    .header("x-secret", "not for upstream")
                    .body(full("ok"))
                    .unwrap(),
                Some("Bearer slow") => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Response::new(full("late"))
                }
                _ => Response::builder()
                    .status(401)
                    .header("www-authenticate", "Bearer realm=\"sso\"")
                    .header("x-reason", "no session")
                    .body(full("log in first\n"))
                    .unwrap(),
            }
        })
    }))
}

fn config(origin: SocketAddr, service: SocketAddr, extra: &str) -> String {
    format!(
        "[middlewares.sso]\ntype = \"forward_auth\"\nurl = \"http://{service}/check?v=1\"\ntimeout = \"500ms\"\nresponse_headers = [\"x-user\", \"x-roles\"]\nconsumer_header = \"x-user\"\n{extra}\n{}",
        simple_config(&[origin], r#""sso""#)
    )
}

#[tokio::test]
async fn an_allowed_request_goes_up_with_the_service_s_headers() {
    let origin = Origin::echo();
    let seen: Seen = Arc::default();
    let service = auth_service(seen.clone());
    let gw = gateway_with(&config(origin.addr, service.addr, ""), 1);
    let mut client = H1::connect(gw.addr()).await;
    let forged = [
        ("authorization", "Bearer good"),
        ("x-user", "root"),
        ("cookie", "s=1"),
        ("x-other", "o"),
    ];
    let r = within(client.send(request("GET", "/app/x?y=1", &forged))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.seen("x-user"), ["alice"]);
    assert_eq!(r.seen("x-roles"), ["admin", "ops"]);
    assert!(
        r.seen("x-secret").is_empty(),
        "an unlisted header was copied"
    );
    // The request itself is unchanged otherwise.
    assert_eq!(r.seen("authorization"), ["Bearer good"]);
    assert_eq!(r.json()["query"], "y=1");
    let sub = seen.lock().unwrap()[0].clone();
    assert_eq!(sub["method"], "GET");
    assert_eq!(sub["target"], "/check?v=1");
    let h = &sub["headers"];
    assert_eq!(h["host"], service.addr.to_string());
    assert_eq!(h["x-forwarded-method"], "GET");
    assert_eq!(h["x-forwarded-uri"], "/app/x?y=1");
    assert_eq!(h["x-forwarded-host"], "test.local");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["authorization"], "Bearer good");
    assert_eq!(h["cookie"], "s=1");
    assert!(
        h.get("x-other").is_none(),
        "an unlisted header was sent: {h}"
    );
    // A body goes to the origin, never to the service.
    let mut post = post("/upload", "0123456789");
    post.headers_mut()
        .insert("authorization", "Bearer good".parse().unwrap());
    let r = within(client.send(post)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["body_bytes"], 10);
    let sub = seen.lock().unwrap()[1].clone();
    assert_eq!(sub["method"], "POST");
    assert_eq!(sub["body_bytes"], 0);
    // More requests: the worker's one connection to the service serves them.
    for _ in 0..5 {
        let r = within(client.send(request("GET", "/", &[("authorization", "Bearer good")]))).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(
        service.connections(),
        1,
        "the connection to the service was not reused"
    );
    assert_eq!(origin.requests(), 7);
}

#[tokio::test]
async fn a_refusal_goes_back_as_the_service_gave_it() {
    let origin = Origin::echo();
    let service = auth_service(Seen::default());
    let gw = gateway_with_admin(&config(origin.addr, service.addr, ""), 2);
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..2 {
        let r = within(client.send(request("GET", "/", &[("authorization", "Bearer bad")]))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"sso\"");
        assert_eq!(r.headers["x-reason"], "no session");
        assert_eq!(r.text(), "log in first\n");
    }
    assert_eq!(origin.requests(), 0, "a refused request went upstream");
    let admin = gw.admin_addr().unwrap();
    let denied = r#"strait_middleware_refusals_total{middleware="sso",type="forward_auth",reason="forward_auth_denied"}"#;
    assert_eq!(within(metric_becomes(admin, denied, 2.0, LIMIT)).await, 2.0);
    let shown = within(get(admin, "/config", &[])).await.json();
    assert_eq!(
        shown["middlewares"]["sso"],
        json!({
            "type": "forward_auth",
            "url": format!("http://{}/check?v=1", service.addr),
            "address": service.addr.to_string(),
            "timeout_ms": 500,
            "request_headers": ["authorization", "cookie"],
            "response_headers": ["x-user", "x-roles"],
            "consumer_header": "x-user",
            "fail_open": false,
        })
    );
}

#[tokio::test]
async fn a_slow_or_absent_service_is_a_503_unless_it_fails_open() {
    let origin = Origin::echo();
    let service = auth_service(Seen::default());
    let gw = gateway_with_admin(&config(origin.addr, service.addr, ""), 1);
    let r = within(get(gw.addr(), "/", &[("authorization", "Bearer slow")])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.text(),
        "503 Service Unavailable: the authorisation service did not answer\n"
    );
    // After a timeout, the next request is served (a new connection).
    let r = within(get(gw.addr(), "/", &[("authorization", "Bearer good")])).await;
    assert_eq!(r.status, StatusCode::OK);
    let down = gateway(&config(origin.addr, dead_addr(), ""));
    let r = within(get(down.addr(), "/", &[("authorization", "Bearer good")])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(origin.requests(), 1);
    let open = gateway_with_admin(&config(origin.addr, dead_addr(), "fail_open = true"), 1);
    let r = within(get(
        open.addr(),
        "/",
        &[("authorization", "Bearer good"), ("x-user", "forged")],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "fail_open did not let it through");
    // Failing open copies nothing, and the client's own never passes.
    assert!(r.seen("x-user").is_empty(), "a client's x-user passed");
    let admin = open.admin_addr().unwrap();
    let failed = r#"strait_middleware_refusals_total{middleware="sso",type="forward_auth",reason="forward_auth_failed_open"}"#;
    assert_eq!(within(metric_becomes(admin, failed, 1.0, LIMIT)).await, 1.0);
    let unavailable = r#"strait_middleware_refusals_total{middleware="sso",type="forward_auth",reason="forward_auth_unavailable"}"#;
    assert_eq!(
        within(metric_becomes(
            gw.admin_addr().unwrap(),
            unavailable,
            1.0,
            LIMIT
        ))
        .await,
        1.0
    );
}
