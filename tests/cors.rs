//! `type = "cors"` over real sockets: preflights answered by the gateway
//! (exact origin, wildcard subdomain, `*`; the origin sees nothing),
//! preflights refused for their origin, method or headers (403, no CORS
//! headers, the keep-alive connection kept), actual requests from an
//! allowed origin (the origin's body, the CORS headers, `Vary` beside the
//! upstream's, the upstream's own `Access-Control-*` replaced), a refused
//! origin and no origin at all, credentials, one preflight and one actual
//! request over HTTP/2, and the counts in `/metrics` and the settings in
//! `/config`. The wildcard matcher's edge cases are a unit test
//! (`middleware/cors.rs`); load errors are in `tests/config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// An origin that answers `from origin` with `Vary: Accept-Encoding` and
/// an `Access-Control-Allow-Origin` of its own (which the gateway replaces),
/// and counts what it received.
fn origin() -> Origin {
    Origin::start(Arc::new(|req| {
        Box::pin(async move {
            drain(req).await;
            let mut resp = Response::new(full("from origin"));
            let h = resp.headers_mut();
            h.insert("vary", "Accept-Encoding".parse().unwrap());
            h.insert(
                "access-control-allow-origin",
                "https://upstream.invalid".parse().unwrap(),
            );
            resp
        })
    }))
}

/// A gateway with one catch-all route to `origin` through the `cors`
/// middleware named `app_cors` with these keys.
fn config(origin: SocketAddr, keys: &str) -> String {
    format!(
        "[middlewares.app_cors]\ntype = \"cors\"\n{keys}\n{}",
        simple_config(&[origin], r#""app_cors""#)
    )
}

const LISTED: &str = r#"allow_origins = ["https://app.example.com", "https://*.example.org"]
allow_methods = ["GET", "POST", "PUT"]
allow_headers = ["content-type", "authorization", "x-trace"]
expose_headers = ["x-request-id", "x-total"]
max_age = "10m""#;

fn preflight(origin: &str, method: &str, headers: Option<&str>) -> Request<Full<Bytes>> {
    let mut h = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if let Some(list) = headers {
        h.push(("access-control-request-headers", list));
    }
    request("OPTIONS", "/api", &h)
}

/// The `access-control-*` fields of a response.
fn cors_fields(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = h
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

fn vary(h: &HeaderMap) -> Vec<&str> {
    h.get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

#[tokio::test]
async fn allowed_preflights_are_answered_here_with_the_exact_headers() {
    let origin = origin();
    let gw = gateway(&config(origin.addr, LISTED));
    let mut client = H1::connect(gw.addr()).await;
    let cases = [
        (
            "https://app.example.com",
            "PUT",
            Some("Content-Type, X-Trace"),
        ),
        ("https://a.example.org", "POST", Some("authorization")),
        ("https://a.b.example.org", "GET", None),
    ];
    for (from, method, headers) in cases {
        let r = within(client.send(preflight(from, method, headers))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{from}: {}", r.text());
        assert!(r.body.is_empty());
        let mut want = vec![
            ("access-control-allow-origin", from),
            ("access-control-allow-methods", "GET, POST, PUT"),
            ("access-control-max-age", "600"),
        ];
        if let Some(list) = headers {
            want.push(("access-control-allow-headers", list));
        }
        assert_eq!(cors_fields(&r.headers), fields(&want), "{from}");
        assert_eq!(vary(&r.headers), [PREFLIGHT_VARY]);
    }
    // Safelisted names pass without being listed; whitespace and case do
    // not matter.
    let r = within(client.send(preflight(
        "https://app.example.com",
        "POST",
        Some(" accept ,Content-Language,  AUTHORIZATION"),
    )))
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(origin.requests(), 0, "a preflight went upstream");
}

#[tokio::test]
async fn any_origin_preflight_answers_star_and_no_max_age_unless_set() {
    let origin = origin();
    let gw = gateway(&config(
        origin.addr,
        r#"allow_origins = ["*"]
allow_headers = ["*"]"#,
    ));
    let r = within(get_with(
        gw.addr(),
        preflight("https://anyone.test", "HEAD", Some("x-anything, x-else")),
    ))
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        cors_fields(&r.headers),
        fields(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET, HEAD, POST"),
            ("access-control-allow-headers", "x-anything, x-else"),
        ])
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn refused_preflights_get_403_without_cors_headers_and_the_connection_serves_on() {
    let origin = origin();
    let gw = gateway_with_admin(&config(origin.addr, LISTED), 2);
    let mut client = H1::connect(gw.addr()).await;
    let cases = [
        // Origin: not listed, the bare domain of a wildcard, another
        // scheme, a look-alike suffix, a port, `null` not listed.
        ("https://evil.com", "GET", None),
        ("https://example.org", "GET", None),
        ("http://a.example.org", "GET", None),
        ("https://a.example.org.evil.com", "GET", None),
        ("https://app.example.com:8443", "GET", None),
        ("null", "GET", None),
        // Method (case-sensitive).
        ("https://app.example.com", "DELETE", None),
        ("https://app.example.com", "put", None),
        // A header not allowed among allowed ones.
        (
            "https://app.example.com",
            "PUT",
            Some("content-type, x-secret"),
        ),
    ];
    for (from, method, headers) in cases {
        let r = within(client.send(preflight(from, method, headers))).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{from} {method} {headers:?}"
        );
        assert_eq!(
            r.text(),
            "403 Forbidden: this cross-origin request is not allowed on this route\n"
        );
        assert_eq!(cors_fields(&r.headers), fields(&[]), "{from}");
        assert!(r.headers.get("vary").is_none());
    }
    // The same connection still serves.
    let r = within(client.send(request(
        "GET",
        "/after",
        &[("origin", "https://app.example.com")],
    )))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "from origin");
    assert_eq!(origin.requests(), 1);

    let admin = gw.admin_addr().unwrap();
    let refused = |reason: &str| {
        format!(
            r#"strait_middleware_refusals_total{{middleware="app_cors",type="cors",reason="{reason}"}}"#
        )
    };
    let o = within(metric_becomes(
        admin,
        &refused("cors_origin_not_allowed"),
        6.0,
        LIMIT,
    ))
    .await;
    assert_eq!(o, 6.0);
    let m = within(metric_becomes(
        admin,
        &refused("cors_method_not_allowed"),
        2.0,
        LIMIT,
    ))
    .await;
    assert_eq!(m, 2.0);
    let h = within(metric_becomes(
        admin,
        &refused("cors_header_not_allowed"),
        1.0,
        LIMIT,
    ))
    .await;
    assert_eq!(h, 1.0);
    // An answered preflight counts in its own family.
    let ok = within(client.send(preflight("https://x.example.org", "GET", None))).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let answered = r#"strait_cors_preflights_total{middleware="app_cors"}"#;
    assert_eq!(
        within(metric_becomes(admin, answered, 1.0, LIMIT)).await,
        1.0
    );

    let config = within(get(admin, "/config", &[])).await.json();
    assert_eq!(
        config["middlewares"]["app_cors"],
        serde_json::json!({
            "type": "cors",
            "allow_origins": ["https://app.example.com", "https://*.example.org"],
            "allow_methods": ["GET", "POST", "PUT"],
            "allow_headers": ["content-type", "authorization", "x-trace"],
            "expose_headers": ["x-request-id", "x-total"],
            "allow_credentials": false,
            "max_age": 600,
        })
    );
}

#[tokio::test]
async fn actual_requests_from_allowed_origins_get_the_cors_headers() {
    let origin = origin();
    let gw = gateway(&config(origin.addr, LISTED));
    let mut client = H1::connect(gw.addr()).await;
    for (method, from) in [
        ("GET", "https://app.example.com"),
        ("POST", "https://deep.sub.example.org"),
        // An OPTIONS without Access-Control-Request-Method is no preflight.
        ("OPTIONS", "https://app.example.com"),
    ] {
        let r = within(client.send(request(method, "/data", &[("origin", from)]))).await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
        assert_eq!(r.text(), "from origin");
        // The upstream's own Access-Control-Allow-Origin is replaced.
        assert_eq!(
            cors_fields(&r.headers),
            fields(&[
                ("access-control-allow-origin", from),
                ("access-control-expose-headers", "x-request-id, x-total"),
            ]),
            "{method} {from}"
        );
        assert_eq!(vary(&r.headers), ["Accept-Encoding", "Origin"]);
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_refused_origin_passes_without_cors_headers_and_no_origin_is_untouched() {
    let origin = origin();
    let gw = gateway(&config(origin.addr, LISTED));
    let mut client = H1::connect(gw.addr()).await;
    let r = within(client.send(request("GET", "/", &[("origin", "https://evil.com")]))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "from origin");
    // The upstream's grant is taken away too: the policy is the gateway's.
    assert_eq!(cors_fields(&r.headers), fields(&[]));
    assert_eq!(vary(&r.headers), ["Accept-Encoding", "Origin"]);

    let r = within(client.get("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        cors_fields(&r.headers),
        fields(&[("access-control-allow-origin", "https://upstream.invalid")])
    );
    assert_eq!(vary(&r.headers), ["Accept-Encoding"]);
    // An OPTIONS without Origin is forwarded as well.
    let r = within(client.send(request(
        "OPTIONS",
        "/",
        &[("access-control-request-method", "GET")],
    )))
    .await;
    assert_eq!(r.text(), "from origin");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn any_origin_answers_star_without_vary_origin() {
    let origin = origin();
    let gw = gateway(&config(origin.addr, r#"allow_origins = ["*"]"#));
    let r = within(get(gw.addr(), "/", &[("origin", "https://who.ever")])).await;
    assert_eq!(
        cors_fields(&r.headers),
        fields(&[("access-control-allow-origin", "*")])
    );
    assert_eq!(vary(&r.headers), ["Accept-Encoding"]);
}

#[tokio::test]
async fn credentials_echo_the_origin_and_say_true() {
    let origin = origin();
    let gw = gateway(&config(
        origin.addr,
        r#"allow_origins = ["https://app.example.com", "null"]
allow_credentials = true"#,
    ));
    let mut client = H1::connect(gw.addr()).await;
    let r = within(client.send(preflight("https://app.example.com", "POST", None))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        cors_fields(&r.headers),
        fields(&[
            ("access-control-allow-origin", "https://app.example.com"),
            ("access-control-allow-methods", "GET, HEAD, POST"),
            ("access-control-allow-credentials", "true"),
        ])
    );
    // `null` only because it is listed.
    let r = within(client.send(request("GET", "/", &[("origin", "null")]))).await;
    assert_eq!(
        cors_fields(&r.headers),
        fields(&[
            ("access-control-allow-origin", "null"),
            ("access-control-allow-credentials", "true"),
        ])
    );
    assert_eq!(vary(&r.headers), ["Accept-Encoding", "Origin"]);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn preflight_and_actual_request_over_http2() {
    let origin = origin();
    let gw = gateway(&config(origin.addr, LISTED));
    let mut h2 = h2_connect::<Full<Bytes>>(gw.addr()).await;
    let h2_req = |method: &str, headers: &[(&str, &str)]| {
        let mut b = Request::builder()
            .method(method)
            .uri("http://h2.test/api")
            .version(Version::HTTP_2);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let pre = h2_req(
        "OPTIONS",
        &[
            ("origin", "https://x.example.org"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-trace"),
        ],
    );
    h2.ready().await.unwrap();
    let resp = within(h2.send_request(pre)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cors_fields(resp.headers()),
        fields(&[
            ("access-control-allow-origin", "https://x.example.org"),
            ("access-control-allow-methods", "GET, POST, PUT"),
            ("access-control-allow-headers", "x-trace"),
            ("access-control-max-age", "600"),
        ])
    );
    let refused = h2_req(
        "OPTIONS",
        &[
            ("origin", "https://x.example.org"),
            ("access-control-request-method", "PATCH"),
        ],
    );
    h2.ready().await.unwrap();
    let resp = within(h2.send_request(refused)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(cors_fields(resp.headers()).is_empty());
    let actual = h2_req("GET", &[("origin", "https://x.example.org")]);
    h2.ready().await.unwrap();
    let resp = within(h2.send_request(actual)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://x.example.org"
    );
    assert_eq!(vary(resp.headers()), ["Accept-Encoding", "Origin"]);
    let body = within(resp.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"from origin");
    assert_eq!(origin.requests(), 1);
}

/// One request on a new connection.
async fn get_with(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    H1::connect(addr).await.send(req).await
}
