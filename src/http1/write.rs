//! Pieces of a head to write without `format!`: the status lines of the
//! common statuses, precomputed, and a decimal Content-Length.

/// `HTTP/1.1 <code> <reason>\r\n` for the statuses a proxy sends or relays
/// most, or `None` (the caller writes the line from the code and reason).
pub fn status_line(code: u16) -> Option<&'static [u8]> {
    Some(match code {
        100 => b"HTTP/1.1 100 Continue\r\n",
        101 => b"HTTP/1.1 101 Switching Protocols\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => return None,
    })
}

/// `n` in decimal, written into the end of `out`.
pub fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_name_their_code_and_end_in_crlf() {
        for code in 100..=599 {
            if let Some(line) = status_line(code) {
                let text = std::str::from_utf8(line).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {code} ")), "{text}");
                assert!(text.ends_with("\r\n") && text.len() > 15, "{text}");
            }
        }
        assert_eq!(status_line(200), Some(&b"HTTP/1.1 200 OK\r\n"[..]));
        assert_eq!(status_line(299), None);
    }

    #[test]
    fn decimal_writes_every_magnitude() {
        let mut out = [0; 20];
        for n in [0, 7, 10, 99, 1024, 1_000_000, u64::MAX] {
            assert_eq!(decimal(n, &mut out), n.to_string().as_bytes());
        }
    }
}
