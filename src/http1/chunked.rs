//! The chunked transfer coding (RFC 9112 §7.1): `ChunkedDecoder`, a
//! streaming state machine that tells the caller where the payload bytes are
//! in what it read (never copying them) and where the trailer section is,
//! and the encoder's pieces (`chunk_head`, `LAST_CHUNK`).
//!
//! Strict: a chunk size is hex digits only (no sign, space or `0x`) below
//! 2^63; a size line with its extensions is at most 4 KiB, each extension
//! `;name[=token|quoted-string]` with no whitespace; every line ends in
//! CRLF; the trailer section is at most 16 KiB and 100 field lines, each a
//! valid field line (no obs-fold, no control but HTAB). A trailer field that
//! frames, routes, carries credentials or is hop-by-hop (`FORBIDDEN_TRAILERS`,
//! `is_forbidden_trailer`) is a valid line the recipient drops (RFC 9110
//! §6.5.1): it exists only to confuse a recipient that merges trailers into
//! the header section, and dropping it keeps the message's other trailers.

use std::ops::Range;

use super::head::is_token;

/// The last chunk with no trailers: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The last chunk's size line: followed by the trailer bytes the decoder
/// reported (whole field lines, each with its CRLF) and a final CRLF, it
/// re-emits a body's end with its trailers.
pub const LAST_CHUNK_LINE: &[u8] = b"0\r\n";

/// The longest chunk-size line, extensions included, CRLF excluded.
const MAX_SIZE_LINE: usize = 4 * 1024;
/// The longest trailer section, final CRLF excluded.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The most trailer field lines.
const MAX_TRAILERS: usize = 100;
/// The largest chunk: sizes stay below 2^63, as RFC 9112 §7.1 advises
/// (a 64-bit size that wraps is a classic smuggling lever).
const MAX_CHUNK: u64 = i64::MAX as u64;

/// Trailer fields never forwarded (RFC 9110 §6.5.1): framing, routing,
/// hop-by-hop, the content's processing, request modifiers and credentials.
pub const FORBIDDEN_TRAILERS: [&str; 16] = [
    "content-length",
    "transfer-encoding",
    "host",
    "trailer",
    "te",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "content-encoding",
    "content-type",
    "content-range",
    "expect",
    "range",
    "authorization",
    "cookie",
];

/// Why a chunked body was refused (the request's 400, the response's 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The size is empty or has a byte that is not a hex digit.
    InvalidSize,
    /// The size is 2^63 or more.
    SizeOverflow,
    /// The size line is longer than 4 KiB.
    SizeLineTooLong,
    /// An extension that is not `;token[=token|quoted-string]`.
    InvalidExtension,
    /// A LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// The chunk's data is not followed by CRLF.
    MissingCrlf,
    /// The trailer section is longer than 16 KiB.
    TrailersTooLarge,
    /// More than 100 trailer fields.
    TooManyTrailers,
    /// A trailer line that is not a valid field line.
    InvalidTrailer,
}

impl ChunkError {
    /// A short, static reason for the log.
    pub fn reason(self) -> &'static str {
        use ChunkError::*;
        match self {
            InvalidSize => "invalid chunk size",
            SizeOverflow => "chunk size too large",
            SizeLineTooLong => "chunk size line too long",
            InvalidExtension => "invalid chunk extension",
            BareLf => "bare LF in chunked framing",
            BareCr => "bare CR in chunked framing",
            MissingCrlf => "chunk data not followed by CRLF",
            TrailersTooLarge => "trailer section too large",
            TooManyTrailers => "too many trailer fields",
            InvalidTrailer => "invalid trailer field",
        }
    }
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

/// What one `decode` call found in its input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used; the rest (a partial trailer line, or what
    /// follows the body) must be presented again, followed by more.
    pub consumed: usize,
    /// Payload bytes, as a range of the input.
    pub data: Option<Range<usize>>,
    /// Complete trailer field lines (each with its CRLF), a range of the
    /// input, to forward after `LAST_CHUNK_LINE` without the lines whose
    /// name `is_forbidden_trailer`.
    pub trailers: Option<Range<usize>>,
    /// The body ended (the final CRLF is consumed).
    pub done: bool,
}

/// Where the decoder is in the coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the size's hex digits; `any`: at least one seen.
    Size { any: bool },
    /// In the extensions after the size.
    Ext(Ext),
    /// After the size line's CR.
    SizeLf,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data.
    DataCr,
    /// After the CR that follows a chunk's data.
    DataLf,
    /// In the trailer section (line by line).
    Trailers,
    /// The body is over.
    Done,
}

/// Where in `;name[=value]` an extension is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    NameStart,
    Name,
    ValueStart,
    Token,
    Quoted,
    Escape,
    AfterQuoted,
}

/// A streaming decoder of one chunked body. Feed it what was read; it
/// keeps its place between calls, so input may be split anywhere.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read.
    size: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    /// Trailer fields seen.
    trailers: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { any: false },
            size: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// Whether the body is over.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input` up to the first payload bytes (and
    /// returns them), the end of the body, or the end of the input.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Data(left) => {
                    let n = left.min((input.len() - at) as u64) as usize;
                    self.state = match left - n as u64 {
                        0 => State::DataCr,
                        left => State::Data(left),
                    };
                    return Ok(Decoded {
                        consumed: at + n,
                        data: Some(at..at + n),
                        ..Decoded::default()
                    });
                }
                State::Trailers => return self.trailer_lines(input, at),
                State::Done => break,
                _ => {
                    self.step(input[at])?;
                    at += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: at,
            done: self.is_done(),
            ..Decoded::default()
        })
    }

    /// One byte of framing: a size line, or the CRLF after data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use Ext::*;
        if matches!(self.state, State::Size { .. } | State::Ext(_)) {
            self.line += 1;
            if self.line > MAX_SIZE_LINE {
                return Err(ChunkError::SizeLineTooLong);
            }
        }
        self.state = match (self.state, b) {
            (State::Size { .. }, b) if b.is_ascii_hexdigit() => {
                if self.size > MAX_CHUNK >> 4 {
                    return Err(ChunkError::SizeOverflow);
                }
                self.size = self.size << 4 | u64::from(hex(b));
                State::Size { any: true }
            }
            (State::Size { any: false }, _) => return Err(ChunkError::InvalidSize),
            (State::Size { any: true }, b';') => State::Ext(NameStart),
            (State::Size { .. } | State::Ext(_), b'\n') => return Err(ChunkError::BareLf),
            (State::Size { any: true }, b'\r') => State::SizeLf,
            (State::Size { .. }, _) => return Err(ChunkError::InvalidSize),
            (State::Ext(ext), b) => match (ext, b) {
                (NameStart | Name, b) if is_token(b) => State::Ext(Name),
                (Name, b'=') => State::Ext(ValueStart),
                (ValueStart | Token, b) if is_token(b) => State::Ext(Token),
                (ValueStart, b'"') => State::Ext(Quoted),
                (Quoted, b'"') => State::Ext(AfterQuoted),
                (Quoted, b'\\') => State::Ext(Escape),
                (Quoted, b) if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => {
                    State::Ext(Quoted)
                }
                (Escape, b) if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => {
                    State::Ext(Quoted)
                }
                (Name | Token | AfterQuoted, b';') => State::Ext(NameStart),
                (Name | Token | AfterQuoted, b'\r') => State::SizeLf,
                _ => return Err(ChunkError::InvalidExtension),
            },
            (State::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.size);
                self.line = 0;
                match size {
                    0 => State::Trailers,
                    n => State::Data(n),
                }
            }
            (State::SizeLf, _) => return Err(ChunkError::BareCr),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr, _) => return Err(ChunkError::MissingCrlf),
            (State::DataLf, b'\n') => State::Size { any: false },
            (State::DataLf, _) => return Err(ChunkError::BareCr),
            (State::Data(_) | State::Trailers | State::Done, _) => {
                unreachable!("decode handles these states itself")
            }
        };
        Ok(())
    }

    /// The trailer section from `at`: every complete line is checked and
    /// consumed; the blank one ends the body. A partial line is left for
    /// the next call.
    fn trailer_lines(&mut self, input: &[u8], at: usize) -> Result<Decoded, ChunkError> {
        let start = at;
        let mut at = at;
        let mut done = false;
        while let Some(lf) = input[at..].iter().position(|&b| b == b'\n') {
            let line = &input[at..at + lf + 1];
            let Some(text) = line.strip_suffix(b"\r\n") else {
                return Err(ChunkError::BareLf);
            };
            if text.is_empty() {
                done = true;
                break;
            }
            self.line += line.len();
            self.trailers += 1;
            if self.line > MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailersTooLarge);
            }
            if self.trailers > MAX_TRAILERS {
                return Err(ChunkError::TooManyTrailers);
            }
            trailer_field(text)?;
            at += line.len();
        }
        if !done && self.line + (input.len() - at) > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailersTooLarge);
        }
        let trailers = (at > start).then_some(start..at);
        if done {
            self.state = State::Done;
            at += 2;
        }
        Ok(Decoded {
            consumed: at,
            data: None,
            trailers,
            done,
        })
    }
}

/// A trailer line (CRLF removed): `name: value`, the name a token with no
/// whitespace before the colon, the value without controls but HTAB (so no
/// CR).
fn trailer_field(text: &[u8]) -> Result<(), ChunkError> {
    let colon = text
        .iter()
        .position(|&b| b == b':')
        .ok_or(ChunkError::InvalidTrailer)?;
    let (name, value) = (&text[..colon], &text[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(ChunkError::InvalidTrailer);
    }
    if !value.iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f) {
        return Err(ChunkError::InvalidTrailer);
    }
    Ok(())
}

/// Whether a trailer field of this name (any case) must be dropped rather
/// than forwarded: it is one of `FORBIDDEN_TRAILERS`.
pub fn is_forbidden_trailer(name: &[u8]) -> bool {
    FORBIDDEN_TRAILERS
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The size line of a chunk of `len` bytes (`len` > 0: a zero is the last
/// chunk, `LAST_CHUNK`): lowercase hex and CRLF, written into `out`.
pub fn chunk_head(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((usize::BITS - len.leading_zeros()).max(1)).div_ceil(4) as usize;
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        *slot = HEX[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    out[digits..digits + 2].copy_from_slice(b"\r\n");
    &out[..digits + 2]
}

#[cfg(test)]
mod tests;
