//! Upstream keep-alive: the per-worker pool reuses connections, so the origin
//! sees at most one connection per worker for sequential traffic, and closed
//! upstream connections are discarded instead of failing requests.
mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKERS: usize = 2;
const REQUESTS: usize = 1_000;
/// A hang guard for each loop (not a speed check).
const LOOP_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn one_client_connection_reuses_one_upstream_connection() {
    let origin = Origin::fixed("ka", 200, "ok");
    let gw = gateway_with(&simple_config(&[origin.addr], ""), WORKERS);
    tokio::time::timeout(LOOP_LIMIT, async {
        let mut client = H1::connect(gw.addr()).await;
        for i in 0..REQUESTS {
            let r = client.get(&format!("/ka/{i}")).await;
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
            assert_eq!(r.body, "ok", "request {i}");
        }
    })
    .await
    .expect("1,000 keep-alive requests did not finish in time");
    assert_eq!(origin.requests(), REQUESTS);
    assert!(
        origin.connections() <= WORKERS,
        "origin accepted {} connections for {REQUESTS} sequential requests over one client connection (workers: {WORKERS})",
        origin.connections()
    );
}

#[tokio::test]
async fn new_client_connection_per_request_still_reuses_upstream_connections() {
    let origin = Origin::fixed("ka", 200, "ok");
    let gw = gateway_with(&simple_config(&[origin.addr], ""), WORKERS);
    tokio::time::timeout(LOOP_LIMIT, async {
        for i in 0..REQUESTS {
            let r = get(gw.addr(), &format!("/new/{i}"), &[]).await;
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
            assert_eq!(r.body, "ok", "request {i}");
        }
    })
    .await
    .expect("1,000 requests on new connections did not finish in time");
    assert_eq!(origin.requests(), REQUESTS);
    assert!(
        origin.connections() <= WORKERS,
        "origin accepted {} connections for {REQUESTS} sequential requests, each on a new client connection (workers: {WORKERS})",
        origin.connections()
    );
}

fn closing_origin() -> Server {
    Server::start(|stream, _| async move {
        let service = hyper::service::service_fn(|req| async move {
            drain(req).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(full("closing")))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    })
}

#[tokio::test]
async fn upstream_with_keep_alive_off_never_fails_a_request() {
    let origin = closing_origin();
    let gw = gateway_with(&simple_config(&[origin.addr], ""), WORKERS);
    const N: usize = 200;
    tokio::time::timeout(LOOP_LIMIT, async {
        let mut client = H1::connect(gw.addr()).await;
        for i in 0..N {
            let r = client.get(&format!("/close/{i}")).await;
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
            assert_eq!(r.body, "closing", "request {i}");
            // The upstream's `Connection: close` is hop-by-hop: not forwarded.
            assert!(!r.headers.contains_key("connection"), "request {i}");
        }
    })
    .await
    .expect("requests to a closing upstream did not finish in time");
    // Each request needed its own upstream connection: nothing closed was reused.
    assert_eq!(origin.connections(), N);
}

/// A hand-written keep-alive origin that closes a connection after it has been
/// idle for `idle`, like a real server's keep-alive timeout.
fn idle_closing_origin(idle: Duration) -> Server {
    Server::start(move |mut stream, _| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Requests are GETs without a body: a head ends the request.
            while let Some(end) = find(&buf, b"\r\n\r\n") {
                buf.drain(..end + 4);
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nidle";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
            match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                // EOF, error, or idle too long: close.
                _ => return,
            }
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn pooled_connections_closed_by_an_idle_upstream_are_discarded() {
    let idle = Duration::from_millis(50);
    let origin = idle_closing_origin(idle);
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    const ROUNDS: usize = 10;
    tokio::time::timeout(LOOP_LIMIT, async {
        let mut client = H1::connect(gw.addr()).await;
        for round in 0..ROUNDS {
            // A burst on one connection: reused while the upstream keeps it.
            for i in 0..5 {
                let r = client.get(&format!("/idle/{round}/{i}")).await;
                assert_eq!(r.status, 200, "round {round} request {i}: {}", r.text());
                assert_eq!(r.body, "idle", "round {round} request {i}");
            }
            // Long enough for the upstream to close the pooled connection.
            tokio::time::sleep(idle * 3).await;
        }
    })
    .await
    .expect("requests to an idle-closing upstream did not finish in time");
    // One upstream connection per burst: reused within it, replaced after the
    // upstream closed it.
    assert_eq!(origin.connections(), ROUNDS);
}

#[tokio::test]
async fn bodiless_responses_keep_the_upstream_connection() {
    // HEAD, 204 and 304 answers end with their head; the connection goes back
    // to the pool without a body to wait for.
    let origin = Origin::start(Arc::new(|req| {
        Box::pin(async move {
            let status = match req.uri().path() {
                "/no-content" => 204,
                "/not-modified" => 304,
                _ => 200,
            };
            drain(req).await;
            let mut resp = if status == 200 {
                http::Response::new(full("a body HEAD must not carry"))
            } else {
                http::Response::new(empty())
            };
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            resp
        })
    }));
    let gw = gateway_with(&simple_config(&[origin.addr], ""), WORKERS);
    const EACH: usize = 100;
    tokio::time::timeout(LOOP_LIMIT, async {
        let mut client = H1::connect(gw.addr()).await;
        for i in 0..EACH {
            let r = client.send(request("HEAD", "/head", &[])).await;
            assert_eq!(r.status, 200, "HEAD {i}");
            assert!(r.body.is_empty(), "HEAD {i}");
            assert_eq!(r.headers["content-length"], "26", "HEAD {i}");
            let r = client.get("/no-content").await;
            assert_eq!(r.status, 204, "204 {i}");
            assert!(r.body.is_empty(), "204 {i}");
            let r = client.get("/not-modified").await;
            assert_eq!(r.status, 304, "304 {i}");
            assert!(r.body.is_empty(), "304 {i}");
            // A body after them is not confused with anything left over.
            let r = client.get("/with-body").await;
            assert_eq!(r.status, 200, "GET {i}");
            assert_eq!(r.body, "a body HEAD must not carry", "GET {i}");
        }
    })
    .await
    .expect("bodiless exchanges did not finish in time");
    assert_eq!(origin.requests(), 4 * EACH);
    // One client connection is served by one worker: one upstream connection.
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn upstream_answering_before_reading_the_body_is_not_reused_half_written() {
    // The origin answers 413 without reading the request body; the proxy must
    // not send the next request into the middle of the unread body.
    let origin = Origin::start(Arc::new(|req| {
        Box::pin(async move {
            let early = req.uri().path().starts_with("/early");
            if early {
                let mut resp = http::Response::new(full("too large"));
                *resp.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
                return resp;
            }
            let n = drain(req).await;
            http::Response::new(full(n.to_string()))
        })
    }));
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    tokio::time::timeout(LOOP_LIMIT, async {
        for i in 0..20 {
            let body = bytes::Bytes::from(vec![b'e'; 16 * 1024]);
            let r = H1::connect(gw.addr())
                .await
                .send(post(&format!("/early/{i}"), body.clone()))
                .await;
            assert_eq!(r.status, 413, "early {i}: {}", r.text());
            let r = H1::connect(gw.addr())
                .await
                .send(post(&format!("/count/{i}"), body))
                .await;
            assert_eq!(r.status, 200, "count {i}: {}", r.text());
            assert_eq!(r.body, (16 * 1024).to_string(), "count {i}");
        }
    })
    .await
    .expect("requests did not finish in time");
}
