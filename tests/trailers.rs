//! Trailers across protocols: an HTTP/2 client gets the trailer fields of
//! an HTTP/1.1 origin's chunked answer as HTTP/2 trailers, an HTTP/1.1
//! client's chunked trailer fields reach an h2c origin as HTTP/2 trailers,
//! and an HTTP/2 client's trailers reach an HTTP/1.1 origin as the chunked
//! body's trailer fields; forbidden fields (RFC 9110 §6.5.1) never cross.
//! The HTTP/1.1-to-HTTP/1.1 cases, bounds included, are `tests/framing.rs`.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

fn config(origin: std::net::SocketAddr, upstream: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{origin}"]
connect_timeout = "2s"
response_header_timeout = "5s"
{upstream}

[[routes]]
upstream = "backend"
"#
    )
}

/// A raw HTTP/1.1 origin: it records what each connection sent until a
/// request ends (a head without a body, or a chunked body's end), then
/// answers it with `answer`.
fn raw_origin(answer: &'static [u8]) -> (Server, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = Server::start(move |mut stream, _| {
        let record = record.clone();
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
                let Some(head_end) = find(&got, b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
                let whole = !head.contains("transfer-encoding: chunked")
                    || find(&got[head_end..], b"\r\n0\r\n")
                        .is_some_and(|at| find(&got[head_end + at + 5..], b"\r\n").is_some());
                if whole {
                    break;
                }
            }
            *record.lock().unwrap() = got;
            let _ = stream.write_all(answer).await;
            // Held open: the gateway may pool it.
            let _ = stream.read(&mut buf).await;
        }
    });
    (server, seen)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_gets_an_http1_origins_chunked_trailers() {
    let (origin, _) = raw_origin(
        b"HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\nContent-Length: 99\r\n\
        Connection: close\r\nX-Two:  a b \r\n\r\n",
    );
    let gw = gateway(&config(origin.addr, ""));
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        let mut sender = h2_connect(addr).await;
        let req = Request::builder()
            .uri("http://test.local/t")
            .version(Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers["x-checksum"], "42");
        assert_eq!(trailers["x-two"], "a b");
        assert_eq!(trailers.len(), 2, "forbidden fields dropped: {trailers:?}");
        assert_eq!(collected.to_bytes(), "hello world");
    })
    .await
    .expect("within the limit");
}

/// An h2c origin that answers with the request's trailers as one field,
/// `x-trailers: name=value;...` (`none` without any), and its body.
fn h2c_origin() -> Server {
    Server::start(|stream, _| async move {
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let collected = req.into_body().collect().await.unwrap();
            let trailers = collected
                .trailers()
                .map(|t: &HeaderMap| {
                    t.iter()
                        .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .unwrap_or_else(|| "none".into());
            let mut resp = Response::new(Full::new(collected.to_bytes()));
            resp.headers_mut()
                .insert("x-trailers", trailers.parse().unwrap());
            Ok::<_, Infallible>(resp)
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_clients_chunked_trailers_reach_an_h2c_origin() {
    let origin = h2c_origin();
    let gw = gateway(&config(origin.addr, r#"protocol = "h2c""#));
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        let answer = raw(
            addr,
            b"POST /x HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\
            Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\
            Cookie: secret=1\r\nHost: evil.test\r\nX-Two: 2\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\nx-trailers: x-checksum=abc;x-two=2\r\n"),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        // Without trailers, the origin sees none.
        let answer = raw(
            addr,
            b"POST /x HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\
            Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(answer.contains("\r\nx-trailers: none\r\n"), "{answer}");
    })
    .await
    .expect("within the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_clients_trailers_reach_an_http1_origin_as_chunked_trailer_fields() {
    let (origin, seen) = raw_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let gw = gateway(&config(origin.addr, ""));
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async {
        let mut sender = h2_connect(addr).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        trailers.insert("authorization", "Basic eA==".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let req = Request::builder()
            .method("POST")
            .uri("http://test.local/up")
            .version(Version::HTTP_2)
            .body(body)
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    })
    .await
    .expect("within the limit");
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let (head, body) = got.split_once("\r\n\r\n").expect("a whole request");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ntransfer-encoding: chunked"),
        "{got}"
    );
    assert_eq!(body, "5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n", "{got}");
}
