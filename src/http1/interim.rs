//! INTERIM (to be replaced by the strict codec's `parse_request` and
//! `parse_response`): the request and response heads the data path reads.

pub(crate) use super::Framing;

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

/// Why a request head is refused, and the status that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// 400, with the reason.
    Bad(&'static str),
    /// 431: too many fields, or a head over the limit.
    TooLarge,
    /// 414: the request line alone is over the limit.
    UriTooLong,
    /// 501: a transfer coding we do not implement.
    NotImplemented,
    /// 505: an HTTP major version other than 1.
    Version,
}

impl HeadError {
    pub(crate) fn status(self) -> u16 {
        match self {
            HeadError::Bad(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            HeadError::NotImplemented => 501,
            HeadError::Version => 505,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            HeadError::Bad(r) => r,
            HeadError::TooLarge => "request header fields too large",
            HeadError::UriTooLong => "request target too long",
            HeadError::NotImplemented => "transfer coding not implemented",
            HeadError::Version => "HTTP version not supported",
        }
    }
}

/// A request head found in a buffer, as offsets into it (the caller
/// freezes the head and takes the views from the frozen bytes).
pub(crate) struct RequestInfo {
    pub(crate) head_len: usize,
    /// Where the request line starts (empty lines before it are skipped).
    pub(crate) method: (u32, u32),
    pub(crate) target: (u32, u32),
    pub(crate) http10: bool,
    pub(crate) fields: [(u32, u32, u32, u32); MAX_FIELDS],
    pub(crate) count: usize,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    /// `Upgrade` with `Connection: upgrade`, or `CONNECT`: the tunnel code's.
    pub(crate) tunnel: bool,
}

/// Parses a request head: `Ok(None)` while incomplete (call again with
/// more bytes). Strict: CRLF line ends only, one Content-Length, no
/// Content-Length with Transfer-Encoding, `chunked` last and once.
pub(crate) fn parse_request(
    buf: &[u8],
    max_head: usize,
    max_fields: usize,
) -> Result<Option<RequestInfo>, HeadError> {
    // Empty lines before the request line (RFC 9112 §2.2).
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    // The request line alone may take 8 KiB (nginx's line buffer), or the
    // head limit if lower: past it, 414.
    let max_line = max_head.min(8 * 1024);
    let line_end = buf[start..].windows(2).position(|w| w == b"\r\n");
    if line_end.map_or(buf.len() - start, |e| e) > max_line {
        return Err(HeadError::UriTooLong);
    }
    let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let n = max_fields.min(MAX_FIELDS);
    let mut request = httparse::Request::new(&mut storage[..n]);
    let len = match request.parse(&buf[start..]) {
        Ok(httparse::Status::Complete(len)) => start + len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head {
                let line_done = buf[start..].windows(2).any(|w| w == b"\r\n");
                return Err(match line_done {
                    true => HeadError::TooLarge,
                    false => HeadError::UriTooLong,
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            // `HTTP/2.0` or later in an HTTP/1 request line: 505.
            let line = &buf[start..start + line_end.unwrap_or(buf.len() - start)];
            let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
            let later = version.len() == 8
                && version.starts_with(b"HTTP/")
                && matches!(version[5], b'2'..=b'9')
                && version[6] == b'.'
                && version[7].is_ascii_digit();
            return Err(match later {
                true => HeadError::Version,
                false => HeadError::Bad("malformed request head"),
            });
        }
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = &buf[..len];
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return Err(HeadError::Bad("bare LF in the request head"));
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let span = |s: &[u8]| (offset(s), offset(s) + s.len() as u32);
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Bad("malformed request line"));
    };
    let http10 = version == 0;
    let connect = method == "CONNECT";
    if target == "*" && method != "OPTIONS" {
        return Err(HeadError::Bad(
            "asterisk-form target for a method other than OPTIONS",
        ));
    }
    if !connect && !target.starts_with('/') && !target.contains("://") && target != "*" {
        return Err(HeadError::Bad(
            "authority-form target for a method other than CONNECT",
        ));
    }
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_FIELDS];
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    let (mut close, mut keep_alive_token, mut upgrade_token) = (false, false, false);
    let (mut upgrade, mut expect_continue) = (false, false);
    for (i, h) in request.headers.iter().enumerate() {
        let (n0, n1) = span(h.name.as_bytes());
        let (v0, v1) = span(h.value);
        fields[i] = (n0, n1, v0, v1);
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let ok = !h.value.is_empty() && h.value.iter().all(u8::is_ascii_digit);
            if !ok || length.is_some() {
                return Err(HeadError::Bad("invalid or repeated Content-Length"));
            }
            let text = std::str::from_utf8(h.value).unwrap_or("");
            length = Some(
                text.parse()
                    .map_err(|_| HeadError::Bad("Content-Length too large"))?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te.is_some() {
                return Err(HeadError::Bad("repeated Transfer-Encoding"));
            }
            te = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (te, length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"))
        }
        (Some(_), None) if http10 => {
            return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (Some(te), None) => {
            let mut codings = te.split(|&b| b == b',').map(<[u8]>::trim_ascii);
            let last = codings.next_back().unwrap_or(b"");
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Bad("Transfer-Encoding does not end in chunked"));
            }
            if codings.any(|c| c.eq_ignore_ascii_case(b"chunked")) {
                return Err(HeadError::Bad("chunked applied twice"));
            }
            if te.split(|&b| b == b',').count() > 1 {
                return Err(HeadError::NotImplemented);
            }
            Framing::Chunked
        }
        (None, Some(0)) | (None, None) => Framing::None,
        (None, Some(n)) => Framing::Length(n),
    };
    let keep_alive = match http10 {
        true => keep_alive_token && !close,
        false => !close,
    };
    Ok(Some(RequestInfo {
        head_len: len,
        method: span(method.as_bytes()),
        target: span(target.as_bytes()),
        http10,
        fields,
        count: request.headers.len(),
        framing,
        keep_alive,
        expect_continue,
        tunnel: connect || (upgrade && upgrade_token),
    }))
}
