//! The server side of HTTP/1.1 of our own, for plain TCP connections: one
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
use http::{HeaderMap, Method, Response, Uri, Version};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::connection::{serve_hyper_h1, ClientError, OpenConnection};
use super::local::WorkerLocal;
use super::protocols::Protocols;
use crate::context::body::ClientBody;
use crate::context::{Field, Headers, ProxyBody};
use crate::http1::conn::{last_chunk, Left, Step, READ_BUFFER};
use crate::http1::interim::{parse_request, Framing, HeadError, RequestInfo};
use crate::http1::server::{ClientRead, WireClientBody};
use crate::proxy::request::WireRequest;

/// The client connection: its stream and read buffer, shared by the loop
/// (between requests, and to write responses) and the request body (to
/// read it). Single-threaded; no borrow is held across an await.
struct ClientIo {
    stream: RefCell<TcpStream>,
    buf: RefCell<BytesMut>,
    /// A `100 Continue` is owed before the body is read: what is left of it.
    continue_left: Cell<usize>,
    /// The request's body has not been read to its end.
    body_open: Cell<bool>,
    /// The request is HTTP/1.0 (no interim response may go to it).
    http10: Cell<bool>,
    /// Interim responses (1xx) forwarded but not written yet.
    interim: RefCell<BytesMut>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl ClientIo {
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
        }
        Poll::Ready(Ok(()))
    }
}

impl ClientIo {
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
        }
        Poll::Ready(Ok(()))
    }
}

impl ClientRead for ClientIo {
    fn interim(&self, cx: &mut Context<'_>, head: &[u8]) {
        if self.http10.get() {
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

/// Serves a plain HTTP/1.1 connection until it ends.
pub(super) async fn serve(
    local: Rc<WorkerLocal>,
    protocols: Rc<Protocols>,
    stream: TcpStream,
    peer: SocketAddr,
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
    });
    loop {
        let snapshot = local.snapshot();
        let limits = (
            snapshot.server.max_header_bytes,
            snapshot.server.max_headers,
        );
        drop(snapshot);
        let info = tokio::select! {
            biased;
            _ = conn.closing() => return,
            read = read_head(&io, &local, &conn, limits) => match read {
                Ok(Some(info)) => info,
                Ok(None) => return,
                Err(Refusal::Head(e)) => {
                    open.failed_with(ClientError::BadRequest, &e.reason());
                    refuse(&io, e).await;
                    return;
                }
                Err(Refusal::Io) => return,
            },
        };
        if info.tunnel {
            // Upgrades and CONNECT: hyper's connection, from this head on.
            let Ok(io) = Rc::try_unwrap(io) else { return };
            let rewind = Rewind {
                prefix: io.buf.into_inner().freeze(),
                inner: io.stream.into_inner(),
            };
            // Boxed: hyper's connection state is no part of this loop's.
            return Box::pin(serve_hyper_h1(local, protocols, rewind, peer, (), open)).await;
        }
        // Boxed: the request's future (the phases, the exchange) exists
        // only while it is in flight; the connection's task keeps only this
        // loop's few words while it is idle (one allocation per request,
        // from the allocator's thread cache, against kilobytes per idle
        // connection).
        let keep = Box::pin(serve_one(&local, &io, &conn, peer, info)).await;
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

enum Refusal {
    Head(HeadError),
    Io,
}

/// Reads until the buffer holds a whole head (or the client closes:
/// `None`). The first byte after an idle spell starts the header timer.
async fn read_head(
    io: &ClientIo,
    local: &WorkerLocal,
    conn: &super::connections::Conn,
    (max_head, max_fields): (usize, usize),
) -> Result<Option<RequestInfo>, Refusal> {
    loop {
        {
            let buf = io.buf.borrow();
            if !buf.is_empty() {
                if let Some(info) =
                    parse_request(&buf, max_head, max_fields).map_err(Refusal::Head)?
                {
                    return Ok(Some(info));
                }
            }
        }
        if io.buf.borrow().capacity() == 0 {
            // Idle: wait for bytes without a buffer, then take one.
            let ready = std::future::poll_fn(|cx| io.stream.borrow().poll_read_ready(cx)).await;
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

/// One request: the head frozen out of the buffer, the views in the arena,
/// the proxy, the response written. Whether the connection may go on.
async fn serve_one(
    local: &Rc<WorkerLocal>,
    io: &Rc<ClientIo>,
    conn: &Rc<super::connections::Conn>,
    peer: SocketAddr,
    info: RequestInfo,
) -> bool {
    let head = io.buf.borrow_mut().split_to(info.head_len).freeze();
    let Some(parts) = parts(&head, &info) else {
        refuse(io, HeadError::Bad("invalid method or target")).await;
        return false;
    };
    let arena = local.proxy.arenas.take();
    let fields =
        arena.alloc_slice_fill_iter(info.fields[..info.count].iter().map(|&(n0, n1, v0, v1)| {
            Field {
                name: std::str::from_utf8(&head[n0 as usize..n1 as usize]).unwrap_or(""),
                value: &head[v0 as usize..v1 as usize],
            }
        }));
    let has_body = info.framing != Framing::None;
    io.body_open.set(has_body);
    io.http10.set(info.http10);
    io.continue_left
        .set(if info.expect_continue && has_body && !info.http10 {
            CONTINUE.len()
        } else {
            0
        });
    let src: Rc<dyn ClientRead> = io.clone();
    let body = ClientBody::Wire(WireClientBody::new(src, info.framing));
    let request = WireRequest {
        arena: &arena,
        parts: &parts,
        headers: Headers::wire(fields, &arena),
        body,
    };
    let tracked = conn.request();
    let snapshot = local.snapshot();
    let response =
        crate::proxy::handle_wire(local.proxy.clone(), snapshot, tracked, peer, (), request).await;
    // An owed `100 Continue` never sent: the body was not read (and the
    // connection closes, below).
    io.continue_left.set(0);
    let keep = info.keep_alive && conn.closed_for().is_none() && !io.body_open.get();
    let head_request = parts.method == Method::HEAD;
    write_response(local, io, response, head_request, info.http10, keep).await
}

/// The request's parts: method and target (the target's bytes shared with
/// the head, not copied), version; no header map.
fn parts(head: &Bytes, info: &RequestInfo) -> Option<http::request::Parts> {
    let method = Method::from_bytes(&head[info.method.0 as usize..info.method.1 as usize]).ok()?;
    let target = head.slice(info.target.0 as usize..info.target.1 as usize);
    let uri = Uri::from_maybe_shared(target).ok()?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = if info.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    Some(parts)
}

/// Answers a head the parser refused, and closes.
async fn refuse(io: &ClientIo, e: HeadError) {
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
async fn shutdown(io: &ClientIo) {
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
async fn linger(io: &ClientIo) {
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

/// How a response's body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// To the close (an HTTP/1.0 client, length unknown).
    Close,
}

/// Writes the response: the head (and the first body bytes, when they are
/// ready, in the same write), then the body as it comes. Whether the
/// connection may carry another request.
async fn write_response(
    local: &WorkerLocal,
    io: &ClientIo,
    response: Response<ProxyBody>,
    head_request: bool,
    http10: bool,
    mut keep: bool,
) -> bool {
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let out = match (bodiless, length, body.size_hint().exact()) {
        (true, _, _) => Out::None,
        (false, Some(n), _) => Out::Length(n),
        (false, None, Some(n)) => Out::Length(n),
        (false, None, None) if !http10 => Out::Chunked,
        (false, None, None) => Out::Close,
    };
    if out == Out::Close {
        keep = false;
    }
    let mut head = local.proxy.pool.buffer();
    head.clear();
    // Interim responses not written yet go first.
    let interim = std::mem::take(&mut *io.interim.borrow_mut());
    head.extend_from_slice(&interim);
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    put_status(&mut head, parts.status, reason.map(|r| r.as_bytes()));
    put_fields(&mut head, &parts.headers);
    if !parts.headers.contains_key(http::header::DATE) {
        head.put_slice(b"date: ");
        local.proxy.tools.clock.http_date(&mut head);
        head.put_slice(b"\r\n");
    }
    match out {
        Out::Length(n) if length.is_none() => {
            head.put_slice(b"content-length: ");
            put_decimal(&mut head, n);
            head.put_slice(b"\r\n");
        }
        Out::Chunked => head.put_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    match (keep, http10) {
        (false, _) => head.put_slice(b"connection: close\r\n"),
        (true, true) => head.put_slice(b"connection: keep-alive\r\n"),
        (true, false) => {}
    }
    head.put_slice(b"\r\n");
    let mut writer = Writer {
        stream: &io.stream,
        head: head.split().freeze(),
        out,
        sent: 0,
        started: false,
    };
    local.proxy.pool.spare(head);
    let ok = if out == Out::None {
        drop(body);
        writer.flush_head().await.is_ok()
    } else {
        writer.body(&mut body).await.is_ok()
    };
    ok && keep
}

/// The writing of one response.
struct Writer<'s> {
    stream: &'s RefCell<TcpStream>,
    /// What is left of the head to write.
    head: Bytes,
    out: Out,
    /// Body bytes written (checked against a Content-Length).
    sent: u64,
    /// Some byte of the response went out.
    started: bool,
}

/// What a client gets instead when a response's body fails before any byte
/// of its head went out (bad chunked framing or trailers over their bounds
/// in the first bytes read): the head was not sent, so the failure can
/// still be a response.
const BODY_FAILED: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\
    content-length: 30\r\nconnection: close\r\n\r\nthe upstream's body is broken\n";

impl Writer<'_> {
    async fn flush_head(&mut self) -> io::Result<()> {
        self.write_parts(&[], Bytes::new(), b"").await
    }

    /// Streams the body, each frame after what is left of the head.
    async fn body(&mut self, body: &mut ProxyBody) -> io::Result<()> {
        loop {
            let frame = std::future::poll_fn(|cx| {
                match Pin::new(&mut *body).poll_frame(cx) {
                    // Nothing yet: the head goes now rather than wait.
                    Poll::Pending if !self.head.is_empty() => Poll::Ready(None::<Option<_>>),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(f) => Poll::Ready(Some(f)),
                }
            })
            .await;
            let frame = match frame {
                None => {
                    self.flush_head().await?;
                    continue;
                }
                Some(None) => return self.end().await,
                Some(Some(Err(_))) => {
                    // A body that fails mid-way cannot be finished: the
                    // client sees the connection close before its end; if
                    // nothing was sent yet, a 502 (and the close).
                    if !self.started {
                        self.head = Bytes::from_static(BODY_FAILED);
                        self.flush_head().await?;
                    }
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                Some(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let (Out::Chunked, Ok(trailers)) = (self.out, frame.into_trailers()) {
                        return self.end_with(Some(&trailers)).await;
                    }
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            if let Out::Length(n) = self.out {
                if self.sent + data.len() as u64 > n {
                    return Err(io::ErrorKind::InvalidData.into());
                }
            }
            self.sent += data.len() as u64;
            let mut prefix = [0u8; 18];
            let prefix_len = match self.out {
                Out::Chunked => crate::http1::chunk_head(data.len(), &mut prefix).len(),
                _ => 0,
            };
            let suffix: &[u8] = if self.out == Out::Chunked {
                b"\r\n"
            } else {
                b""
            };
            self.write_parts(&prefix[..prefix_len], data, suffix)
                .await?;
        }
    }

    async fn end(&mut self) -> io::Result<()> {
        self.end_with(None).await
    }

    /// Ends the body: the last chunk (with the trailer fields that may be
    /// forwarded, if there are trailers: a chunked response is the only one
    /// that carries them, so an HTTP/1.0 client or a Content-Length loses
    /// them), or a check that the length was met.
    async fn end_with(&mut self, trailers: Option<&HeaderMap>) -> io::Result<()> {
        match self.out {
            Out::Chunked => {
                let last = match trailers {
                    Some(t) => last_chunk(t),
                    None => Bytes::from_static(crate::http1::LAST_CHUNK),
                };
                self.write_parts(&[], last, b"").await
            }
            Out::Length(n) if self.sent != n => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => self.flush_head().await,
        }
    }

    /// Writes what is left of the head, then `prefix`, `data`, `suffix`,
    /// in as few writes as the socket allows.
    async fn write_parts(
        &mut self,
        prefix: &[u8],
        mut data: Bytes,
        suffix: &[u8],
    ) -> io::Result<()> {
        let (mut p, mut s) = (prefix, suffix);
        while !(self.head.is_empty() && p.is_empty() && data.is_empty() && s.is_empty()) {
            let slices = [
                IoSlice::new(&self.head),
                IoSlice::new(p),
                IoSlice::new(&data),
                IoSlice::new(s),
            ];
            let stream = self.stream;
            let mut n = std::future::poll_fn(|cx| {
                Pin::new(&mut *stream.borrow_mut()).poll_write_vectored(cx, &slices)
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.started = true;
            let h = n.min(self.head.len());
            self.head.advance(h);
            n -= h;
            let k = n.min(p.len());
            p = &p[k..];
            n -= k;
            let d = n.min(data.len());
            data.advance(d);
            n -= d;
            s = &s[n.min(s.len())..];
        }
        Ok(())
    }
}

fn put_status(out: &mut BytesMut, status: http::StatusCode, reason: Option<&[u8]>) {
    if let (None, Some(line)) = (reason, crate::http1::status_line(status.as_u16())) {
        out.put_slice(line);
        return;
    }
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    match reason {
        Some(r) => out.put_slice(r),
        None => out.put_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.put_slice(b"\r\n");
}

fn put_fields(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(crate::http1::decimal(n, &mut [0u8; 20]));
}

/// A stream with bytes already read put back in front of it, for hyper's
/// connection to read first.
pub(super) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
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

impl AsyncWrite for Rewind {
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
