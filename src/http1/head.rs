//! What request and response heads share: the strict line scan that runs
//! before httparse (CRLF only, no obs-fold, the limits, checked while the
//! head is still incomplete), the reading of the framing and connection
//! fields, and `HeadError`, every reason a head is refused.

use super::{Field, Limits, Version};

/// Why a head was refused. Each variant is one rule, with one status for a
/// request (`status`) and a short reason (`reason`); a response refused for
/// any of them is the proxy's 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The head is longer than `Limits::max_head_bytes` (431).
    HeadTooLarge,
    /// More field lines than `Limits::max_fields` (431).
    TooManyFields,
    /// The request-target is longer than `Limits::max_target` (414).
    TargetTooLong,
    /// A LF not preceded by CR: the head must use CRLF throughout (400).
    BareLf,
    /// A CR not followed by LF (400).
    BareCr,
    /// A field line starting with SP or HTAB (obsolete line folding, 400).
    ObsFold,
    /// Whitespace between a field name and its colon (400).
    WhitespaceBeforeColon,
    /// An empty field name, a name that is not a token, or no colon (400).
    InvalidFieldName,
    /// A control character other than HTAB (NUL, CR, DEL...) in a value (400).
    InvalidFieldValue,
    /// The method is not a token (400).
    InvalidMethod,
    /// The target has a byte that is not visible ASCII, a fragment, or is not
    /// origin-, absolute-, authority- or asterisk-form (400).
    InvalidTarget,
    /// A target form the method does not allow: authority-form is for
    /// CONNECT only (and CONNECT has only it), `*` for OPTIONS only (400).
    TargetFormForMethod,
    /// The version is not `HTTP/` digit `.` digit, or garbage follows it (400).
    InvalidVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (505).
    UnsupportedVersion,
    /// Responses: the status line is not `HTTP/1.x DDD reason`, or the code
    /// is outside 100-599.
    InvalidStatusLine,
    /// Content-Length and Transfer-Encoding together (400).
    LengthAndTransferEncoding,
    /// More than one Content-Length, as lines or as a list, even equal (400).
    RepeatedContentLength,
    /// A Content-Length that is not plain digits, or overflows u64 (400).
    InvalidContentLength,
    /// A Transfer-Encoding whose final coding is not `chunked` (400).
    ChunkedNotFinal,
    /// `chunked` more than once in Transfer-Encoding (400).
    ChunkedRepeated,
    /// A Transfer-Encoding in an HTTP/1.0 message (400).
    TransferEncodingHttp10,
    /// A transfer coding other than `chunked` before it, known (gzip,
    /// deflate, compress) or not: the proxy would have to decode it (501).
    UnsupportedCoding,
    /// HTTP/1.1 without a Host field (400).
    MissingHost,
    /// More than one Host field line (400).
    RepeatedHost,
    /// A Host (or an absolute-form target's authority) that is not
    /// `host[:port]` (400).
    InvalidHost,
    /// An absolute-form target naming another host or port than Host (400).
    HostMismatch,
    /// An upgrade asked for (Connection: upgrade, HTTP/1.1) with more than
    /// one Upgrade line, or one that is not ASCII (400).
    InvalidUpgrade,
}

impl HeadError {
    /// The status a refused request is answered with.
    pub fn status(self) -> u16 {
        use HeadError::*;
        match self {
            HeadTooLarge | TooManyFields => 431,
            TargetTooLong => 414,
            UnsupportedVersion => 505,
            UnsupportedCoding => 501,
            _ => 400,
        }
    }

    /// A short, static reason for the response body and the log.
    pub fn reason(self) -> &'static str {
        use HeadError::*;
        match self {
            HeadTooLarge => "header section too large",
            TooManyFields => "too many header fields",
            TargetTooLong => "request-target too long",
            BareLf => "bare LF in the head (CRLF required)",
            BareCr => "bare CR in the head",
            ObsFold => "obsolete line folding",
            WhitespaceBeforeColon => "whitespace between field name and colon",
            InvalidFieldName => "invalid field name",
            InvalidFieldValue => "control character in a field value",
            InvalidMethod => "invalid method",
            InvalidTarget => "invalid request-target",
            TargetFormForMethod => "request-target form not allowed for this method",
            InvalidVersion => "invalid HTTP version",
            UnsupportedVersion => "HTTP version not supported",
            InvalidStatusLine => "invalid status line",
            LengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            RepeatedContentLength => "more than one Content-Length",
            InvalidContentLength => "invalid Content-Length",
            ChunkedNotFinal => "Transfer-Encoding does not end with chunked",
            ChunkedRepeated => "chunked applied more than once",
            TransferEncodingHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            UnsupportedCoding => "transfer coding not implemented",
            MissingHost => "missing Host",
            RepeatedHost => "more than one Host",
            InvalidHost => "invalid Host",
            HostMismatch => "Host does not match the request-target",
            InvalidUpgrade => "invalid or repeated Upgrade",
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HeadError {}

/// The field lines of a partial head that httparse gets a stack array for;
/// a partial head with more is checked again once complete.
pub(super) const PARTIAL_FIELDS: usize = 64;

/// A complete head as the line scan saw it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scanned {
    /// Complete field lines.
    pub(super) fields: usize,
    /// Bytes through the blank line.
    pub(super) head_len: usize,
}

/// The line scan: every line must end in CRLF, no field line may start with
/// SP or HTAB, and the limits hold. `Ok(None)` when the head is incomplete
/// and nothing refused so far. For requests, CRLFs before the request line
/// are skipped (RFC 9112 §2.2) and count in `head_len`; a request line still
/// incomplete whose target already exceeds `max_target` is refused.
///
/// One pass over the line feeds (`memchr`): each must follow a CR. A CR
/// not followed by LF is left to httparse, which refuses it in every part
/// of a head (`field_error` names it).
pub(super) fn scan(
    buf: &[u8],
    limits: &Limits,
    request: bool,
) -> Result<Option<Scanned>, HeadError> {
    let mut first = 0;
    if request {
        while buf[first..].starts_with(b"\r\n") {
            first += 2;
        }
    }
    let mut fields = 0;
    let mut line = first;
    for lf in memchr::memchr_iter(b'\n', &buf[first..]) {
        let end = first + lf;
        if line > first && matches!(buf[line], b' ' | b'\t') {
            return Err(HeadError::ObsFold);
        }
        if end == line || buf[end - 1] != b'\r' {
            return Err(HeadError::BareLf);
        }
        let (cr, next) = (end - 1, end + 1);
        if next > limits.max_head_bytes {
            if request && line == first {
                // A request line over the head's bound for its target: 414.
                partial_request_line(&buf[first..cr], limits)?;
            }
            return Err(HeadError::HeadTooLarge);
        }
        if cr == first {
            // Only a response gets here: a request's empty lines are skipped.
            return Err(HeadError::InvalidStatusLine);
        }
        if cr == line {
            return Ok(Some(Scanned {
                fields,
                head_len: next,
            }));
        }
        if line > first {
            fields += 1;
            if fields > limits.max_fields {
                return Err(HeadError::TooManyFields);
            }
        }
        line = next;
    }
    if line > first && matches!(buf.get(line), Some(b' ' | b'\t')) {
        return Err(HeadError::ObsFold);
    }
    if request && line == first {
        partial_request_line(&buf[first..], limits)?;
    }
    too_large(buf.len(), limits)
}

fn too_large<T>(len: usize, limits: &Limits) -> Result<Option<T>, HeadError> {
    match len > limits.max_head_bytes {
        true => Err(HeadError::HeadTooLarge),
        false => Ok(None),
    }
}

/// An incomplete request line: refused once its target (after the first SP,
/// up to a second) is already longer than allowed.
fn partial_request_line(line: &[u8], limits: &Limits) -> Result<(), HeadError> {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return Ok(());
    };
    let target = &line[sp + 1..];
    let len = target
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(target.len());
    match len > limits.max_target {
        true => Err(HeadError::TargetTooLong),
        false => Ok(()),
    }
}

/// A CR not followed by LF: httparse refuses it wherever it is, under the
/// name of the part it is in; the error paths name it first.
pub(super) fn bare_cr(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', head).any(|i| head.get(i + 1).is_some_and(|&b| b != b'\n'))
}

/// What an httparse error means, for the parts both heads share.
pub(super) fn field_error(e: httparse::Error, head: &[u8]) -> HeadError {
    if bare_cr(head) {
        return HeadError::BareCr;
    }
    match e {
        httparse::Error::HeaderName => name_error(head),
        httparse::Error::HeaderValue => HeadError::InvalidFieldValue,
        httparse::Error::TooManyHeaders => HeadError::TooManyFields,
        httparse::Error::NewLine => HeadError::InvalidVersion,
        httparse::Error::Version => version_error(head),
        httparse::Error::Status => HeadError::InvalidStatusLine,
        httparse::Error::Token => HeadError::InvalidMethod,
    }
}

/// httparse's `HeaderName` names two rules: whitespace before the colon
/// (a line where a token is followed by SP/HTAB then `:`), or else an
/// invalid name. Only on the error path.
fn name_error(head: &[u8]) -> HeadError {
    let spaced = head.split(|&b| b == b'\n').skip(1).any(|line| {
        let name = line.iter().take_while(|&&b| is_token(b)).count();
        let rest = &line[name..];
        let ws = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        name > 0 && ws > 0 && rest.get(ws) == Some(&b':')
    });
    match spaced {
        true => HeadError::WhitespaceBeforeColon,
        false => HeadError::InvalidFieldName,
    }
}

/// `HTTP/` digit `.` digit in the head's first line that httparse refused
/// (so not 1.0 or 1.1) is unsupported; anything else is invalid.
fn version_error(head: &[u8]) -> HeadError {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let well_formed = |v: &[u8]| {
        matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
    };
    // Requests end their first line with the version, responses start with it.
    let last = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let first = line.split(|&b| b == b' ').next().unwrap_or_default();
    match well_formed(last) || well_formed(first) {
        true => HeadError::UnsupportedVersion,
        false => HeadError::InvalidVersion,
    }
}

/// tchar (RFC 9110 §5.6.2).
pub(super) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the framing and connection fields of a head say, read in one pass.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Semantics<'b> {
    pub(super) content_length: Option<u64>,
    /// A Transfer-Encoding field was present.
    pub(super) transfer_encoding: bool,
    /// Its final coding is `chunked`.
    pub(super) chunked: bool,
    /// It has a coding other than `chunked`.
    pub(super) other_coding: bool,
    /// A coding followed `chunked` (so a later `chunked` is a second one).
    other_after_chunked: bool,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    pub(super) upgrade_token: bool,
    /// Connection lists a name other than close, keep-alive and upgrade.
    pub(super) names_fields: bool,
    /// The last Host value, and how many Host lines there were (a request
    /// refuses more than one; a response's Host means nothing).
    pub(super) host: Option<&'b [u8]>,
    pub(super) hosts: usize,
    pub(super) upgrade: Option<&'b [u8]>,
    /// Upgrade field lines seen.
    pub(super) upgrades: usize,
    pub(super) expect_continue: bool,
}

impl<'b> Semantics<'b> {
    /// One pass over the fields; refuses the framing rules both heads share
    /// (repeated or invalid Content-Length, `chunked` twice, Transfer-Encoding
    /// on HTTP/1.0, both together).
    pub(super) fn read(fields: &[Field<'b>], version: Version) -> Result<Self, HeadError> {
        let mut s = Semantics::default();
        let mut lengths = 0;
        for field in fields {
            let (name, value) = (field.name, field.value);
            // One jump on the name's length: most fields are none of these
            // and cost a comparison, not six.
            if !matches!(name.len(), 4 | 6 | 7 | 10 | 14 | 17) {
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                if lengths > 1 || value.contains(&b',') {
                    return Err(HeadError::RepeatedContentLength);
                }
                s.content_length = Some(digits(value).ok_or(HeadError::InvalidContentLength)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                s.transfer_encoding = true;
                for coding in list(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        // Once seen, chunked stays final or is followed by another coding:
                        // either way a second one is applied twice.
                        if s.chunked || s.other_after_chunked {
                            return Err(HeadError::ChunkedRepeated);
                        }
                        s.chunked = true;
                    } else {
                        // A coding after chunked leaves it not final.
                        s.other_after_chunked |= s.chunked;
                        s.other_coding = true;
                        s.chunked = false;
                    }
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        s.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        s.keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        s.upgrade_token = true;
                    } else {
                        s.names_fields = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                s.host = Some(value);
                s.hosts += 1;
            } else if name.eq_ignore_ascii_case("upgrade") {
                s.upgrade = Some(value);
                s.upgrades += 1;
            } else if name.eq_ignore_ascii_case("expect") {
                s.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        if s.transfer_encoding {
            if version == Version::Http10 {
                return Err(HeadError::TransferEncodingHttp10);
            }
            if s.content_length.is_some() {
                return Err(HeadError::LengthAndTransferEncoding);
            }
        }
        Ok(s)
    }

    /// Whether the connection stays open after this message, by version and
    /// the Connection tokens (`close` wins over `keep-alive`).
    pub(super) fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::Http11 || self.keep_alive)
    }
}

/// Plain digits as a u64 (no sign, no space, no overflow).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// The elements of a comma-separated list, trimmed, empty ones skipped
/// (RFC 9110 §5.6.1).
pub(super) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// The hop-by-hop fields every message drops (RFC 9110 §7.6.1), whatever
/// Connection lists.
pub fn is_hop_by_hop_name(name: &str) -> bool {
    const NAMES: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `name` is hop-by-hop in a head with these fields: a fixed one,
/// or listed by a Connection field. `names_fields` (from `Semantics`) says
/// whether any Connection lists other names, so the common head costs one
/// comparison per fixed name.
pub(super) fn hop_by_hop(fields: &[Field<'_>], names_fields: bool, name: &str) -> bool {
    if is_hop_by_hop_name(name) {
        return true;
    }
    names_fields
        && fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .flat_map(|f| list(f.value))
            .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

/// The table test both heads' rules share: each bad head is refused with its
/// error, and its neighbour (the rule being what differs) is accepted.
#[cfg(test)]
pub(super) fn assert_rules(
    rules: &[(&str, HeadError, &str)],
    parse: impl Fn(&[u8]) -> Result<bool, HeadError>,
) {
    for (bad, error, good) in rules {
        assert_eq!(parse(bad.as_bytes()), Err(*error), "{bad:?}");
        let neighbour = parse(good.as_bytes());
        assert_eq!(neighbour, Ok(true), "{good:?}, neighbour of {error:?}");
    }
}
