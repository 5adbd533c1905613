//! One client connection: on a plain listener, tell HTTP/1.1 from HTTP/2 prior
//! knowledge by peeking at the first bytes; on a TLS listener, run the
//! handshake and let ALPN decide (plain HTTP sent there is answered 400, as
//! nginx does). Then serve it with hyper's connection for that protocol on a
//! task of its own.
//!
//! Each protocol gets its own task so the task's memory is sized for that
//! protocol alone. (hyper-util's `auto` connection is one enum holding either
//! protocol's state, and costs every idle HTTP/1.1 connection about 6 KiB for
//! the HTTP/2 state it does not use; measured with bench/run.sh.) For the
//! same reason the TLS handshake runs on a task of its own before the serving
//! task starts, and plain connections are served by code generic over the
//! stream, so they carry nothing of TLS.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::local::WorkerLocal;
use super::protocols::{Protocols, TlsListener};
use crate::context::ConnTls;
use crate::tls::server::{self as tls, HandshakeFailure};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The answer to plain HTTP sent to a TLS listener (nginx answers 400 too).
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Content-Type: text/plain\r\n\
    Content-Length: 42\r\n\
    Connection: close\r\n\r\n\
    plain HTTP request sent to a TLS listener\n";

/// How much of a plain HTTP request sent to a TLS listener is read (and
/// thrown away) after the answer, waiting for the client to close.
const PLAIN_HTTP_DISCARD: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Detects the protocol, then hands the connection to a task serving it.
pub(crate) async fn serve(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let open = OpenConnection::new(&local);
    let protocol = match tokio::time::timeout(protocols.first_bytes_timeout, detect(&stream)).await
    {
        Ok(Ok(p)) => p,
        // Closed, failed, or silent for too long: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    spawn_protocol(local, protocols, stream, peer, (), protocol, open);
}

/// Runs the TLS handshake of a connection accepted on TLS listener `index`
/// (within its `handshake_timeout`), then hands the connection to a task
/// serving the protocol ALPN chose: HTTP/2 for `h2`, else HTTP/1.1 (no
/// preface sniffing on TLS). A client that starts with plain HTTP is
/// answered 400 instead (within the same timeout).
pub(crate) async fn serve_tls(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let open = OpenConnection::new(&local);
    let Some(listener) = protocols.tls.get(index) else {
        return;
    };
    let deadline = Instant::now() + listener.handshake_timeout;
    if starts_plain_http(&stream, deadline).await {
        // Boxed: a rare path, kept out of every handshake's future.
        return Box::pin(refuse_plain_http(&local, listener, peer, stream, deadline)).await;
    }
    let handshake = tokio::time::timeout_at(deadline, listener.acceptor.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return handshake_failed(&local, listener, peer, HandshakeFailure::of(&e), &e)
        }
        Err(_) => {
            let e = io::Error::new(io::ErrorKind::TimedOut, "handshake not finished in time");
            return handshake_failed(&local, listener, peer, HandshakeFailure::Timeout, &e);
        }
    };
    if let Some(c) = local.counters() {
        c.tls_handshakes.inc();
    }
    let info = Rc::new(tls::connection_info(stream.get_ref().1));
    let protocol = match info.alpn {
        Some("h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    spawn_protocol(local, protocols, stream, peer, info, protocol, open);
}

/// Whether the client's first byte (peeked, not consumed) is an ASCII
/// capital letter, the start of an HTTP method; a TLS client starts with a
/// handshake record (0x16). Anything else, or nothing before `deadline`, is
/// left to the handshake to judge.
async fn starts_plain_http(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
    matches!(peeked, Ok(Ok(1))) && first[0].is_ascii_uppercase()
}

/// Answers plain HTTP sent to a TLS listener with a 400 and closes, all
/// before `deadline`; counted as a handshake failure (`protocol`).
async fn refuse_plain_http(
    local: &WorkerLocal,
    listener: &TlsListener,
    peer: SocketAddr,
    mut stream: TcpStream,
    deadline: Instant,
) {
    let e = io::Error::new(
        io::ErrorKind::InvalidData,
        "plain HTTP request sent to a TLS listener, answered 400",
    );
    handshake_failed(local, listener, peer, HandshakeFailure::Protocol, &e);
    let answer = async {
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await?;
        // The request is still unread: closing over unread bytes sends a
        // reset, which can destroy the answer before the client reads it. So
        // read until the client closes (bounded in bytes and by `deadline`).
        let mut discard = [0u8; 1024];
        let mut left = PLAIN_HTTP_DISCARD;
        while left > 0 {
            match stream.read(&mut discard).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout_at(deadline, answer).await;
}

/// Counts and logs a failed handshake. At `debug`, not `info`: clients
/// decide how often this happens (scanners, plain HTTP sent to the TLS port,
/// clients that distrust the certificate), so at `info` any client could fill
/// the log; the per-reason counter in `/metrics` is what operators watch.
fn handshake_failed(
    local: &WorkerLocal,
    listener: &TlsListener,
    peer: SocketAddr,
    reason: HandshakeFailure,
    error: &io::Error,
) {
    if let Some(c) = local.counters() {
        if let Some(i) = HandshakeFailure::ALL.iter().position(|r| *r == reason) {
            c.tls_handshake_failures[i].inc();
        }
    }
    tracing::debug!(
        client = %peer,
        listener = %listener.name,
        reason = reason.label(),
        error = %error,
        "TLS handshake failed"
    );
}

/// Spawns the task serving `stream` with `protocol`; the task owns `open`.
fn spawn_protocol<S, T>(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: S,
    peer: SocketAddr,
    tls: T,
    protocol: Protocol,
    open: OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: ConnTls,
{
    // Only HTTP/2 connections watch for shutdown (subscribing touches the
    // shared signal's refcount).
    let h2_shutdown = (protocol == Protocol::Http2).then(|| local.shutdown_signal());
    // Per request: its count in flight, the snapshot it keeps to the end
    // (one atomic load), and the proxy.
    let service = hyper::service::service_fn(move |req| {
        let tracked = local.in_flight.start();
        let snapshot = local.snapshot();
        let proxy = local.proxy.clone();
        crate::proxy::handle(proxy, snapshot, tracked, peer, tls.clone(), req)
    });
    let io = TokioIo::new(stream);
    let done = move |result: Result<(), hyper::Error>| {
        drop(open);
        if let Err(e) = result {
            tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
        }
    };
    match protocol {
        Protocol::Http1 => {
            tokio::task::spawn_local(async move {
                done(
                    protocols
                        .h1
                        .serve_connection(io, service)
                        .with_upgrades()
                        .await,
                )
            });
        }
        Protocol::Http2 => {
            // HTTP/2 clients multiplex, so a shutdown tells them with a
            // GOAWAY: no new streams, the open ones finish. (HTTP/1.1
            // connections carry no such watch: its size would be idle memory
            // on every keep-alive connection; the drain closes them.)
            let mut shutdown = h2_shutdown;
            tokio::task::spawn_local(async move {
                let conn = protocols.h2.serve_connection(io, service);
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    () = stopping(shutdown.as_mut()) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                done(result)
            });
        }
    }
}

/// Resolves when the gateway starts shutting down (never, if the signal is
/// gone: then the worker is going away anyway).
async fn stopping(shutdown: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    if let Some(signal) = shutdown {
        if signal.wait_for(|stop| *stop).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Counts a client connection as open in the worker's metrics while it lives.
struct OpenConnection(Rc<WorkerLocal>);

impl OpenConnection {
    fn new(local: &Rc<WorkerLocal>) -> Self {
        if let Some(c) = local.counters() {
            c.connections_total.inc();
            c.connections_active.inc();
        }
        OpenConnection(local.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(c) = self.0.counters() {
            c.connections_active.dec();
        }
    }
}

/// Peeks (without consuming) until the first bytes show the protocol.
async fn detect(stream: &TcpStream) -> io::Result<Protocol> {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(Protocol::Http1);
        }
        if n == PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // A preface split over packets (rare): the bytes already there keep
        // the socket readable, so wait a moment rather than spin on them.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ProxyBody;
    use http::{Request, Response};
    use hyper::body::Incoming;
    use tokio::io::AsyncWriteExt;

    async fn detect_after(chunks: &[&[u8]]) -> io::Result<Protocol> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for c in chunks {
                s.write_all(&c).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Hold the connection open a little, then close it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(s);
        });
        let (server, _) = listener.accept().await?;
        let result = tokio::time::timeout(Duration::from_secs(5), detect(&server))
            .await
            .expect("detect must finish");
        client.await.unwrap();
        result
    }

    #[test]
    fn the_plain_http_answer_has_its_body_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert_eq!(body, "plain HTTP request sent to a TLS listener\n");
    }

    /// The idle-memory cost of `.with_upgrades()` on an HTTP/1.1 server
    /// connection (see docs/architecture.md): at most 16 bytes.
    #[test]
    fn upgradeable_connection_size() {
        type Io = TokioIo<TcpStream>;
        struct Svc;
        impl hyper::service::Service<Request<Incoming>> for Svc {
            type Response = Response<ProxyBody>;
            type Error = io::Error;
            type Future = std::future::Ready<Result<Response<ProxyBody>, io::Error>>;
            fn call(&self, _: Request<Incoming>) -> Self::Future {
                std::future::ready(Ok(Response::new(ProxyBody::empty())))
            }
        }
        let plain = std::mem::size_of::<hyper::server::conn::http1::Connection<Io, Svc>>();
        let upgradeable =
            std::mem::size_of::<hyper::server::conn::http1::UpgradeableConnection<Io, Svc>>();
        eprintln!("http1 Connection {plain} B, with_upgrades {upgradeable} B");
        assert!(upgradeable <= plain + 16, "{plain} -> {upgradeable}");
    }

    #[tokio::test]
    async fn tells_the_protocols_apart() {
        assert_eq!(
            detect_after(&[b"GET / HTTP/1.1\r\n"]).await.unwrap(),
            Protocol::Http1
        );
        assert_eq!(detect_after(&[PREFACE]).await.unwrap(), Protocol::Http2);
        // The preface in pieces, and a method that starts like it.
        assert_eq!(
            detect_after(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n"])
                .await
                .unwrap(),
            Protocol::Http2
        );
        assert_eq!(
            detect_after(&[b"PRI", b"NT / HTTP/1.1\r\n"]).await.unwrap(),
            Protocol::Http1
        );
        // Closed before sending anything.
        assert!(detect_after(&[]).await.is_err());
    }
}

/// The size of what hyper keeps per client connection for each request: the
/// future the service returns. It is idle memory on every keep-alive
/// connection, so it may not grow unnoticed.
#[cfg(test)]
mod future_size {
    use std::mem::size_of;
    use std::net::SocketAddr;
    use std::rc::Rc;

    use http::Request;
    use hyper::body::Incoming;

    use crate::config::SnapshotRef;
    use crate::context::body::Tracked;
    use crate::proxy::ProxyState;

    /// The size of the future `R` that `f` returns, without calling it.
    fn future<F, R>(_: &F) -> usize
    where
        F: Fn(Rc<ProxyState>, SnapshotRef, Tracked, SocketAddr, (), Request<Incoming>) -> R,
    {
        size_of::<R>()
    }

    #[test]
    fn the_request_future_does_not_grow() {
        let size = future(&crate::proxy::handle::<()>);
        eprintln!("request future (plain connection): {size} B");
        // 3,360 B before the request path moved into proxy/, 2,944 B since,
        // in a debug and a release build alike.
        assert!(size <= 2_944, "the request future grew to {size} B");
    }
}
