//! A small, strict HTTP/1.1 message parser of the test's own (RFC 9112), so
//! the framing suite judges what reached the origin or the client without
//! trusting the code under test: CRLF only, no obs-fold, no whitespace
//! before a colon, no control characters in a field, one framing
//! (a single decimal Content-Length or a single `chunked`), hex chunk sizes.

/// The longest head accepted here (anything the gateway sends is far less).
const MAX_HEAD: usize = 1 << 20;

/// A field line: the name as received and the value without its OWS.
pub(crate) type Field = (Vec<u8>, Vec<u8>);

/// How a parsed message's body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Neither Content-Length nor Transfer-Encoding.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response delimited by the connection's close.
    Close,
}

/// One whole message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The request line or status line, without its CRLF.
    pub(crate) start: Vec<u8>,
    pub(crate) fields: Vec<Field>,
    pub(crate) framing: Framing,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub(crate) trailers: Vec<Field>,
}

impl Message {
    /// The status code of a response (0 if this is not a status line).
    pub(crate) fn status(&self) -> u16 {
        let s = &self.start;
        if s.len() >= 12 && s.starts_with(b"HTTP/1.") {
            std::str::from_utf8(&s[9..12])
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        } else {
            0
        }
    }

    pub(crate) fn method_is_head(&self) -> bool {
        self.start.starts_with(b"HEAD ")
    }
}

/// The result of parsing at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Parse {
    /// A message and the bytes it took.
    Complete(Message, usize),
    /// Not invalid so far, but not whole.
    Partial,
    /// Not HTTP/1.1 as RFC 9112 writes it.
    Invalid(String),
}

/// What is parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Request,
    /// A response to a HEAD request (`head`) or to another method.
    Response {
        head: bool,
    },
}

/// Parses one message at the start of `buf`; `eof` says the peer has
/// closed, which completes a close-delimited response.
pub(crate) fn parse(buf: &[u8], kind: Kind, eof: bool) -> Parse {
    match parse_inner(buf, kind, eof) {
        Ok(Some((m, n))) => Parse::Complete(m, n),
        Ok(None) => Parse::Partial,
        Err(e) => Parse::Invalid(e),
    }
}

type Step<T> = Result<Option<T>, String>;

fn parse_inner(buf: &[u8], kind: Kind, eof: bool) -> Step<(Message, usize)> {
    let Some((start, mut pos)) = line(buf, 0)? else {
        return Ok(None);
    };
    let start = start.to_vec();
    match kind {
        Kind::Request => request_line(&start)?,
        Kind::Response { .. } => status_line(&start)?,
    }
    let mut fields = Vec::new();
    loop {
        if pos > MAX_HEAD {
            return Err("head larger than 1 MiB".into());
        }
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        if l.is_empty() {
            break;
        }
        fields.push(field(l)?);
    }
    let mut msg = Message {
        start,
        fields,
        framing: Framing::None,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    msg.framing = framing(&msg.fields)?;
    let status = msg.status();
    let bodiless = match kind {
        Kind::Request => false,
        Kind::Response { head } => {
            head || (100..200).contains(&status) || status == 204 || status == 304
        }
    };
    if bodiless {
        // RFC 9110 §8.6: no Content-Length in a 1xx or a 204.
        if (status == 204 || (100..200).contains(&status)) && msg.framing != Framing::None {
            return Err(format!("a {status} with {:?}", msg.framing));
        }
        return Ok(Some((msg, pos)));
    }
    if let (Kind::Response { .. }, Framing::None) = (kind, msg.framing) {
        msg.framing = Framing::Close;
    }
    match msg.framing {
        Framing::None => Ok(Some((msg, pos))),
        Framing::Length(n) => {
            let n = n as usize;
            if buf.len() - pos < n {
                return Ok(None);
            }
            msg.body = buf[pos..pos + n].to_vec();
            Ok(Some((msg, pos + n)))
        }
        Framing::Close => {
            if !eof {
                return Ok(None);
            }
            msg.body = buf[pos..].to_vec();
            Ok(Some((msg, buf.len())))
        }
        Framing::Chunked => {
            let Some((body, trailers, end)) = chunked(buf, pos)? else {
                return Ok(None);
            };
            msg.body = body;
            msg.trailers = trailers;
            Ok(Some((msg, end)))
        }
    }
}

/// The line starting at `pos` (without CRLF) and where the next begins; a
/// CR anywhere but before LF, or an LF without CR, is invalid.
fn line(buf: &[u8], pos: usize) -> Step<(&[u8], usize)> {
    let rest = &buf[pos.min(buf.len())..];
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\n' => {
                if i == 0 || rest[i - 1] != b'\r' {
                    return Err(format!("bare LF at byte {}", pos + i));
                }
                return Ok(Some((&rest[..i - 1], pos + i + 1)));
            }
            b'\r' if i + 1 < rest.len() && rest[i + 1] != b'\n' => {
                return Err(format!("bare CR at byte {}", pos + i));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn request_line(l: &[u8]) -> Result<(), String> {
    let bad = || format!("invalid request line {:?}", String::from_utf8_lossy(l));
    let mut parts = l.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let target_ok = !target.is_empty() && target.iter().all(|&b| (0x21..0x7f).contains(&b));
    if method.is_empty() || !method.iter().all(|&b| tchar(b)) || !target_ok {
        return Err(bad());
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(bad());
    }
    Ok(())
}

fn status_line(l: &[u8]) -> Result<(), String> {
    let ok = l.len() >= 13
        && (l.starts_with(b"HTTP/1.1 ") || l.starts_with(b"HTTP/1.0 "))
        && l[9..12].iter().all(u8::is_ascii_digit)
        && l[12] == b' '
        && l[13..]
            .iter()
            .all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f);
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid status line {:?}",
            String::from_utf8_lossy(l)
        )),
    }
}

fn field(l: &[u8]) -> Result<Field, String> {
    let bad = |why: &str| format!("{why}: {:?}", String::from_utf8_lossy(l));
    if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(bad("obs-fold"));
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("no colon"))?;
    let name = &l[..colon];
    if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
        return Err(bad("invalid field name"));
    }
    let value = &l[colon + 1..];
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad("control character in a field value"));
    }
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
    Ok((name.to_vec(), value[start..end].to_vec()))
}

fn named<'f>(fields: &'f [Field], name: &'f str) -> impl Iterator<Item = &'f [u8]> + 'f {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

fn framing(fields: &[Field]) -> Result<Framing, String> {
    let te: Vec<&[u8]> = named(fields, "transfer-encoding").collect();
    let cl: Vec<&[u8]> = named(fields, "content-length").collect();
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Ok(Framing::None),
        ([te], []) if te.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        ([], [cl]) if !cl.is_empty() && cl.len() <= 18 && cl.iter().all(u8::is_ascii_digit) => Ok(
            Framing::Length(std::str::from_utf8(cl).unwrap().parse().unwrap()),
        ),
        _ => Err(format!(
            "framing: transfer-encoding {:?}, content-length {:?}",
            te.iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>(),
            cl.iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>()
        )),
    }
}

/// A chunked body from `pos`: the data, the trailers and where it ends.
fn chunked(buf: &[u8], mut pos: usize) -> Step<(Vec<u8>, Vec<Field>, usize)> {
    let mut body = Vec::new();
    loop {
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(None);
        };
        let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = &l[digits..];
        if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
            return Err(format!(
                "invalid chunk size line {:?}",
                String::from_utf8_lossy(l)
            ));
        }
        if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("control character in a chunk extension".into());
        }
        let size = usize::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap(), 16).unwrap();
        pos = next;
        if size == 0 {
            break;
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        if l.is_empty() {
            return Ok(Some((body, trailers, pos)));
        }
        trailers.push(field(l)?);
    }
}

/// Every message in `buf` in order, then what is left: `Ok` with the rest
/// (empty, or the start of an incomplete message), or the first error.
/// `heads` says, in order, which requests were HEAD (responses only).
pub(crate) fn parse_all(
    buf: &[u8],
    request: bool,
    heads: &[bool],
    eof: bool,
) -> (Vec<Message>, Result<Vec<u8>, String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut finals = 0;
    while pos < buf.len() {
        let kind = match request {
            true => Kind::Request,
            false => Kind::Response {
                head: heads.get(finals).copied().unwrap_or(false),
            },
        };
        match parse(&buf[pos..], kind, eof) {
            Parse::Complete(m, n) => {
                if !(100..200).contains(&m.status()) {
                    finals += 1;
                }
                out.push(m);
                pos += n;
            }
            Parse::Partial => return (out, Ok(buf[pos..].to_vec())),
            Parse::Invalid(e) => return (out, Err(e)),
        }
    }
    (out, Ok(Vec::new()))
}

/// Bytes shown in a report, to be printed with `{:?}`: ASCII as it is (so
/// Debug escapes CR, LF and controls once), other bytes as `<xNN>`, cut
/// at 300.
pub(crate) fn show(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &b in bytes.iter().take(300) {
        match b.is_ascii() {
            true => text.push(char::from(b)),
            false => text.push_str(&format!("<x{b:02x}>")),
        }
    }
    if bytes.len() > 300 {
        text.push_str(&format!("...({} bytes)", bytes.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_parser_is_strict() {
        let ok = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\n\
            hello\r\n0\r\nX-T: 1\r\n\r\n";
        let Parse::Complete(m, n) = parse(ok, Kind::Request, false) else {
            panic!("a valid request refused");
        };
        assert_eq!((m.body.as_slice(), n), (&b"hello"[..], ok.len()));
        assert_eq!(m.trailers, vec![(b"X-T".to_vec(), b"1".to_vec())]);
        for bad in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                matches!(parse(bad, Kind::Request, false), Parse::Invalid(_)),
                "{}",
                show(bad)
            );
        }
        let close = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(matches!(
            parse(close, Kind::Response { head: false }, false),
            Parse::Partial
        ));
        assert!(matches!(
            parse(close, Kind::Response { head: false }, true),
            Parse::Complete(..)
        ));
    }
}
