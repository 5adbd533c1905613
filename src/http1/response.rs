//! The response head (RFC 9112 §4) and its body's framing (§6.3):
//! `parse_response` reads an upstream's head out of its buffer, knowing
//! what the request was (HEAD, CONNECT), or refuses it (the caller's 502).

use std::mem::MaybeUninit;

use bumpalo::Bump;

use super::head::{self, scan, Semantics, PARTIAL_FIELDS};
use super::{Field, Framing, HeadError, Limits, Version};

/// What of the request decides the response's framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestKind {
    /// The request was HEAD: the response has no body, whatever it says.
    pub head: bool,
    /// The request was CONNECT: a 2xx makes the connection a tunnel.
    pub connect: bool,
}

/// A 1xx response, which precedes the final one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Informational {
    /// 100 Continue: the caller answers it (or not) itself.
    Continue,
    /// 101 Switching Protocols: the upgrade the request asked for.
    SwitchingProtocols,
    /// Any other 1xx (103 Early Hints...): forwarded as it is.
    Other(u16),
}

/// A complete, checked response head, borrowing its buffer and the arena.
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead<'b> {
    /// The status code, 100 to 599.
    pub status: u16,
    /// The reason phrase (empty if absent, or not ASCII).
    pub reason: &'b str,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The field lines in the order received.
    pub fields: &'b [Field<'b>],
    /// Bytes of the buffer through the blank line.
    pub head_len: usize,
    /// The body's framing (RFC 9112 §6.3).
    pub framing: Framing,
    /// Whether the upstream connection may carry another request.
    pub keep_alive: bool,
    /// Connection names fields other than close, keep-alive and upgrade.
    names_fields: bool,
}

impl<'b> ResponseHead<'b> {
    /// 1xx: which one, or `None` for a final response.
    pub fn informational(&self) -> Option<Informational> {
        match self.status {
            100 => Some(Informational::Continue),
            101 => Some(Informational::SwitchingProtocols),
            s @ 102..=199 => Some(Informational::Other(s)),
            _ => None,
        }
    }

    /// Whether a field is hop-by-hop in this response: a fixed name or one
    /// its Connection lists.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        head::hop_by_hop(self.fields, self.names_fields, name)
    }
}

/// Reads a response head from the start of `buf`, as `parse_request` does
/// (`Ok(None)`: read more; the field list is allocated in `arena` once).
///
/// Framing (RFC 9112 §6.3): a response to HEAD, a 1xx, 204 or 304 has none;
/// a 2xx to CONNECT is a tunnel; a final `chunked` is chunked; a
/// Transfer-Encoding not ending in `chunked` is read to close; else a
/// Content-Length, else to close. Refused besides the shared rules: a
/// coding other than `chunked` (the proxy would drop it with the
/// hop-by-hop Transfer-Encoding, leaving a body nobody can decode), and a
/// status outside 100-599.
pub fn parse_response<'b>(
    buf: &'b [u8],
    arena: &'b Bump,
    limits: &Limits,
    request: RequestKind,
) -> Result<Option<ResponseHead<'b>>, HeadError> {
    let Some(scanned) = scan(buf, limits, false)? else {
        return partial(buf);
    };
    let mut res = httparse::Response::new(
        arena.alloc_slice_fill_copy(scanned.fields, httparse::EMPTY_HEADER),
    );
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        // The scan saw the blank line, so httparse does: unreachable.
        Ok(httparse::Status::Partial) => return Err(HeadError::BareLf),
        Err(e) => return Err(head::field_error(e, buf)),
    };
    debug_assert_eq!(head_len, scanned.head_len);
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(HeadError::InvalidStatusLine);
    };
    if !(100..=599).contains(&status) {
        return Err(HeadError::InvalidStatusLine);
    }
    let version = match minor {
        0 => Version::Http10,
        _ => Version::Http11,
    };
    let reason = res.reason.unwrap_or_default();
    let fields: &'b [Field<'b>] = res.headers;
    let s = Semantics::read(fields, version)?;
    if s.transfer_encoding && s.other_coding {
        return Err(HeadError::UnsupportedCoding);
    }
    let framing = if request.head || matches!(status, 100..=199 | 204 | 304) {
        Framing::None
    } else if request.connect && (200..=299).contains(&status) {
        Framing::Tunnel
    } else if s.transfer_encoding {
        match s.chunked {
            true => Framing::Chunked,
            false => Framing::Close,
        }
    } else if let Some(n) = s.content_length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let keep_alive = s.keep_alive(version) && !matches!(framing, Framing::Close | Framing::Tunnel);
    Ok(Some(ResponseHead {
        status,
        reason,
        version,
        fields,
        head_len,
        framing,
        keep_alive,
        names_fields: s.names_fields,
    }))
}

/// An incomplete head: what httparse refuses of it already.
fn partial<T>(buf: &[u8]) -> Result<Option<T>, HeadError> {
    let mut stack = [const { MaybeUninit::uninit() }; PARTIAL_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    match config.parse_response_with_uninit_headers(&mut res, buf, &mut stack) {
        Err(httparse::Error::TooManyHeaders) | Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(head::field_error(e, buf)),
        Ok(httparse::Status::Complete(_)) => Err(HeadError::BareLf),
    }
}

#[cfg(test)]
mod tests;
