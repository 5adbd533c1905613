//! The request head (RFC 9112 §3): `parse_request` reads it out of the
//! client's buffer into a `RequestHead` of borrowed views, or refuses it
//! with a `HeadError`. What to do with the body, the connection and the
//! fields it names is the caller's.

use std::mem::MaybeUninit;

use bumpalo::Bump;

use super::head::{self, scan, Scanned, Semantics, PARTIAL_FIELDS};
use super::{Field, Framing, HeadError, Limits, Version};

/// A complete, checked request head. Everything borrows the buffer it was
/// parsed from; the field list lives in the arena given to `parse_request`.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'b> {
    /// The method, a token, case as sent (methods are case-sensitive).
    pub method: &'b str,
    /// The request-target as sent: origin-, absolute-, authority- (CONNECT)
    /// or asterisk-form (OPTIONS), visible ASCII, no fragment.
    pub target: &'b str,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The field lines in the order received.
    pub fields: &'b [Field<'b>],
    /// Bytes of the buffer through the blank line that ends the head
    /// (including CRLFs skipped before the request line); the body or the
    /// next pipelined request starts there.
    pub head_len: usize,
    /// The body's framing: `None`, `Length` or `Chunked`.
    pub framing: Framing,
    /// The one Host value, checked as `host[:port]`: `Ok(None)` only on
    /// HTTP/1.0. `Err` when it is missing (HTTP/1.1), repeated, not a
    /// `host[:port]`, or names another authority than an absolute-form
    /// target (`MissingHost`, `RepeatedHost`, `InvalidHost`,
    /// `HostMismatch`, each a 400). Everything else in the head is checked
    /// and whole, so the caller may refuse it where it chooses: Strait's
    /// proxy does after routing, so that the 400 counts in the route's
    /// figures and access log.
    pub host: Result<Option<&'b str>, HeadError>,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The Upgrade value, when Connection has the `upgrade` token (HTTP/1.1
    /// only: an HTTP/1.0 Upgrade is ignored, RFC 9110 §7.8).
    pub upgrade: Option<&'b str>,
    /// The method is CONNECT (and the target is authority-form).
    pub connect: bool,
    /// Connection names fields other than close, keep-alive and upgrade.
    names_fields: bool,
}

impl<'b> RequestHead<'b> {
    /// Whether a field is hop-by-hop in this request (RFC 9110 §7.6.1): one
    /// of the fixed names, or one this request's Connection lists. The
    /// caller drops these before forwarding.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        head::hop_by_hop(self.fields, self.names_fields, name)
    }
}

/// Reads a request head from the start of `buf`.
///
/// `Ok(None)`: the head is incomplete and nothing in it is refused yet; call
/// again with the same bytes and more. A head over a limit is refused as
/// soon as the bytes show it, complete or not. The field list is allocated in
/// `arena` once, when the head is complete (so repeated calls on a growing
/// buffer allocate nothing).
pub fn parse_request<'b>(
    buf: &'b [u8],
    arena: &'b Bump,
    limits: &Limits,
) -> Result<Option<RequestHead<'b>>, HeadError> {
    let Some(scanned) = scan(buf, limits, true)? else {
        return partial(buf, limits);
    };
    parse_scanned_request(buf, HeadEnd(scanned), arena, limits).map(Some)
}

/// [`parse_request`] of a head whose end [`request_head_end`] found: `buf`
/// holds those bytes (the head split off the buffer it was scanned in), so
/// its lines are not scanned again.
pub fn parse_scanned_request<'b>(
    buf: &'b [u8],
    HeadEnd(scanned): HeadEnd,
    arena: &'b Bump,
    limits: &Limits,
) -> Result<RequestHead<'b>, HeadError> {
    let mut req =
        httparse::Request::new(arena.alloc_slice_fill_copy(scanned.fields, httparse::EMPTY_HEADER));
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        // The scan saw the blank line, so httparse does: unreachable.
        Ok(httparse::Status::Partial) => return Err(HeadError::BareLf),
        Err(httparse::Error::Version) if later_minor(buf).is_some() => {
            // HTTP/1.2 and later 1.x: read as 1.1 (RFC 9110 §2.5), from a
            // copy of the head in the arena with the minor version set to
            // 1 (httparse reads 1.0 and 1.1 only). Rare, so copied.
            let copy = arena.alloc_slice_copy(&buf[..scanned.head_len]);
            if let Some(minor) = later_minor(copy) {
                copy[minor] = b'1';
            }
            return parse_scanned_request(copy, HeadEnd(scanned), arena, limits);
        }
        Err(e) => return Err(request_error(e, req.method.is_some(), buf)),
    };
    debug_assert_eq!(head_len, scanned.head_len);
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::InvalidVersion);
    };
    let version = match minor {
        0 => Version::Http10,
        _ => Version::Http11,
    };
    let fields: &'b [Field<'b>] = req.headers;
    if target.len() > limits.max_target {
        return Err(HeadError::TargetTooLong);
    }
    let connect = method == "CONNECT";
    let form = target_form(method, target)?;
    let s = Semantics::read(fields, version)?;
    if s.transfer_encoding && !s.chunked {
        return Err(HeadError::ChunkedNotFinal);
    }
    if s.other_coding {
        return Err(HeadError::UnsupportedCoding);
    }
    let host = request_host(&s, version, form);
    let framing = match (s.chunked, s.content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    };
    let upgrade = match (version, s.upgrade_token, s.upgrade) {
        (Version::Http11, true, Some(value)) if s.upgrades == 1 && value.is_ascii() => {
            std::str::from_utf8(value).ok()
        }
        (Version::Http11, true, Some(_)) => return Err(HeadError::InvalidUpgrade),
        _ => None,
    };
    Ok(RequestHead {
        method,
        target,
        version,
        fields,
        head_len,
        framing,
        host,
        keep_alive: s.keep_alive(version),
        expect_continue: s.expect_continue,
        upgrade,
        connect,
        names_fields: s.names_fields,
    })
}

/// Where the request head at the start of `buf` ends, once it is complete,
/// with the same refusals as `parse_request` on the bytes so far (the line
/// scan, the limits, and what httparse refuses of a partial head); the
/// semantics (framing, Host, target form) are `parse_request`'s, on the
/// complete head. So a connection can find a head's end in its read buffer,
/// split the head off, and parse the split-off bytes once.
pub fn request_head_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, HeadError> {
    Ok(request_head_end(buf, limits)?.map(|end| end.head_len()))
}

/// A complete request head's end as [`request_head_end`] found it: its
/// length, and what [`parse_scanned_request`] needs to parse it without
/// scanning its lines again.
#[derive(Clone, Copy, Debug)]
pub struct HeadEnd(Scanned);

impl HeadEnd {
    /// Bytes through the blank line.
    pub fn head_len(&self) -> usize {
        self.0.head_len
    }
}

/// [`request_head_len`], keeping what the scan found for the parse.
pub fn request_head_end(buf: &[u8], limits: &Limits) -> Result<Option<HeadEnd>, HeadError> {
    match scan(buf, limits, true)? {
        Some(scanned) => Ok(Some(HeadEnd(scanned))),
        None => partial(buf, limits),
    }
}

/// An incomplete head: httparse still refuses what it sees already (a bad
/// byte in a line already received), so a client sending garbage is
/// answered now, not at its header timeout.
fn partial<T>(buf: &[u8], limits: &Limits) -> Result<Option<T>, HeadError> {
    let mut stack = [const { MaybeUninit::uninit() }; PARTIAL_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    match config.parse_request_with_uninit_headers(&mut req, buf, &mut stack) {
        _ if req.path.is_some_and(|p| p.len() > limits.max_target) => Err(HeadError::TargetTooLong),
        Err(httparse::Error::TooManyHeaders) | Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::Version) => match later_minor(buf) {
            // As a 1.1 head, so that its other lines are checked as they
            // come (a copy: only clients that send HTTP/1.2 pay for it).
            Some(minor) => {
                let mut copy = buf.to_vec();
                copy[minor] = b'1';
                partial(&copy, limits)
            }
            None => Err(request_error(
                httparse::Error::Version,
                req.method.is_some(),
                buf,
            )),
        },
        Err(e) => Err(request_error(e, req.method.is_some(), buf)),
        // An end the strict scan did not find is a bare LF, which the
        // scan refuses first: unreachable, and refused all the same.
        Ok(httparse::Status::Complete(_)) => Err(HeadError::BareLf),
    }
}

/// Where the minor version digit is when the request line (after the
/// empty lines before it) ends in `HTTP/1.2` to `HTTP/1.9`: versions the
/// codec reads as HTTP/1.1 (RFC 9110 §2.5: a recipient treats a later minor
/// version as the highest it supports).
fn later_minor(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let end = start + memchr::memchr2(b'\r', b'\n', &buf[start..]).unwrap_or(buf.len() - start);
    let line = &buf[start..end];
    let version = line.get(line.len().checked_sub(9)?..)?;
    matches!(
        version,
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
    )
    .then_some(end - 1)
}

/// The Host verdict of a head otherwise whole (`RequestHead::host`).
fn request_host<'b>(
    s: &Semantics<'b>,
    version: Version,
    form: Form<'b>,
) -> Result<Option<&'b str>, HeadError> {
    if s.hosts > 1 {
        return Err(HeadError::RepeatedHost);
    }
    let host = match s.host {
        Some(value) => Some(split_host(value).ok_or(HeadError::InvalidHost)?),
        None if version == Version::Http11 => return Err(HeadError::MissingHost),
        None => None,
    };
    if let Form::Absolute { scheme, authority } = form {
        let target = target_authority(authority).ok_or(HeadError::InvalidHost)?;
        if let Some(host) = host {
            if !same_authority(scheme, target, host) {
                return Err(HeadError::HostMismatch);
            }
        }
    }
    Ok(host.map(|h| h.text))
}

/// httparse's `Token` is the method's error until the method is read, the
/// target's after.
fn request_error(e: httparse::Error, method_read: bool, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::Token if method_read && !head::bare_cr(buf) => HeadError::InvalidTarget,
        e => head::field_error(e, buf),
    }
}

/// The four forms of request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form<'b> {
    Origin,
    Absolute {
        scheme: &'b [u8],
        authority: &'b [u8],
    },
    Authority,
    Asterisk,
}

/// Which form the target has, and whether the method allows it (its bytes:
/// `path_and_query`, or a `host[:port]`); CONNECT takes
/// authority-form only (with a port, RFC 9110 §9.3.6), `*` is OPTIONS only,
/// every other method takes origin- or absolute-form.
fn target_form<'b>(method: &str, target: &'b str) -> Result<Form<'b>, HeadError> {
    let bytes = target.as_bytes();
    let form = if bytes == b"*" {
        Form::Asterisk
    } else if bytes[0] == b'/' {
        path_and_query(bytes)
            .then_some(Form::Origin)
            .ok_or(HeadError::InvalidTarget)?
    } else if let Some(absolute) = absolute(bytes) {
        absolute
    } else if target_authority(bytes).is_some_and(|h| h.port.is_some_and(port_number)) {
        Form::Authority
    } else {
        return Err(HeadError::InvalidTarget);
    };
    let allowed = match (method, form) {
        ("CONNECT", form) => form == Form::Authority,
        ("OPTIONS", Form::Asterisk) => true,
        (_, Form::Origin | Form::Absolute { .. }) => true,
        _ => false,
    };
    match allowed {
        true => Ok(form),
        false => Err(HeadError::TargetFormForMethod),
    }
}

/// `scheme "://" authority [ path ]`: the scheme and the authority (which
/// the caller checks as a Host), or `None` if the target is not one.
/// The longest scheme an absolute-form target may have.
const MAX_SCHEME: usize = 64;

fn absolute(bytes: &[u8]) -> Option<Form<'_>> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let (scheme, rest) = bytes.split_at(colon);
    let first_alpha = scheme.first()?.is_ascii_alphabetic();
    let scheme_chars = scheme
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = rest.strip_prefix(b"://")?;
    // At most 64 bytes, as the `http` crate's `Uri` (which the proxy builds
    // from the target) takes: a longer one would pass here and fail there.
    // Found by libFuzzer.
    if !first_alpha || !scheme_chars || scheme.len() > MAX_SCHEME {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    path_and_query(&rest[end..]).then_some(Form::Absolute {
        scheme,
        authority: &rest[..end],
    })
}

/// Whether a path and query hold only the bytes `http::Uri` (so hyper's
/// path, today's) takes: RFC 3986's, plus `"`, `{`, `}`, `|`, `\`, `^` in
/// the path and `` ` ``, `{`, `}`, `|`, `\`, `^`, `[`, `]` in the query, as
/// clients send them unencoded. Never a fragment (`#`), a space, a control
/// or a byte above 0x7E (httparse lets obs-text through).
fn path_and_query(bytes: &[u8]) -> bool {
    let (path, query) = match bytes.iter().position(|&b| b == b'?') {
        Some(q) => bytes.split_at(q + 1),
        None => (bytes, &b""[..]),
    };
    let path_byte = |b: &u8| {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x5F | 0x61..=0x7A | 0x7C | 0x7E)
            || matches!(b, b'"' | b'{' | b'}')
    };
    let query_byte = |b: &u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
    path.iter().all(path_byte) && query.iter().all(query_byte)
}

/// A Host or authority split: the whole text, the host (an IP literal with
/// its brackets), the port (`None` if absent or empty).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostPort<'b> {
    pub(crate) text: &'b str,
    pub(crate) host: &'b [u8],
    pub(crate) port: Option<&'b [u8]>,
}

/// `host[:port]`, for this codec and for `proxy/headers.rs` `check_host`
/// (hyper's HTTP/2 requests) alike, so the two paths agree on what a Host
/// is: a reg-name or IPv4 address (unreserved,
/// `%` and sub-delims, RFC 3986 §3.2.2) or an IPv6 address in brackets, then
/// an optional `:` and digits. No userinfo, no path, no space, no control.
pub(crate) fn split_host(text: &[u8]) -> Option<HostPort<'_>> {
    let host_end = match text.first()? {
        b'[' => text.iter().position(|&b| b == b']')? + 1,
        _ => text.iter().position(|&b| b == b':').unwrap_or(text.len()),
    };
    let (host, rest) = text.split_at(host_end);
    let inner = match host {
        [b'[', inner @ .., b']'] => inner,
        _ => host,
    };
    let valid = match host.len() != inner.len() {
        true => ipv6_literal(inner),
        false => !inner.is_empty() && inner.iter().all(|&b| reg_name(b)),
    };
    let port = match rest {
        [] | [b':'] => None,
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Some(port),
        _ => return None,
    };
    Some(HostPort {
        text: std::str::from_utf8(text).ok()?,
        host,
        port,
    })
    .filter(|_| valid)
}

/// The inside of an IP literal (RFC 3986 §3.2.2) as the gateway takes it:
/// an IPv6 address, nothing else (no IPvFuture, which no client sends, no
/// zone). Found by libFuzzer: `[m::…:e.e.!]` passed a byte-class check.
fn ipv6_literal(inner: &[u8]) -> bool {
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A CONNECT port: digits naming a TCP port (0 to 65535, leading zeros
/// aside), as `http::Uri` reads it (found by the differential fuzzer).
fn port_number(port: &[u8]) -> bool {
    !port.is_empty() && std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok())
}

/// A target's authority: a `host[:port]` as for Host, but without a `%`
/// outside an IP literal, as `http::Uri` (hyper's target, today's) reads it:
/// a target's host is routed on and forwarded, so no escape is let in.
fn target_authority(text: &[u8]) -> Option<HostPort<'_>> {
    split_host(text).filter(|h| h.host.first() == Some(&b'[') || !h.host.contains(&b'%'))
}

/// A reg-name byte: a letter, a digit, an unreserved mark, `%` or a
/// sub-delim.
fn reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Whether Host names the absolute-form target's authority: the same host
/// (case aside) and port, the scheme's default port counting as none.
pub(crate) fn same_authority(scheme: &[u8], target: HostPort<'_>, host: HostPort<'_>) -> bool {
    let default: &[u8] = match scheme {
        s if s.eq_ignore_ascii_case(b"http") => b"80",
        s if s.eq_ignore_ascii_case(b"https") => b"443",
        _ => b"",
    };
    fn explicit<'p>(port: Option<&'p [u8]>, default: &[u8]) -> &'p [u8] {
        port.filter(|p| *p != default).unwrap_or_default()
    }
    target.host.eq_ignore_ascii_case(host.host)
        && explicit(target.port, default) == explicit(host.port, default)
}

#[cfg(test)]
mod tests;
