//! Just enough of an HTTP/1.1 response reader for the load generator: the
//! status line and the headers that frame the body (Content-Length,
//! Transfer-Encoding, Connection). Anything it does not understand is an
//! error that the caller counts, never a guess.

/// The head of a response, once it is complete in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
    pub status: u16,
    pub content_length: u64,
    /// false when the server said `Connection: close` (or spoke HTTP/1.0
    /// without `keep-alive`): the caller reconnects before the next request.
    pub keep_alive: bool,
}

/// Why a response was not counted as a success.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Error {
    /// The head did not fit in the read buffer.
    HeadTooLarge,
    /// Not `HTTP/1.x NNN ...`.
    BadStatusLine,
    /// A header line without a colon, or not text.
    BadHeader,
    /// No Content-Length (chunked bodies are not supported, nor bodies
    /// delimited by the close: the proxies under test send Content-Length).
    NoContentLength,
    /// Content-Length not a decimal number, or two that differ.
    BadContentLength,
    /// Transfer-Encoding in the response: this reader does not decode it.
    TransferEncoding,
    /// The server closed the connection before the response was complete.
    Closed,
    /// More bytes than one response: we never pipeline, so they cannot be
    /// the next response.
    ExtraBytes,
    /// Status other than the expected one (the body was read: framing is fine).
    Status(u16),
    /// Content-Length other than the expected body length.
    BodyLength(u64),
    /// No response within the timeout.
    Timeout,
    /// connect, read or write failed.
    Io(std::io::ErrorKind),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::HeadTooLarge => write!(f, "response head larger than the read buffer"),
            Error::BadStatusLine => write!(f, "bad status line"),
            Error::BadHeader => write!(f, "bad header line"),
            Error::NoContentLength => write!(f, "response without Content-Length"),
            Error::BadContentLength => write!(f, "bad or conflicting Content-Length"),
            Error::TransferEncoding => write!(f, "Transfer-Encoding in the response (unsupported)"),
            Error::Closed => write!(f, "connection closed before the response was complete"),
            Error::ExtraBytes => write!(f, "bytes after the response body"),
            Error::Status(s) => write!(f, "status {s}"),
            Error::BodyLength(n) => write!(f, "body of {n} bytes"),
            Error::Timeout => write!(f, "no response within the timeout"),
            Error::Io(k) => write!(f, "I/O error: {k}"),
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete.
/// `buf_cap` is the read buffer's size: a head that cannot end inside it is
/// an error rather than a wait.
pub fn parse_head(buf: &[u8], buf_cap: usize) -> Result<Option<Head>, Error> {
    let Some(end) = find_blank_line(buf) else {
        return if buf.len() >= buf_cap {
            Err(Error::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let (http10, status) = parse_status_line(status_line)?;
    let mut content_length: Option<u64> = None;
    let mut keep_alive = !http10;
    for line in lines.filter(|l| !l.is_empty()) {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Error::BadHeader)?;
        let name = &line[..colon];
        let value = std::str::from_utf8(&line[colon + 1..])
            .map_err(|_| Error::BadHeader)?
            .trim();
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(Error::BadHeader);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::BadContentLength);
            }
            let n: u64 = value.parse().map_err(|_| Error::BadContentLength)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(Error::BadContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Error::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        }
    }
    let content_length = content_length.ok_or(Error::NoContentLength)?;
    Ok(Some(Head {
        len: end,
        status,
        content_length,
        keep_alive,
    }))
}

/// Index just past the first `\r\n\r\n` (or bare `\n\n`), if there is one.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        i = nl + 1;
    }
    None
}

/// `HTTP/1.1 200 OK` -> (false, 200); `HTTP/1.0 ...` -> (true, status).
fn parse_status_line(line: &[u8]) -> Result<(bool, u16), Error> {
    let http10 = if line.starts_with(b"HTTP/1.1 ") {
        false
    } else if line.starts_with(b"HTTP/1.0 ") {
        true
    } else {
        return Err(Error::BadStatusLine);
    };
    let code = line.get(9..12).ok_or(Error::BadStatusLine)?;
    if !code.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&b| b != b' ') {
        return Err(Error::BadStatusLine);
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    Ok((http10, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 1024;

    fn head(s: &str) -> Result<Option<Head>, Error> {
        parse_head(s.as_bytes(), CAP)
    }

    #[test]
    fn a_complete_head_is_framed_by_content_length() {
        let text = "HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 1024\r\n\r\nbody";
        let h = head(text).unwrap().unwrap();
        assert_eq!(
            h,
            Head {
                len: text.len() - 4,
                status: 200,
                content_length: 1024,
                keep_alive: true
            }
        );
    }

    #[test]
    fn an_incomplete_head_waits_until_the_buffer_is_full() {
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"), Ok(None));
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r"), Ok(None));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(CAP));
        assert_eq!(
            parse_head(&long.as_bytes()[..CAP], CAP),
            Err(Error::HeadTooLarge)
        );
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.unwrap().unwrap().keep_alive);
        assert!(
            !head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.unwrap().unwrap().keep_alive);
    }

    #[test]
    fn bare_newlines_end_a_head_too() {
        let h = head("HTTP/1.1 503 No\nContent-Length: 7\n\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.content_length, h.len), (503, 7, 35));
    }

    #[test]
    fn hostile_heads_are_errors() {
        let cases = [
            (
                "HTTP/2 200\r\nContent-Length: 1\r\n\r\n",
                Error::BadStatusLine,
            ),
            (
                "HTTP/1.1 20\r\nContent-Length: 1\r\n\r\n",
                Error::BadStatusLine,
            ),
            (
                "HTTP/1.1 2x0 OK\r\nContent-Length: 1\r\n\r\n",
                Error::BadStatusLine,
            ),
            (
                "HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n",
                Error::BadStatusLine,
            ),
            ("\r\n\r\n", Error::BadStatusLine),
            ("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", Error::BadHeader),
            ("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", Error::BadHeader),
            (
                "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
                Error::BadHeader,
            ),
            (
                "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
                Error::NoContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Error::BadContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::TransferEncoding,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(head(text), Err(want), "{text:?}");
        }
        let bad_utf8 = b"HTTP/1.1 200 OK\r\nX: \xff\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(parse_head(bad_utf8, CAP), Err(Error::BadHeader));
    }

    #[test]
    fn a_repeated_equal_content_length_is_accepted() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.unwrap().unwrap().content_length, 5);
    }
}
