//! An upstream HTTP/1.1 connection of our own and the response body read off
//! it. The connection is a socket, owned by whoever uses it: the worker's
//! pool while it is idle (with no buffer), the request's future during the
//! exchange, then the response body until its last byte, which hands it
//! back (with its buffer) through a [`Home`]. No task, no channel: the
//! request's own task writes and reads it. Also what both sides' bodies
//! share: [`Left`] (a body's framing, stepped over a buffer) and the
//! trailer section read into a map and written back ([`last_chunk`]).

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

use super::stream::Stream;
use super::{is_forbidden_trailer, ChunkedDecoder, Framing};

/// What a read buffer holds when it is taken, and what a read asks room for.
pub(crate) const READ_BUFFER: usize = 16 * 1024;

/// One upstream connection.
pub(crate) struct WireConn {
    pub(crate) stream: Stream,
    /// The read buffer: empty with no capacity while the connection is idle
    /// in the pool; taken from the pool's buffers for an exchange.
    pub(crate) buf: BytesMut,
    /// Counts the connection as open (the upstream's `max_connections`)
    /// until it is dropped; made once per connection.
    _open: Box<dyn Any>,
}

impl WireConn {
    pub(crate) fn new(stream: Stream, open: Box<dyn Any>) -> Self {
        WireConn {
            stream,
            buf: BytesMut::new(),
            _open: open,
        }
    }

    /// Reads more bytes into the buffer (room for [`READ_BUFFER`] made
    /// first, reclaiming the buffer's space when nothing else holds it).
    /// Ready with the count read (0: the peer closed).
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 && !self.buf.try_reclaim(READ_BUFFER) {
            self.buf.reserve(READ_BUFFER);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }
}

/// Where a connection goes when its response is over: back to the worker's
/// pool (`Some` connection: it may carry another exchange), or closed
/// (`None`). Implemented by the upstream pool; `id` is its loan slot.
pub(crate) trait Home {
    fn back(&self, id: u32, conn: Option<WireConn>);
}

/// How much of a body is still to come.
pub(crate) enum Left {
    Length(u64),
    /// The decoder, and the trailer fields read so far: no map (and no
    /// allocation) unless a trailer field that may be forwarded arrives.
    Chunked(ChunkedDecoder, Option<Box<HeaderMap>>),
    /// To the end of the connection (a response only).
    Close,
    Done,
}

/// What a body's buffer gave.
pub(crate) enum Step {
    Data(Bytes),
    /// The trailer fields of a chunked body, after its last data (the body
    /// is over: `Left::Done`). Forbidden ones are dropped, values are
    /// slices of the buffer.
    Trailers(HeaderMap),
    /// Read more, then ask again.
    More,
    Done,
}

impl Left {
    /// The body's framing as what is left of it.
    pub(crate) fn of(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::Length(0) => Left::Done,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(ChunkedDecoder::new(), None),
            // A tunnel's bytes are not a body this reads; as a body it
            // runs to the close.
            Framing::Close | Framing::Tunnel => Left::Close,
        }
    }

    /// Takes the next data out of `buf` (a slice of it, not a copy).
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match self {
                Left::Done => return Ok(Step::Done),
                Left::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = (*left).min(buf.len() as u64) as usize;
                    let data = buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Left::Done;
                    }
                    return Ok(Step::Data(data));
                }
                Left::Close => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Left::Chunked(decoder, trailers) => {
                    let decoded = decoder.decode(buf).map_err(|e| invalid(e.reason()))?;
                    if let Some(range) = decoded.data {
                        buf.advance(range.start);
                        let data = buf.split_to(range.len()).freeze();
                        buf.advance(decoded.consumed - range.end);
                        return Ok(Step::Data(data));
                    }
                    match decoded.trailers {
                        Some(range) => {
                            buf.advance(range.start);
                            let lines = buf.split_to(range.len()).freeze();
                            buf.advance(decoded.consumed - range.end);
                            add_trailers(trailers, &lines)?;
                        }
                        None => buf.advance(decoded.consumed),
                    }
                    if decoded.done {
                        let trailers = trailers.take();
                        *self = Left::Done;
                        if let Some(map) = trailers {
                            return Ok(Step::Trailers(*map));
                        }
                        continue;
                    }
                    // Size lines or trailer lines were used up: what is
                    // left may hold more before anything is read.
                    if decoded.consumed > 0 {
                        continue;
                    }
                    return Ok(Step::More);
                }
            }
        }
    }
}

/// Adds the trailer field lines `lines` (whole lines, each with its CRLF,
/// already checked by the decoder) to `map`, made on the first field that
/// is not forbidden; forbidden ones are dropped. Values are slices of
/// `lines`, not copies.
fn add_trailers(map: &mut Option<Box<HeaderMap>>, lines: &Bytes) -> io::Result<()> {
    let bad = || invalid("invalid trailer field");
    let ows = |b: u8| b == b' ' || b == b'\t';
    let mut at = 0;
    while at < lines.len() {
        let lf = lines[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(bad)?;
        // The decoder passed only whole lines ending in CRLF.
        let text = &lines[at..at + lf.saturating_sub(1)];
        let colon = text.iter().position(|&b| b == b':').ok_or_else(bad)?;
        if !is_forbidden_trailer(&text[..colon]) {
            let (mut v0, mut v1) = (colon + 1, text.len());
            while v0 < v1 && ows(text[v0]) {
                v0 += 1;
            }
            while v1 > v0 && ows(text[v1 - 1]) {
                v1 -= 1;
            }
            let name = HeaderName::from_bytes(&text[..colon]).map_err(|_| bad())?;
            let value =
                HeaderValue::from_maybe_shared(lines.slice(at + v0..at + v1)).map_err(|_| bad())?;
            map.get_or_insert_with(Box::default).append(name, value);
        }
        at += lf + 1;
    }
    Ok(())
}

/// The end of a chunked body with `trailers`: the last chunk, each field
/// that may be forwarded, the final CRLF. Used where trailers come as a map
/// (an HTTP/2 peer's, or ours read by [`Left`]); made only when a body has
/// trailers.
pub(crate) fn last_chunk(trailers: &HeaderMap) -> Bytes {
    let len = trailers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>();
    let mut out = BytesMut::with_capacity(len + 5);
    out.put_slice(super::LAST_CHUNK_LINE);
    for (name, value) in trailers {
        if is_forbidden_trailer(name.as_str().as_bytes()) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// A response body read off an upstream connection it owns, frame by frame
/// as bytes arrive (backpressure: nothing is read until the frame before is
/// taken). Its data frames are slices of the connection's read buffer, not
/// copies. The connection goes home at the end of the body (reusable when
/// the response allowed it and nothing followed the body), or closed if the
/// body is dropped early or fails.
pub(crate) struct WireBody {
    conn: Option<WireConn>,
    left: Left,
    keep_alive: bool,
    home: Option<(std::rc::Rc<dyn Home>, u32)>,
}

impl WireBody {
    /// The body of a response whose head was parsed off `conn` (whose
    /// buffer holds what followed the head).
    pub(crate) fn new(
        conn: WireConn,
        framing: Framing,
        keep_alive: bool,
        home: (std::rc::Rc<dyn Home>, u32),
    ) -> Self {
        let left = Left::of(framing);
        let mut body = WireBody {
            conn: Some(conn),
            left,
            keep_alive,
            home: Some(home),
        };
        if matches!(body.left, Left::Done) {
            body.finish(true);
        }
        body
    }

    /// Hands the connection home: to be used again if `reusable` (and the
    /// response allowed it, and no stray bytes followed), else closed.
    fn finish(&mut self, reusable: bool) {
        self.left = Left::Done;
        let conn = self.conn.take();
        if let Some((home, id)) = self.home.take() {
            let back = conn.filter(|c| reusable && self.keep_alive && c.buf.is_empty());
            home.back(id, back);
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    /// The exact length still to come, when known.
    pub(crate) fn exact_len(&self) -> Option<u64> {
        match self.left {
            Left::Done => Some(0),
            Left::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The next frame (data, or the trailers at the end of a chunked
    /// body); `None` at the end. An error (the upstream closed early, bad
    /// chunked framing) closes the connection.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let polled = self.poll_step(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            _ => {}
        }
        polled
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.left.step(&mut conn.buf)? {
                Step::Data(data) => {
                    if matches!(self.left, Left::Done) {
                        self.finish(true);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Trailers(trailers) => {
                    self.finish(true);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Step::Done => return Poll::Ready(None),
                Step::More => {
                    if ready!(conn.poll_fill(cx))? == 0 {
                        if matches!(self.left, Left::Close) {
                            self.keep_alive = false;
                            self.left = Left::Done;
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Err(early_end())));
                    }
                }
            }
        }
    }
}

impl Drop for WireBody {
    fn drop(&mut self) {
        if self.home.is_some() {
            // Dropped before its end (the client went away): closed.
            let done = matches!(self.left, Left::Done);
            self.finish(done);
        }
    }
}

fn early_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "upstream closed before the end of the body",
    )
}

fn invalid(reason: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps `left` over `buf` until it wants more or is done.
    fn steps(left: &mut Left, buf: &mut BytesMut) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match left.step(buf).expect("a valid body") {
                Step::Data(d) => out.push(format!("data {}", String::from_utf8_lossy(&d))),
                Step::Trailers(t) => {
                    let fields: Vec<String> = t
                        .iter()
                        .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                        .collect();
                    out.push(format!("trailers {}", fields.join(",")));
                }
                Step::More => return out,
                Step::Done => {
                    out.push("done".into());
                    return out;
                }
            }
        }
    }

    #[test]
    fn trailers_split_over_reads_arrive_once_after_the_data_without_forbidden_ones() {
        let mut left = Left::of(Framing::Chunked);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\nX-A: \t1 \r\nHost: evil\r\nX-B"[..]);
        assert_eq!(steps(&mut left, &mut buf), ["data hello"]);
        buf.extend_from_slice(b": 2\r\nx-a: 3\r\n\r\nNEXT");
        assert_eq!(
            steps(&mut left, &mut buf),
            ["trailers x-a=1,x-a=3,x-b=2", "done"]
        );
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn no_trailers_no_map_and_only_forbidden_ones_none_either() {
        for body in [
            &b"0\r\n\r\nNEXT"[..],
            b"0\r\nCookie: a\r\nTE: x\r\n\r\nNEXT",
        ] {
            let mut left = Left::of(Framing::Chunked);
            let mut buf = BytesMut::from(body);
            assert_eq!(steps(&mut left, &mut buf), ["done"]);
            assert_eq!(&buf[..], b"NEXT");
        }
    }

    #[test]
    fn last_chunk_writes_the_fields_that_may_be_forwarded() {
        let mut t = HeaderMap::new();
        t.append("x-sum", HeaderValue::from_static("1"));
        t.append("content-length", HeaderValue::from_static("9"));
        t.append("grpc-status", HeaderValue::from_static("0"));
        t.append("x-sum", HeaderValue::from_static("2"));
        assert_eq!(
            &last_chunk(&t)[..],
            b"0\r\nx-sum: 1\r\nx-sum: 2\r\ngrpc-status: 0\r\n\r\n"
        );
        assert_eq!(&last_chunk(&HeaderMap::new())[..], super::super::LAST_CHUNK);
    }
}
