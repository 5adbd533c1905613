//! Request-side cases: raw client bytes, and what the origin must receive
//! (or that it receives nothing and the client gets an error status).
//! Where RFC 9112 lets a recipient choose (accept or reject), the cases
//! take the strict choice the issue asks for, and say so.

use std::time::Duration;

use super::check::{self, msg, End, Msg, Want};
use super::origin::RawOrigin;
use super::wire::show;
use super::{exchange, Front, CLOSE_WITHIN, MAX_HEADERS, MAX_HEADER_BYTES, QUIET};

pub(crate) enum Expect {
    /// The client gets one of these statuses, then the gateway closes the
    /// connection; the origin gets no connection at all.
    Rejected(&'static [u16]),
    /// As `Rejected`, but the connection may stay open: the head was
    /// well framed and refused for what it says (its Host), so the
    /// stream is still in step.
    Refused(&'static [u16]),
    /// A body error found after the head may have gone upstream: the
    /// client gets one of these statuses and the close; the origin never
    /// sees a complete request, and its connection is closed.
    BodyRejected(&'static [u16]),
    /// The origin gets exactly these requests, nothing else; the client
    /// gets the origin's answers (`r00`, `r01`, ...) in order, and then the
    /// connection stays open, or is closed if `closes`.
    Forwarded { requests: Vec<Msg>, closes: bool },
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    /// Written 100 ms apart.
    pub(crate) send: Vec<Vec<u8>>,
    pub(crate) expect: Expect,
}

const H: &str = "Host: test.local\r\n";

fn case(name: &'static str, send: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        send: vec![send.into()],
        expect,
    }
}

fn rejected(name: &'static str, send: impl Into<Vec<u8>>, status: &'static [u16]) -> Case {
    case(name, send, Expect::Rejected(status))
}

fn refused(name: &'static str, send: impl Into<Vec<u8>>) -> Case {
    case(name, send, Expect::Refused(&[400]))
}

fn body_rejected(name: &'static str, head_and_body: &str) -> Case {
    let send = format!(
        "POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n\
        {head_and_body}"
    );
    case(name, send, Expect::BodyRejected(&[400]))
}

fn forwarded(name: &'static str, send: impl Into<Vec<u8>>, requests: Vec<Msg>) -> Case {
    case(
        name,
        send,
        Expect::Forwarded {
            requests,
            closes: false,
        },
    )
}

fn get(target: &str) -> Msg {
    msg(&format!("GET {target} HTTP/1.1"), &[("host", "test.local")])
}

fn post(body: &[u8], want: Want) -> Msg {
    msg("POST /x HTTP/1.1", &[("host", "test.local")]).body(body, want)
}

fn post_chunked(chunks: &str) -> String {
    format!("POST /x HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{chunks}")
}

fn post_with(fields: &str, body: &str) -> String {
    format!("POST /x HTTP/1.1\r\n{H}{fields}\r\n{body}")
}

fn get_with(field: &[u8]) -> Vec<u8> {
    let mut v = format!("GET /x HTTP/1.1\r\n{H}").into_bytes();
    v.extend_from_slice(field);
    v.extend_from_slice(b"\r\n\r\n");
    v
}

pub(crate) fn cases() -> Vec<Case> {
    let long = "a".repeat(MAX_HEADER_BYTES);
    let many: String = (0..=MAX_HEADERS)
        .map(|i| format!("X-F{i}: {i}\r\n"))
        .collect();
    // Under the field count, over the head's bytes.
    let wide: String = (0..MAX_HEADERS / 2)
        .map(|i| {
            format!(
                "X-W{i}: {}\r\n",
                "w".repeat(MAX_HEADER_BYTES / (MAX_HEADERS / 2))
            )
        })
        .collect();
    vec![
        // ------------------------------------------------ forwarded as sent
        forwarded(
            "get",
            format!("GET /x HTTP/1.1\r\n{H}\r\n"),
            vec![get("/x")],
        ),
        forwarded(
            "get_fields_query",
            format!("GET /x?a=1&b=%20 HTTP/1.1\r\n{H}Accept: */*\r\nX-Sp: a  b\r\n\r\n"),
            vec![msg(
                "GET /x?a=1&b=%20 HTTP/1.1",
                &[("host", "test.local"), ("accept", "*/*"), ("x-sp", "a  b")],
            )],
        ),
        forwarded(
            "head",
            format!("HEAD /x HTTP/1.1\r\n{H}\r\n"),
            vec![msg("HEAD /x HTTP/1.1", &[("host", "test.local")])],
        ),
        forwarded(
            "post_content_length",
            post_with("Content-Length: 5\r\n", "hello"),
            vec![post(b"hello", Want::Length)],
        ),
        forwarded(
            "post_chunked",
            post_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            vec![post(b"hello world", Want::Any)],
        ),
        forwarded(
            "post_chunked_extensions",
            post_chunked("5;name=value\r\nhello\r\n1;a;b=\"q s\"\r\n!\r\n0;last\r\n\r\n"),
            vec![post(b"hello!", Want::Any)],
        ),
        forwarded(
            "post_chunked_upper_hex",
            post_chunked("A\r\n0123456789\r\n0\r\n\r\n"),
            vec![post(b"0123456789", Want::Any)],
        ),
        // The issue: trailers bounded and forwarded; only chunked can carry them.
        forwarded(
            "post_chunked_trailers",
            post_chunked("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Two: 2\r\n\r\n"),
            vec![post(b"hello", Want::Chunked).trailers(&[("x-checksum", "abc"), ("x-two", "2")])],
        ),
        // Trailer fields that frame, route, carry credentials or are
        // hop-by-hop (RFC 9110 §6.5.1) are dropped; the others go on.
        forwarded(
            "post_chunked_forbidden_trailers_dropped",
            post_chunked(
                "5\r\nhello\r\n0\r\nContent-Length: 5\r\nX-Kept: 1\r\nHost: evil.test\r\n\
                Transfer-Encoding: chunked\r\nAuthorization: Basic eA==\r\nCookie: a=b\r\n\
                X-Also:  kept \r\n\r\n",
            ),
            vec![post(b"hello", Want::Chunked).trailers(&[("x-kept", "1"), ("x-also", "kept")])],
        ),
        // Only forbidden ones: the body ends with the plain last chunk.
        forwarded(
            "post_chunked_only_forbidden_trailers",
            post_chunked("5\r\nhello\r\n0\r\nTrailer: X\r\nTE: trailers\r\n\r\n"),
            vec![post(b"hello", Want::Chunked)],
        ),
        // Transfer codings are case-insensitive (RFC 9112 §7).
        forwarded(
            "te_mixed_case",
            post_with("Transfer-Encoding: Chunked\r\n", "2\r\nhi\r\n0\r\n\r\n"),
            vec![post(b"hi", Want::Any)],
        ),
        // HTTP/1.0 may omit Host (RFC 9112 §3.2); the upstream gets the
        // endpoint's, and the gateway's own version (RFC 9110 §6.2). A 1.0
        // client without keep-alive is closed after its answer.
        case(
            "http10_without_host",
            "GET /x HTTP/1.0\r\n\r\n",
            Expect::Forwarded {
                requests: vec![msg("GET /x HTTP/1.1", &[("host", "{origin}")])],
                closes: true,
            },
        ),
        forwarded(
            "pipelined_three_gets",
            format!(
                "GET /a HTTP/1.1\r\n{H}\r\nGET /b HTTP/1.1\r\n{H}\r\nGET /c HTTP/1.1\r\n\
                {H}\r\n"
            ),
            vec![get("/a"), get("/b"), get("/c")],
        ),
        forwarded(
            "pipelined_post_then_get",
            format!(
                "POST /x HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\
                {H}\r\n"
            ),
            vec![post(b"hello", Want::Length), get("/b")],
        ),
        forwarded(
            "pipelined_chunked_then_get",
            format!(
                "{}GET /b HTTP/1.1\r\n{H}\r\n",
                post_chunked("3\r\nabc\r\n0\r\n\r\n")
            ),
            vec![post(b"abc", Want::Any), get("/b")],
        ),
        // The body follows 100 ms after the head. Expect is end to end
        // (RFC 9110 §10.1.1 does not ask an intermediary to remove it).
        Case {
            name: "expect_100_continue",
            send: vec![
                format!(
                    "POST /x HTTP/1.1\r\n{H}Content-Length: 5\r\n\
                    Expect: 100-continue\r\n\r\n"
                )
                .into_bytes(),
                b"hello".to_vec(),
            ],
            expect: Expect::Forwarded {
                requests: vec![msg(
                    "POST /x HTTP/1.1",
                    &[("host", "test.local"), ("expect", "100-continue")],
                )
                .body(b"hello", Want::Length)],
                closes: false,
            },
        },
        case(
            "connection_close",
            format!("GET /x HTTP/1.1\r\n{H}Connection: close\r\n\r\n"),
            Expect::Forwarded {
                requests: vec![get("/x")],
                closes: true,
            },
        ),
        // RFC 9110 §7.6.1: the fields Connection names, and the hop-by-hop
        // ones, go; Upgrade without `Connection: upgrade` is just a field.
        forwarded(
            "hop_by_hop_removed",
            format!(
                "GET /x HTTP/1.1\r\n{H}Connection: x-foo, keep-alive\r\nX-Foo: 1\r\n\
                    Keep-Alive: timeout=5\r\n\
                 Proxy-Connection: keep-alive\r\nX-Kept: yes\r\nTE: trailers\r\n\
                     Upgrade: h2c\r\nX-Last: z\r\n\r\n"
            ),
            vec![msg(
                "GET /x HTTP/1.1",
                &[("host", "test.local"), ("x-kept", "yes"), ("x-last", "z")],
            )],
        ),
        // Names compare case-insensitively here; the new path keeps the
        // client's spelling (a copy of its bytes).
        forwarded(
            "field_name_case",
            format!("GET /x HTTP/1.1\r\n{H}X-MiXeD-CaSe: v\r\n\r\n"),
            vec![msg(
                "GET /x HTTP/1.1",
                &[("host", "test.local"), ("x-mixed-case", "v")],
            )],
        ),
        // Same-name lines keep their order, and the order among names is
        // the client's (RFC 9110 §5.3 makes only the former significant;
        // the issue asks for both: an unedited head is copied).
        forwarded(
            "field_order_kept",
            format!("GET /x HTTP/1.1\r\n{H}X-B: 1\r\nX-A: 2\r\nX-B: 3\r\n\r\n"),
            vec![msg(
                "GET /x HTTP/1.1",
                &[
                    ("host", "test.local"),
                    ("x-b", "1"),
                    ("x-a", "2"),
                    ("x-b", "3"),
                ],
            )],
        ),
        // OWS around a value is not part of it (RFC 9112 §5.1).
        forwarded(
            "value_ows_trimmed",
            format!("GET /x HTTP/1.1\r\n{H}X-Pad: \t v w \t\r\n\r\n"),
            vec![msg(
                "GET /x HTTP/1.1",
                &[("host", "test.local"), ("x-pad", "v w")],
            )],
        ),
        // obs-text is allowed in a value (RFC 9110 §5.5), passed as bytes.
        {
            let mut send = format!("GET /x HTTP/1.1\r\n{H}").into_bytes();
            send.extend_from_slice(b"X-Latin: caf\xe9\r\n\r\n");
            forwarded(
                "value_obs_text",
                send,
                vec![msg(
                    "GET /x HTTP/1.1",
                    &[("host", "test.local"), ("x-latin", "caf\u{e9}")],
                )],
            )
        },
        // RFC 9112 §2.2: at least one empty line before a request SHOULD be ignored.
        forwarded(
            "leading_crlf",
            format!("\r\nGET /x HTTP/1.1\r\n{H}\r\n"),
            vec![get("/x")],
        ),
        // An absolute-form target goes upstream in origin form (RFC 9112 §3.2.2).
        forwarded(
            "absolute_form",
            format!("GET http://test.local/x?q HTTP/1.1\r\n{H}\r\n"),
            vec![get("/x?q")],
        ),
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is a different,
        // unknown method, which a proxy forwards as it is.
        forwarded(
            "lowercase_method",
            format!("get /x HTTP/1.1\r\n{H}\r\n"),
            vec![msg("get /x HTTP/1.1", &[("host", "test.local")])],
        ),
        forwarded(
            "options_asterisk",
            format!("OPTIONS * HTTP/1.1\r\n{H}\r\n"),
            vec![msg("OPTIONS * HTTP/1.1", &[("host", "test.local")])],
        ),
        // ------------------------------------------- framing: 400, nothing forwarded
        // RFC 9112 §6.3 (3): both is "an attempt at smuggling"; a server MAY
        // reject; the issue: 400 and close, in either order.
        rejected(
            "cl_then_te",
            post_with(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            &[400],
        ),
        rejected(
            "te_then_cl",
            post_with(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            &[400],
        ),
        // RFC 9110 §8.6 lets a recipient merge equal values; strict here.
        rejected(
            "cl_twice_equal",
            post_with("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            &[400],
        ),
        rejected(
            "cl_twice_differing",
            post_with("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            &[400],
        ),
        rejected(
            "cl_list",
            post_with("Content-Length: 5, 5\r\n", "hello"),
            &[400],
        ),
        rejected(
            "cl_plus",
            post_with("Content-Length: +5\r\n", "hello"),
            &[400],
        ),
        rejected(
            "cl_negative",
            post_with("Content-Length: -1\r\n", ""),
            &[400],
        ),
        rejected(
            "cl_hex",
            post_with("Content-Length: 0x5\r\n", "hello"),
            &[400],
        ),
        rejected("cl_empty", post_with("Content-Length: \r\n", ""), &[400]),
        rejected(
            "cl_overflow",
            post_with("Content-Length: 99999999999999999999999\r\n", "hello"),
            &[400],
        ),
        // Chunked is final and the other coding unknown: 501 (RFC 9112 §6.1).
        rejected(
            "te_gzip_chunked",
            post_with("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            &[501],
        ),
        // Chunked not final in a request: 400 and close (RFC 9112 §6.3 (4)).
        rejected(
            "te_chunked_gzip",
            post_with("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
            &[400],
        ),
        // Chunked at most once (RFC 9112 §6.1), in one line or two.
        rejected(
            "te_chunked_twice",
            post_with("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            &[400],
        ),
        rejected(
            "te_chunked_two_lines",
            post_with(
                "Transfer-Encoding: chunked\r\n\
                Transfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            &[400],
        ),
        // `identity` is no longer a coding; chunked is then not final, and
        // §6.3 (4)'s MUST (400) wins over §6.1's SHOULD (501).
        rejected(
            "te_identity",
            post_with("Transfer-Encoding: identity\r\n", "hello"),
            &[400],
        ),
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        rejected(
            "te_in_http10",
            "POST /x HTTP/1.0\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        // ------------------------------------------- field syntax: 400
        // RFC 9112 §5.2: reject, or replace with SP; strict here.
        rejected(
            "obs_fold",
            format!("GET /x HTTP/1.1\r\n{H}X-A: 1\r\n 2\r\n\r\n"),
            &[400],
        ),
        // RFC 9112 §2.2: a bare CR is invalid (or replaced by SP); strict.
        rejected("bare_cr_in_value", get_with(b"X-A: 1\r2"), &[400]),
        // RFC 9112 §2.2 allows a lone LF as a terminator (MAY); strict.
        rejected(
            "bare_lf_field",
            format!("GET /x HTTP/1.1\r\n{H}X-A: 1\n\r\n"),
            &[400],
        ),
        rejected(
            "bare_lf_request_line",
            format!("GET /x HTTP/1.1\n{H}\r\n"),
            &[400],
        ),
        rejected(
            "bare_lf_end_of_head",
            format!("GET /x HTTP/1.1\r\n{H}\n"),
            &[400],
        ),
        // RFC 9112 §5.1: MUST be rejected with 400.
        rejected("space_before_colon", get_with(b"X-A : 1"), &[400]),
        rejected("tab_before_colon", get_with(b"X-A\t: 1"), &[400]),
        rejected("nul_in_value", get_with(b"X-A: 1\x002"), &[400]),
        rejected("ctl_01_in_value", get_with(b"X-A: 1\x012"), &[400]),
        rejected("del_in_value", get_with(b"X-A: 1\x7f2"), &[400]),
        rejected("empty_field_name", get_with(b": x"), &[400]),
        rejected("bad_char_in_name", get_with(b"X(A): 1"), &[400]),
        rejected("no_colon", get_with(b"X-A 1"), &[400]),
        // ------------------------------------------- limits
        rejected(
            "too_many_fields",
            format!("GET /x HTTP/1.1\r\n{H}{many}\r\n"),
            &[431],
        ),
        rejected(
            "one_field_too_large",
            format!("GET /x HTTP/1.1\r\n{H}X-Big: {long}\r\n\r\n"),
            &[431],
        ),
        rejected(
            "head_too_large",
            format!("GET /x HTTP/1.1\r\n{H}{wide}\r\n"),
            &[431],
        ),
        // No target limit is configurable: a target over the head limit is
        // 414 (RFC 9112 §3: a server SHOULD answer 414 for a long target).
        rejected(
            "target_too_long",
            format!("GET /{long} HTTP/1.1\r\n{H}\r\n"),
            &[414],
        ),
        // ------------------------------------------- Host (RFC 9112 §3.2)
        refused("missing_host", "GET /x HTTP/1.1\r\n\r\n"),
        refused(
            "repeated_host",
            format!("GET /x HTTP/1.1\r\n{H}Host: other.local\r\n\r\n"),
        ),
        refused(
            "repeated_host_equal",
            format!("GET /x HTTP/1.1\r\n{H}{H}\r\n"),
        ),
        refused(
            "host_disagrees_with_target",
            format!("GET http://other.local/x HTTP/1.1\r\n{H}\r\n"),
        ),
        refused("invalid_host", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n"),
        // ------------------------------------------- request line
        rejected(
            "bad_method_chars",
            format!("G@T /x HTTP/1.1\r\n{H}\r\n"),
            &[400],
        ),
        rejected("two_spaces", format!("GET  /x HTTP/1.1\r\n{H}\r\n"), &[400]),
        rejected("no_version", "GET /x\r\n\r\n", &[400]),
        rejected(
            "nul_in_target",
            format!("GET /x\0y HTTP/1.1\r\n{H}\r\n"),
            &[400],
        ),
        // RFC 9110 §2.5: a higher minor version of a major one implemented
        // SHOULD be processed as the highest implemented: HTTP/1.2 goes
        // upstream as HTTP/1.1. A major version not spoken here is 505.
        forwarded(
            "http_1_2",
            format!("GET /x HTTP/1.2\r\n{H}\r\n"),
            vec![get("/x")],
        ),
        rejected(
            "http_2_0_line",
            format!("GET /x HTTP/2.0\r\n{H}\r\n"),
            &[505],
        ),
        rejected(
            "http_3_0_line",
            format!("GET /x HTTP/3.0\r\n{H}\r\n"),
            &[505],
        ),
        // RFC 9112 §3.2.4 and §3.2.3: asterisk form only for OPTIONS,
        // authority form only for CONNECT.
        rejected(
            "asterisk_form_get",
            format!("GET * HTTP/1.1\r\n{H}\r\n"),
            &[400],
        ),
        rejected(
            "authority_form_get",
            format!("GET test.local:80 HTTP/1.1\r\n{H}\r\n"),
            &[400],
        ),
        // ------------------------------------------- chunked body errors
        body_rejected("chunk_size_not_hex", "zz\r\nhello\r\n0\r\n\r\n"),
        body_rejected(
            "chunk_size_overflow",
            "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        body_rejected("chunk_size_leading_space", " 5\r\nhello\r\n0\r\n\r\n"),
        body_rejected("chunk_size_0x", "0x5\r\nhello\r\n0\r\n\r\n"),
        body_rejected("chunk_size_empty", "\r\nhello\r\n0\r\n\r\n"),
        body_rejected("chunk_size_bare_lf", "5\nhello\r\n0\r\n\r\n"),
        body_rejected("chunk_data_longer", "3\r\nhello\r\n0\r\n\r\n"),
        body_rejected("chunk_data_no_crlf", "5\r\nhelloX0\r\n\r\n"),
        body_rejected("second_chunk_bad", "5\r\nhello\r\nzz\r\n0\r\n\r\n"),
        body_rejected(
            "chunk_extension_huge",
            &format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(16 * 1024)),
        ),
        Case {
            name: "trailer_huge",
            send: vec![post_chunked(&format!(
                "5\r\nhello\r\n0\r\n\
                X-T: {}\r\n\r\n",
                "t".repeat(16 * 1024)
            ))
            .into_bytes()],
            expect: Expect::BodyRejected(&[400, 431]),
        },
        // 100 trailer fields at most: the 101st is the client's 400.
        body_rejected(
            "trailer_too_many",
            &format!("5\r\nhello\r\n0\r\n{}\r\n", "X-N: 1\r\n".repeat(101)),
        ),
        body_rejected(
            "trailer_obs_fold",
            "5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n",
        ),
    ]
}

/// Runs one case: its own origin, its own gateway; the errors found.
pub(crate) async fn run(case: Case, relay: bool) -> Vec<String> {
    let origin = RawOrigin::start(&[]);
    let gw = Front::start(origin.addr, relay).await;
    let mut errs = Vec::new();
    let (finals, heads, quiet) = match &case.expect {
        Expect::Rejected(_) | Expect::BodyRejected(_) => (1, vec![false], CLOSE_WITHIN),
        Expect::Refused(_) => (1, vec![false], QUIET),
        Expect::Forwarded { requests, closes } => (
            requests.len(),
            requests
                .iter()
                .map(|r| r.start.starts_with("HEAD "))
                .collect(),
            if *closes { CLOSE_WITHIN } else { QUIET },
        ),
    };
    let seen = exchange(gw.addr(), &case.send, &heads, finals, quiet).await;
    origin.settle(QUIET, Duration::from_secs(2)).await;
    let (answers, rest) = check::client_responses(&seen, &heads);
    let finals_got: Vec<_> = answers.iter().filter(|m| m.status() != 100).collect();
    let client = format!("client got {:?}, then {:?}", show(&seen.bytes), seen.end);
    match &case.expect {
        Expect::Rejected(statuses) | Expect::BodyRejected(statuses) | Expect::Refused(statuses) => {
            let status = finals_got.first().map(|m| m.status());
            let ok = finals_got.len() == 1
                && status.is_some_and(|s| statuses.contains(&s))
                && finals_got[0].start.starts_with(b"HTTP/1.1 ")
                && matches!(&rest, Ok(r) if r.is_empty());
            if !ok {
                errs.push(format!("want one {statuses:?}; {client}"));
            } else if seen.end != End::Closed && !matches!(case.expect, Expect::Refused(_)) {
                errs.push(format!(
                    "the connection was not closed after the {status:?}: {:?}",
                    seen.end
                ));
            }
        }
        Expect::Forwarded { requests, closes } => {
            let bodies: Vec<String> = (0..requests.len())
                .map(|i| match requests[i].start.starts_with("HEAD ") {
                    true => String::new(),
                    false => format!("r{i:02}"),
                })
                .collect();
            let got: Vec<(u16, String)> = finals_got
                .iter()
                .map(|m| (m.status(), String::from_utf8_lossy(&m.body).into_owned()))
                .collect();
            let want: Vec<(u16, String)> = bodies.into_iter().map(|b| (200, b)).collect();
            if got != want || !matches!(&rest, Ok(r) if r.is_empty()) {
                errs.push(format!("want answers {want:?}; {client}"));
            }
            let end_ok = match closes {
                true => seen.end == End::Closed,
                false => seen.end == End::Open,
            };
            if !end_ok {
                errs.push(format!(
                    "connection end {:?}, want {}",
                    seen.end,
                    if *closes { "closed" } else { "open" }
                ));
            }
        }
    }
    let conns = origin.conns();
    match &case.expect {
        Expect::Rejected(_) | Expect::Refused(_) => {
            if !conns.is_empty() {
                let bytes: Vec<String> = conns.iter().map(|c| show(&c.bytes)).collect();
                errs.push(format!(
                    "the origin got {} connection(s): {bytes:?}",
                    conns.len()
                ));
            }
        }
        Expect::BodyRejected(_) => {
            for (i, c) in conns.iter().enumerate() {
                let (msgs, _) = super::wire::parse_all(&c.bytes, true, &[], false);
                if !msgs.is_empty() {
                    errs.push(format!(
                        "origin connection {i} got a complete request: {:?}",
                        show(&c.bytes)
                    ));
                }
            }
            if !origin.all_closed(CLOSE_WITHIN).await {
                errs.push("the upstream connection was left open after the body error".into());
            }
        }
        Expect::Forwarded { requests, .. } => {
            let got = check::origin_requests(&conns, &mut errs);
            if got.len() != requests.len() {
                let lines: Vec<String> = got.iter().map(|m| show(&m.start)).collect();
                errs.push(format!(
                    "the origin got {} request(s) {lines:?}, want {}",
                    got.len(),
                    requests.len()
                ));
            }
            let addr = origin.addr.to_string();
            let subst = |v: &str| v.replace("{origin}", &addr);
            for (i, (g, w)) in got.iter().zip(requests).enumerate() {
                let what = format!("origin request {i}");
                check::compare(
                    &what,
                    g,
                    w,
                    &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"],
                    &subst,
                    &mut errs,
                );
                let host = w
                    .fields
                    .iter()
                    .find(|(n, _)| n == "host")
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.contains("{origin}"));
                check::forwarded_fields(&what, g, host, &mut errs);
            }
        }
    }
    gw.stop().await;
    errs
}
