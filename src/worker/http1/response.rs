//! Writing a response to the client of an HTTP/1.1 connection of our own:
//! the head (status line, fields, `date`, the framing chosen for the body)
//! and the first body bytes in one write where they are ready, then the
//! body frame by frame (Content-Length, chunked with trailers, or to the
//! close for an HTTP/1.0 client).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Response};
use http_body::Body;

use super::{ClientIo, ClientStream};
use crate::context::ProxyBody;
use crate::http1::conn::last_chunk;
use crate::worker::local::WorkerLocal;

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
pub(super) async fn write_response<S: ClientStream>(
    local: &WorkerLocal,
    io: &ClientIo<S>,
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
    // Written: the map goes back, emptied, for the next response head.
    local.proxy.pool.spare_map(parts.headers);
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
    // Out of the stream's own buffer (TLS), before the next request is read.
    let flushed = std::future::poll_fn(|cx| Pin::new(&mut *io.stream.borrow_mut()).poll_flush(cx));
    ok && flushed.await.is_ok() && keep
}

/// The writing of one response.
struct Writer<'s, S> {
    stream: &'s RefCell<S>,
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

impl<S: ClientStream> Writer<'_, S> {
    async fn flush_head(&mut self) -> io::Result<()> {
        self.write_parts(&[], Bytes::new(), b"").await
    }

    /// Streams the body, each frame after what is left of the head.
    async fn body(&mut self, body: &mut ProxyBody) -> io::Result<()> {
        let stream = self.stream;
        loop {
            let frame = std::future::poll_fn(|cx| {
                match Pin::new(&mut *body).poll_frame(cx) {
                    // Nothing yet: the head goes now rather than wait.
                    Poll::Pending if !self.head.is_empty() => Poll::Ready(None::<Option<_>>),
                    Poll::Pending => {
                        // What the stream holds back (TLS records) goes out
                        // while the body waits; an error shows at the next
                        // write.
                        let _ = Pin::new(&mut *stream.borrow_mut()).poll_flush(cx);
                        Poll::Pending
                    }
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

pub(super) fn put_status(out: &mut BytesMut, status: http::StatusCode, reason: Option<&[u8]>) {
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

pub(super) fn put_decimal(out: &mut BytesMut, n: u64) {
    out.put_slice(crate::http1::decimal(n, &mut [0u8; 20]));
}
