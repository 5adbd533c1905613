//! What changes between client and origin: hop-by-hop headers removed in both
//! directions (RFC 9110 §7.6.1), X-Forwarded-* set or extended, Host kept or
//! replaced, and the gateway's own 502/503/504 answers when the upstream fails,
//! after which the same gateway keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

/// Guards every exchange so a regression shows as a failure, not a hung test.
const LIMIT: Duration = Duration::from_secs(5);

async fn send(client: &mut H1, req: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(LIMIT, client.send(req))
        .await
        .expect("request timed out")
}

// ---------------------------------------------------------------- hop-by-hop

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_the_origin() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], ""));
    let mut client = H1::connect(gw.addr()).await;
    let req = request(
        "GET",
        "/hop",
        &[
            ("connection", "keep-alive, x-secret, X-Other-Secret"),
            ("x-secret", "s1"),
            ("x-other-secret", "s2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("accept", "application/json"),
            ("user-agent", "routing-test/1"),
        ],
    );
    let r = send(&mut client, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for gone in [
        "connection",
        "x-secret",
        "x-other-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(
            r.seen(gone),
            Vec::<String>::new(),
            "{gone} reached the origin"
        );
    }
    assert_eq!(r.seen("x-kept"), ["yes"]);
    assert_eq!(r.seen("accept"), ["application/json"]);
    assert_eq!(r.seen("user-agent"), ["routing-test/1"]);
    assert_eq!(r.seen("host"), ["test.local"]);

    // The client connection stays usable after a request that carried Upgrade.
    let r = send(&mut client, request("GET", "/again", &[])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/again");
}

#[tokio::test]
async fn client_cannot_strip_headers_the_gateway_adds_by_naming_them_in_connection() {
    let origin = Origin::echo();
    let defs = "[middlewares.auth]\ntype = \"headers\"\nrequest_set = { \"x-auth-user\" = \"verified\" }\n";
    let gw = gateway(&format!(
        "{defs}\n{}",
        simple_config(&[origin.addr], r#""request_id", "auth""#)
    ));
    let r = get(
        gw.addr(),
        "/",
        &[
            ("connection", "x-request-id, x-auth-user, x-forwarded-for"),
            ("x-auth-user", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    // Connection names fields of the client's hop, not of the gateway's own.
    assert_eq!(r.seen("x-auth-user"), ["verified"]);
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(r.seen("x-request-id"), [id]);
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
    assert!(r.seen("connection").is_empty());
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let origin = Origin::start(Arc::new(|req| {
        Box::pin(async move {
            drain(req).await;
            let mut resp = Response::new(full("resp"));
            let h = resp.headers_mut();
            h.insert("connection", "x-resp-secret, X-Resp-Other".parse().unwrap());
            h.insert("x-resp-secret", "s1".parse().unwrap());
            h.insert("x-resp-other", "s2".parse().unwrap());
            h.insert("keep-alive", "timeout=5, max=100".parse().unwrap());
            h.insert("proxy-connection", "keep-alive".parse().unwrap());
            h.insert("x-resp-kept", "yes".parse().unwrap());
            resp
        })
    }));
    let gw = gateway(&simple_config(&[origin.addr], ""));
    let mut client = H1::connect(gw.addr()).await;
    for _ in 0..2 {
        let r = send(&mut client, request("GET", "/", &[])).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "resp");
        for gone in [
            "x-resp-secret",
            "x-resp-other",
            "keep-alive",
            "proxy-connection",
        ] {
            assert!(
                r.headers.get(gone).is_none(),
                "{gone} reached the client: {:?}",
                r.headers
            );
        }
        // The gateway may speak about its own connection, never the origin's.
        if let Some(c) = r.headers.get("connection") {
            assert!(
                !c.to_str().unwrap().to_ascii_lowercase().contains("x-resp"),
                "{c:?}"
            );
        }
        assert_eq!(r.headers["x-resp-kept"], "yes");
    }
    // The origin's `Connection` list did not end the exchange early.
    assert_eq!(origin.requests(), 2);
}

// ------------------------------------------------------------ X-Forwarded-*

fn forwarded_config(origin: SocketAddr, server: &str) -> String {
    format!("[server]\n{server}\n{}", simple_config(&[origin], ""))
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let origin = Origin::echo();
    let gw = gateway(&forwarded_config(origin.addr, ""));
    let mut client = H1::connect(gw.addr()).await;

    let r = send(&mut client, request("GET", "/", &[])).await;
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(r.seen("x-forwarded-proto"), ["http"]);
    assert_eq!(r.seen("x-forwarded-host"), ["test.local"]);

    let forged = request(
        "GET",
        "/",
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ],
    );
    let r = send(&mut client, forged).await;
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(r.seen("x-forwarded-proto"), ["http"]);
    assert_eq!(r.seen("x-forwarded-host"), ["test.local"]);
    // Host is kept by default.
    assert_eq!(r.seen("host"), ["test.local"]);
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_extended() {
    let origin = Origin::echo();
    let gw = gateway(&forwarded_config(
        origin.addr,
        r#"trusted_proxies = ["127.0.0.1/32"]"#,
    ));
    let mut client = H1::connect(gw.addr()).await;

    let from_proxy = request(
        "GET",
        "/",
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
        ],
    );
    let r = send(&mut client, from_proxy).await;
    assert_eq!(r.seen("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(r.seen("x-forwarded-proto"), ["https"]);
    assert_eq!(r.seen("x-forwarded-host"), ["public.example"]);

    // A chain already two hops long grows by one.
    let r = send(
        &mut client,
        request("GET", "/", &[("x-forwarded-for", "1.2.3.4, 10.0.0.1")]),
    )
    .await;
    assert_eq!(r.seen("x-forwarded-for"), ["1.2.3.4, 10.0.0.1, 127.0.0.1"]);

    // Several field lines are one list (RFC 9110 §5.3): none is lost.
    let r = send(
        &mut client,
        request(
            "GET",
            "/",
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ],
        ),
    )
    .await;
    assert_eq!(
        r.seen("x-forwarded-for"),
        ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]
    );

    // A trusted peer that sends nothing gets the same headers as anyone else.
    let r = send(&mut client, request("GET", "/", &[])).await;
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(r.seen("x-forwarded-proto"), ["http"]);
    assert_eq!(r.seen("x-forwarded-host"), ["test.local"]);
}

#[tokio::test]
async fn single_ip_trusted_proxy_entry_works_like_a_slash_32() {
    let origin = Origin::echo();
    let gw = gateway(&forwarded_config(
        origin.addr,
        r#"trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]"#,
    ));
    let r = get(gw.addr(), "/", &[("x-forwarded-for", "1.2.3.4")]).await;
    assert_eq!(r.seen("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
}

#[tokio::test]
async fn preserve_host_false_sends_the_endpoint_address() {
    let origin = Origin::echo();
    let gw = gateway(&forwarded_config(origin.addr, "preserve_host = false"));
    let r = get(gw.addr(), "/", &[]).await;
    assert_eq!(r.seen("host"), [origin.addr.to_string()]);
    // The client's host still travels, in X-Forwarded-Host.
    assert_eq!(r.seen("x-forwarded-host"), ["test.local"]);
}

#[tokio::test]
async fn absolute_form_target_sets_the_host_the_origin_sees() {
    // RFC 9112 §3.2.2: with an absolute-form target the target's authority
    // is the host, and a proxy sends it as Host. The route is chosen by the
    // target's host, so the origin must be told that host too, not the Host
    // header's spelling of it (one that names another host is refused:
    // tests/host.rs).
    let origin = Origin::echo();
    let other = Origin::fixed("other", 200, "other");
    let gw = gateway(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.api]
endpoints = ["{api}"]

[upstreams.other]
endpoints = ["{other}"]

[[routes]]
match = {{ host = "api.example.com" }}
upstream = "api"

[[routes]]
upstream = "other"
"#,
        api = origin.addr,
        other = other.addr
    ));
    let reply = tokio::time::timeout(
        LIMIT,
        raw(
            gw.addr(),
            b"GET http://api.example.com/admin?q=1 HTTP/1.1\r\nHost: API.Example.com:80\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("raw request timed out");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    let seen: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
    assert_eq!(seen["path"], "/admin");
    assert_eq!(seen["query"], "q=1");
    assert_eq!(
        seen["headers"]["host"],
        serde_json::json!(["api.example.com"])
    );
    assert_eq!(
        seen["headers"]["x-forwarded-host"],
        serde_json::json!(["api.example.com"])
    );
    assert_eq!(other.requests(), 0);
}

#[tokio::test]
async fn add_forwarded_headers_false_adds_none() {
    let origin = Origin::echo();
    let gw = gateway(&forwarded_config(
        origin.addr,
        "add_forwarded_headers = false",
    ));
    let r = get(gw.addr(), "/", &[]).await;
    assert_eq!(r.status, 200);
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
        assert_eq!(r.seen(name), Vec::<String>::new(), "{name}");
    }
}

// ------------------------------------------------------------ upstream failures

/// A TCP server that reads each request and drops the connection unanswered.
fn closing_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            drop(s);
        }
    });
    addr
}

/// A TCP server that answers each request with a head announcing 100 bytes and
/// sends only 5, then holds the connection open without a word.
fn stalling_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello");
            let _ = s.flush();
            held.push(s);
        }
    });
    addr
}

/// One gateway with a route per failure mode, plus `/good` to a working echo origin.
struct Failures {
    gw: common::TestGateway,
    good: Origin,
}

impl Failures {
    fn start() -> Failures {
        let good = Origin::echo();
        let toml = format!(
            r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.good]
endpoints = ["{good}"]

[upstreams.refused]
endpoints = ["{refused}"]
connect_timeout = "1s"

[upstreams.empty]
endpoints = []

[upstreams.silent]
endpoints = ["{silent}"]
response_header_timeout = "300ms"

[upstreams.closing]
endpoints = ["{closing}"]
response_header_timeout = "2s"

[upstreams.stalling]
endpoints = ["{stalling}"]
response_header_timeout = "2s"
body_idle_timeout = "300ms"

[[routes]]
match = {{ path = "/good" }}
upstream = "good"

[[routes]]
match = {{ path = "/refused" }}
upstream = "refused"

[[routes]]
match = {{ path = "/empty" }}
upstream = "empty"

[[routes]]
match = {{ path = "/silent" }}
upstream = "silent"

[[routes]]
match = {{ path = "/closing" }}
upstream = "closing"

[[routes]]
match = {{ path = "/stalling" }}
upstream = "stalling"
"#,
            good = good.addr,
            refused = dead_addr(),
            silent = silent_origin(),
            closing = closing_origin(),
            stalling = stalling_origin(),
        );
        Failures {
            gw: gateway(&toml),
            good,
        }
    }

    /// Sends `path` and expects the gateway's own error answer; then proves the
    /// same client connection and a fresh one both still reach `/good`.
    async fn expect_error(&self, path: &str, status: u16, body: &str) -> Duration {
        let mut client = H1::connect(self.gw.addr()).await;
        let started = Instant::now();
        let r = send(&mut client, request("GET", path, &[])).await;
        let took = started.elapsed();
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.text(), body, "{path}");
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
        self.expect_good(&mut client).await;
        self.expect_good(&mut H1::connect(self.gw.addr()).await)
            .await;
        took
    }

    async fn expect_good(&self, client: &mut H1) {
        let before = self.good.requests();
        let r = send(client, request("GET", "/good", &[])).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], "/good");
        assert_eq!(self.good.requests(), before + 1);
    }
}

#[tokio::test]
async fn refused_connection_is_502() {
    let f = Failures::start();
    f.expect_error(
        "/refused",
        502,
        "502 Bad Gateway: upstream refused the connection\n",
    )
    .await;
}

#[tokio::test]
async fn upstream_without_endpoints_is_503() {
    let f = Failures::start();
    f.expect_error(
        "/empty",
        503,
        "503 Service Unavailable: no upstream endpoint available\n",
    )
    .await;
}

#[tokio::test]
async fn silent_upstream_is_504_after_the_response_header_timeout() {
    let f = Failures::start();
    let took = f
        .expect_error(
            "/silent",
            504,
            "504 Gateway Timeout: upstream response timed out\n",
        )
        .await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "answered after {took:?}, expected about 300ms"
    );
}

#[tokio::test]
async fn upstream_closing_without_answer_is_502() {
    let f = Failures::start();
    f.expect_error(
        "/closing",
        502,
        "502 Bad Gateway: upstream closed the connection before responding\n",
    )
    .await;
}

#[tokio::test]
async fn stalled_response_body_ends_within_the_body_idle_timeout() {
    let f = Failures::start();
    let mut client = H1::connect(f.gw.addr()).await;
    // Send by hand: the head arrives, the body then stalls.
    let stream = tokio::net::TcpStream::connect(f.gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let resp = tokio::time::timeout(LIMIT, sender.send_request(request("GET", "/stalling", &[])))
        .await
        .expect("response head timed out")
        .expect("response head");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "100");
    let body = tokio::time::timeout(LIMIT, resp.into_body().collect()).await;
    let took = started.elapsed();
    match body {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            assert!(
                bytes.len() < 100,
                "a stalled body cannot complete: {bytes:?}"
            );
        }
        Ok(Err(e)) => eprintln!("body ended with: {e}"), // the expected outcome
        Err(_) => panic!("the client's body read hung for {LIMIT:?}"),
    }
    // Ended by the idle timer: not at once, and long before the test's limit.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "body ended after {took:?}, expected about 300ms"
    );
    f.expect_good(&mut client).await;
}

#[tokio::test]
async fn every_failure_in_turn_leaves_the_gateway_serving() {
    let f = Failures::start();
    let mut client = H1::connect(f.gw.addr()).await;
    for (path, status) in [
        ("/refused", 502),
        ("/empty", 503),
        ("/closing", 502),
        ("/silent", 504),
        ("/refused", 502),
    ] {
        let r = send(&mut client, request("GET", path, &[])).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        f.expect_good(&mut client).await;
    }
}
