//! An upstream HTTP/1.1 connection of our own and the response body read off
//! it. The connection is a socket, owned by whoever uses it: the worker's
//! pool while it is idle (with no buffer), the request's future during the
//! exchange, then the response body until its last byte, which hands it
//! back (with its buffer) through a [`Home`]. No task, no channel: the
//! request's own task writes and reads it.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Frame;

use super::stream::Stream;
use super::{ChunkedDecoder, Framing};

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
    Chunked(ChunkedDecoder),
    /// To the end of the connection (a response only).
    Close,
    Done,
}

/// What a body's buffer gave.
pub(crate) enum Step {
    Data(Bytes),
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
            Framing::Chunked => Left::Chunked(ChunkedDecoder::new()),
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
                Left::Chunked(decoder) => {
                    let decoded = decoder.decode(buf).map_err(|e| invalid(e.reason()))?;
                    if let Some(range) = decoded.data {
                        buf.advance(range.start);
                        let data = buf.split_to(range.len()).freeze();
                        buf.advance(decoded.consumed - range.end);
                        return Ok(Step::Data(data));
                    }
                    buf.advance(decoded.consumed);
                    if decoded.done {
                        *self = Left::Done;
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

    /// The next data frame; `None` at the end. An error (the upstream
    /// closed early, bad chunked framing) closes the connection.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let polled = self.poll_data(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            _ => {}
        }
        polled.map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.left.step(&mut conn.buf)? {
                Step::Data(data) => {
                    if matches!(self.left, Left::Done) {
                        self.finish(true);
                    }
                    return Poll::Ready(Some(Ok(data)));
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
