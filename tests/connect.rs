//! Plain `CONNECT host:port` tunnelling (`[connect]`): off by default (405);
//! an allowed destination gets 200 and then the bytes flow both ways, with
//! half-close passed on; a destination not listed is refused (403); a dead
//! one answers 502. HTTP/2 clients tunnel the same way.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(connect: &str) -> String {
    let origin = dead_addr();
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.app]
endpoints = ["{origin}"]

[[routes]]
upstream = "app"
{connect}
"#
    )
}

/// Sends `CONNECT target` on a new connection; returns the status and the
/// connection (positioned after the answer's head).
async fn connect(gw: SocketAddr, target: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read the head byte by byte so that no tunnel byte is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("an answer to CONNECT")
            .unwrap();
        assert_eq!(n, 1, "closed before the end of the head: {head:?}");
        head.push(b[0]);
        assert!(head.len() < 4096);
    }
    let text = String::from_utf8(head).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_when_not_configured() {
    let echo = tcp_echo().await;
    let gw = gateway(&config(""));
    let (status, _) = connect(gw.addr(), &echo.to_string()).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_destination_tunnels_bytes_both_ways() {
    let echo = tcp_echo().await;
    let gw = gateway_with_admin(
        &config(&format!(
            "[connect]\nallow = [\"{echo}\"]\nidle_timeout = \"10s\"\n"
        )),
        2,
    );
    let admin = gw.admin_addr().unwrap();
    let (status, stream) = connect(gw.addr(), &echo.to_string()).await;
    assert_eq!(status, 200);
    // 1 MiB up while reading the echo down, then a half-close: the echo
    // server sees the FIN, finishes, and closes its side in turn.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7) as u8).collect();
    let (mut rx, mut tx) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        tx.write_all(&sent).await.unwrap();
        tx.shutdown().await.unwrap();
        tx
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rx.read_to_end(&mut got))
        .await
        .expect("the echo ends after the half-close")
        .unwrap();
    writer.await.unwrap();
    assert!(got == data, "{} bytes back", got.len());
    assert_eq!(
        metric(admin, r#"strait_tunnels_total{kind="connect"}"#).await,
        1.0
    );
    assert_eq!(
        metric_becomes(admin, "strait_tunnels_active", 0.0, Duration::from_secs(3)).await,
        0.0
    );
    assert_eq!(
        metric(
            admin,
            r#"strait_tunnel_bytes_total{direction="client_to_upstream"}"#
        )
        .await,
        data.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_not_listed_are_forbidden() {
    let echo = tcp_echo().await;
    let other = tcp_echo().await;
    let gw = gateway(&config(&format!(
        "[connect]\nallow = [\"{echo}\", \"10.0.0.0/8:443\", \"localhost:{}\"]\n",
        other.port()
    )));
    for target in [
        other.to_string(),                    // the IP of a listed name
        format!("localhost:{}", echo.port()), // a name for a listed IP
        "10.1.2.3:80".into(),                 // in the network, wrong port
        "example.com:443".into(),
    ] {
        let (status, _) = connect(gw.addr(), &target).await;
        assert_eq!(status, 403, "{target}");
    }
    // A listed name is resolved (off the worker thread) and connected.
    let (status, mut s) = connect(gw.addr(), &format!("localhost:{}", other.port())).await;
    assert_eq!(status, 200);
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_answers_502() {
    let dead = dead_addr();
    let gw = gateway(&config(&format!("[connect]\nallow = [\"{dead}\"]\n")));
    let (status, _) = connect(gw.addr(), &dead.to_string()).await;
    assert_eq!(status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connect_tunnels_too() {
    let echo = tcp_echo().await;
    let gw = gateway(&config(&format!("[connect]\nallow = [\"{echo}\"]\n")));
    let mut sender = h2_connect(gw.addr()).await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(echo.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut tunnel = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    for round in 0..50u8 {
        let msg = vec![round; 1000 + usize::from(round)];
        tunnel.write_all(&msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    // Not allowed over HTTP/2 either.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("10.9.9.9:22")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
