//! gRPC through the proxy with a real gRPC stack on both sides: tonic's
//! client (`tonic::client::Grpc` with the prost codec) over HTTP/2 prior
//! knowledge to the gateway, the gateway over h2c to a tonic server. The
//! messages and the service plumbing are written by hand (no protoc).
//!
//! Shown: unary, server-streaming (1,000 messages in order, the first
//! arriving before the server sends the second), client-streaming (the
//! server reads the first message before the client sends the second),
//! bidirectional ping-pong; error statuses with custom metadata, as a
//! trailers-only response and as trailers after messages; the proxy's own
//! failures in gRPC form: `grpc-timeout` shorter than the handler
//! (DEADLINE_EXCEEDED), an upstream that is down (UNAVAILABLE), no route
//! (UNIMPLEMENTED); and the raw trailers-only response seen by hyper.
mod common;
use common::*;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http::uri::PathAndQuery;
use http::{Request as HttpRequest, Response as HttpResponse, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, Notify};
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::server::{
    ClientStreamingService, NamedService, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// Hang guard of each step (not a speed check).
const LIMIT: Duration = Duration::from_secs(20);

const SERVICE: &str = "strait.test.Calls";

/// The one message of the test service.
#[derive(Clone, PartialEq, prost::Message)]
struct Num {
    #[prost(uint64, tag = "1")]
    value: u64,
    #[prost(string, tag = "2")]
    text: String,
}

fn num(value: u64) -> Num {
    Num {
        value,
        text: String::new(),
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Num, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// What the test and its server's handlers tell each other (one process).
#[derive(Default)]
struct Signals {
    /// The client got the first streamed message: the server sends the rest.
    first_received: Notify,
    /// The server read the first message of a client stream.
    first_read: Notify,
    /// The `grpc-timeout` the slow handler was called with.
    slow_timeout: Mutex<Option<String>>,
}

/// The test service: a hand-written router over tonic's server-side codec
/// machinery (what tonic-build would generate).
#[derive(Clone)]
struct Calls {
    signals: Arc<Signals>,
}

impl NamedService for Calls {
    const NAME: &'static str = SERVICE;
}

impl Service<HttpRequest<Body>> for Calls {
    type Response = HttpResponse<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest<Body>) -> Self::Future {
        let s = self.signals.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Num, Num>::default());
            let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
            Ok(match method.as_str() {
                "Unary" => grpc.unary(Handler(s), req).await,
                "ServerStream" => grpc.server_streaming(Handler(s), req).await,
                "ClientStream" => grpc.client_streaming(Handler(s), req).await,
                "Bidi" => grpc.streaming(Handler(s), req).await,
                "Fail" => grpc.unary(Fail, req).await,
                "FailLate" => grpc.server_streaming(Fail, req).await,
                "Slow" => grpc.unary(Slow(s), req).await,
                _ => Status::unimplemented(method).into_http(),
            })
        })
    }
}

struct Handler(Arc<Signals>);

/// Unary: doubles the value; the text names the `x-forwarded-for` (the
/// proxy adds it) and the `te` the server saw.
impl UnaryService<Num> for Handler {
    type Response = Num;
    type Future = BoxFuture<Response<Num>>;

    fn call(&mut self, req: Request<Num>) -> Self::Future {
        Box::pin(async move {
            let seen = |name| {
                req.metadata()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let (xff, te) = (seen("x-forwarded-for"), seen("te"));
            let n = req.into_inner();
            Ok(Response::new(Num {
                value: n.value * 2,
                text: format!("{} via {xff} te={te}", n.text),
            }))
        })
    }
}

/// Server-streaming: sends `0..value`; after the first message it waits
/// until the client says it has it, so a proxy that held the response back
/// would stall the call.
impl ServerStreamingService<Num> for Handler {
    type Response = Num;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Response<BoxStream>>;

    fn call(&mut self, req: Request<Num>) -> Self::Future {
        let signals = self.0.clone();
        Box::pin(async move {
            let count = req.into_inner().value;
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(async move {
                let _ = tx.send(Ok(num(0))).await;
                let waited = tokio::time::timeout(LIMIT, signals.first_received.notified()).await;
                if waited.is_err() {
                    let _ = tx
                        .send(Err(Status::aborted("first message never arrived")))
                        .await;
                    return;
                }
                for i in 1..count {
                    if tx.send(Ok(num(i))).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(receiver_stream(rx)))
        })
    }
}

/// Client-streaming: sums the values, counts the messages; tells the test
/// when it has read the first one.
impl ClientStreamingService<Num> for Handler {
    type Response = Num;
    type Future = BoxFuture<Response<Num>>;

    fn call(&mut self, req: Request<Streaming<Num>>) -> Self::Future {
        let signals = self.0.clone();
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut sum, mut count) = (0, 0);
            while let Some(n) = stream.message().await? {
                if count == 0 {
                    signals.first_read.notify_one();
                }
                sum += n.value;
                count += 1;
            }
            Ok(Response::new(Num {
                value: sum,
                text: count.to_string(),
            }))
        })
    }
}

/// Bidirectional: answers each message with its value + 1,000,000, as it
/// arrives.
impl StreamingService<Num> for Handler {
    type Response = Num;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Response<BoxStream>>;

    fn call(&mut self, req: Request<Streaming<Num>>) -> Self::Future {
        Box::pin(async move {
            let replies = futures_util::stream::unfold(Some(req.into_inner()), |s| async move {
                let mut s = s?;
                match s.message().await {
                    Ok(Some(n)) => Some((Ok(num(n.value + 1_000_000)), Some(s))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            });
            Ok(Response::new(Box::pin(replies) as BoxStream))
        })
    }
}

/// Errors: unary fails at once (a trailers-only response), server-streaming
/// after two messages (trailers after data); both with custom metadata.
struct Fail;

fn detail(key: &'static str, value: &'static str) -> MetadataMap {
    let mut md = MetadataMap::new();
    md.insert(key, value.parse().unwrap());
    md
}

impl UnaryService<Num> for Fail {
    type Response = Num;
    type Future = BoxFuture<Response<Num>>;

    fn call(&mut self, _: Request<Num>) -> Self::Future {
        Box::pin(async {
            Err(Status::with_metadata(
                Code::NotFound,
                "no such thing: x",
                detail("x-detail", "custom value"),
            ))
        })
    }
}

impl ServerStreamingService<Num> for Fail {
    type Response = Num;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Response<BoxStream>>;

    fn call(&mut self, _: Request<Num>) -> Self::Future {
        Box::pin(async {
            let items = vec![
                Ok(num(1)),
                Ok(num(2)),
                Err(Status::with_metadata(
                    Code::Aborted,
                    "failed after 2 (100% sure)",
                    detail("x-late", "yes"),
                )),
            ];
            Ok(Response::new(
                Box::pin(futures_util::stream::iter(items)) as BoxStream
            ))
        })
    }
}

/// Answers after 10 s; records the `grpc-timeout` it was called with.
struct Slow(Arc<Signals>);

impl UnaryService<Num> for Slow {
    type Response = Num;
    type Future = BoxFuture<Response<Num>>;

    fn call(&mut self, req: Request<Num>) -> Self::Future {
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *self.0.slow_timeout.lock().unwrap() = timeout;
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::new(num(0)))
        })
    }
}

fn receiver_stream(rx: mpsc::Receiver<Result<Num, Status>>) -> BoxStream {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Accepted connections of a fresh 127.0.0.1 listener, as a stream.
async fn incoming() -> (
    SocketAddr,
    impl Stream<Item = std::io::Result<tokio::net::TcpStream>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    (addr, stream)
}

/// The service served by `tonic::transport::Server`.
async fn tonic_server(signals: Arc<Signals>) -> SocketAddr {
    let (addr, incoming) = incoming().await;
    let server = tonic::transport::Server::builder()
        .add_service(Calls { signals })
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    addr
}

/// The service served by hyper's HTTP/2 server alone. tonic's transport
/// server enforces `grpc-timeout` itself, at about the moment the proxy
/// does; without it, a deadline can only be answered by the proxy.
async fn plain_h2_server(signals: Arc<Signals>) -> SocketAddr {
    use futures_util::StreamExt as _;
    let (addr, incoming) = incoming().await;
    tokio::spawn(async move {
        let mut incoming = Box::pin(incoming);
        while let Some(Ok(stream)) = incoming.next().await {
            let calls = Calls {
                signals: signals.clone(),
            };
            let service = hyper::service::service_fn(move |req: HttpRequest<Incoming>| {
                let mut calls = calls.clone();
                async move { calls.call(req.map(Body::new)).await }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A gateway with one catch-all route to an h2c upstream at `upstream`,
/// plus `more` TOML.
#[track_caller]
fn grpc_gateway(upstream: SocketAddr, more: &str) -> common::TestGateway {
    gateway(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.grpc]
endpoints = ["{upstream}"]
protocol = "h2c"
connect_timeout = "1s"
response_header_timeout = "5s"

[[routes]]
name = "grpc"
upstream = "grpc"
{more}
"#
    ))
}

/// tonic's client over a tonic `Channel` (HTTP/2 prior knowledge).
async fn client(gateway: SocketAddr) -> Grpc<Channel> {
    let channel = Endpoint::from_shared(format!("http://{gateway}"))
        .unwrap()
        .connect()
        .await
        .expect("HTTP/2 connection to the gateway");
    Grpc::new(channel)
}

fn path(method: &str) -> PathAndQuery {
    format!("/{SERVICE}/{method}").parse().unwrap()
}

fn codec() -> ProstCodec<Num, Num> {
    ProstCodec::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_through_the_proxy() {
    let upstream = tonic_server(Arc::default()).await;
    let gw = grpc_gateway(upstream, "");
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;
        for i in 0..20u64 {
            c.ready().await.unwrap();
            let req = Request::new(Num {
                value: i,
                text: format!("call {i}"),
            });
            let reply = c.unary(req, path("Unary"), codec()).await.unwrap();
            let reply = reply.into_inner();
            assert_eq!(reply.value, i * 2);
            assert_eq!(reply.text, format!("call {i} via 127.0.0.1 te=trailers"));
        }
    })
    .await
    .expect("unary calls finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_passes_each_message_as_sent() {
    let signals = Arc::new(Signals::default());
    let upstream = tonic_server(signals.clone()).await;
    let gw = grpc_gateway(upstream, "");
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;
        c.ready().await.unwrap();
        let reply = c
            .server_streaming(Request::new(num(1000)), path("ServerStream"), codec())
            .await
            .unwrap();
        let mut stream = reply.into_inner();
        // The server sends the second message only once this one arrived.
        let first = stream.message().await.unwrap().expect("first message");
        assert_eq!(first.value, 0);
        signals.first_received.notify_one();
        let mut next = 1;
        while let Some(m) = stream.message().await.unwrap() {
            assert_eq!(m.value, next, "in order");
            next += 1;
        }
        assert_eq!(next, 1000);
    })
    .await
    .expect("server stream finished (a buffering proxy stalls it)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_passes_each_message_as_sent() {
    let signals = Arc::new(Signals::default());
    let upstream = tonic_server(signals.clone()).await;
    let gw = grpc_gateway(upstream, "");
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;
        c.ready().await.unwrap();
        // Sends 1, then waits until the server has read it, then 2..=100.
        let s = signals.clone();
        let messages = futures_util::stream::unfold(1u64, move |i| {
            let s = s.clone();
            async move {
                if i > 100 {
                    return None;
                }
                if i == 2 {
                    s.first_read.notified().await;
                }
                Some((num(i), i + 1))
            }
        });
        let reply = c
            .client_streaming(Request::new(messages), path("ClientStream"), codec())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.value, 5050);
        assert_eq!(reply.text, "100");
    })
    .await
    .expect("client stream finished (a buffering proxy stalls it)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_ping_pong() {
    let upstream = tonic_server(Arc::default()).await;
    let gw = grpc_gateway(upstream, "");
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;
        c.ready().await.unwrap();
        let (tx, rx) = mpsc::channel::<Num>(1);
        let outgoing =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        tx.send(num(0)).await.unwrap();
        let reply = c
            .streaming(Request::new(outgoing), path("Bidi"), codec())
            .await
            .unwrap();
        let mut replies = reply.into_inner();
        // Each message goes only after the reply to the previous one came
        // back: nothing can be held until the end of either stream.
        for i in 0..200u64 {
            let m = replies.message().await.unwrap().expect("a reply");
            assert_eq!(m.value, i + 1_000_000);
            if i < 199 {
                tx.send(num(i + 1)).await.unwrap();
            }
        }
        drop(tx);
        assert!(replies.message().await.unwrap().is_none(), "stream ends OK");
    })
    .await
    .expect("ping-pong finished (a buffering proxy stalls it)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_and_trailer_metadata_arrive_intact() {
    let upstream = tonic_server(Arc::default()).await;
    let gw = grpc_gateway(upstream, "");
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;

        // Trailers-only: status, message and metadata in the one HEADERS.
        c.ready().await.unwrap();
        let status = c
            .unary(Request::new(num(1)), path("Fail"), codec())
            .await
            .expect_err("the handler fails");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such thing: x");
        assert_eq!(status.metadata().get("x-detail").unwrap(), "custom value");

        // Trailers after two messages.
        c.ready().await.unwrap();
        let mut stream = c
            .server_streaming(Request::new(num(1)), path("FailLate"), codec())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().value, 1);
        assert_eq!(stream.message().await.unwrap().unwrap().value, 2);
        let status = stream.message().await.expect_err("the stream fails");
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(status.message(), "failed after 2 (100% sure)");
        assert_eq!(status.metadata().get("x-late").unwrap(), "yes");

        // A method the server does not have: its own UNIMPLEMENTED.
        c.ready().await.unwrap();
        let status = c
            .unary(Request::new(num(1)), path("Missing"), codec())
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(status.message(), "Missing");
    })
    .await
    .expect("calls finished");
}

/// A `tower::Service` over one hyper HTTP/2 connection, for tonic's client.
/// Unlike a tonic `Channel`, it does not enforce `grpc-timeout` itself (the
/// channel would end the call with its own CANCELLED at the deadline), so
/// the client sees what the proxy answers.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<Body>);

impl Service<HttpRequest<Body>> for H2 {
    type Response = HttpResponse<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

async fn h2_client(gateway: SocketAddr) -> Grpc<H2> {
    let sender = h2_connect(gateway).await;
    Grpc::with_origin(H2(sender), "http://grpc.test".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exceeded_is_answered_by_the_proxy_in_grpc_form() {
    let signals = Arc::new(Signals::default());
    let upstream = plain_h2_server(signals.clone()).await;
    // Requests carrying `x-route: short` go to a route with a 300 ms timeout.
    let gw = grpc_gateway(
        upstream,
        r#"
[[routes]]
name = "short"
upstream = "grpc"
timeout = "300ms"
match = { headers = [{ name = "x-route", value = "short" }] }
"#,
    );
    tokio::time::timeout(LIMIT, async {
        let mut c = h2_client(gw.addr()).await;

        // The call's own deadline.
        c.ready().await.unwrap();
        let mut req = Request::new(num(1));
        req.set_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let status = c
            .unary(req, path("Slow"), codec())
            .await
            .expect_err("the deadline passes first");
        let took = started.elapsed();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(
            status.message(),
            "grpc-timeout reached before the upstream responded"
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // Well before the handler's 10 s.
        assert!(took < Duration::from_secs(5), "{took:?}");
        // The header went on to the server (tonic writes microseconds).
        let seen = signals.slow_timeout.lock().unwrap().take();
        assert!(
            seen.as_deref().is_some_and(|t| t.ends_with('u')),
            "{seen:?}"
        );

        // The route's timeout is the shorter: it wins, with the same code.
        c.ready().await.unwrap();
        let mut req = Request::new(num(1));
        req.set_timeout(Duration::from_secs(30));
        req.metadata_mut()
            .insert("x-route", "short".parse().unwrap());
        let started = Instant::now();
        let status = c.unary(req, path("Slow"), codec()).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(status.message(), "route timeout reached");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    })
    .await
    .expect("calls finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_failures_are_answered_in_grpc_form() {
    // The upstream is down.
    let gw = grpc_gateway(dead_addr(), "");
    // No route matches gRPC paths.
    let unrouted = gateway(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.grpc]
endpoints = ["{}"]
protocol = "h2c"

[[routes]]
upstream = "grpc"
match = {{ path_prefix = "/other" }}
"#,
        dead_addr()
    ));
    tokio::time::timeout(LIMIT, async {
        let mut c = client(gw.addr()).await;
        c.ready().await.unwrap();
        let status = c
            .unary(Request::new(num(1)), path("Unary"), codec())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "upstream refused the connection");

        let mut c = client(unrouted.addr()).await;
        c.ready().await.unwrap();
        let status = c
            .unary(Request::new(num(1)), path("Unary"), codec())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert_eq!(status.message(), "no route matches this request");
    })
    .await
    .expect("calls finished");
}

/// What the proxy's gRPC answer looks like on the wire: HTTP 200, gRPC
/// content type, status and message in the headers, and the stream ended by
/// the HEADERS frame (trailers-only). A request that is not gRPC still gets
/// the plain 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_trailers_only_answer_for_a_dead_upstream() {
    let gw = grpc_gateway(dead_addr(), "");
    tokio::time::timeout(LIMIT, async {
        let mut sender = h2_connect(gw.addr()).await;
        let request = |content_type: &str| {
            HttpRequest::builder()
                .method("POST")
                .uri(format!("http://grpc.test/{SERVICE}/Unary"))
                .version(Version::HTTP_2)
                .header("content-type", content_type)
                .header("te", "trailers")
                // One empty, uncompressed message.
                .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                .unwrap()
        };

        for content_type in ["application/grpc", "application/grpc+proto"] {
            sender.ready().await.unwrap();
            let resp = sender.send_request(request(content_type)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let h = resp.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["grpc-status"], "14");
            assert_eq!(h["grpc-message"], "upstream refused the connection");
            assert!(!h.contains_key("content-length"), "{h:?}");
            assert!(resp.body().is_end_stream(), "trailers-only: no DATA");
            let (_, body) = resp.into_parts();
            let collected = body.collect().await.unwrap();
            assert!(collected.trailers().is_none());
            assert!(collected.to_bytes().is_empty());
        }

        // Not gRPC (gRPC-Web included): the plain answer.
        for content_type in ["application/json", "application/grpc-web"] {
            sender.ready().await.unwrap();
            let resp = sender.send_request(request(content_type)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{content_type}");
            assert!(!resp.headers().contains_key("grpc-status"));
        }
    })
    .await
    .expect("requests finished");
}
