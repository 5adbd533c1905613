//! The server side of HTTP/1.1 of our own, plain or over TLS: one
//! loop per connection, on the connection's task, that reads a head, hands
//! the request to the proxy and writes the response, in order (pipelined
//! requests wait in the buffer). The request's head is frozen out of the
//! connection's read buffer and the context borrows its bytes: method,
//! target and fields are views, never copies, and an unedited field is
//! copied once, into the upstream's head. Buffers come from the worker's
//! spares when bytes arrive and go back when the connection is idle: an
//! idle keep-alive connection holds its socket and nothing else.
//!
//! Timers are the registry's (`connections.rs`): the loop is in `Head`
//! from the first byte to a whole head, `Busy` while a request is in
//! flight, `Idle` between requests; the registry ends it through
//! `Conn::closing`. Upgrades and CONNECT go to hyper's connection, with
//! what was read so far put back in front of the stream (`Rewind`).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Method, Uri, Version};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::connection::{serve_hyper_h1, ClientError, OpenConnection};
use super::local::WorkerLocal;
use super::protocols::Protocols;
use crate::context::body::ClientBody;
use crate::context::{ConnTls, Headers, UpstreamRequest};
use crate::http1::conn::{Left, Step, READ_BUFFER};
use crate::http1::server::{ClientRead, WireClientBody};
use crate::http1::{
    parse_scanned_request, request_head_end, Framing, HeadEnd, HeadError, Limits, RequestHead,
};
use crate::proxy::request::WireRequest;

mod response;
use response::{put_decimal, put_status, write_response};

/// The client connection: its stream and read buffer, shared by the loop
/// (between requests, and to write responses) and the request body (to
/// read it). Single-threaded; no borrow is held across an await.
struct ClientIo<S> {
    stream: RefCell<S>,
    buf: RefCell<BytesMut>,
    /// A `100 Continue` is owed before the body is read: what is left of it.
    continue_left: Cell<usize>,
    /// The request's body has not been read to its end.
    body_open: Cell<bool>,
    /// The request is HTTP/1.0 (no interim response may go to it).
    http10: Cell<bool>,
    /// Interim responses (1xx) forwarded but not written yet.
    interim: RefCell<BytesMut>,
    /// An interim response (a `100 Continue`, a 1xx) was written and not
    /// flushed yet.
    owe_flush: Cell<bool>,
    /// The request has `Expect: 100-continue` and a body: its `100` is the
    /// gateway's own.
    expects_continue: Cell<bool>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl<S: ClientStream> ClientIo<S> {
    /// Reads into the buffer. Ready with the count (0: the client closed).
    fn poll_fill(&self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut buf = self.buf.borrow_mut();
        if buf.capacity() - buf.len() < 1024 && !buf.try_reclaim(READ_BUFFER) {
            buf.reserve(READ_BUFFER);
        }
        let mut stream = self.stream.borrow_mut();
        tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut *buf)
    }

    fn poll_continue(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.continue_left.get() > 0 {
            let at = CONTINUE.len() - self.continue_left.get();
            let mut stream = self.stream.borrow_mut();
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &CONTINUE[at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left.set(self.continue_left.get() - n);
            self.owe_flush.set(true);
        }
        // Out now (TLS): the client waits for it to send the body.
        self.poll_owed_flush(cx)
    }
}

impl<S: ClientStream> ClientIo<S> {
    /// Writes what it can of the pending interim responses.
    fn poll_interim(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pending = self.interim.borrow_mut();
        while !pending.is_empty() {
            let mut stream = self.stream.borrow_mut();
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.advance(n);
            self.owe_flush.set(true);
        }
        drop(pending);
        self.poll_owed_flush(cx)
    }

    /// Flushes what an interim write left in the stream's own buffer (TLS
    /// records; a no-op on TCP).
    fn poll_owed_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.owe_flush.get() {
            ready!(Pin::new(&mut *self.stream.borrow_mut()).poll_flush(cx))?;
            self.owe_flush.set(false);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: ClientStream> ClientRead for ClientIo<S> {
    fn interim(&self, cx: &mut Context<'_>, head: &[u8]) {
        if self.http10.get() {
            return;
        }
        // The request asked for `100 Continue` and the gateway answers
        // that itself (when the body is first read): the upstream's, after
        // the fact, would be a second one.
        if self.expects_continue.get() && head.get(9..12) == Some(b"100") {
            return;
        }
        self.interim.borrow_mut().extend_from_slice(head);
        // Now if the socket takes it; what is left goes before the final
        // response's head.
        let _ = self.poll_interim(cx);
    }

    fn poll_body(
        &self,
        cx: &mut Context<'_>,
        left: &mut Left,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Err(e) = ready!(self.poll_continue(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            let step = left.step(&mut self.buf.borrow_mut());
            match step {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Step::Data(data)) => {
                    if matches!(left, Left::Done) {
                        self.body_open.set(false);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Trailers(trailers)) => {
                    self.body_open.set(false);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Step::Done) => {
                    self.body_open.set(false);
                    return Poll::Ready(None);
                }
                Ok(Step::More) => match ready!(self.poll_fill(cx)) {
                    Ok(0) => {
                        let e =
                            io::Error::new(io::ErrorKind::UnexpectedEof, "client closed mid-body");
                        return Poll::Ready(Some(Err(e)));
                    }
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }
}

/// A client connection's byte stream: plain TCP, or TLS over it.
pub(super) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once bytes can be read, with no buffer held meanwhile: the
    /// socket is readable (or, for TLS, decrypted bytes are waiting).
    fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ClientStream for TcpStream {
    fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, session) = self.get_ref();
        // rustls holds decrypted bytes not read yet (or has seen the
        // close): no need to wait for the socket.
        if !session.wants_read() {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }
}

/// Serves an HTTP/1.1 connection (plain, or TLS after its handshake) until
/// it ends.
pub(super) async fn serve<S: ClientStream, T: ConnTls>(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: S,
    peer: SocketAddr,
    tls: T,
    open: OpenConnection,
) {
    let conn = open.conn().clone();
    conn.serving(false, protocols.max_requests);
    let io = Rc::new(ClientIo {
        stream: RefCell::new(stream),
        buf: RefCell::new(BytesMut::new()),
        continue_left: Cell::new(0),
        body_open: Cell::new(false),
        http10: Cell::new(false),
        interim: RefCell::new(BytesMut::new()),
        owe_flush: Cell::new(false),
        expects_continue: Cell::new(false),
    });
    loop {
        let limits = limits(&local);
        let end = tokio::select! {
            biased;
            _ = conn.closing() => return,
            read = read_head(&io, &local, &conn, &limits) => match read {
                Ok(Some(end)) => end,
                Ok(None) => return,
                Err(Refusal::Head(e)) => {
                    open.failed_with(ClientError::BadRequest, &e.reason());
                    refuse(&io, e).await;
                    return;
                }
                Err(Refusal::Io) => return,
            },
        };
        let head = io.buf.borrow_mut().split_to(end.head_len()).freeze();
        // Boxed: the request's future (the phases, the exchange) exists
        // only while it is in flight; the connection's task keeps only this
        // loop's few words while it is idle (one allocation per request,
        // from the allocator's thread cache, against kilobytes per idle
        // connection).
        let next = Box::pin(serve_one(
            &local,
            &io,
            &conn,
            (peer, &tls),
            (head, end),
            limits,
        ))
        .await;
        let keep = match next {
            Next::Keep => true,
            Next::Close => false,
            Next::Refuse(e) => {
                open.failed_with(ClientError::BadRequest, &e.reason());
                refuse(&io, e).await;
                return;
            }
            Next::Tunnel(head) => {
                // Upgrades and CONNECT: hyper's connection, from this head
                // on, with what was read after it.
                let Ok(io) = Rc::try_unwrap(io) else { return };
                let rest = io.buf.into_inner();
                let prefix = match rest.is_empty() {
                    true => head,
                    false => [&head[..], &rest[..]].concat().into(),
                };
                let rewind = Rewind {
                    prefix,
                    inner: io.stream.into_inner(),
                };
                // Boxed: hyper's connection state is no part of this loop's.
                return Box::pin(serve_hyper_h1(local, protocols, rewind, peer, tls, open)).await;
            }
        };
        if !keep || io.body_open.get() || conn.closed_for().is_some() {
            if io.body_open.get() || !io.buf.borrow().is_empty() {
                // Bytes the client sent that nobody read.
                linger(&io).await;
            } else {
                shutdown(&io).await;
            }
            return;
        }
        // Idle with nothing read ahead: the buffer goes back.
        let idle = io.buf.borrow().is_empty();
        if idle {
            local
                .proxy
                .pool
                .spare(std::mem::take(&mut *io.buf.borrow_mut()));
        }
    }
}

/// The bounds a request head is read under: the server's
/// `max_header_bytes` and `max_headers`, and a request line of 8 KiB at
/// most (nginx's line buffer), or the head's bound if lower (414 beyond).
fn limits(local: &WorkerLocal) -> Limits {
    let snapshot = local.snapshot();
    let server = &snapshot.server;
    Limits {
        max_head_bytes: server.max_header_bytes,
        max_fields: server.max_headers,
        max_target: server.max_header_bytes.min(8 * 1024),
    }
}

/// What the loop does after a request.
enum Next {
    /// Read the next request.
    Keep,
    /// Close (the response said so, or the client, or the request's body
    /// was not read to its end).
    Close,
    /// The head was refused: answer with its status and close.
    Refuse(HeadError),
    /// An upgrade or CONNECT: the head, for hyper's connection to read.
    Tunnel(Bytes),
}

enum Refusal {
    Head(HeadError),
    Io,
}

/// Reads until the buffer holds a whole head (or the client closes:
/// `None`). The first byte after an idle spell starts the header timer.
async fn read_head<S: ClientStream>(
    io: &ClientIo<S>,
    local: &WorkerLocal,
    conn: &super::connections::Conn,
    limits: &Limits,
) -> Result<Option<HeadEnd>, Refusal> {
    loop {
        {
            let buf = io.buf.borrow();
            if !buf.is_empty() {
                if let Some(end) = request_head_end(&buf, limits).map_err(Refusal::Head)? {
                    return Ok(Some(end));
                }
            }
        }
        if io.buf.borrow().capacity() == 0 {
            // Idle: wait for bytes without a buffer, then take one.
            let ready = std::future::poll_fn(|cx| io.stream.borrow().poll_idle(cx)).await;
            if ready.is_err() {
                return Err(Refusal::Io);
            }
            *io.buf.borrow_mut() = local.proxy.pool.buffer();
        }
        match std::future::poll_fn(|cx| io.poll_fill(cx)).await {
            Ok(0) => {
                let partial = !io.buf.borrow().is_empty();
                return match partial {
                    true => Err(Refusal::Io),
                    false => Ok(None),
                };
            }
            Ok(_) => conn.bytes_arrived(),
            Err(_) => return Err(Refusal::Io),
        }
    }
}

/// One request: the head, frozen out of the buffer, parsed into views in
/// the arena; the proxy; the response written.
async fn serve_one<S: ClientStream, T: ConnTls>(
    local: &Rc<WorkerLocal>,
    io: &Rc<ClientIo<S>>,
    conn: &Rc<super::connections::Conn>,
    (peer, tls): (SocketAddr, &T),
    (head, end): (Bytes, HeadEnd),
    limits: Limits,
) -> Next {
    let arena = local.proxy.arenas.take();
    let parsed = match parse_scanned_request(&head, end, &arena, &limits) {
        Ok(parsed) => parsed,
        Err(e) => return Next::Refuse(e),
    };
    if parsed.upgrade.is_some() || parsed.connect {
        return Next::Tunnel(head);
    }
    let Some(parts) = parts(&head, &parsed) else {
        return Next::Refuse(HeadError::InvalidTarget);
    };
    let http10 = parsed.version == crate::http1::Version::Http10;
    let has_body = parsed.framing != Framing::None;
    io.body_open.set(has_body);
    io.http10.set(http10);
    let expects_continue = parsed.expect_continue && has_body && !http10;
    io.expects_continue.set(expects_continue);
    io.continue_left.set(match expects_continue {
        true => CONTINUE.len(),
        false => 0,
    });
    let src: Rc<dyn ClientRead> = io.clone();
    let body = ClientBody::Wire(WireClientBody::new(src, parsed.framing));
    let snapshot = local.snapshot();
    let mut request = WireRequest {
        arena: &arena,
        parts: &parts,
        upstream: UpstreamRequest {
            headers: Headers::wire(parsed.fields, &arena),
        },
        host: parsed.host,
        body: Some(body),
    };
    let received = (&local.proxy, &snapshot);
    let response =
        crate::proxy::handle_wire(received, conn.request(), peer, tls, &mut request).await;
    // Its fields and body go now, as when the proxy owned them.
    drop(request);
    // An owed `100 Continue` never sent: the body was not read (and the
    // connection closes, below).
    io.continue_left.set(0);
    let keep = parsed.keep_alive && conn.closed_for().is_none() && !io.body_open.get();
    let head_request = parts.method == Method::HEAD;
    match write_response(local, io, response, head_request, http10, keep).await {
        true => Next::Keep,
        false => Next::Close,
    }
}

/// The request's parts: method and target (the target's bytes shared with
/// the head, not copied), version; no header map.
fn parts(head: &Bytes, parsed: &RequestHead<'_>) -> Option<http::request::Parts> {
    let method = Method::from_bytes(parsed.method.as_bytes()).ok()?;
    let target = parsed.target.as_bytes();
    let (at, base) = (target.as_ptr() as usize, head.as_ptr() as usize);
    let shared = match at.checked_sub(base) {
        Some(offset) if offset + target.len() <= head.len() => head.slice_ref(target),
        // Read from a copy of the head (an HTTP/1.2 request line, read as
        // 1.1): copied.
        _ => Bytes::copy_from_slice(target),
    };
    let uri = Uri::from_maybe_shared(shared).ok()?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = match parsed.version {
        crate::http1::Version::Http10 => Version::HTTP_10,
        crate::http1::Version::Http11 => Version::HTTP_11,
    };
    Some(parts)
}

/// Answers a head the parser refused, and closes.
async fn refuse<S: ClientStream>(io: &ClientIo<S>, e: HeadError) {
    let reason = e.reason();
    let status = http::StatusCode::from_u16(e.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut out = BytesMut::with_capacity(160 + reason.len());
    put_status(&mut out, status, None);
    out.put_slice(b"content-type: text/plain\r\ncontent-length: ");
    put_decimal(&mut out, reason.len() as u64 + 1);
    out.put_slice(b"\r\nconnection: close\r\n\r\n");
    out.put_slice(reason.as_bytes());
    out.put_u8(b'\n');
    let mut out = out.freeze();
    while !out.is_empty() {
        let written =
            std::future::poll_fn(|cx| Pin::new(&mut *io.stream.borrow_mut()).poll_write(cx, &out))
                .await;
        match written {
            Ok(n) if n > 0 => out.advance(n),
            _ => return,
        }
    }
    linger(io).await;
}

/// Shuts the connection's write side (the client reads to the end).
async fn shutdown<S: ClientStream>(io: &ClientIo<S>) {
    let _ =
        std::future::poll_fn(|cx| Pin::new(&mut *io.stream.borrow_mut()).poll_shutdown(cx)).await;
}

/// How long, and how much of what the client still sends, a closing
/// connection reads and throws away after its last answer: closing a
/// socket with unread bytes resets it, and the reset can reach the client
/// before the answer does (nginx's `lingering_close`).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Shuts the write side, then reads and discards (bounded) until the
/// client closes.
async fn linger<S: ClientStream>(io: &ClientIo<S>) {
    shutdown(io).await;
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            io.buf.borrow_mut().clear();
            match std::future::poll_fn(|cx| io.poll_fill(cx)).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A stream with bytes already read put back in front of it, for hyper's
/// connection to read first.
pub(super) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
