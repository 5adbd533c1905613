//! WebSocket through the gateway: the `Upgrade` handshake reaches a real
//! WebSocket origin (tokio-tungstenite) over a dedicated connection, then the
//! tunnel carries messages both ways, in order; it closes on its idle
//! timeout and at shutdown, survives a reload, and counts in the metrics. An
//! upstream that refuses the upgrade is answered as is; a route without
//! upgrades proxies the request without `Upgrade`. HTTP/2 clients reach the
//! same origin with an extended CONNECT (RFC 8441). An upstream with TLS is
//! reached over TLS offering only http/1.1 (an upgrade has no HTTP/2 form
//! toward the origin), and one whose certificate fails verification answers
//! the upgrade 502.

mod common;
#[path = "common/origins.rs"]
mod origins;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use origins::{server_tls, TestCa};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket origin that echoes every data message; counts handshakes.
async fn echo_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, handshakes, _) = echo_origin_over(None).await;
    (addr, handshakes)
}

/// The ALPN protocol each TLS connection to an origin chose, in order.
type Alpns = Arc<Mutex<Vec<Option<String>>>>;

/// The echo origin, behind TLS with `tls` when given (recording the ALPN
/// protocol each connection chose).
async fn echo_origin_over(
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (SocketAddr, Arc<AtomicUsize>, Alpns) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let alpns = Alpns::default();
    let (count, seen) = (handshakes.clone(), alpns.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (count, seen, tls) = (count.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                let Some(config) = tls else {
                    return echo(stream, &count).await;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let alpn = stream.get_ref().1.alpn_protocol();
                seen.lock()
                    .unwrap()
                    .push(alpn.map(|p| String::from_utf8_lossy(p).into_owned()));
                echo(stream, &count).await
            });
        }
    });
    (addr, handshakes, alpns)
}

/// Accepts a WebSocket on `stream` and echoes its data messages until it
/// closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, handshakes: &AtomicUsize) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    handshakes.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(msg)) = ws.next().await {
        let echo = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => return,
            _ => continue,
        };
        if ws.send(echo).await.is_err() {
            return;
        }
    }
}

/// A WebSocket origin that pushes `n` numbered messages, then closes.
async fn push_origin(n: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                for i in 0..n {
                    if ws.send(Message::text(format!("push {i}"))).await.is_err() {
                        return;
                    }
                }
                let _ = ws.close(None).await;
            });
        }
    });
    addr
}

/// A gateway with a `/ws` route to `origin` (websocket allowed, the given
/// idle timeout), a `/plain` route with upgrades off, and the admin API on.
fn config(origin: SocketAddr, idle: &str, extra: &str) -> String {
    config_with(origin, "", idle, extra)
}

/// `config` with `upstream` added to the upstream's table.
fn config_with(origin: SocketAddr, upstream: &str, idle: &str, extra: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "10s"

[[listeners]]
address = "127.0.0.1:0"

[upstreams.chat]
endpoints = ["{origin}"]
connect_timeout = "1s"
{upstream}

[[routes]]
name = "ws"
match = {{ path_prefix = "/ws" }}
upstream = "chat"
middlewares = ["request_id"]
upgrades = ["websocket"]
tunnel_idle_timeout = "{idle}"
{extra}
"#
    )
}

async fn connect(gw: SocketAddr, path: &str) -> Client {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{gw}{path}"))
        .await
        .expect("the WebSocket handshake through the gateway");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    // The route's middlewares ran on the handshake's answer.
    assert!(resp.headers().contains_key("x-request-id"));
    ws
}

/// Deterministic pseudo-random messages: sizes 1 B to 64 KiB (mostly small,
/// one in eight up to 64 KiB), text and binary.
fn messages(n: usize) -> Vec<Message> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let size = if r % 8 == 0 {
                1 + (r >> 8) as usize % (64 * 1024)
            } else {
                1 + (r >> 8) as usize % 1024
            };
            if r % 2 == 0 {
                let text: String = (0..size)
                    .map(|j| (b'a' + ((i + j) % 26) as u8) as char)
                    .collect();
                Message::text(text)
            } else {
                let bin: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
                Message::binary(bin)
            }
        })
        .collect()
}

/// Sends `msgs` and reads every echo at the same time; checks the order.
async fn echo_all(ws: Client, msgs: Vec<Message>) -> Client {
    let (mut tx, mut rx) = ws.split();
    let expected = msgs.clone();
    let send = async move {
        for m in msgs {
            tx.send(m).await.unwrap();
        }
        tx
    };
    let receive = async move {
        for (i, want) in expected.iter().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(10), rx.next())
                .await
                .unwrap_or_else(|_| panic!("echo {i} did not come back"))
                .unwrap()
                .unwrap();
            assert!(&got == want, "echo {i} differs (len {})", got.len());
        }
        rx
    };
    let (tx, rx) = tokio::join!(send, receive);
    tx.reunite(rx).unwrap()
}

/// Waits until the client side sees the tunnel end (close, EOF or error).
async fn ended(ws: &mut Client, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Err(_) => panic!("the tunnel was not closed within {limit:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return started.elapsed(),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_of_mixed_sizes_echo_in_order_both_ways_at_once() {
    let (origin, handshakes) = echo_origin().await;
    let gw = gateway_with_admin(&config(origin, "300s", ""), 2);
    let admin = gw.admin_addr().unwrap();
    let ws = connect(gw.addr(), "/ws/echo").await;
    let msgs = messages(10_000);
    let bytes: usize = msgs.iter().map(Message::len).sum();
    let started = Instant::now();
    let mut ws = echo_all(ws, msgs).await;
    let took = started.elapsed();
    eprintln!(
        "10,000 messages ({:.1} MiB each way) echoed through the gateway in {took:?}",
        bytes as f64 / (1024.0 * 1024.0)
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(metric(admin, "strait_tunnels_active").await, 1.0);
    assert_eq!(
        metric(admin, r#"strait_tunnels_total{kind="upgrade"}"#).await,
        1.0
    );
    // The close handshake, then both TCP ends close (the origin's first).
    ws.close(None).await.unwrap();
    ended(&mut ws, Duration::from_secs(3)).await;
    drop(ws);
    assert_eq!(
        metric_becomes(admin, "strait_tunnels_active", 0.0, Duration::from_secs(3)).await,
        0.0
    );
    // Every data byte went each way (plus frame headers and the close).
    let up = metric(
        admin,
        r#"strait_tunnel_bytes_total{direction="client_to_upstream"}"#,
    )
    .await;
    let down = metric(
        admin,
        r#"strait_tunnel_bytes_total{direction="upstream_to_client"}"#,
    )
    .await;
    assert!(
        up >= bytes as f64 && down >= bytes as f64,
        "{up} {down} {bytes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_pushes_a_stream_the_client_reads() {
    let origin = push_origin(500).await;
    let gw = gateway(&config(origin, "300s", ""));
    let mut ws = connect(gw.addr(), "/ws/feed").await;
    for i in 0..500 {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a pushed message")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text(format!("push {i}")));
    }
    // The origin's close handshake comes through too.
    assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_after_its_idle_timeout() {
    let (origin, _) = echo_origin().await;
    let gw = gateway_with_admin(&config(origin, "300ms", ""), 1);
    let admin = gw.admin_addr().unwrap();
    let ws = connect(gw.addr(), "/ws").await;
    // Traffic keeps it open past the timeout…
    let mut ws = echo_all(ws, messages(5)).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws = echo_all(ws, messages(5)).await;
    }
    assert_eq!(metric(admin, "strait_tunnels_active").await, 1.0);
    // …silence closes it.
    let took = ended(&mut ws, Duration::from_secs(3)).await;
    eprintln!("idle tunnel closed {took:?} after the last echo (timeout 300ms)");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(
        metric_becomes(admin, "strait_tunnels_active", 0.0, Duration::from_secs(3)).await,
        0.0
    );
    assert_eq!(
        metric(admin, "strait_tunnels_idle_timeout_total").await,
        1.0
    );
    assert_eq!(
        metric(admin, r#"strait_tunnels_total{kind="upgrade"}"#).await,
        1.0
    );
    // A new tunnel works.
    let ws = connect(gw.addr(), "/ws").await;
    echo_all(ws, messages(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_upgrade_is_answered_as_is() {
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    for (status, body) in [(200, "plain page"), (400, "no upgrade here")] {
        let origin = Origin::fixed("refuser", status, body);
        let gw = gateway(&config(origin.addr, "300s", ""));
        let reply = get(gw.addr(), "/ws", &upgrade).await;
        assert_eq!(reply.status, status);
        assert_eq!(reply.text(), body);
        assert_eq!(reply.headers["x-origin"], "refuser");
        assert!(!reply.headers.contains_key("upgrade"));
        // And a WebSocket client is told so.
        match tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr())).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), status)
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("switched although the origin answered {status}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_upgrades_proxies_the_request_without_upgrade() {
    let origin = Origin::echo();
    let plain = r#"
[[routes]]
name = "plain"
match = { path_prefix = "/plain" }
upstream = "chat"
upgrades = []
"#;
    let gw = gateway(&config(origin.addr, "300s", plain));
    let upgrade = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
    ];
    let mut client = H1::connect(gw.addr()).await;
    let reply = client.send(request("GET", "/plain/x", &upgrade)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.seen("upgrade").is_empty());
    assert!(reply.seen("connection").is_empty());
    assert_eq!(reply.json()["path"], "/plain/x");
    // The connection stays an ordinary keep-alive one.
    let reply = client.get("/plain/y").await;
    assert_eq!(reply.json()["path"], "/plain/y");
    // A protocol the route does not list is no upgrade either.
    let reply = get(
        gw.addr(),
        "/ws",
        &[("connection", "upgrade"), ("upgrade", "h2c")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.seen("upgrade").is_empty());
    // `Upgrade` without `Connection: upgrade` is not an upgrade.
    let reply = get(gw.addr(), "/ws", &[("upgrade", "websocket")]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.seen("upgrade").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_an_open_tunnel_and_finishes() {
    let (origin, _) = echo_origin().await;
    let gw = gateway_with(&config(origin, "300s", ""), 1);
    let ws = connect(gw.addr(), "/ws").await;
    let mut ws = echo_all(ws, messages(20)).await;
    let started = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || gw.shutdown());
    let closed = ended(&mut ws, Duration::from_secs(3)).await;
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the gateway finishes")
        .unwrap();
    let finished = started.elapsed();
    eprintln!("shutdown: the client saw the tunnel close after {closed:?}, the gateway finished after {finished:?}");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    assert!(finished < Duration::from_secs(3), "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_break_an_open_tunnel() {
    let (origin, handshakes) = echo_origin().await;
    let gw = gateway(&config(origin, "300s", ""));
    let ws = connect(gw.addr(), "/ws").await;
    let ws = echo_all(ws, messages(100)).await;
    // A different configuration: another route, another idle timeout.
    let extra = r#"
[[routes]]
name = "other"
match = { path_prefix = "/other" }
upstream = "chat"
"#;
    let generation = gw
        .reload_toml("test.toml", &config(origin, "100s", extra))
        .unwrap();
    assert_eq!(generation, 2);
    let mut ws = echo_all(ws, messages(100)).await;
    // New tunnels run on the new configuration.
    let ws2 = connect(gw.addr(), "/ws").await;
    echo_all(ws2, messages(10)).await;
    assert_eq!(handshakes.load(Ordering::SeqCst), 2);
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_extended_connect_reaches_the_websocket_origin() {
    let (origin, handshakes) = echo_origin().await;
    let plain = r#"
[[routes]]
name = "plain"
match = { path_prefix = "/plain" }
upstream = "chat"
upgrades = []
"#;
    let gw = gateway(&config(origin, "300s", plain));
    let addr = gw.addr();
    let mut sender = h2_connect(addr).await;
    let connect = |path: &str| {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://{addr}{path}"))
            .header("sec-websocket-version", "13")
            .body(Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req
    };
    // The server's SETTINGS (extended CONNECT on) arrive with the handshake.
    let mut resp = sender.send_request(connect("/ws/h2")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers().contains_key("sec-websocket-accept"));
    let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    let msgs = messages(300);
    for m in &msgs {
        ws.send(m.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(got == *m);
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    // Other streams of the connection carry on meanwhile.
    let resp = sender.send_request(connect("/plain")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    ws.close(None).await.unwrap();
}

/// A gateway to a WebSocket echo origin behind TLS (its certificate from
/// `origin_ca`, ALPN offering h2 and http/1.1), trusting `trusted`; the
/// upstream speaks `protocol = "auto"`, so its requests would offer h2.
async fn through_tls(
    origin_ca: &TestCa,
    trusted: &TestCa,
) -> (common::TestGateway, Arc<AtomicUsize>, Alpns) {
    let tls = server_tls(
        &origin_ca.server(&["ws.internal"]),
        &["h2", "http/1.1"],
        None,
    );
    let (origin, handshakes, alpns) = echo_origin_over(Some(tls)).await;
    // Read when the gateway starts, below.
    let pem = TempDir::new("websocket-tls");
    let ca_file = pem.write("ca.pem", &trusted.cert_pem);
    let upstream = format!(
        "protocol = \"auto\"\n\n[upstreams.chat.tls]\nca_file = {ca_file:?}\nserver_name = \"ws.internal\"\n"
    );
    let gw = gateway(&config_with(origin, &upstream, "300s", ""));
    (gw, handshakes, alpns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reaches_a_tls_origin_over_http11() {
    let ca = TestCa::new("origin CA");
    let (gw, handshakes, alpns) = through_tls(&ca, &ca).await;
    // The client side is plain; the gateway adds TLS toward the origin.
    let ws = connect(gw.addr(), "/ws/tls").await;
    let msgs: Vec<Message> = (0..200)
        .map(|i| Message::text(format!("tls {i}")))
        .collect();
    let mut ws = echo_all(ws, msgs).await;
    ws = echo_all(ws, messages(50)).await;
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
    // The origin offered h2 too; the upgrade's connection asked only for
    // http/1.1.
    assert_eq!(*alpns.lock().unwrap(), [Some("http/1.1".to_string())]);
    ws.close(None).await.unwrap();
    ended(&mut ws, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_origin_with_an_untrusted_certificate_answers_the_upgrade_502() {
    let ca = TestCa::new("origin CA");
    let other = TestCa::new("some other CA");
    let (gw, handshakes, alpns) = through_tls(&ca, &other).await;
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{}/ws/tls", gw.addr())),
    )
    .await
    .expect("the gateway answers");
    match attempt {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
            let body = resp.body().as_deref().unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(body),
                "502 Bad Gateway: upstream TLS certificate verification failed\n"
            );
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("switched through an untrusted origin"),
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
    assert!(alpns.lock().unwrap().is_empty());
}
