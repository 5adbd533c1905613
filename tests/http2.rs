//! HTTP/2 clients (prior knowledge, h2c) through the gateway to an HTTP/1.1
//! echo origin.
mod common;
use common::*;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

/// A request in absolute form: HTTP/2 carries scheme and authority as
/// pseudo-headers, no Host header.
fn h2_request(method: &str, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://h2.test{path}"))
        .version(Version::HTTP_2)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn h2_send(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Reply {
    sender.ready().await.expect("h2 connection usable");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.version(), Version::HTTP_2);
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("h2 body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends `count` GETs at once, each on its own stream of one connection, the
/// i-th to `path(i)`; returns `(i, path, reply)` of each, in the order they
/// finished.
async fn concurrent_gets(
    addr: SocketAddr,
    count: usize,
    path: impl Fn(usize) -> String,
) -> Vec<(usize, String, Reply)> {
    let h2 = h2_connect(addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut sender = h2.clone();
        let path = path(i);
        tasks.spawn(async move {
            let r = h2_send(&mut sender, h2_request("GET", &path, Bytes::new())).await;
            (i, path, r)
        });
    }
    let mut replies = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        replies.push(joined.expect("stream task panicked"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_request_gets_host_from_authority_and_forwarded_headers() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], r#""request_id""#));
    tokio::time::timeout(LIMIT, async {
        let mut h2 = h2_connect(gw.addr()).await;
        let r = h2_send(&mut h2, h2_request("GET", "/over/h2?q=1", Bytes::new())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let json = r.json();
        assert_eq!(json["method"], "GET");
        assert_eq!(json["path"], "/over/h2");
        assert_eq!(json["query"], "q=1");
        assert_eq!(r.seen("host"), ["h2.test"], "Host derived from :authority");
        assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(r.seen("x-forwarded-host"), ["h2.test"]);
        assert_eq!(r.seen("x-forwarded-proto"), ["http"]);
        // The request id the client gets is the one the origin saw.
        let id = r.headers["x-request-id"].to_str().unwrap();
        assert_eq!(r.seen("x-request-id"), [id]);
        // HTTP/1.1 connection headers never reach an HTTP/2 client.
        assert!(!r.headers.contains_key("connection"));
        assert!(!r.headers.contains_key("transfer-encoding"));
        assert!(!r.headers.contains_key("keep-alive"));
    })
    .await
    .expect("h2 request did not finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_on_one_connection() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], ""));
    const STREAMS: usize = 100;
    tokio::time::timeout(LIMIT, async {
        let replies = concurrent_gets(gw.addr(), STREAMS, |i| format!("/stream/{i}")).await;
        let mut done = [false; STREAMS];
        for (i, _, r) in replies {
            assert_eq!(r.status, StatusCode::OK, "stream {i}: {}", r.text());
            assert_eq!(r.json()["path"], format!("/stream/{i}"), "stream {i}");
            done[i] = true;
        }
        assert!(done.iter().all(|d| *d));
    })
    .await
    .expect("100 concurrent h2 streams did not finish in time");
    assert_eq!(origin.requests(), STREAMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_post_body_arrives_whole() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], ""));
    tokio::time::timeout(LIMIT, async {
        let mut h2 = h2_connect(gw.addr()).await;
        // Larger than the default h2 windows (64 KiB), so flow control runs.
        let len = 1024 * 1024 + 7;
        let r = h2_send(&mut h2, h2_request("POST", "/upload", vec![b'p'; len])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["method"], "POST");
        assert_eq!(r.json()["body_bytes"], len as u64);
        // A second request on the same connection still works.
        let r = h2_send(&mut h2, h2_request("PUT", "/small", "abc")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["method"], "PUT");
        assert_eq!(r.json()["body_bytes"], 3);
    })
    .await
    .expect("h2 POST did not finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_connection_are_proxied_concurrently() {
    // The origin holds every answer until all 100 requests have arrived, so
    // this passes only if the gateway runs the streams side by side.
    const STREAMS: usize = 100;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(STREAMS));
    let origin = Origin::start(std::sync::Arc::new(move |req| {
        let barrier = barrier.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let all_arrived = tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                .await
                .is_ok();
            let mut resp = http::Response::new(full(path));
            if !all_arrived {
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            resp
        })
    }));
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    tokio::time::timeout(LIMIT, async {
        let replies = concurrent_gets(gw.addr(), STREAMS, |i| format!("/together/{i}")).await;
        for (_, path, r) in replies {
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{path}: not all streams reached the origin together"
            );
            assert_eq!(r.text(), path);
        }
    })
    .await
    .expect("concurrent h2 streams did not finish in time");
    assert_eq!(
        origin.connections(),
        STREAMS,
        "one upstream connection per stream in flight"
    );
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_open_streams_finish() {
    let origin = Origin::slow(Duration::from_millis(400), "slow");
    let gw = gateway(&simple_config(&[origin.addr], ""));
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    sender.ready().await.unwrap();
    let in_flight = sender.send_request(h2_request("GET", "/slow", Bytes::new()));
    let shutdown = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(100));
        gw.shutdown();
    });
    let resp = tokio::time::timeout(LIMIT, in_flight)
        .await
        .expect("hang")
        .expect("the open stream is answered during the drain");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
    // The connection ends cleanly: the client got a GOAWAY, not a reset.
    let ended = tokio::time::timeout(LIMIT, conn)
        .await
        .expect("hang")
        .unwrap();
    assert!(ended.is_ok(), "the connection ended with {ended:?}");
    shutdown.await.unwrap();
}
