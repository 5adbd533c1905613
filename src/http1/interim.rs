//! INTERIM (replaced by the strict codec of `response.rs` / `chunked.rs`):
//! the response head and chunked decoding the client side needs.

use std::ops::Range;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) http10: bool,
    pub(crate) head_len: usize,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    /// Each field as (name start, name end, value start, value end) in the
    /// buffer, so the caller can take them as slices of the frozen head.
    pub(crate) fields: [(u32, u32, u32, u32); MAX_FIELDS],
    pub(crate) count: usize,
    /// The reason phrase's place in the buffer, when it is not the
    /// canonical one for the status.
    pub(crate) reason: Option<(u32, u32)>,
}

/// The most fields a response head may have.
pub(crate) const MAX_FIELDS: usize = 128;

pub(crate) fn parse_response(
    buf: &[u8],
    max_fields: usize,
    head_request: bool,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let n = max_fields.min(storage.len());
    let mut response = httparse::Response::new(&mut storage[..n]);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let status = response.code.ok_or("no status")?;
    // Every line ends in CRLF (httparse also takes a bare LF).
    if buf[..head_len]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'))
    {
        return Err("bare LF in the response head");
    }
    let http10 = response.version == Some(0);
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_FIELDS];
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let reason = response.reason.filter(|r| {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            != Some(*r)
    });
    let reason = reason.map(|r| (offset(r.as_bytes()), offset(r.as_bytes()) + r.len() as u32));
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut close = http10;
    for (i, h) in response.headers.iter().enumerate() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "bad name")?;
        if h.value
            .iter()
            .any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
        {
            return Err("bad value");
        }
        let (n, v) = (offset(h.name.as_bytes()), offset(h.value));
        fields[i] = (n, n + h.name.len() as u32, v, v + h.value.len() as u32);
        if name == http::header::CONTENT_LENGTH {
            let text = std::str::from_utf8(h.value).map_err(|_| "bad length")?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || length.is_some() {
                return Err("bad content-length");
            }
            length = Some(text.parse().map_err(|_| "bad content-length")?);
        } else if name == http::header::TRANSFER_ENCODING {
            te = true;
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == http::header::CONNECTION {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    if te && length.is_some() {
        return Err("both content-length and transfer-encoding");
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if te {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let keep_alive = !close && framing != Framing::Close;
    Ok(Some(ResponseHead {
        status,
        http10,
        head_len,
        framing,
        keep_alive,
        fields,
        count: response.headers.len(),
        reason,
    }))
}

#[derive(Debug, Default, Clone, Copy)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: State,
}

pub(crate) struct Decoded {
    pub(crate) consumed: usize,
    pub(crate) data: Option<Range<usize>>,
    pub(crate) done: bool,
}

impl ChunkedDecoder {
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Decoded, &'static str> {
        let mut at = 0;
        loop {
            match self.state {
                State::Done => {
                    return Ok(Decoded {
                        consumed: at,
                        data: None,
                        done: true,
                    })
                }
                State::Size => {
                    let Some(end) = find_crlf(&input[at..])? else {
                        if input.len() - at > 4096 {
                            return Err("chunk size line too long");
                        }
                        return Ok(Decoded {
                            consumed: at,
                            data: None,
                            done: false,
                        });
                    };
                    let line = &input[at..at + end];
                    let hex = line.split(|&b| b == b';').next().unwrap_or(line);
                    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err("bad chunk size");
                    }
                    let size = hex.iter().fold(0u64, |n, &d| {
                        n * 16 + (d as char).to_digit(16).unwrap_or(0) as u64
                    });
                    at += end + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let have = (input.len() - at) as u64;
                    if have == 0 {
                        return Ok(Decoded {
                            consumed: at,
                            data: None,
                            done: false,
                        });
                    }
                    let take = have.min(left) as usize;
                    self.state = if take as u64 == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take as u64)
                    };
                    return Ok(Decoded {
                        consumed: at + take,
                        data: Some(at..at + take),
                        done: false,
                    });
                }
                State::DataEnd => {
                    if input.len() - at < 2 {
                        return Ok(Decoded {
                            consumed: at,
                            data: None,
                            done: false,
                        });
                    }
                    if &input[at..at + 2] != b"\r\n" {
                        return Err("no CRLF after chunk data");
                    }
                    at += 2;
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(end) = find_crlf(&input[at..])? else {
                        if input.len() - at > 16 * 1024 {
                            return Err("trailers too large");
                        }
                        return Ok(Decoded {
                            consumed: at,
                            data: None,
                            done: false,
                        });
                    };
                    at += end + 2;
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// The offset of the first CRLF; a bare CR or LF is an error.
fn find_crlf(s: &[u8]) -> Result<Option<usize>, &'static str> {
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'\r' => {
                return match s.get(i + 1) {
                    Some(b'\n') => Ok(Some(i)),
                    Some(_) => Err("bare CR"),
                    None => Ok(None),
                }
            }
            b'\n' => return Err("bare LF"),
            _ => {}
        }
    }
    Ok(None)
}
