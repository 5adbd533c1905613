//! The HTTP/1.1 codec of our own (RFC 9112): pure, synchronous functions over
//! byte slices that read a request or response head, decode and encode
//! chunked bodies, and write heads. The connection loop that reads sockets,
//! and the header view middlewares see, are left to the layers above.
//!
//! Three things it never does: allocate on the heap (a complete head's field
//! list goes into the request's bumpalo arena, once), copy (every name, value,
//! method, target and body range is a view of the caller's buffer), or block
//! (it sees only the bytes it is given; `Ok(None)` means "read more").
//!
//! It is strict where RFC 9112 lets a recipient choose, because a proxy that
//! reads a head differently from the server behind it can be made to smuggle
//! a request past its own checks. A head is refused, before anything is
//! forwarded, when it has: a bare LF or a bare CR anywhere (CRLF only), an
//! obs-fold line, whitespace between a field name and its colon, a control
//! character (other than HTAB) in a value, Content-Length and
//! Transfer-Encoding together, more than one Content-Length (even equal, even
//! as a list), a Transfer-Encoding whose final coding is not `chunked`, a
//! Transfer-Encoding on HTTP/1.0; and for requests a missing, repeated or
//! invalid Host, a target of the wrong form for its method, a target with a
//! fragment or a byte that is not visible ASCII. The rules, each with its
//! status, are `HeadError`'s variants; a caller answers a refused request
//! with `HeadError::status` and a refused response with 502.
//!
//! - `request.rs`: `parse_request`, the request head.
//! - `response.rs`: `parse_response`, the response head and its framing.
//! - `head.rs`: what both share: the line scan, field checks, framing fields.
//! - `chunked.rs`: the streaming chunked decoder and the chunk encoder.
//! - `write.rs`: status lines and decimal lengths without formatting.
//!
//! Beside the codec, what the data path's HTTP/1.1 runs on: `stream.rs`
//! (plain or TLS, one enum), `conn.rs` (an upstream connection and the
//! response body read off it), `server.rs` (a request body read off a
//! client connection). The data path finds a request head's end with
//! `request_head_end` (one line scan), splits the head off its buffer and
//! parses the split-off bytes once with `parse_scanned_request` (the scan
//! is not run again; the views borrow the bytes for the request's life); a response head is parsed in place by `parse_response`
//! and frozen out after (its values become slices of the frozen bytes).

mod chunked;
pub(crate) mod conn;
mod head;
mod request;
mod response;
pub(crate) mod server;
pub(crate) mod stream;
mod write;

pub use chunked::{
    chunk_head, is_forbidden_trailer, ChunkError, ChunkedDecoder, Decoded, FORBIDDEN_TRAILERS,
    LAST_CHUNK, LAST_CHUNK_LINE,
};
pub use head::{is_hop_by_hop_name, HeadError};
pub use request::{
    parse_request, parse_scanned_request, request_head_end, request_head_len, HeadEnd, RequestHead,
};
pub(crate) use request::{same_authority, split_host};
pub use response::{parse_response, Informational, RequestKind, ResponseHead};
pub use write::{decimal, status_line};

/// The protocol version of a head: only these two exist in HTTP/1.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: no keep-alive unless asked, no chunked coding.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// One field line as received: the name with its case kept, the value with
/// the whitespace around it trimmed (RFC 9112 §5.1), both borrowing the
/// head's buffer. It is httparse's own type, so the field list a head keeps
/// is the array httparse filled, not a copy of it.
pub use httparse::Header as Field;

/// How the message body after a head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request without Content-Length or Transfer-Encoding; a
    /// response to HEAD, a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes (a `Content-Length`).
    Length(u64),
    /// Chunked coding, decoded by `ChunkedDecoder`.
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    Close,
    /// Responses only: a 2xx to CONNECT; the connection becomes a tunnel.
    Tunnel,
}

/// The bounds a head is read under; a head over them is refused early,
/// before it is complete, so a client cannot make the reader buffer more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the first byte through the blank line (431 beyond).
    /// The server's `server.max_header_bytes`.
    pub max_head_bytes: usize,
    /// Field lines in one head (431 beyond). The server's `server.max_headers`.
    pub max_fields: usize,
    /// Bytes of the request-target (414 beyond).
    pub max_target: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_fields: 100,
            max_target: 8 * 1024,
        }
    }
}
