//! HTTP/2 to upstreams: h2c with prior knowledge, h2 over TLS chosen by
//! ALPN, a bounded number of multiplexed connections per worker and
//! endpoint, GOAWAY and connection loss handled without failing requests,
//! trailers passed through. Real origins (hyper, tokio-rustls) on 127.0.0.1
//! count their connections and streams.

mod common;
#[path = "common/origins.rs"]
mod origins;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use origins::*;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

fn config(endpoint: SocketAddr, upstream: &str) -> String {
    backend_config(&endpoint.to_string(), upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_carries_requests_over_http2_with_prior_knowledge() {
    let origin = ProtoOrigin::cleartext();
    let gw = gateway(&config(origin.addr, r#"protocol = "h2c""#));
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        let mut client = H1::connect(addr).await;
        for i in 0..20 {
            let reply = client.get(&format!("/item/{i}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(origin_version(&reply.headers), Version::HTTP_2);
            assert_eq!(reply.text(), format!("/item/{i}"));
            // The Host the origin gets (the endpoint, preserve_host off)
            // travels as :authority.
            assert_eq!(reply.headers["x-authority"], "test.local");
        }
    })
    .await
    .expect("within the limit");
    // Sequential requests on one worker share one connection (two workers:
    // at most two).
    assert!(origin.connections() <= 2, "{}", origin.connections());
    assert_eq!(origin.requests(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_requests_share_a_bounded_number_of_connections() {
    let origin = ProtoOrigin::cleartext();
    let gw = gateway(&config(
        origin.addr,
        "protocol = \"h2c\"\nhttp2_max_concurrent_streams = 50\nhttp2_max_connections = 4",
    ));
    let addr = gw.addr();
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = H1::connect(addr).await;
                client.get("/slow").await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let reply = tokio::time::timeout(LIMIT, t)
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(origin_version(&reply.headers), Version::HTTP_2);
        ok += 1;
    }
    assert_eq!(ok, 100);
    // 100 requests, 50 streams per connection, 2 workers: each worker needs
    // at most 2 connections however the clients were spread.
    let connections = origin.connections();
    eprintln!(
        "100 concurrent requests: {connections} upstream connections, at most {} streams on one, {:?}",
        origin.max_in_flight(),
        started.elapsed()
    );
    assert!((1..=4).contains(&connections), "{connections} connections");
    assert!(origin.max_in_flight() <= 50, "{}", origin.max_in_flight());
    assert_eq!(origin.requests(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn goaway_while_requests_flow_fails_no_request() {
    let origin = ProtoOrigin::cleartext();
    let gw = gateway(&config(origin.addr, r#"protocol = "h2c""#));
    let addr = gw.addr();
    // 8 clients send 40 requests each, some slow (streams in flight when
    // GOAWAY comes), while the origin shuts its connections down
    // gracefully every 30 ms.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = H1::connect(addr).await;
                let mut statuses = Vec::new();
                for i in 0..40 {
                    let path = if (c + i) % 5 == 0 { "/slow" } else { "/fast" };
                    let reply = client.get(path).await;
                    statuses.push((reply.status, reply.text()));
                }
                statuses
            })
        })
        .collect();
    let goaways = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            origin.goaway_all();
        }
    };
    let results = tokio::time::timeout(LIMIT, async {
        goaways.await;
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.unwrap());
        }
        all
    })
    .await
    .expect("within the limit");
    let failed: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(results.len(), 320);
    // The proxy moved to new connections as the old ones went away.
    eprintln!(
        "320 requests across GOAWAYs: {} upstream connections",
        origin.connections()
    );
    assert!(origin.connections() > 2, "{}", origin.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_idle_connection_is_replaced() {
    let origin = ProtoOrigin::cleartext();
    let gw = gateway_with(&config(origin.addr, r#"protocol = "h2c""#), 1);
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        let mut client = H1::connect(addr).await;
        assert_eq!(client.get("/one").await.status, StatusCode::OK);
        assert_eq!(origin.connections(), 1);
        // The origin drops the (idle) connection without a GOAWAY.
        origin.kill_all();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = client.get("/two").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), "/two");
        assert_eq!(origin.connections(), 2);
    })
    .await
    .expect("within the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_pass_through_http2() {
    let origin = ProtoOrigin::cleartext();
    let gw = gateway(&config(origin.addr, r#"protocol = "h2c""#));
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        // An HTTP/2 client, so trailers can reach it.
        let mut sender = h2_connect(addr).await;
        let req = Request::builder()
            .uri("http://h2.test/trailers")
            .version(Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(origin_version(resp.headers()), Version::HTTP_2);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["x-checksum"], "42");
        assert_eq!(collected.to_bytes(), "/trailers");
    })
    .await
    .expect("within the limit");
}

// ------------------------------------------------------------- h2 over TLS

/// A gateway to a TLS origin offering `alpn`, with `protocol`.
async fn over_tls(alpn: &[&str], protocol: &str) -> (ProtoOrigin, Reply) {
    let ca = TestCa::new("test CA");
    let origin = ProtoOrigin::tls(server_tls(&ca.server(&["api.internal"]), alpn, None));
    // Read when the gateway starts, below.
    let pem = TempDir::new("upstream-h2");
    let ca_file = pem.write("ca.pem", &ca.cert_pem);
    let toml = config(
        origin.addr,
        &format!("protocol = {protocol:?}\n\n[upstreams.backend.tls]\nca_file = {ca_file:?}\nserver_name = \"api.internal\""),
    );
    let gw = gateway(&toml);
    let reply = tokio::time::timeout(LIMIT, get(gw.addr(), "/tls", &[]))
        .await
        .expect("within the limit");
    (origin, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_speaks_http2_when_the_origin_chooses_h2_by_alpn() {
    let (origin, reply) = over_tls(&["h2", "http/1.1"], "auto").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(origin_version(&reply.headers), Version::HTTP_2);
    assert_eq!(reply.headers["x-authority"], "test.local");
    assert_eq!(origin.seen()[0].alpn.as_deref(), Some("h2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_speaks_http1_when_the_origin_offers_only_http1() {
    let (origin, reply) = over_tls(&["http/1.1"], "auto").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(origin_version(&reply.headers), Version::HTTP_11);
    assert_eq!(origin.seen()[0].alpn.as_deref(), Some("http/1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_offers_only_h2() {
    let (origin, reply) = over_tls(&["h2", "http/1.1"], "h2").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(origin_version(&reply.headers), Version::HTTP_2);
    assert_eq!(origin.seen()[0].alpn.as_deref(), Some("h2"));
    // An origin without h2 refuses the handshake (no common protocol).
    let (_, reply) = over_tls(&["http/1.1"], "h2").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        reply.text(),
        "502 Bad Gateway: upstream TLS handshake failed\n"
    );
}

// ---------------------------------------------------------- refused streams

/// An h2c origin (the `h2` crate's server) that resets every stream of its
/// first connection with REFUSED_STREAM and answers 200 on the others.
fn refusing_origin() -> Server {
    Server::start(|stream, n| async move {
        let Ok(mut conn) = h2::server::handshake(stream).await else {
            return;
        };
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            if n == 0 {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                continue;
            }
            let mut send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            let _ = send.send_data(Bytes::from_static(b"ok"), true);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_goes_again_on_another_connection() {
    let origin = refusing_origin();
    let gw = gateway_with(&config(origin.addr, r#"protocol = "h2c""#), 1);
    tokio::time::timeout(LIMIT, async {
        let mut client = H1::connect(gw.addr()).await;
        // Any method: the origin did not process it.
        let reply = client.send(request("DELETE", "/x", &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), "ok");
        assert_eq!(origin.connections(), 2);
        // A body streamed from the client cannot be sent again: 502, as
        // for any upstream failure (a route retry policy buffers bodies).
        let reply = client.send(post("/upload", "payload")).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    })
    .await
    .expect("within the limit");
}
