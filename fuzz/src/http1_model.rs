//! The differential models of `strait::http1::parse_request` and
//! `parse_response`: references built from httparse, `http::Uri` and hyper's
//! HTTP/1 framing rules (hyper 1.x, src/proto/h1/role.rs: `Server::parse`
//! for requests, `Client::decoder` for responses), plus each rule where
//! Strait is stricter than hyper written out as a filter of its own, and the
//! checks that Strait and the reference agree on an input. Also the seed
//! heads and the mutations that make corpora of them.
//!
//! One file, used twice without a copy: `fuzz/src/lib.rs` declares it as a
//! module (the fuzz target `http1_request` and the smoke test), and the main
//! crate's `tests/http1_parser.rs` includes it with `#[path]`, so `cargo test`
//! runs the same check over a generated corpus.

use bumpalo::Bump;
use strait::http1::{parse_request, parse_response, Framing, Limits, RequestKind};

/// The limits both parsers run under: small, so inputs reach them.
pub const LIMITS: Limits = Limits {
    max_head_bytes: 2048,
    max_fields: 24,
    max_target: 128,
};

/// What a parser made of an input. Two verdicts are compared by kind and,
/// for a head, by every field; `Refused` carries the reason for the report.
#[derive(Debug)]
pub enum Verdict<H> {
    Incomplete,
    Refused(String),
    Head(H),
}

/// The parts of a request head both parsers must read alike.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub http11: bool,
    pub fields: Vec<(&'b str, &'b [u8])>,
    pub head_len: usize,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// The parts of a response head both parsers must read alike.
#[derive(Debug, PartialEq, Eq)]
pub struct Response<'b> {
    pub status: u16,
    pub reason: &'b str,
    pub http11: bool,
    pub fields: Vec<(&'b str, &'b [u8])>,
    pub head_len: usize,
    pub framing: Framing,
    pub keep_alive: bool,
}

impl<H: PartialEq + std::fmt::Debug> Verdict<H> {
    fn agrees(&self, other: &Verdict<H>) -> bool {
        match (self, other) {
            (Verdict::Incomplete, Verdict::Incomplete) => true,
            (Verdict::Refused(_), Verdict::Refused(_)) => true,
            (Verdict::Head(a), Verdict::Head(b)) => a == b,
            _ => false,
        }
    }
}

/// Strait's parser, as a verdict (the field list goes into `arena`).
pub fn strait<'b>(data: &'b [u8], arena: &'b Bump) -> Verdict<Request<'b>> {
    match parse_request(data, arena, &LIMITS) {
        Ok(None) => Verdict::Incomplete,
        Err(e) => Verdict::Refused(format!("strait: {e:?} ({})", e.status())),
        // A Host problem is the caller's to refuse (Strait's proxy does).
        Ok(Some(strait::http1::RequestHead { host: Err(e), .. })) => {
            Verdict::Refused(format!("strait: {e:?} ({})", e.status()))
        }
        Ok(Some(h)) => Verdict::Head(Request {
            method: h.method,
            target: h.target,
            http11: h.version == strait::http1::Version::Http11,
            fields: h.fields.iter().map(|f| (f.name, f.value)).collect(),
            head_len: h.head_len,
            framing: h.framing,
            keep_alive: h.keep_alive,
        }),
    }
}

fn refuse<H>(rule: &str) -> Verdict<H> {
    Verdict::Refused(format!("reference: {rule}"))
}

/// The reference: httparse and hyper's rules, then Strait's stricter ones,
/// each a separate, plainly written filter.
pub fn reference(data: &[u8]) -> Verdict<Request<'_>> {
    let mut headers = vec![httparse::EMPTY_HEADER; LIMITS.max_fields];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(data);
    let complete = match parsed {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    };
    if let Some(rule) = line_rule(&data[..complete.unwrap_or(data.len())]) {
        return refuse(rule);
    }
    if known_target_len(data, req.path) > LIMITS.max_target {
        return refuse("target too long");
    }
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Verdict::Incomplete,
        Err(e) => return refuse(&format!("httparse: {e}")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return refuse("httparse completed without a request line");
    };
    let fields: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    let http11 = minor == 1;
    if let Some(rule) = target_rule(method, target) {
        return refuse(rule);
    }
    if let Some(rule) = host_rule(http11, target, &fields) {
        return refuse(rule);
    }
    if let Some(rule) = upgrade_rule(http11, &fields) {
        return refuse(rule);
    }
    let framing = match framing(http11, &fields) {
        Ok(framing) => framing,
        Err(rule) => return refuse(rule),
    };
    Verdict::Head(Request {
        method,
        target,
        http11,
        fields: fields.clone(),
        head_len,
        framing,
        keep_alive: keep_alive(http11, &fields),
    })
}

/// Stricter than httparse, for both heads, on the head (or all the bytes
/// of an incomplete one): CRLF only (httparse takes a LF alone as a line
/// end), and the head's size limit (hyper's own is larger).
fn line_rule(region: &[u8]) -> Option<&'static str> {
    for (i, &b) in region.iter().enumerate() {
        if b == b'\n' && (i == 0 || region[i - 1] != b'\r') {
            return Some("bare LF");
        }
        if b == b'\r' && region.get(i + 1).is_some_and(|&n| n != b'\n') {
            return Some("bare CR");
        }
    }
    (region.len() > LIMITS.max_head_bytes).then_some("head too large")
}

/// How long the target is known to be: httparse's path once it has one,
/// else what follows the request line's first SP so far.
fn known_target_len(data: &[u8], path: Option<&str>) -> usize {
    if let Some(path) = path {
        return path.len();
    }
    let mut line = data;
    while let Some(rest) = line.strip_prefix(b"\r\n") {
        line = rest;
    }
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return 0;
    };
    line[sp + 1..]
        .iter()
        .take_while(|&&b| !matches!(b, b' ' | b'\r' | b'\n'))
        .count()
}

/// hyper: the target must be an `http::Uri`. Stricter: visible ASCII, no
/// fragment (httparse passes obs-text; `http` drops a fragment); the form
/// must suit the method (RFC 9112 §3.2: authority-form is CONNECT's only,
/// with a port; `*` is OPTIONS's only).
fn target_rule(method: &str, target: &str) -> Option<&'static str> {
    if target.bytes().any(|b| !b.is_ascii_graphic() || b == b'#') {
        return Some("target not visible ASCII, or a fragment");
    }
    let Ok(uri) = target.parse::<http::Uri>() else {
        return Some("target not an http::Uri");
    };
    // Stricter: a scheme is ALPHA *( ALPHA / DIGIT / + / - / . ) (RFC 3986
    // §3.1); `http` takes more (a `~`). Found by libFuzzer.
    let scheme_ok = uri.scheme_str().map_or(true, |s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !scheme_ok {
        return Some("scheme not RFC 3986");
    }
    let connect = method == "CONNECT";
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    if target == "*" {
        return (method != "OPTIONS").then_some("* but not OPTIONS");
    }
    if connect {
        // Stricter: `http` takes `user@host:port`, an empty host and a port
        // with a `+` (`u16::from_str`); CONNECT's target is `uri-host:port`
        // (RFC 9110 §9.3.6), read as a Host is. Found by libFuzzer.
        let valid = authority(target.as_bytes()).is_some_and(|a| a.port().is_some());
        return (!authority_form || !valid).then_some("CONNECT needs host:port");
    }
    match authority_form || !(target.starts_with('/') || uri.scheme().is_some()) {
        true => Some("authority-form or no form outside CONNECT"),
        false => None,
    }
}

/// An authority as check_host reads it, in `http`'s terms: `http` parses it,
/// with three differences spelt out.
fn authority(text: &[u8]) -> Option<http::uri::Authority> {
    // check_host takes `%` as a reg-name byte without reading what follows
    // (it never decodes the host); `http` wants two hex digits.
    let original = std::str::from_utf8(text).ok()?;
    let text = original.replace('%', "0");
    let a: http::uri::Authority = text.parse().ok()?;
    // `http` takes userinfo; a Host has none. An empty port is allowed
    // (RFC 3986, check_host). `http` reads a port lazily: what follows the
    // host, in the text as sent (one `%` for one `0`), must be digits.
    let rest = original.get(a.host().len()..).unwrap_or("x");
    let port = if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix(':')
    };
    let digits = port.is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    // `http` takes brackets anywhere in a host (`p[a]`); RFC 3986, and
    // check_host, only around an IP literal that is the whole host. Found
    // by libFuzzer.
    // And an IP literal is an IPv6 address (`[]` and `[m::e.!]` found by
    // libFuzzer; `http` takes either).
    // (As sent: the `%` → `0` above would make `[::%]` an address.)
    let host = original.get(..a.host().len()).unwrap_or_default();
    let brackets = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.contains(['[', ']']),
    };
    let clean = !text.contains('@') && !a.host().is_empty() && digits && brackets;
    clean.then_some(a)
}

/// Not hyper's (it leaves Host alone): Strait's `check_host`. One Host line,
/// required on HTTP/1.1, a valid authority without userinfo; an
/// absolute-form target naming the same host and port.
fn host_rule(http11: bool, target: &str, fields: &[(&str, &[u8])]) -> Option<&'static str> {
    let hosts: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| *v)
        .collect();
    let host = match hosts[..] {
        [] if http11 => return Some("no Host on HTTP/1.1"),
        [] => None,
        [one] => Some(one),
        _ => return Some("more than one Host"),
    };
    let host = match host.map(authority) {
        Some(None) => return Some("invalid Host"),
        Some(Some(h)) => Some(h),
        None => None,
    };
    let uri: http::Uri = target.parse().ok()?;
    if let (Some(scheme), Some(target)) = (uri.scheme_str(), uri.authority()) {
        let Some(target) = authority(target.as_str().as_bytes()) else {
            return Some("absolute-form authority invalid");
        };
        if let Some(host) = host {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "http" => "80",
                "https" => "443",
                _ => "",
            };
            // Ports compared as written, as check_host does (not as u16s:
            // `http` has no number for a port over 65535, found by
            // libFuzzer).
            let port = |a: &http::uri::Authority| {
                let text = a.as_str();
                let after = text.get(a.host().len()..).unwrap_or_default();
                let p = after.strip_prefix(':').unwrap_or_default().to_string();
                if p == default {
                    String::new()
                } else {
                    p
                }
            };
            if !target.host().eq_ignore_ascii_case(host.host()) || port(&target) != port(&host) {
                return Some("Host does not match the target");
            }
        }
    }
    None
}

/// Stricter (hyper takes any Upgrade): an upgrade that applies (HTTP/1.1,
/// Connection: upgrade) names its protocols in one ASCII line.
fn upgrade_rule(http11: bool, fields: &[(&str, &[u8])]) -> Option<&'static str> {
    let asked = has_token(fields, b"upgrade");
    let lines: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        .map(|(_, v)| *v)
        .collect();
    let valid = matches!(lines[..], [] | [_]) && lines.iter().all(|v| v.is_ascii());
    (http11 && asked && !valid).then_some("Upgrade repeated or not ASCII")
}

/// Stricter than hyper, for both heads: Content-Length and
/// Transfer-Encoding never together (hyper lets TE win); one
/// Content-Length line of plain digits (hyper takes equal repeats, and a
/// response's equal list); no coding but one `chunked` (Strait would have to
/// decode any other, and a second chunked is a smuggling lever).
fn strict_framing(fields: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let lines = |name: &'static str| {
        fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let (cls, tes) = (
        lines("content-length").count(),
        lines("transfer-encoding").count(),
    );
    if cls > 0 && tes > 0 {
        return Err("Content-Length and Transfer-Encoding");
    }
    if cls > 1 {
        return Err("repeated Content-Length");
    }
    if lines("content-length").any(|v| from_digits(v).is_none()) {
        return Err("Content-Length not digits");
    }
    let codings: Vec<&[u8]> = lines("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    if codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
        return Err("a coding other than chunked");
    }
    match codings.len() > 1 {
        true => Err("chunked twice"),
        false => Ok(()),
    }
}

/// hyper's request framing, in its order (a Content-Length after a
/// Transfer-Encoding is not even parsed), then Strait's stricter rules.
fn framing(http11: bool, fields: &[(&str, &[u8])]) -> Result<Framing, &'static str> {
    let (mut te, mut te_chunked, mut cl) = (false, false, None::<u64>);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err("Transfer-Encoding on HTTP/1.0");
            }
            te = true;
            te_chunked =
                last_coding(value).map_or(te_chunked, |c| c.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("content-length") && !te {
            let n = from_digits(value).ok_or("Content-Length not digits")?;
            if cl.is_some_and(|prev| prev != n) {
                return Err("differing Content-Lengths");
            }
            cl = Some(n);
        }
    }
    if te && !te_chunked {
        return Err("Transfer-Encoding not ending in chunked");
    }
    strict_framing(fields)?;
    Ok(match (te, cl) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    })
}

/// hyper's `is_chunked_` reads the last element of the last line.
/// Deviation: the last element of all the lines together (RFC 9110 §5.3
/// makes them one list), empty elements ignored (§5.6.1 says a recipient
/// must), so `chunked,` is chunked and an empty line after one changes
/// nothing, as Strait reads them. `None`: this line has no element.
fn last_coding(value: &[u8]) -> Option<&[u8]> {
    value
        .rsplit(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .find(|c| !c.is_empty())
}

/// hyper's `from_digits`: digits only, no overflow.
fn from_digits(value: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    if value.is_empty() {
        return None;
    }
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// hyper: HTTP/1.1 stays open unless a Connection line says `close`;
/// HTTP/1.0 closes unless one says `keep-alive` (and none `close`).
/// Deviation: tokens are read from the bytes (hyper skips a value that is
/// not visible ASCII, so obs-text elsewhere would hide a `close`).
fn keep_alive(http11: bool, fields: &[(&str, &[u8])]) -> bool {
    !has_token(fields, b"close") && (http11 || has_token(fields, b"keep-alive"))
}

/// Whether a Connection line lists `token` (hyper's `connection_has`).
fn has_token(fields: &[(&str, &[u8])], token: &[u8]) -> bool {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .any(|(_, v)| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
}

/// What the request was, from a response input's first byte (bit 0: HEAD,
/// bit 1: CONNECT); the head is the rest.
fn request_kind(data: &[u8]) -> (RequestKind, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (
            RequestKind {
                head: b & 1 != 0,
                connect: b & 2 != 0,
            },
            rest,
        ),
        None => (RequestKind::default(), data),
    }
}

/// Strait's response parser, as a verdict.
pub fn strait_response<'b>(data: &'b [u8], arena: &'b Bump) -> Verdict<Response<'b>> {
    let (kind, data) = request_kind(data);
    match parse_response(data, arena, &LIMITS, kind) {
        Ok(None) => Verdict::Incomplete,
        Err(e) => Verdict::Refused(format!("strait: {e:?}")),
        Ok(Some(h)) => Verdict::Head(Response {
            status: h.status,
            reason: h.reason,
            http11: h.version == strait::http1::Version::Http11,
            fields: h.fields.iter().map(|f| (f.name, f.value)).collect(),
            head_len: h.head_len,
            framing: h.framing,
            keep_alive: h.keep_alive,
        }),
    }
}

/// The response reference: httparse and hyper's client decoder (hyper 1.x,
/// src/proto/h1/role.rs `Client::decoder`), then Strait's stricter rules.
pub fn reference_response(data: &[u8]) -> Verdict<Response<'_>> {
    let (kind, data) = request_kind(data);
    let mut headers = vec![httparse::EMPTY_HEADER; LIMITS.max_fields];
    let mut res = httparse::Response::new(&mut headers);
    let parsed = res.parse(data);
    let complete = match parsed {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    };
    if let Some(rule) = line_rule(&data[..complete.unwrap_or(data.len())]) {
        return refuse(rule);
    }
    // Stricter: httparse skips empty lines before a status line too; RFC
    // 9112 §2.2 allows that only before a request line.
    if data.starts_with(b"\r\n") {
        return refuse("empty line before the status line");
    }
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Verdict::Incomplete,
        Err(e) => return refuse(&format!("httparse: {e}")),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return refuse("httparse completed without a status line");
    };
    // hyper: `StatusCode::from_u16`, 100 to 999. Stricter: no 6xx to 9xx,
    // which have no class to be handled as.
    if !(100..=599).contains(&status) {
        return refuse("status outside 100-599");
    }
    let http11 = minor == 1;
    let fields: Vec<(&str, &[u8])> = res.headers.iter().map(|h| (h.name, h.value)).collect();
    let has = |name: &str| fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    // Stricter: the framing fields are checked whatever the status and the
    // request (hyper reads them only for a response that has a body).
    if has("transfer-encoding") && !http11 {
        return refuse("Transfer-Encoding on HTTP/1.0");
    }
    if let Err(rule) = strict_framing(&fields) {
        return refuse(rule);
    }
    let framing = match status {
        100..=199 | 204 | 304 => Framing::None,
        _ if kind.head => Framing::None,
        200..=299 if kind.connect => Framing::Tunnel,
        _ if has("transfer-encoding") => {
            let last = fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
                .rev()
                .find_map(|(_, v)| last_coding(v));
            match last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
                true => Framing::Chunked,
                false => Framing::Close,
            }
        }
        _ => match fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            Some((_, v)) => Framing::Length(from_digits(v).expect("checked by strict_framing")),
            None => Framing::Close,
        },
    };
    // hyper closes after a close-delimited body; a tunnel is no longer HTTP.
    let reusable = !matches!(framing, Framing::Close | Framing::Tunnel);
    Verdict::Head(Response {
        status,
        reason: res.reason.unwrap_or_default(),
        http11,
        fields: fields.clone(),
        head_len,
        framing,
        keep_alive: keep_alive(http11, &fields) && reusable,
    })
}

/// The response check: Strait and the reference agree, and no strict prefix
/// of an accepted head is refused.
pub fn check_response(data: &[u8]) {
    let arena = Bump::new();
    let (ours, theirs) = (strait_response(data, &arena), reference_response(data));
    assert!(
        ours.agrees(&theirs),
        "disagreement on {:?}:\n  strait:    {ours:?}\n  reference: {theirs:?}",
        data.escape_ascii().to_string()
    );
    if let Verdict::Head(head) = ours {
        let prefix = strait_response(&data[..head.head_len], &arena);
        assert!(
            matches!(prefix, Verdict::Incomplete),
            "a prefix of an accepted head is not incomplete: {prefix:?} on {:?}",
            data.escape_ascii().to_string()
        );
    }
}

/// Panics when Strait and the reference disagree on `data`, or when Strait
/// refuses a strict prefix of a head it accepts (a prefix must read as
/// incomplete).
pub fn check(data: &[u8]) {
    let arena = Bump::new();
    // HTTP/1.2 to 1.9 are read as 1.1 (RFC 9110 §2.5), which httparse
    // alone does not: the reference reads the same head with `HTTP/1.1`.
    let as_11 = later_minor_as_11(data);
    let reference_input = as_11.as_deref().unwrap_or(data);
    let (ours, theirs) = (strait(data, &arena), reference(reference_input));
    assert!(
        ours.agrees(&theirs),
        "disagreement on {:?}:\n  strait:    {ours:?}\n  reference: {theirs:?}",
        data.escape_ascii().to_string()
    );
    if let Verdict::Head(head) = ours {
        let prefix = strait(&data[..head.head_len - 1], &arena);
        assert!(
            matches!(prefix, Verdict::Incomplete),
            "a prefix of an accepted head is not incomplete: {prefix:?} on {:?}",
            data.escape_ascii().to_string()
        );
    }
}

/// `data` with its request line's `HTTP/1.2`..`HTTP/1.9` made `HTTP/1.1`
/// (the line after any CRLFs before it, complete or not), or `None`.
pub fn later_minor_as_11(data: &[u8]) -> Option<Vec<u8>> {
    let mut start = 0;
    while data[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let rest = &data[start..];
    let end = start
        + rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
    let line = &data[start..end];
    let version = line.get(line.len().checked_sub(9)?..)?;
    if !matches!(
        version,
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
    ) {
        return None;
    }
    let mut copy = data.to_vec();
    copy[end - 1] = b'1';
    Some(copy)
}

/// Named seed heads: valid ones of every shape, and each smuggling pattern.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    const H: &str = "Host: example.com\r\n";
    let big = format!("GET /{} HTTP/1.1\r\n{H}\r\n", "a".repeat(120));
    let many: String = (0..20).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let seeds: Vec<(&str, String)> = vec![
        ("get", format!("GET / HTTP/1.1\r\n{H}\r\n")),
        ("get-query", format!("GET /a/b?c=d&e=%20 HTTP/1.1\r\n{H}User-Agent: x\r\nAccept: */*\r\n\r\n")),
        ("post-length", format!("POST /up HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello")),
        ("post-chunked", format!("POST /up HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")),
        ("http10", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into()),
        ("absolute", "GET http://example.com:80/x HTTP/1.1\r\nHost: Example.com\r\n\r\n".into()),
        ("connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into()),
        ("options-star", format!("OPTIONS * HTTP/1.1\r\n{H}\r\n")),
        ("leading-crlf", format!("\r\n\r\nGET / HTTP/1.1\r\n{H}\r\n")),
        ("upgrade", format!("GET /ws HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")),
        ("expect", format!("PUT /x HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 1\r\n\r\n")),
        ("pipelined", format!("GET /1 HTTP/1.1\r\n{H}\r\nGET /2 HTTP/1.1\r\n{H}\r\n")),
        ("obs-text", format!("GET / HTTP/1.1\r\n{H}X: caf\u{e9}\t \r\nEmpty:\r\n\r\n")),
        ("many-fields", format!("GET / HTTP/1.1\r\n{H}{many}\r\n")),
        ("long-target", big),
        ("cl-te", format!("POST / HTTP/1.1\r\n{H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n")),
        ("te-cl", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n")),
        ("cl-cl-equal", format!("POST / HTTP/1.1\r\n{H}Content-Length: 4\r\nContent-Length: 4\r\n\r\n")),
        ("cl-cl-differ", format!("POST / HTTP/1.1\r\n{H}Content-Length: 4\r\nContent-Length: 5\r\n\r\n")),
        ("cl-list", format!("POST / HTTP/1.1\r\n{H}Content-Length: 4, 4\r\n\r\n")),
        ("cl-sign", format!("POST / HTTP/1.1\r\n{H}Content-Length: +4\r\n\r\n")),
        ("cl-overflow", format!("POST / HTTP/1.1\r\n{H}Content-Length: 18446744073709551616\r\n\r\n")),
        ("te-not-final", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, identity\r\n\r\n")),
        ("te-gzip", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n")),
        ("te-twice", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")),
        ("te-http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into()),
        ("te-space-colon", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n")),
        ("te-obs-fold", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n")),
        ("te-vtab", format!("POST / HTTP/1.1\r\n{H}Transfer-Encoding: \x0bchunked\r\n\r\n")),
        ("bare-lf", format!("GET / HTTP/1.1\n{H}\n")),
        ("bare-cr", format!("GET / HTTP/1.1\r\n{H}X: a\rb\r\n\r\n")),
        ("nul", format!("GET / HTTP/1.1\r\n{H}X: a\0b\r\n\r\n")),
        ("no-host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n".into()),
        ("two-hosts", format!("GET / HTTP/1.1\r\n{H}{H}\r\n")),
        ("host-userinfo", "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n".into()),
        // A bracket inside a reg-name (found by libFuzzer: `http` takes it).
        ("host-bracket-inside", "GET / HTTP/1.1\r\nHost: p%[axmle.cD]\r\n\r\n".into()),
        ("host-empty-literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n".into()),
        ("host-literal-not-ipv6", "GET / HTTP/1.1\r\nHost: [m::e.e.!]\r\n\r\n".into()),
        ("host-ipv6", "GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]:8080\r\n\r\n".into()),
        ("host-literal-percent", "GET / HTTP/1.1\r\nHost: [::%:%]\r\n\r\n".into()),
        // A scheme over the 64 bytes `http` takes (found by libFuzzer).
        // A target port over 65535 is not Host's default port (libFuzzer).
        // A later HTTP/1 minor version is read as 1.1 (RFC 9110 §2.5).
        ("http12", format!("GET / HTTP/1.2\r\n{H}\r\n")),
        ("http12-bad-field", format!("GET / HTTP/1.2\r\n{H}X : 1\r\n\r\n")),
        ("port-overflow", "GET http://a:801111111111111111111/x HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("scheme-too-long", format!("GET {}://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "w".repeat(65))),
        ("host-mismatch", format!("GET http://other.example/ HTTP/1.1\r\n{H}\r\n")),
        ("connect-origin", format!("CONNECT / HTTP/1.1\r\n{H}\r\n")),
("connect-signed-port", "CONNECT example.com:+443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into()),
        ("host-percent-port", "GET / HTTP/1.1\r\nHost: example.com:44%\r\n\r\n".into()),
        ("connect-empty-host", "CONNECT :443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into()),
        ("scheme-tilde", "GET h~t://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into()),
                ("connect-userinfo", "CONNECT user@example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".into()),
        ("fragment", format!("GET /a#b HTTP/1.1\r\n{H}\r\n")),
        ("http2-line", format!("GET / HTTP/2.0\r\n{H}\r\n")),
    ];
    seeds
        .into_iter()
        .map(|(n, s)| (n, s.into_bytes()))
        .collect()
}

/// Named seed responses, each behind its request-kind byte (`G`: GET, `H`:
/// HEAD (bit 0), `B`: CONNECT (bit 1)).
pub fn response_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const L: &str = "Content-Length: 5\r\n";
    let seeds: Vec<(&str, String)> = vec![
        ("200-length", format!("GHTTP/1.1 200 OK\r\n{L}Content-Type: text/plain\r\n\r\nhello")),
        ("200-chunked", "GHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into()),
        ("200-close", "GHTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close".into()),
        ("204", "GHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".into()),
        ("304", format!("GHTTP/1.1 304 Not Modified\r\n{L}ETag: \"x\"\r\n\r\n")),
        ("100", "GHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n".into()),
        ("101", "GHTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".into()),
        ("103", "GHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".into()),
        ("http10", format!("GHTTP/1.0 200 OK\r\nConnection: keep-alive\r\n{L}\r\n")),
        ("no-reason", format!("GHTTP/1.1 404\r\n{L}\r\n")),
        ("obs-text", format!("GHTTP/1.1 200 Café\r\nX: é\r\n{L}\r\n")),
        ("connection-close", format!("GHTTP/1.1 200 OK\r\nConnection: close\r\n{L}\r\n")),
        ("head", format!("HHTTP/1.1 200 OK\r\n{L}\r\n")),
        ("connect-200", "BHTTP/1.1 200 Connection established\r\n\r\n".into()),
        ("connect-407", format!("BHTTP/1.1 407 Proxy Authentication Required\r\n{L}\r\n")),
        ("cl-te", format!("GHTTP/1.1 200 OK\r\n{L}Transfer-Encoding: chunked\r\n\r\n")),
        ("cl-cl", format!("GHTTP/1.1 200 OK\r\n{L}{L}\r\n")),
        ("cl-list", "GHTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n".into()),
        ("te-gzip", "GHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".into()),
        ("te-gzip-chunked", "GHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into()),
        ("te-http10", "GHTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".into()),
        ("bare-lf", format!("GHTTP/1.1 200 OK\n{L}\n")),
        ("obs-fold", format!("GHTTP/1.1 200 OK\r\nX: a\r\n b\r\n{L}\r\n")),
        ("space-colon", "GHTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n".into()),
        ("nul", format!("GHTTP/1.1 200 OK\r\nX: a\0b\r\n{L}\r\n")),
        ("status-600", format!("GHTTP/1.1 600 Odd\r\n{L}\r\n")),
        ("leading-crlf", format!("G\r\nHTTP/1.1 200 OK\r\n{L}\r\n")),
    ];
    seeds
        .into_iter()
        .map(|(n, s)| (n, s.into_bytes()))
        .collect()
}

/// xorshift64*: small, deterministic, good enough to pick bytes (the fuzz
/// smoke test's generator too).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Lines that decide framing and routing, spliced in by `mutate`.
const LINES: [&[u8]; 8] = [
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 05\r\n",
    b"Host: example.com\r\n",
    b"Connection: close\r\n",
    b"Transfer-Encoding: chunked,\r\n",
    b"Host: [::1]:80\r\n",
    b"Connection: keep-alive, x\r\n",
];

/// A head-shaped edit of `seed` (one to four of them): a bit flip, a CR,
/// LF, NUL, SP, HTAB, `:` or `,` inserted, a byte dropped, a line
/// duplicated or dropped, a framing line spliced in, the case of a byte
/// swapped, a cut.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const BYTES: &[u8] = b"\r\n\0 \t:,;\x0b\x7f\xe9";
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        let at = rng.below(len + 1);
        let lines: Vec<usize> = (0..len)
            .filter(|&i| data[i] == b'\n')
            .map(|i| i + 1)
            .collect();
        match rng.below(9) {
            0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.below(8),
            1 => data.insert(at, BYTES[rng.below(BYTES.len())]),
            2 if len > 0 => drop(data.remove(at.min(len - 1))),
            3 | 4 if lines.len() > 1 => {
                let i = rng.below(lines.len() - 1);
                let line = data[lines[i]..lines[i + 1]].to_vec();
                match rng.below(2) {
                    0 => drop(data.splice(lines[i]..lines[i], line)),
                    _ => drop(data.drain(lines[i]..lines[i + 1])),
                }
            }
            5 if !lines.is_empty() => {
                let at = lines[rng.below(lines.len())];
                let line = LINES[rng.below(LINES.len())];
                data.splice(at..at, line.iter().copied());
            }
            6 if len > 0 => data[at.min(len - 1)] ^= 0x20,
            7 => data.truncate(at),
            _ => data.insert(at, b' '),
        }
    }
    data
}

/// `seeds`, then `n` mutations of them, from a fixed generator.
pub fn corpus(
    seeds: Vec<(&'static str, Vec<u8>)>,
    n: usize,
    seed: u64,
) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let plain: Vec<Vec<u8>> = seeds.iter().map(|(_, s)| s.clone()).collect();
    let mutated = (0..n).map(move |_| {
        let seed = &seeds[rng.below(seeds.len())].1;
        mutate(&mut rng, seed)
    });
    plain.into_iter().chain(mutated)
}
