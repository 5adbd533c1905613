//! What the server side of our own HTTP/1.1 needs below the context: the
//! request body read off a client connection. The connection itself (its
//! stream, buffer and loop) is the worker's; the body reaches it through
//! [`ClientRead`], so the body's type does not depend on the stream's.

use std::io;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use super::conn::Left;
use super::Framing;

/// A client connection a request body is read from.
pub(crate) trait ClientRead {
    /// The next frame of the body `left` describes: bytes (slices of the
    /// connection's read buffer), or a chunked body's trailers at its end;
    /// `None` at its end. Sends `100 Continue` first if the client asked
    /// for it and nothing was sent yet.
    fn poll_body(
        &self,
        cx: &mut Context<'_>,
        left: &mut Left,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>>;

    /// An interim response (1xx) of the upstream, as it came, to go to the
    /// client before the final one: written now if the socket takes it,
    /// else before the final response's head. Dropped for an HTTP/1.0
    /// client, which must not get one (RFC 9110 §15.2).
    fn interim(&self, cx: &mut Context<'_>, head: &[u8]);
}

/// A request body on its way from a client connection of our own.
pub(crate) struct WireClientBody {
    src: Rc<dyn ClientRead>,
    left: Left,
}

impl WireClientBody {
    pub(crate) fn new(src: Rc<dyn ClientRead>, framing: Framing) -> Self {
        WireClientBody {
            src,
            left: Left::of(framing),
        }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if matches!(self.left, Left::Done) {
            return Poll::Ready(None);
        }
        self.src.poll_body(cx, &mut self.left)
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    /// Forwards an upstream's interim response to the client.
    pub(crate) fn interim(&self, cx: &mut Context<'_>, head: &[u8]) {
        self.src.interim(cx, head);
    }

    /// The exact length still to come, when known.
    pub(crate) fn exact_len(&self) -> Option<u64> {
        match self.left {
            Left::Done => Some(0),
            Left::Length(n) => Some(n),
            _ => None,
        }
    }
}
