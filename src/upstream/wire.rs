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

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Method;
use http_body::Body;
use tokio::io::AsyncWrite;

use super::Error;
use crate::context::body::RequestBody;
use crate::context::Headers;
use crate::http1::chunk_head;
use crate::http1::conn::{last_chunk, WireConn};
use crate::http1::interim::{parse_response, Framing};

/// The most fields a response head may have.
const MAX_RESPONSE_FIELDS: usize = 128;

/// A response head read off a connection, and how its body is framed.
pub(crate) struct Answer {
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
    let len = method.as_str().len()
        + target.len()
        + 40
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>();
    buf.clear();
    if !buf.try_reclaim(len) {
        buf.reserve(len.max(crate::http1::conn::READ_BUFFER));
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
    max_head: usize,
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
    let head_request = head.head_request;
    let limits = (head_request, max_head);
    let result = poll_fn(|cx| exchange_poll(cx, conn, &mut sending, body, limits)).await;
    result.map_err(|(error, answered)| Failed {
        error,
        again: reused && !answered && (!sending.touched || head.idempotent && !head.has_body),
    })
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
    (head_request, max_head): (bool, usize),
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
            Err(Error::ClientBody) => return Poll::Ready(Err((Error::ClientBody, false))),
            Err(_) => s.broken = true,
        }
    }
    loop {
        match parse_response(&conn.buf, MAX_RESPONSE_FIELDS, head_request) {
            Err(_) => return Poll::Ready(Err((Error::BadResponse, true))),
            Ok(Some(head)) => {
                // The head's bytes, frozen: the header values are slices of
                // them (no copy, no allocation per field).
                let bytes = conn.buf.split_to(head.head_len).freeze();
                if head.status == 100 || (102..200).contains(&head.status) {
                    // An interim answer (103 Early Hints, a 100): on to the
                    // client as it came, then the next head.
                    body.interim(cx, &bytes);
                    continue;
                }
                let Ok(status) = http::StatusCode::from_u16(head.status) else {
                    return Poll::Ready(Err((Error::BadResponse, true)));
                };
                if head.status == 101 {
                    return Poll::Ready(Err((Error::BadResponse, true)));
                }
                let mut response = http::Response::new(());
                *response.status_mut() = status;
                *response.version_mut() = if head.http10 {
                    http::Version::HTTP_10
                } else {
                    http::Version::HTTP_11
                };
                let map = response.headers_mut();
                // Room for the fields the response filter adds (a request id).
                map.reserve(head.count + 2);
                for &(n0, n1, v0, v1) in &head.fields[..head.count] {
                    let name = &bytes[n0 as usize..n1 as usize];
                    let Ok(name) = http::HeaderName::from_bytes(name) else {
                        return Poll::Ready(Err((Error::BadResponse, true)));
                    };
                    let value = bytes.slice(v0 as usize..v1 as usize);
                    let Ok(value) = http::HeaderValue::from_maybe_shared(value) else {
                        return Poll::Ready(Err((Error::BadResponse, true)));
                    };
                    map.append(name, value);
                }
                if let Some((r0, r1)) = head.reason {
                    // Kept as the upstream wrote it (hyper writes it back).
                    let reason = bytes.slice(r0 as usize..r1 as usize);
                    if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                        response.extensions_mut().insert(reason);
                    }
                }
                let (parts, ()) = response.into_parts();
                return Poll::Ready(Ok(Answer {
                    head: parts,
                    framing: head.framing,
                    keep_alive: head.keep_alive
                        && !s.broken
                        && s.body_done
                        && s.frame.is_none()
                        && s.suffix.is_empty(),
                }));
            }
            Ok(None) => {
                if conn.buf.len() > max_head {
                    return Poll::Ready(Err((Error::BadResponse, true)));
                }
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
                Poll::Ready(Some(Err(_))) => return Err(Error::ClientBody),
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
