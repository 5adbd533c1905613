//! Every failure is a response (constitution, law 5): bad client input gets a
//! 4xx, a broken upstream a 502 naming the cause, and the worker keeps serving.
//! Gateways here run one worker, so "the next request succeeds" is checked on
//! the very worker that saw the bad input.
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

const REFUSED: &str = "502 Bad Gateway: upstream refused the connection\n";
const INVALID: &str = "502 Bad Gateway: upstream sent an invalid response\n";
const CLOSED: &str = "502 Bad Gateway: upstream closed the connection before responding\n";

/// Routes: `/dead` → nothing listening, `/broken` → `broken`, `/stream` →
/// `stream`, anything else → `live`.
fn config(live: SocketAddr, broken: SocketAddr, stream: SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.live]
endpoints = ["{live}"]
connect_timeout = "1s"
response_header_timeout = "2s"

[upstreams.dead]
endpoints = ["{dead}"]
connect_timeout = "1s"

[upstreams.broken]
endpoints = ["{broken}"]
connect_timeout = "1s"
response_header_timeout = "2s"

[upstreams.stream]
endpoints = ["{stream}"]
connect_timeout = "1s"
response_header_timeout = "2s"

[[routes]]
name = "dead"
match = {{ path_prefix = "/dead" }}
upstream = "dead"

[[routes]]
name = "broken"
match = {{ path_prefix = "/broken" }}
upstream = "broken"

[[routes]]
name = "stream"
match = {{ path_prefix = "/stream" }}
upstream = "stream"

[[routes]]
name = "live"
upstream = "live"
"#,
        dead = dead_addr()
    )
}

/// A gateway with one worker in front of an echo origin; the other routes go
/// nowhere useful.
fn echo_gateway() -> (Origin, common::TestGateway) {
    let origin = Origin::echo();
    let gw = gateway_with(&config(origin.addr, dead_addr(), dead_addr()), 1);
    (origin, gw)
}

/// Writes `data` (ignoring a write the server cut short) and reads whatever
/// comes back until the server closes, an error, or 5 s.
async fn raw_lenient(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(data).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gateway still answers normally, on a new connection.
async fn still_serves(addr: SocketAddr, after: &str) {
    let r = tokio::time::timeout(Duration::from_secs(10), get(addr, "/still/ok", &[]))
        .await
        .unwrap_or_else(|_| panic!("no answer after {after}"));
    assert_eq!(r.status, 200, "after {after}: {}", r.text());
    assert_eq!(r.json()["path"], "/still/ok", "after {after}");
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

// ------------------------------------------------------------ client input

#[tokio::test]
async fn malformed_request_line_gets_400() {
    let (_origin, gw) = echo_gateway();
    let reply = raw_lenient(gw.addr(), b"GARBAGE\r\n\r\n").await;
    assert!(
        reply.starts_with("HTTP/1.1 400 "),
        "reply to a malformed request line: {reply:?}"
    );
    still_serves(gw.addr(), "a malformed request line").await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (origin, gw) = echo_gateway();
    // 100 KiB in one header; the default limit is 64 KiB.
    let big = "a".repeat(100 * 1024);
    let req = format!("GET /big HTTP/1.1\r\nHost: test.local\r\nX-Big: {big}\r\n\r\n");
    let reply = raw_lenient(gw.addr(), req.as_bytes()).await;
    assert!(
        reply.starts_with("HTTP/1.1 431 "),
        "reply to 100 KiB of headers: {:?}",
        status_line(&reply)
    );
    assert_eq!(origin.requests(), 0, "the oversized request was forwarded");
    still_serves(gw.addr(), "oversized headers").await;
}

#[tokio::test]
async fn invalid_content_length_gets_400() {
    let (origin, gw) = echo_gateway();
    let cases: [(&str, &[u8]); 3] = [
        (
            "a non-numeric Content-Length",
            b"POST /cl HTTP/1.1\r\nHost: test.local\r\nContent-Length: abc\r\n\r\nabc",
        ),
        (
            "two conflicting Content-Length headers",
            b"POST /cl HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "a negative Content-Length",
            b"POST /cl HTTP/1.1\r\nHost: test.local\r\nContent-Length: -1\r\n\r\n",
        ),
    ];
    for (what, req) in cases {
        let reply = raw_lenient(gw.addr(), req).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 "),
            "reply to {what}: {reply:?}"
        );
        still_serves(gw.addr(), what).await;
    }
    // Only the `still_serves` requests reached the origin.
    assert_eq!(origin.requests(), cases.len());
}

#[tokio::test]
async fn client_disconnecting_mid_request_body_breaks_nothing() {
    let (origin, gw) = echo_gateway();
    tokio::time::timeout(LIMIT, async {
        for round in 0..3 {
            let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
            s.write_all(
                b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1048576\r\n\r\n",
            )
            .await
            .unwrap();
            s.write_all(&[b'u'; 10_000]).await.unwrap();
            // Wait until the request is on its way to the origin, then vanish.
            let deadline = Instant::now() + Duration::from_secs(5);
            while origin.requests() <= round * 4 {
                assert!(
                    Instant::now() < deadline,
                    "the request never reached the origin"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(s);
            // The next requests, with and without bodies, arrive intact: the
            // half-sent upstream connection was not reused.
            let mut client = H1::connect(gw.addr()).await;
            for i in 0..3 {
                let body = vec![b'b'; 1000 + i];
                let r = client
                    .send(post(&format!("/after/{round}/{i}"), body))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.json()["path"], format!("/after/{round}/{i}"));
                assert_eq!(r.json()["body_bytes"], 1000 + i as u64);
            }
        }
    })
    .await
    .expect("requests after a client disconnect did not finish in time");
    still_serves(gw.addr(), "clients that left mid-body").await;
}

/// An origin whose `/stream` answers carry `STREAM_LEN` bytes in 64 KiB chunks.
const STREAM_LEN: u64 = 8 * 1024 * 1024;

fn streaming_origin(produced: Arc<AtomicU64>) -> Origin {
    Origin::start(Arc::new(move |req: Request<hyper::body::Incoming>| {
        let produced = produced.clone();
        Box::pin(async move {
            drain(req).await;
            let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
            let chunks = (STREAM_LEN / chunk.len() as u64) as usize;
            let frames = (0..chunks).map(move |_| {
                produced.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                    chunk.clone(),
                ))
            });
            Response::new(BodyExt::boxed(IterBody(frames)))
        })
    }))
}

/// A body pulled from an iterator one frame per poll.
struct IterBody<I>(I);

impl<I, E> http_body::Body for IterBody<I>
where
    I: Iterator<Item = Result<hyper::body::Frame<Bytes>, E>> + Unpin,
{
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, E>>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_response_breaks_nothing() {
    let live = Origin::echo();
    let produced = Arc::new(AtomicU64::new(0));
    let streamer = streaming_origin(produced.clone());
    let gw = gateway_with(&config(live.addr, dead_addr(), streamer.addr), 1);
    tokio::time::timeout(LIMIT, async {
        for round in 0..3 {
            // Read the head and a little of the body, then vanish.
            let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
            s.write_all(b"GET /stream/cut HTTP/1.1\r\nHost: test.local\r\n\r\n")
                .await
                .unwrap();
            let mut got = 0usize;
            let mut buf = vec![0u8; 16 * 1024];
            while got < 100 * 1024 {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "round {round}: the gateway closed early");
                if got == 0 {
                    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "round {round}");
                }
                got += n;
            }
            drop(s);
            // A whole streamed response still arrives intact.
            let mut client = H1::connect(gw.addr()).await;
            let r = client.get("/stream/whole").await;
            assert_eq!(r.status, 200, "round {round}");
            assert_eq!(r.body.len() as u64, STREAM_LEN, "round {round}");
            assert!(r.body.iter().all(|b| *b == b'z'), "round {round}");
            let r = client.get("/echo/after").await;
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
            assert_eq!(r.json()["path"], "/echo/after");
        }
    })
    .await
    .expect("requests after a client left mid-response did not finish in time");
    still_serves(gw.addr(), "clients that left mid-response").await;
}

// ------------------------------------------------------------ upstream failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_under_load_is_502_every_time() {
    let live = Origin::echo();
    // Two workers here: both must answer for the dead route.
    let gw = gateway_with(&config(live.addr, dead_addr(), dead_addr()), 2);
    const CONNECTIONS: usize = 8;
    const PER_CONNECTION: usize = 50;
    let addr = gw.addr();
    tokio::time::timeout(LIMIT, async move {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..CONNECTIONS {
            tasks.spawn(async move {
                let mut client = H1::connect(addr).await;
                for i in 0..PER_CONNECTION {
                    let r = client.get(&format!("/dead/{c}/{i}")).await;
                    assert_eq!(r.status, 502, "connection {c} request {i}");
                    assert_eq!(r.text(), REFUSED, "connection {c} request {i}");
                    assert_eq!(
                        r.headers["content-length"],
                        REFUSED.len().to_string().as_str()
                    );
                }
            });
        }
        let mut finished = 0;
        while let Some(joined) = tasks.join_next().await {
            joined.expect("a client task failed");
            finished += 1;
        }
        assert_eq!(finished, CONNECTIONS);
    })
    .await
    .expect("400 requests to a dead upstream did not finish in time");
    assert_eq!(live.requests(), 0);
    still_serves(gw.addr(), "400 requests to a dead upstream").await;
}

/// A raw TCP origin: for each connection, reads one request head, writes
/// `reply` as is and closes. The thread lives until the test process ends.
fn raw_origin(reply: &'static [u8]) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = s.write_all(reply);
        }
    });
    addr
}

#[tokio::test]
async fn invalid_upstream_response_is_502() {
    let live = Origin::echo();
    let broken = raw_origin(b"HTTP/1.1 abc\r\n\r\n");
    let gw = gateway_with(&config(live.addr, broken, dead_addr()), 1);
    for i in 0..3 {
        let r = tokio::time::timeout(LIMIT, get(gw.addr(), &format!("/broken/{i}"), &[]))
            .await
            .expect("no answer for an invalid upstream response");
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.text(), INVALID);
    }
    still_serves(gw.addr(), "invalid upstream responses").await;
}

#[tokio::test]
async fn upstream_closing_without_a_response_is_502() {
    let live = Origin::echo();
    let broken = raw_origin(b"");
    let gw = gateway_with(&config(live.addr, broken, dead_addr()), 1);
    for i in 0..3 {
        let r = tokio::time::timeout(LIMIT, get(gw.addr(), &format!("/broken/{i}"), &[]))
            .await
            .expect("no answer when the upstream closed");
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.text(), CLOSED);
    }
    still_serves(gw.addr(), "upstreams that closed without responding").await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_forwarded_ambiguously() {
    let (origin, gw) = echo_gateway();
    // CL.TE: a classic smuggling shape, with a pipelined request behind it.
    let reply = raw_lenient(
        gw.addr(),
        b"POST /both HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n",
    )
    .await;
    if reply.starts_with("HTTP/1.1 400 ") {
        // Refusing outright is allowed (RFC 9112 §6.3).
        assert_eq!(origin.requests(), 0);
    } else {
        // Otherwise Transfer-Encoding wins, Content-Length is gone upstream,
        // and the connection closes after the answer: the bytes behind the
        // body are never taken for another request.
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
        let body = &reply[reply.find("\r\n\r\n").expect("a response head") + 4..];
        let json: serde_json::Value = serde_json::from_str(body).expect("one JSON body");
        assert_eq!(json["path"], "/both");
        assert_eq!(json["body_bytes"], 5);
        assert!(json["headers"].get("content-length").is_none(), "{json}");
        assert!(!reply.contains("/smuggled"));
        assert_eq!(origin.requests(), 1, "the pipelined request was served");
    }
    // Transfer-Encoding that does not end in chunked cannot be framed: 400.
    let reply = raw_lenient(
        gw.addr(),
        b"POST /gzip HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    still_serves(gw.addr(), "ambiguous framing").await;
}

#[tokio::test]
async fn broken_http2_connection_is_closed_and_the_worker_keeps_serving() {
    let (origin, gw) = echo_gateway();
    // The HTTP/2 preface, then a frame header announcing a 16 MiB HEADERS
    // frame (beyond the default max frame size) on stream 1.
    let mut data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    data.extend_from_slice(&[0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]); // SETTINGS
    data.extend_from_slice(&[0xff, 0xff, 0xff, 0x01, 0x04, 0x00, 0x00, 0x00, 0x01]);
    data.extend_from_slice(&[0u8; 64]);
    let reply = tokio::time::timeout(LIMIT, async {
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let _ = s.write_all(&data).await;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                Ok(_) => return out,
                Err(_) => panic!("the gateway kept a broken HTTP/2 connection open"),
            }
        }
    })
    .await
    .unwrap();
    // The gateway speaks HTTP/2 back (its SETTINGS frame) and ends with a
    // GOAWAY (frame type 7) before closing.
    assert!(reply.len() >= 9, "{reply:?}");
    assert_eq!(reply[3], 0x04, "first frame is SETTINGS: {reply:?}");
    let mut at = 0;
    let mut goaway = false;
    while at + 9 <= reply.len() {
        let len = u32::from_be_bytes([0, reply[at], reply[at + 1], reply[at + 2]]) as usize;
        goaway |= reply[at + 3] == 0x07;
        at += 9 + len;
    }
    assert!(goaway, "no GOAWAY frame: {reply:?}");
    assert_eq!(origin.requests(), 0);
    still_serves(gw.addr(), "a broken HTTP/2 connection").await;
}
