//! `type = "request_limits"` over real sockets, on our own HTTP/1.1 and over
//! HTTP/2 (h2c): a Content-Length over `max_body` answered 413 at once
//! (the origin sees nothing, the connection closes), a body exactly at the
//! limit passing whole, a chunked or length-less body cut when it grows
//! past it (413, and the origin never gets a complete request), methods
//! (405 with `Allow`), header count and bytes (431), target length (414),
//! each refusal but 413 keeping the connection, and the refusals in
//! `/metrics` and the limits in `/config`. Load errors are in
//! `tests/config_errors.rs`.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

const LIMITS: &str = r#"[middlewares.limits]
type = "request_limits"
max_body = "1000B"
methods = ["GET", "POST"]
max_header_count = 5
max_header_bytes = 100
max_url_length = 20
"#;

fn config(origin: SocketAddr) -> String {
    format!("{LIMITS}\n{}", simple_config(&[origin], r#""limits""#))
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// What an origin saw of each request body: its length when it ended
/// well, `None` when it broke off.
type Bodies = Arc<Mutex<Vec<Option<u64>>>>;

/// An origin that reads each body and notes how it ended, then answers 200.
fn body_origin() -> (Origin, Bodies) {
    let bodies: Bodies = Arc::default();
    let seen = bodies.clone();
    let origin = Origin::start(Arc::new(move |req: Request<Incoming>| {
        let seen = seen.clone();
        Box::pin(async move {
            let mut body = req.into_body();
            let mut n = 0;
            let ended = loop {
                match body.frame().await {
                    None => break Some(n),
                    Some(Ok(frame)) => n += frame.data_ref().map_or(0, |d| d.len() as u64),
                    Some(Err(_)) => break None,
                }
            };
            seen.lock().unwrap().push(ended);
            Response::new(full("stored"))
        })
    }));
    (origin, bodies)
}

/// Waits (bounded) until the origin has seen `n` bodies end either way.
async fn bodies_seen(bodies: &Bodies, n: usize) -> Vec<Option<u64>> {
    for _ in 0..200 {
        if bodies.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bodies.lock().unwrap().clone()
}

/// A client connection writing raw HTTP/1.1 and reading responses framed
/// by Content-Length.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// One response: its head (lowercased) and body.
    async fn response(&mut self) -> (String, Vec<u8>) {
        self.answer(false).await
    }

    /// One response, to a HEAD request when `head` (no body follows).
    async fn answer(&mut self, to_head: bool) -> (String, Vec<u8>) {
        within(async {
            let end = loop {
                if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                self.fill().await;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            let len = if to_head { 0 } else { len };
            while self.buf.len() < end + len {
                self.fill().await;
            }
            let body = self.buf[end..end + len].to_vec();
            self.buf.drain(..end + len);
            (head, body)
        })
        .await
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Whether the gateway closes the connection (reads to its end).
    async fn closes(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(LIMIT, self.stream.read_to_end(&mut rest)).await;
        matches!(read, Ok(Ok(_)))
    }
}

const GET: &[u8] = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn a_content_length_over_max_body_is_413_at_once_and_closes() {
    let origin = Origin::echo();
    let gw = gateway(&config(origin.addr));
    let mut c = Raw::connect(gw.addr()).await;
    // The head only, asking for 100-continue: the answer comes without the
    // body and without a 100.
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let (head, body) = c.response().await;
    assert!(head.starts_with("http/1.1 413 "), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "413 Payload Too Large: the request body is over this route's limit\n"
    );
    assert!(
        c.closes().await,
        "the connection stayed open with the body unread"
    );
    assert_eq!(origin.requests(), 0, "the request went upstream");
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_passes_whole() {
    let (origin, bodies) = body_origin();
    let gw = gateway(&config(origin.addr));
    let mut c = Raw::connect(gw.addr()).await;
    let body = vec![b'x'; 1000];
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    c.send(&req).await;
    let (head, _) = c.response().await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    // Chunked, 600 + 400: at the limit too, on the same connection.
    let mut chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(b"258\r\n");
    chunked.extend_from_slice(&body[..600]);
    chunked.extend_from_slice(b"\r\n190\r\n");
    chunked.extend_from_slice(&body[..400]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    c.send(&chunked).await;
    let (head, _) = c.response().await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(bodies_seen(&bodies, 2).await, [Some(1000), Some(1000)]);
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_cut() {
    let (origin, bodies) = body_origin();
    let gw = gateway(&config(origin.addr));
    let mut c = Raw::connect(gw.addr()).await;
    let chunk = vec![b'y'; 600];
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        req.extend_from_slice(b"258\r\n");
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req).await;
    let (head, body) = c.response().await;
    assert!(head.starts_with("http/1.1 413 "), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with("413 Payload Too Large"));
    assert!(c.closes().await);
    // The origin got the head and what was within the limit, then the
    // connection broke: never a whole (shorter) body.
    assert_eq!(
        bodies_seen(&bodies, 1).await,
        [None],
        "the origin saw a complete body"
    );
}

#[tokio::test]
async fn a_method_not_listed_is_405_with_allow_and_the_connection_stays() {
    let origin = Origin::echo();
    let gw = gateway(&config(origin.addr));
    let mut c = Raw::connect(gw.addr()).await;
    // HEAD is not implied by GET; methods are case-sensitive.
    for method in ["DELETE", "HEAD", "get"] {
        c.send(format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await;
        let (head, _) = c.answer(method == "HEAD").await;
        assert!(head.starts_with("http/1.1 405 "), "{method}: {head}");
        assert!(head.contains("\r\nallow: get, post\r\n"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    c.send(GET).await;
    let (head, body) = c.response().await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("\"/next\""));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn header_count_and_bytes_are_431_and_the_target_414() {
    let origin = Origin::echo();
    let gw = gateway(&config(origin.addr));
    let mut c = Raw::connect(gw.addr()).await;
    // (request, status): Host is a field too (4 + 1 name and value bytes).
    let pad = |n: usize| "p".repeat(n);
    let cases = [
        // 5 fields pass, 6 do not.
        (
            "GET / HTTP/1.1\r\nHost: t\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n".to_string(),
            200,
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n".to_string(),
            431,
        ),
        // Host (5) + x-pad (5) + 90 = 100 bytes pass, 101 do not.
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\nx-pad: {}\r\n\r\n", pad(90)),
            200,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: t\r\nx-pad: {}\r\n\r\n", pad(91)),
            431,
        ),
        // A target of 20 bytes passes, 21 do not (the query counts).
        (
            "GET /aaaaaaaaaa?q=123456 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            200,
        ),
        (
            "GET /aaaaaaaaaa?q=1234567 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            414,
        ),
    ];
    assert_eq!("/aaaaaaaaaa?q=123456".len(), 20);
    for (req, want) in &cases {
        c.send(req.as_bytes()).await;
        let (head, _) = c.response().await;
        assert!(
            head.starts_with(&format!("http/1.1 {want} ")),
            "{req:?}: {head}"
        );
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert_eq!(origin.requests(), 3);
}

/// An HTTP/2 request to the gateway's h2.test authority.
fn h2_request<B>(method: &str, path: &str, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri(format!("http://h2.test{path}"))
        .version(Version::HTTP_2)
        .body(body)
        .unwrap()
}

/// A request body of these chunks with no length announced (hyper's
/// client then sends no content-length).
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|d| Ok(Frame::data(d))))
    }
}

async fn h2_status<B>(
    sender: &mut hyper::client::conn::http2::SendRequest<B>,
    req: Request<B>,
) -> (StatusCode, http::HeaderMap, String)
where
    B: Body + 'static,
{
    sender.ready().await.expect("h2 connection usable");
    let resp = within(sender.send_request(req)).await.expect("h2 response");
    let (parts, body) = resp.into_parts();
    let body = within(body.collect()).await.expect("h2 body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn over_http2_the_same_limits_hold() {
    let (origin, bodies) = body_origin();
    let gw = gateway(&config(origin.addr));
    let mut h2 = h2_connect::<Full<Bytes>>(gw.addr()).await;
    let big = h2_request("POST", "/", Full::new(Bytes::from(vec![b'z'; 1001])));
    let (status, _, body) = h2_status(&mut h2, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let put = h2_request("PUT", "/", Full::new(Bytes::new()));
    let (status, headers, _) = h2_status(&mut h2, put).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST");
    let long = h2_request("GET", "/aaaaaaaaaaaaaaaaaaaaaaaa", Full::new(Bytes::new()));
    assert_eq!(h2_status(&mut h2, long).await.0, StatusCode::URI_TOO_LONG);
    // The connection still serves; a body at the limit passes whole.
    let fits = h2_request("POST", "/", Full::new(Bytes::from(vec![b'z'; 1000])));
    assert_eq!(h2_status(&mut h2, fits).await.0, StatusCode::OK);
    assert_eq!(bodies_seen(&bodies, 1).await, [Some(1000)]);

    // No content-length: counted as it streams, cut past the limit.
    let mut h2 = h2_connect::<Chunks>(gw.addr()).await;
    let chunks = Chunks(vec![Bytes::from(vec![b'w'; 600]); 2].into());
    let (status, _, body) = h2_status(&mut h2, h2_request("POST", "/", chunks)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let seen = bodies_seen(&bodies, 2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], None, "the origin saw a complete body: {seen:?}");
    let small = Chunks(vec![Bytes::from(vec![b'w'; 500]); 2].into());
    let (status, _, body) = h2_status(&mut h2, h2_request("POST", "/", small)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(bodies_seen(&bodies, 3).await[2], Some(1000));
}

/// An h2c origin that notes how each request body ended, as
/// [`body_origin`] does.
fn h2c_body_origin() -> (Server, Bodies) {
    let bodies: Bodies = Arc::default();
    let seen = bodies.clone();
    let server = Server::start(move |stream, _| {
        let seen = seen.clone();
        async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let mut body = req.into_body();
                    let mut n = 0;
                    let ended = loop {
                        match body.frame().await {
                            None => break Some(n),
                            Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                            Some(Err(_)) => break None,
                        }
                    };
                    seen.lock().unwrap().push(ended);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"stored"))))
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    });
    (server, bodies)
}

#[tokio::test]
async fn an_http2_upstream_gets_its_stream_reset_not_a_shorter_body() {
    let (origin, bodies) = h2c_body_origin();
    let toml = config(origin.addr).replace(
        "response_header_timeout = \"2s\"",
        "response_header_timeout = \"2s\"\nprotocol = \"h2c\"",
    );
    assert!(toml.contains("protocol = \"h2c\""));
    let gw = gateway(&toml);
    let mut c = Raw::connect(gw.addr()).await;
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        req.extend_from_slice(b"258\r\n");
        req.extend_from_slice(&[b'u'; 600]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req).await;
    let (head, _) = c.response().await;
    assert!(head.starts_with("http/1.1 413 "), "{head}");
    assert!(c.closes().await);
    let seen = bodies_seen(&bodies, 1).await;
    assert!(
        seen.iter().all(Option::is_none),
        "the origin saw a complete body: {seen:?}"
    );
    // The same connection to the origin, or a new one, serves what fits.
    let fits = Raw::connect(gw.addr()).await;
    let mut fits = fits;
    fits.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    assert!(fits.response().await.0.starts_with("http/1.1 200 "));
    let seen = bodies_seen(&bodies, seen.len() + 1).await;
    assert_eq!(seen.last(), Some(&Some(3)), "{seen:?}");
}

#[tokio::test]
async fn refusals_are_counted_by_reason_and_the_limits_shown() {
    let origin = Origin::echo();
    let gw = gateway_with_admin(&config(origin.addr), 2);
    let mut c = Raw::connect(gw.addr()).await;
    let refused: [&[u8]; 4] = [
        b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n",
        b"GET /aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: t\r\n\r\n",
        b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for req in refused {
        c.send(req).await;
        c.response().await;
    }
    // Over max_body while streaming, on a connection of its own (it closes).
    let mut cut = Raw::connect(gw.addr()).await;
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(b"3e9\r\n");
    req.extend_from_slice(&[b'v'; 1001]);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    cut.send(&req).await;
    assert!(cut.response().await.0.starts_with("http/1.1 413 "));
    let admin = gw.admin_addr().unwrap();
    let sample = |reason: &str| {
        format!(
            r#"strait_middleware_refusals_total{{middleware="limits",type="request_limits",reason="{reason}"}}"#
        )
    };
    for (reason, want) in [
        ("method_not_allowed", 2.0),
        ("too_many_headers", 1.0),
        ("headers_too_large", 0.0),
        ("url_too_long", 1.0),
        ("body_too_large", 1.0),
    ] {
        let got = within(metric_becomes(admin, &sample(reason), want, LIMIT)).await;
        assert_eq!(got, want, "{reason}");
    }
    let config = within(get(admin, "/config", &[])).await.json();
    assert_eq!(
        config["middlewares"]["limits"],
        serde_json::json!({
            "type": "request_limits",
            "max_body": 1000,
            "methods": ["GET", "POST"],
            "max_header_count": 5,
            "max_header_bytes": 100,
            "max_url_length": 20,
        })
    );
}
