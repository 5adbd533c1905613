//! The HTTP/1.1 exchange of our own, run by the request's future itself: the
//! request head written from the request into the connection's buffer and
//! sent, the body streamed (as it came, or chunked when its length is not
//! known) while the response head is awaited, the response head parsed off
//! the same buffer; what follows the head stays there for the response
//! body (`http1/conn.rs` `WireBody`). No task, no channel, no buffer of its
//! own: a connection's buffer is its only one. A request body's trailers
//! go as the chunked body's trailer fields (forbidden ones dropped); a body
//! sent with a Content-Length cannot carry them, and they are dropped.

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Method;
use http_body::Body;
use tokio::io::AsyncWrite;

use super::exchange::Target;
use super::pool::UpstreamPool;
use super::Error;
use crate::context::body::RequestBody;
use crate::context::Headers;
use crate::http1::chunk_head;
use crate::http1::conn::{last_chunk, WireConn};
use crate::http1::{parse_response, Framing, Informational, Limits, RequestKind, Version};

/// The most fields a response head may have.
const MAX_RESPONSE_FIELDS: usize = 128;

/// A response head read off a connection, and how its body is framed.
pub(crate) struct Answer {
    /// Status, version and fields, less the hop-by-hop ones.
    pub(crate) head: http::response::Parts,
    pub(crate) framing: Framing,
    /// The connection may carry another exchange after this body (the
    /// response allowed it and the request body was sent whole).
    pub(crate) keep_alive: bool,
}

/// How an exchange failed, and whether the request may go again on another
/// connection: nothing of a response arrived on a connection reused from
/// the pool (it was closed by the endpoint meanwhile) and the request can
/// be sent again (no body, or its body was never touched).
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) again: bool,
}

/// A request head as it goes on the wire, and what the exchange needs to
/// know of the request besides it.
pub(crate) struct Head {
    /// `METHOD target HTTP/1.1`, the fields, the blank line.
    pub(crate) bytes: Bytes,
    /// The body goes chunked (its length is not known).
    chunked: bool,
    has_body: bool,
    head_request: bool,
    /// Sent again as it was if a pooled connection turns out closed.
    idempotent: bool,
}

/// Encodes the head of `parts` (whose body is `body`) into the start of
/// `buf` and splits it off (the same allocation: nothing is copied twice).
/// The request's parts can go once this is done: the exchange carries the
/// bytes, and sends them again if it must.
pub(crate) fn encode(
    buf: &mut BytesMut,
    (method, uri, headers): (&Method, &http::Uri, &Headers<'_>),
    body: &RequestBody,
) -> Head {
    let has_body = !body.is_end_stream();
    let chunked = has_body && !headers.contains(http::header::CONTENT_LENGTH);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    // Room for an ordinary head without a pass over the fields to size it;
    // a larger one grows the buffer as it is written.
    let room = crate::http1::conn::READ_BUFFER;
    buf.clear();
    if !buf.try_reclaim(room) {
        buf.reserve(room);
    }
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    headers.write_http1(buf);
    if chunked {
        buf.put_slice(b"transfer-encoding: chunked\r\n");
    }
    buf.put_slice(b"\r\n");
    Head {
        bytes: buf.split().freeze(),
        chunked,
        has_body,
        head_request: method == Method::HEAD,
        idempotent: matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ),
    }
}

/// Sends `head` and then `body` over `conn` and reads the response head,
/// of at most `max_head` bytes (`server.max_header_bytes`, as for request
/// heads; nginx's `proxy_buffer_size` is the same bound). `reused`: the
/// connection came from the pool (a failure before any response byte is
/// then likely the endpoint having closed it while idle).
pub(crate) async fn exchange(
    conn: &mut WireConn,
    head: &Head,
    body: &mut RequestBody,
    reused: bool,
    target: &Target<'_>,
    pool: &UpstreamPool,
) -> Result<Answer, Failed> {
    conn.buf.clear();
    let mut sending = Sending {
        head: head.bytes.clone(),
        frame: None,
        chunked: head.chunked,
        body_done: !head.has_body,
        touched: false,
        broken: false,
        prefix: [0; 18],
        prefix_len: 0,
        suffix: &[],
    };
    let reading = Reading {
        limits: Limits {
            max_head_bytes: target.max_head,
            max_fields: MAX_RESPONSE_FIELDS,
            max_target: target.max_head,
        },
        kind: RequestKind {
            head: head.head_request,
            connect: false,
        },
        arena: target.arena,
        pool,
    };
    let result = poll_fn(|cx| exchange_poll(cx, conn, &mut sending, body, &reading)).await;
    result.map_err(|(error, answered)| Failed {
        error,
        // Never after the client's body failed: sent again, it would go on
        // from where it failed.
        again: reused
            && !answered
            && !matches!(error, Error::ClientBody | Error::ClientBodyTooLarge)
            && (!sending.touched || head.idempotent && !head.has_body),
    })
}

/// How the response head is read: its bounds, what the request was, and
/// the arena its field list goes into.
struct Reading<'a> {
    limits: Limits,
    kind: RequestKind,
    arena: &'a Bump,
    /// The worker's pool: a spare map for the head's fields, and their
    /// names.
    pool: &'a UpstreamPool,
}

/// The sending half of an exchange in progress.
struct Sending {
    /// What is left of the head to write (it goes first, whole).
    head: Bytes,
    /// The body frame being written, and what of it is left.
    frame: Option<Bytes>,
    chunked: bool,
    body_done: bool,
    /// A body frame was taken from the client (the request can no longer
    /// be sent again as it was). The trailers, when there are any, are
    /// the last frame: the last chunk with its trailer fields.
    touched: bool,
    /// A body write failed: nothing more is sent, the answer is still read.
    broken: bool,
    /// A chunk's size line, before its data.
    prefix: [u8; 18],
    prefix_len: usize,
    /// After the data: `\r\n`, or the last chunk.
    suffix: &'static [u8],
}

/// One step of the exchange: write what can be written (head, then body
/// frames), read what has arrived, and parse the response head once whole.
/// `Err` carries whether any response byte had arrived.
fn exchange_poll(
    cx: &mut Context<'_>,
    conn: &mut WireConn,
    s: &mut Sending,
    body: &mut RequestBody,
    reading: &Reading<'_>,
) -> Poll<Result<Answer, (Error, bool)>> {
    // The head goes first, whole.
    while !s.head.is_empty() {
        let n = match Pin::new(&mut conn.stream).poll_write(cx, &s.head) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                return Poll::Ready(Err((Error::Reset, false)))
            }
            Poll::Ready(Ok(n)) => n,
        };
        s.head.advance(n);
    }
    // Then the body, while the response is awaited (an endpoint may answer
    // before the body is whole).
    // A write the endpoint refused (it answered early and closed) ends the
    // sending; its answer may still be there to read.
    if !s.broken {
        match poll_send_body(cx, conn, s, body) {
            Ok(()) => {}
            Err(e @ (Error::ClientBody | Error::ClientBodyTooLarge)) => {
                return Poll::Ready(Err((e, false)))
            }
            Err(_) => s.broken = true,
        }
    }
    loop {
        let bad = Poll::Ready(Err((Error::BadResponse, true)));
        let parsed = parse_response(&conn.buf, reading.arena, &reading.limits, reading.kind);
        match parsed {
            Err(_) => return bad,
            Ok(Some(head)) => {
                // Parsed in place, once: what the map needs of each field is
                // its name and where its value lies, so that the head can be
                // frozen out of the buffer and the values be slices of it
                // (no copy, no allocation per field).
                let base = conn.buf.as_ptr() as usize;
                let at = |part: &[u8]| (part.as_ptr() as usize - base, part.len());
                let informational = head.informational();
                let mut fields = BumpVec::with_capacity_in(head.fields.len(), reading.arena);
                if informational.is_none() {
                    for field in head.fields {
                        // Hop-by-hop fields (RFC 9110 §7.6.1: the fixed ones
                        // and those Connection lists) stay on this connection.
                        if head.is_hop_by_hop(field.name) {
                            continue;
                        }
                        let Some(name) = reading.pool.header_name(field.name.as_bytes()) else {
                            return bad;
                        };
                        fields.push((name, at(field.value)));
                    }
                }
                let Ok(status) = http::StatusCode::from_u16(head.status) else {
                    return bad;
                };
                let reason = (status.canonical_reason() != Some(head.reason))
                    .then(|| at(head.reason.as_bytes()));
                let (version, framing, keep_alive) = (head.version, head.framing, head.keep_alive);
                let bytes = conn.buf.split_to(head.head_len).freeze();
                let slice = |(start, len): (usize, usize)| match len {
                    0 => Bytes::new(),
                    _ => bytes.slice(start..start + len),
                };
                match informational {
                    // An interim answer (103 Early Hints, a 100): on to the
                    // client as it came, then the next head.
                    Some(Informational::Continue | Informational::Other(_)) => {
                        body.interim(cx, &bytes);
                        continue;
                    }
                    // Not asked for: upgrades are the tunnel code's.
                    Some(Informational::SwitchingProtocols) => return bad,
                    None => {}
                }
                let mut response = http::Response::new(());
                *response.status_mut() = status;
                *response.version_mut() = match version {
                    Version::Http10 => http::Version::HTTP_10,
                    Version::Http11 => http::Version::HTTP_11,
                };
                let map = response.headers_mut();
                *map = reading.pool.header_map();
                // Room for the fields the response filter adds (a request id).
                map.reserve(fields.len() + 2);
                for (name, value) in fields {
                    let Ok(value) = http::HeaderValue::from_maybe_shared(slice(value)) else {
                        return bad;
                    };
                    map.append(name, value);
                }
                if let Some(reason) = reason {
                    // Kept as the upstream wrote it (hyper writes it back).
                    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(slice(reason)) {
                        response.extensions_mut().insert(reason);
                    }
                }
                let (parts, ()) = response.into_parts();
                return Poll::Ready(Ok(Answer {
                    head: parts,
                    framing,
                    keep_alive: keep_alive
                        && !s.broken
                        && s.body_done
                        && s.frame.is_none()
                        && s.suffix.is_empty(),
                }));
            }
            Ok(None) => {
                let answered = !conn.buf.is_empty();
                match ready!(conn.poll_fill(cx)) {
                    Ok(0) | Err(_) => return Poll::Ready(Err((Error::Reset, answered))),
                    Ok(_) => {}
                }
            }
        }
    }
}

/// Writes body frames while the connection takes them. Pending (returns
/// `Ok`) when the client has no frame ready or the socket is full.
fn poll_send_body(
    cx: &mut Context<'_>,
    conn: &mut WireConn,
    s: &mut Sending,
    body: &mut RequestBody,
) -> Result<(), Error> {
    loop {
        if s.frame.is_none() && s.suffix.is_empty() && s.prefix_len == 0 {
            if s.body_done {
                return Ok(());
            }
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => {
                    s.body_done = true;
                    if s.chunked {
                        s.suffix = b"0\r\n\r\n";
                    } else {
                        return Ok(());
                    }
                }
                Poll::Ready(Some(Err(e))) => return Err(Error::of_client_body(&e)),
                Poll::Ready(Some(Ok(frame))) => {
                    s.touched = true;
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => {
                            // Trailers end the body; only chunked carries
                            // them (with a Content-Length they are dropped,
                            // and the body's end is its last byte).
                            if let (true, Ok(trailers)) = (s.chunked, frame.into_trailers()) {
                                s.body_done = true;
                                s.frame = Some(last_chunk(&trailers));
                            }
                            continue;
                        }
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if s.chunked {
                        s.prefix_len = chunk_head(data.len(), &mut s.prefix).len();
                        s.suffix = b"\r\n";
                    }
                    s.frame = Some(data);
                }
            }
        }
        let empty = Bytes::new();
        let data = s.frame.as_ref().unwrap_or(&empty);
        let slices = [
            IoSlice::new(&s.prefix[..s.prefix_len]),
            IoSlice::new(data),
            IoSlice::new(s.suffix),
        ];
        let n = match Pin::new(&mut conn.stream).poll_write_vectored(cx, &slices) {
            Poll::Pending => return Ok(()),
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(Error::Reset),
            Poll::Ready(Ok(n)) => n,
        };
        consume(s, n);
    }
}

/// Marks `n` written bytes of the prefix, frame and suffix as sent.
fn consume(s: &mut Sending, mut n: usize) {
    let p = n.min(s.prefix_len);
    s.prefix.copy_within(p..s.prefix_len, 0);
    s.prefix_len -= p;
    n -= p;
    if let Some(frame) = s.frame.as_mut() {
        let d = n.min(frame.len());
        frame.advance(d);
        n -= d;
        if frame.is_empty() {
            s.frame = None;
        }
    }
    let t = n.min(s.suffix.len());
    s.suffix = &s.suffix[t..];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_walks_prefix_frame_and_suffix() {
        let mut s = Sending {
            head: Bytes::new(),
            frame: Some(Bytes::from_static(b"hello")),
            chunked: true,
            body_done: false,
            touched: true,
            broken: false,
            prefix: [0; 18],
            prefix_len: 0,
            suffix: b"\r\n",
        };
        s.prefix_len = chunk_head(5, &mut s.prefix).len();
        consume(&mut s, 2);
        assert_eq!(s.prefix_len, 1);
        consume(&mut s, 4);
        assert_eq!(s.frame.as_deref(), Some(&b"lo"[..]));
        consume(&mut s, 3);
        assert!(s.frame.is_none());
        assert_eq!(s.suffix, b"\n");
    }
}
