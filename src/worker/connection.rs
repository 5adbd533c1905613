//! One client connection: on a plain listener, tell HTTP/1.1 from HTTP/2 prior
//! knowledge by peeking at the first bytes; on a TLS listener, run the
//! handshake and let ALPN decide (plain HTTP sent there is answered 400, as
//! nginx does). HTTP/1.1, plain or TLS, is then served by our own loop
//! (`http1.rs`); HTTP/2 by hyper's connection on a task of its own.
//!
//! Each protocol gets its own task so the task's memory is sized for that
//! protocol alone. (hyper-util's `auto` connection is one enum holding either
//! protocol's state, and costs every idle HTTP/1.1 connection about 6 KiB for
//! the HTTP/2 state it does not use; measured with bench/run.sh.) For the
//! same reason the TLS handshake runs on a task of its own before the serving
//! task starts, and plain connections are served by code generic over the
//! stream, so they carry nothing of TLS.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use nix::sys::socket::{recv, MsgFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::budget::{Refused, Ticket, ROOM_WAIT};
use super::connections::{Conn, Registered, Watched};
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

/// How long an HTTP/2 connection with no stream open may take to close after
/// its GOAWAY (hyper waits for the answer to a PING first).
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How much of a plain HTTP request sent to a TLS listener is read (and
/// thrown away) after the answer, waiting for the client to close.
const PLAIN_HTTP_DISCARD: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Detects the protocol, then hands the connection to a task serving it.
/// The header timer (`server.header_read_timeout`, from the accept) runs in
/// the worker's registry: detection ends when the worker closes the
/// connection.
pub(crate) async fn serve(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: TcpStream,
    peer: SocketAddr,
    open: OpenConnection,
) {
    let Some(open) = open.admitted().await else {
        return;
    };
    let protocol = tokio::select! {
        detected = detect(&stream) => match detected {
            Ok(p) => p,
            // Closed or failed before it said anything: nothing to answer.
            Err(_) => return,
        },
        _ = open.conn().closing() => return,
    };
    if protocol == Protocol::Http1 {
        // Plain HTTP/1.1 is our own (`http1.rs`), on this task.
        return super::http1::serve(local, protocols, stream, peer, (), open).await;
    }
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
    open: OpenConnection,
) {
    let Some(open) = open.admitted().await else {
        return;
    };
    let Some(listener) = protocols.tls.get(index) else {
        return;
    };
    let deadline = Instant::now() + listener.handshake_timeout;
    if starts_plain_http(&stream, deadline).await {
        // Boxed: a rare path, kept out of every handshake's future.
        return Box::pin(refuse_plain_http(&local, listener, peer, stream, deadline)).await;
    }
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(deadline, listener.acceptor.accept(stream)) => done,
        // Closed for room, or the gateway stops.
        _ = open.conn().closing() => return,
    };
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
    if info.alpn == Some("h2") {
        return spawn_protocol(local, protocols, stream, peer, info, Protocol::Http2, open);
    }
    // HTTP/1.1 over TLS is our own too (`http1.rs`), on a task of its own:
    // the handshake's state is not kept in the connection's.
    tokio::task::spawn_local(super::http1::serve(
        local, protocols, stream, peer, info, open,
    ));
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

/// Spawns the task serving `stream` with `protocol` (HTTP/2: HTTP/1.1 is
/// `http1.rs` `serve`'s); the task owns `open`.
/// The task ends when hyper's connection does, or when the worker closes
/// it (`connections.rs`): at once when it is idle or too slow with its head,
/// gracefully (a GOAWAY) when the gateway stops or it has served its
/// requests.
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
    let conn = open.conn().clone();
    conn.serving(protocol == Protocol::Http2, protocols.max_requests);
    // Per request: its count in flight (on the connection, for the
    // worker's timers and drain), the snapshot it keeps to the end (one
    // atomic load), and the proxy.
    let requests = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let tracked = requests.request();
        let snapshot = local.snapshot();
        let proxy = local.proxy.clone();
        crate::proxy::handle(proxy, snapshot, tracked, peer, tls.clone(), req)
    });
    let done = move |result: Result<(), hyper::Error>| {
        if let Err(e) = result {
            open.failed(ClientError::of(&e), &e);
        }
        drop(open);
    };
    match protocol {
        Protocol::Http1 => unreachable!("HTTP/1.1 is served by http1.rs"),
        Protocol::Http2 => {
            let io = TokioIo::new(stream);
            let drain = protocols.drain_timeout;
            tokio::task::spawn_local(async move {
                let served = protocols.h2.serve_connection(io, service);
                tokio::pin!(served);
                let result = tokio::select! {
                    result = served.as_mut() => result,
                    _ = conn.closing() => {
                        // Always a GOAWAY: the client learns not to open new
                        // streams here, the open ones finish (within the
                        // drain timeout). With none open, the GOAWAY and the
                        // PING hyper sends with it to see that the client
                        // read it get a moment only.
                        served.as_mut().graceful_shutdown();
                        let limit = if conn.is_idle() { GOAWAY_GRACE } else { drain };
                        tokio::time::timeout(limit, served).await.unwrap_or(Ok(()))
                    }
                };
                done(result)
            });
        }
    }
}

/// Serves an HTTP/1.1 connection with hyper's from an upgrade or CONNECT
/// on (`http1.rs` hands it over with what it read put back in front).
pub(super) async fn serve_hyper_h1<S, T>(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: S,
    peer: SocketAddr,
    tls: T,
    open: OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: ConnTls,
{
    let conn = open.conn().clone();
    conn.serving(false, protocols.max_requests);
    // Per request: its count in flight (on the connection, for the
    // worker's timers and drain), the snapshot it keeps to the end (one
    // atomic load), and the proxy.
    let requests = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let tracked = requests.request();
        let snapshot = local.snapshot();
        let proxy = local.proxy.clone();
        crate::proxy::handle(proxy, snapshot, tracked, peer, tls.clone(), req)
    });
    // Watched: the first bytes after an idle spell start the header timer.
    let io = TokioIo::new(Watched::new(stream, &conn));
    let served = protocols.h1.serve_connection(io, service).with_upgrades();
    tokio::pin!(served);
    let result = tokio::select! {
        // hyper first, then `closing`, which sees what it read.
        biased;
        result = served.as_mut() => result,
        reason = conn.closing() => {
            if reason.graceful() {
                served.as_mut().graceful_shutdown();
                served.await
            } else {
                Ok(())
            }
        }
    };
    if let Err(e) = result {
        open.failed(ClientError::of(&e), &e);
    }
}

/// Why a client connection ended with an error, for the counters. Clients
/// decide how often these happen, so each is logged at debug only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// A request hyper could not parse (it answered 400 or 431 itself).
    BadRequest,
    /// HTTP/2 protocol errors: a GOAWAY sent or received, resets, floods.
    Http2,
    /// No answer to a keep-alive PING in time.
    Timeout,
    /// The connection broke (reset, closed mid-message).
    Io,
    /// Anything else.
    Other,
}

impl ClientError {
    /// Every kind, in the order of their counters.
    pub(crate) const ALL: [ClientError; 5] = [
        ClientError::BadRequest,
        ClientError::Http2,
        ClientError::Timeout,
        ClientError::Io,
        ClientError::Other,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ClientError::BadRequest => "bad_request",
            ClientError::Http2 => "http2",
            ClientError::Timeout => "timeout",
            ClientError::Io => "io",
            ClientError::Other => "other",
        }
    }

    /// The index of its counter.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn of(e: &hyper::Error) -> Self {
        if e.is_parse() || e.is_parse_too_large() {
            return ClientError::BadRequest;
        }
        if e.is_timeout() {
            return ClientError::Timeout;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if s.is::<h2::Error>() {
                return ClientError::Http2;
            }
            if s.is::<io::Error>() {
                return ClientError::Io;
            }
            source = s.source();
        }
        if e.is_incomplete_message() || e.is_body_write_aborted() {
            return ClientError::Io;
        }
        ClientError::Other
    }
}

/// The client-caused errors of one worker since its last summary line: at
/// most one line per [`ClientErrorLog::INTERVAL`], at warn, with the count
/// by kind; each error itself is logged at debug only.
pub(crate) struct ClientErrorLog {
    pending: [Cell<u64>; 5],
    last: Cell<Option<Instant>>,
}

impl Default for ClientErrorLog {
    fn default() -> Self {
        ClientErrorLog {
            pending: Default::default(),
            last: Cell::new(None),
        }
    }
}

impl ClientErrorLog {
    /// The shortest time between two summary lines.
    pub(crate) const INTERVAL: Duration = Duration::from_secs(60);

    fn record(&self, kind: ClientError) {
        let n = &self.pending[kind.index()];
        n.set(n.get() + 1);
    }

    /// Writes the summary line if there is something to say and the last
    /// one is at least an interval old (the first at once).
    pub(crate) fn summarize(&self, worker: usize, now: Instant) {
        let total: u64 = self.pending.iter().map(Cell::get).sum();
        if total == 0 || self.last.get().is_some_and(|t| now < t + Self::INTERVAL) {
            return;
        }
        let mut kinds = String::new();
        for kind in ClientError::ALL {
            let n = self.pending[kind.index()].replace(0);
            if n > 0 {
                if !kinds.is_empty() {
                    kinds.push_str(", ");
                }
                kinds.push_str(&format!("{} {n}", kind.label()));
            }
        }
        let since = match self.last.get() {
            Some(t) => format!("in the last {} s", now.duration_since(t).as_secs()),
            None => "since start".to_string(),
        };
        self.last.set(Some(now));
        tracing::warn!(
            worker,
            "{total} client connection(s) ended with an error {since} ({kinds}); counted in strait_client_connection_errors_total, each logged at debug"
        );
    }
}

/// A client connection as the worker counts it: admitted into the process's
/// budget, registered under the worker's timers, counted open in the
/// metrics while it lives, and its reason for closing counted when it ends.
pub(crate) struct OpenConnection {
    local: Rc<WorkerLocal>,
    registered: Registered,
    /// Its place in the process-wide budget, given back on drop.
    _ticket: Ticket,
    /// The process was over this many connections when it arrived: it
    /// waits for room first.
    wait_for_room: Option<usize>,
}

impl OpenConnection {
    pub(crate) fn new(
        local: &Rc<WorkerLocal>,
        ticket: Ticket,
        wait_for_room: Option<usize>,
    ) -> Self {
        if let Some(c) = local.counters() {
            c.connections_total.inc();
            c.connections_active.inc();
        }
        OpenConnection {
            local: local.clone(),
            registered: local.connections.open(),
            _ticket: ticket,
            wait_for_room,
        }
    }

    pub(super) fn conn(&self) -> &Rc<Conn> {
        self.registered.conn()
    }

    /// `None` (and the connection is closed) when it arrived while the
    /// process was full and no room was made in time.
    async fn admitted(self) -> Option<Self> {
        let Some(max) = self.wait_for_room else {
            return Some(self);
        };
        let budget = self.local.budget.clone();
        if budget.wait_for_room(max, ROOM_WAIT).await {
            return Some(self);
        }
        if let Some(c) = self.local.counters() {
            c.connections_refused[Refused::MaxConnections.index()].inc();
        }
        tracing::debug!(
            max_connections = max,
            "connection refused: the process is full"
        );
        None
    }

    /// Counts and logs (at debug) a connection that ended with an error.
    fn failed(&self, kind: ClientError, error: &hyper::Error) {
        self.failed_with(kind, error);
    }

    /// Counts and logs (at debug) a connection that ended with an error.
    pub(super) fn failed_with(&self, kind: ClientError, error: &dyn std::fmt::Display) {
        if let Some(c) = self.local.counters() {
            c.connection_errors[kind.index()].inc();
        }
        self.local.client_errors.record(kind);
        tracing::debug!(error = %error, kind = kind.label(), "client connection ended with an error");
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(c) = self.local.counters() {
            c.connections_active.dec();
            if let Some(reason) = self.conn().closed_for() {
                c.connections_closed[reason.index()].inc();
            }
        }
    }
}

/// Peeks (without consuming) until the first bytes show the protocol. It
/// waits for the socket to become readable and never polls: while the bytes
/// seen are a strict prefix of the HTTP/2 preface, the readiness they left
/// is cleared (`try_io` with `WouldBlock`) and only new bytes wake it again;
/// a client that closes after part of a preface is closed too.
async fn detect(stream: &TcpStream) -> io::Result<Protocol> {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = recv(stream.as_raw_fd(), &mut buf, MsgFlags::MSG_PEEK)?;
            if n > 0 && n < PREFACE.len() && buf[..n] == PREFACE[..n] {
                if ready.is_read_closed() {
                    // The client closed after part of a preface: it can
                    // never be completed. (The closed state is not cleared
                    // by `WouldBlock`: waiting on would spin.)
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                // Not enough to tell: wait for more bytes.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match peeked {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(if buf[..n] == PREFACE[..n] {
            Protocol::Http2
        } else {
            Protocol::Http1
        });
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
        // 3,096 B with the HTTP/1.1 exchange of our own in it (the
        // connection, the encoded head and the body, where hyper's client
        // kept a sender and a response future), in a debug and a release
        // build alike; 3,016 B before the `connection_limit` guards and the
        // snapshot's lender went into the context, 3,064 B since, 3,136 B
        // with the upstream's connect failover (the attempts after a failed
        // connection are boxed; what the boxed future borrows stays beside
        // it) (measured in a debug build). It is hyper's server's, kept per
        // connection: TLS connections and upgrades; plain HTTP/1.1 is served
        // by `worker/http1.rs`, whose request future exists only while a
        // request is in flight.
        assert!(size <= 3_136, "the request future grew to {size} B");
    }
}
