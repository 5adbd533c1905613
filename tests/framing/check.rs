//! What a framing case expects, and the checks that compare it with what
//! the origin and the client received (parsed by `wire.rs`).

use super::origin::Conn;
use super::wire::{self, show, Field, Framing, Message};

/// How a body must be delimited where it arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    /// Neither Content-Length nor Transfer-Encoding.
    None,
    /// `Content-Length` equal to the body's length.
    Length,
    /// `Content-Length: n` and no body (a response to HEAD, a 304).
    Declared(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Content-Length equal to the body's length, or chunked, or (a
    /// response only) delimited by the close.
    Any,
}

/// One message as it must arrive: its start line, its fields (without the
/// framing fields and without the fields the gateway adds), its body
/// after de-chunking, its trailers. Values are compared byte for byte,
/// a character of a value standing for one byte (`\u{e9}` is 0xE9).
#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub(crate) start: String,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Vec<(String, String)>,
    pub(crate) want: Want,
}

/// A message with `start` and `fields`, no body (`Want::None`).
pub(crate) fn msg(start: &str, fields: &[(&str, &str)]) -> Msg {
    Msg {
        start: start.to_string(),
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        trailers: Vec::new(),
        want: Want::None,
    }
}

impl Msg {
    pub(crate) fn body(mut self, body: &[u8], want: Want) -> Msg {
        self.body = body.to_vec();
        self.want = want;
        self
    }

    pub(crate) fn trailers(mut self, trailers: &[(&str, &str)]) -> Msg {
        self.trailers = trailers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self
    }
}

/// How the client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The gateway closed it (FIN).
    Closed,
    /// Reset, or another read error.
    Reset(String),
    /// Still open after the wait.
    Open,
}

/// What the client received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) bytes: Vec<u8>,
    pub(crate) end: End,
}

/// Fields a message carries besides the case's: removed before the
/// comparison, each checked on its own by the caller.
fn split<'m>(fields: &'m [Field], others: &[&str]) -> (Vec<&'m Field>, Vec<&'m Field>) {
    fields
        .iter()
        .partition(|(n, _)| !others.iter().any(|o| n.eq_ignore_ascii_case(o.as_bytes())))
}

fn show_fields(fields: &[&Field]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(n, v)| format!("{}: {}", show(n), show(v)))
        .collect();
    format!("[{}]", parts.join(" | "))
}

/// An expected value's bytes: each character one byte (U+0080 to U+00FF
/// stand for obs-text bytes 0x80 to 0xFF).
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
        .collect()
}

fn same_fields(got: &[&Field], want: &[(String, String)], subst: &dyn Fn(&str) -> String) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|((gn, gv), (wn, wv))| {
            gn.eq_ignore_ascii_case(wn.as_bytes()) && *gv == latin1(&subst(wv))
        })
}

/// Compares one arrived message with what the case wants; `extra` names
/// the fields the gateway adds (left out of the comparison), `subst`
/// fills placeholders such as `{origin}`. Errors go to `errs`.
pub(crate) fn compare(
    what: &str,
    got: &Message,
    want: &Msg,
    extra: &[&str],
    subst: &dyn Fn(&str) -> String,
    errs: &mut Vec<String>,
) {
    if got.start != want.start.as_bytes() {
        errs.push(format!(
            "{what}: start line {:?}, want {:?}",
            show(&got.start),
            want.start
        ));
    }
    let mut hidden: Vec<&str> = vec!["content-length", "transfer-encoding"];
    hidden.extend_from_slice(extra);
    let (fields, _) = split(&got.fields, &hidden);
    if !same_fields(&fields, &want.fields, subst) {
        let want_fields: Vec<String> = want
            .fields
            .iter()
            .map(|(n, v)| format!("{n}: {}", subst(v)))
            .collect();
        errs.push(format!(
            "{what}: fields {}, want [{}]",
            show_fields(&fields),
            want_fields.join(" | ")
        ));
    }
    if got.body != want.body {
        errs.push(format!(
            "{what}: body {:?}, want {:?}",
            show(&got.body),
            show(&want.body)
        ));
    }
    let (trailers, _) = split(&got.trailers, &[]);
    if !same_fields(&trailers, &want.trailers, subst) {
        errs.push(format!(
            "{what}: trailers {}, want {:?}",
            show_fields(&trailers),
            want.trailers
        ));
    }
    let len = got.body.len() as u64;
    let framing_ok = match want.want {
        Want::None => got.framing == Framing::None,
        Want::Length => got.framing == Framing::Length(len),
        Want::Declared(n) => got.framing == Framing::Length(n),
        Want::Chunked => got.framing == Framing::Chunked,
        Want::Any => {
            matches!(got.framing, Framing::Chunked | Framing::Close)
                || got.framing == Framing::Length(len)
                || (len == 0 && got.framing == Framing::None)
        }
    };
    if !framing_ok {
        errs.push(format!(
            "{what}: framing {:?}, want {:?}",
            got.framing, want.want
        ));
    }
}

/// The requests in the origin's connections, in order, or errors: bytes
/// that are not whole, strict requests (a smuggled or stray byte).
pub(crate) fn origin_requests(conns: &[Conn], errs: &mut Vec<String>) -> Vec<Message> {
    let mut all = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        let (msgs, rest) = wire::parse_all(&c.bytes, true, &[], false);
        all.extend(msgs);
        match rest {
            Ok(rest) if rest.is_empty() => {}
            Ok(rest) => errs.push(format!(
                "origin connection {i}: {} bytes after the last whole request: {:?}",
                rest.len(),
                show(&rest)
            )),
            Err(e) => errs.push(format!(
                "origin connection {i}: invalid bytes ({e}) in {:?}",
                show(&c.bytes)
            )),
        }
    }
    all
}

/// The X-Forwarded-* fields of a forwarded request: one each, naming the
/// loopback client, plain HTTP, and the client's Host (`client_host`: none
/// for an HTTP/1.0 request without one).
pub(crate) fn forwarded_fields(
    what: &str,
    got: &Message,
    client_host: Option<&str>,
    errs: &mut Vec<String>,
) {
    let values = |name: &str| -> Vec<Vec<u8>> {
        got.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let host: Vec<Vec<u8>> = client_host.iter().map(|h| h.as_bytes().to_vec()).collect();
    let expected: [(&str, Vec<Vec<u8>>); 3] = [
        ("x-forwarded-for", vec![b"127.0.0.1".to_vec()]),
        ("x-forwarded-proto", vec![b"http".to_vec()]),
        ("x-forwarded-host", host),
    ];
    for (name, want) in expected {
        let got = values(name);
        if got != want {
            let got: Vec<String> = got.iter().map(|v| show(v)).collect();
            let want: Vec<String> = want.iter().map(|v| show(v)).collect();
            errs.push(format!("{what}: {name} {got:?}, want {want:?}"));
        }
    }
}

/// The responses the client received, with the error that ended the parse.
pub(crate) fn client_responses(
    seen: &Seen,
    heads: &[bool],
) -> (Vec<Message>, Result<Vec<u8>, String>) {
    wire::parse_all(&seen.bytes, false, heads, seen.end == End::Closed)
}
