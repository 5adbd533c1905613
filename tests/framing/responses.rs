//! Response-side cases: the origin answers with raw bytes, and the client
//! must get exactly the messages listed (apart from the fields the gateway
//! adds, `GATEWAY_ADDS`), or a 502 with nothing of the broken answer, or a
//! connection cut before anything that looks complete.

use std::time::Duration;

use super::check::{self, msg, End, Msg, Want};
use super::origin::{RawOrigin, Reply};
use super::wire::{self, show};
use super::{exchange, Front, CLOSE_WITHIN, MAX_HEADER_BYTES, QUIET};

/// What the gateway adds to every response today: hyper's `date`.
const GATEWAY_ADDS: &[&str] = &["date"];

/// Put in every broken answer after the point where it breaks: it must
/// never reach the client.
const SECRET: &[u8] = b"SECRET";

pub(crate) enum Expect {
    /// The client gets these messages (interim ones included), then the
    /// connection stays open (`Some(false)`), is closed (`Some(true)`), or
    /// either (`None`: a close-delimited answer may be re-encoded).
    Relayed {
        responses: Vec<Msg>,
        closes: Option<bool>,
    },
    /// The client gets one 502 and nothing of the origin's answer; the
    /// upstream connection is closed.
    BadGateway,
    /// The client gets a 502, or a head and part of a body and then the
    /// close: never something that parses as a whole response.
    Truncated,
    /// The client gets the head (a 200) and these body bytes of it (a
    /// chunked body, de-chunked), never its end, then the close; the
    /// upstream connection is closed.
    Cut(&'static [u8]),
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) send: Vec<Vec<u8>>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) expect: Expect,
}

const GET: &str = "GET /r HTTP/1.1\r\nHost: test.local\r\n\r\n";

fn reply(bytes: &'static [u8]) -> Reply {
    Reply {
        bytes,
        close: false,
    }
}

fn then_close(bytes: &'static [u8]) -> Reply {
    Reply { bytes, close: true }
}

fn relayed(name: &'static str, answer: Reply, responses: Vec<Msg>) -> Case {
    Case {
        name,
        send: vec![GET.into()],
        replies: vec![answer],
        expect: Expect::Relayed {
            responses,
            closes: Some(false),
        },
    }
}

fn broken(name: &'static str, answer: Reply, expect: Expect) -> Case {
    Case {
        name,
        send: vec![GET.into()],
        replies: vec![answer],
        expect,
    }
}

fn ok(fields: &[(&str, &str)], body: &[u8], want: Want) -> Msg {
    msg("HTTP/1.1 200 OK", fields).body(body, want)
}

/// The origin's default answer to the second request of a case.
fn second() -> Msg {
    ok(&[], b"r01", Want::Length)
}

pub(crate) fn cases() -> Vec<Case> {
    let big_head: &'static [u8] = {
        let fields: String = (0..40)
            .map(|i| format!("X-Big{i}: {}\r\n", "b".repeat(MAX_HEADER_BYTES / 16)))
            .collect();
        let text = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 6\r\n\r\nSECRET");
        Box::leak(text.into_bytes().into_boxed_slice())
    };
    let two = |first: &str| {
        vec![
            first.as_bytes().to_vec(),
            b"GET /r2 HTTP/1.1\r\nHost: test.local\r\n\r\n".to_vec(),
        ]
    };
    vec![
        relayed(
            "content_length_body",
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: a\r\n\r\nhello"),
            vec![ok(&[("x-origin", "a")], b"hello", Want::Length)],
        ),
        relayed(
            "chunked_body",
            reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\
                6;ext=1\r\n world\r\n0\r\n\r\n",
            ),
            vec![ok(&[], b"hello world", Want::Any)],
        ),
        // The client asked for trailers (RFC 9110 §10.1.4): they are
        // forwarded, which only chunked can carry.
        Case {
            name: "chunked_trailers",
            send: vec![b"GET /r HTTP/1.1\r\nHost: test.local\r\nTE: trailers\r\n\r\n".to_vec()],
            replies: vec![reply(
                b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\
                    hello\r\n0\r\nX-Sum: 1\r\n\r\n",
            )],
            expect: Expect::Relayed {
                responses: vec![ok(&[("trailer", "X-Sum")], b"hello", Want::Chunked)
                    .trailers(&[("x-sum", "1")])],
                closes: Some(false),
            },
        },
        // Forbidden trailer fields (RFC 9110 §6.5.1) are dropped, the
        // others go on.
        relayed(
            "chunked_forbidden_trailers_dropped",
            reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
                Content-Length: 99\r\nX-Sum: 1\r\nTransfer-Encoding: chunked\r\n\
                Connection: close\r\nContent-Type: text/evil\r\n\r\n",
            ),
            vec![ok(&[], b"hello", Want::Chunked).trailers(&[("x-sum", "1")])],
        ),
        // An HTTP/1.0 client gets no chunked body, so no trailers.
        Case {
            name: "http10_client_trailers_dropped",
            send: vec![b"GET /r HTTP/1.0\r\nHost: test.local\r\n\r\n".to_vec()],
            replies: vec![reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\
                0\r\nX-Sum: 1\r\n\r\n",
            )],
            expect: Expect::Relayed {
                responses: vec![ok(&[("connection", "close")], b"hello", Want::Any)],
                closes: Some(true),
            },
        },
        Case {
            name: "close_delimited",
            send: vec![GET.into()],
            replies: vec![then_close(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nhello close")],
            expect: Expect::Relayed {
                responses: vec![ok(&[("x-a", "1")], b"hello close", Want::Any)],
                closes: None,
            },
        },
        // The gateway answers in its own version (RFC 9110 §6.2).
        Case {
            name: "http10_origin_close_delimited",
            send: vec![GET.into()],
            replies: vec![then_close(b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nold")],
            expect: Expect::Relayed {
                responses: vec![ok(&[("x-a", "1")], b"old", Want::Any)],
                closes: None,
            },
        },
        relayed(
            "http10_origin_content_length",
            reply(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            vec![ok(&[], b"ok", Want::Length)],
        ),
        // A HEAD answer's Content-Length is the GET's (RFC 9110 §8.6); no
        // body follows, and the next answer on the connection is intact.
        Case {
            name: "head_with_content_length",
            send: two("HEAD /r HTTP/1.1\r\nHost: test.local\r\n\r\n"),
            replies: vec![reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")],
            expect: Expect::Relayed {
                responses: vec![ok(&[], b"", Want::Declared(5)), second()],
                closes: Some(false),
            },
        },
        // RFC 9112 §6.3 (1): a 204 ends at its head; what the origin sends
        // after it is not a body, and the next answer is not corrupted.
        Case {
            name: "no_content_with_body",
            send: two(GET),
            replies: vec![reply(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\nSECRET")],
            expect: Expect::Relayed {
                responses: vec![msg("HTTP/1.1 204 No Content", &[("x-a", "1")]), second()],
                closes: Some(false),
            },
        },
        Case {
            name: "not_modified",
            send: two(GET),
            replies: vec![reply(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")],
            expect: Expect::Relayed {
                responses: vec![
                    msg("HTTP/1.1 304 Not Modified", &[("etag", "\"v1\"")]),
                    second(),
                ],
                closes: Some(false),
            },
        },
        // RFC 9110 §15.2: a proxy MUST forward 1xx responses (it did not
        // ask for them).
        relayed(
            "early_hints",
            reply(
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
                HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            vec![
                msg(
                    "HTTP/1.1 103 Early Hints",
                    &[("link", "</s.css>; rel=preload")],
                ),
                ok(&[], b"ok", Want::Length),
            ],
        ),
        relayed(
            "unsolicited_100",
            reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            vec![
                msg("HTTP/1.1 100 Continue", &[]),
                ok(&[], b"ok", Want::Length),
            ],
        ),
        // RFC 9110 §7.6.1, as on the request side.
        relayed(
            "hop_by_hop_removed",
            reply(
                b"HTTP/1.1 200 OK\r\nConnection: x-drop\r\nX-Drop: 1\r\n\
                Keep-Alive: timeout=5\r\nX-Keep: 1\r\nContent-Length: 2\r\n\r\nok",
            ),
            vec![ok(&[("x-keep", "1")], b"ok", Want::Length)],
        ),
        relayed(
            "field_order_kept",
            reply(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A: 2\r\nSet-Cookie: b=2\r\n\
                Content-Length: 2\r\n\r\nok",
            ),
            vec![ok(
                &[("set-cookie", "a=1"), ("x-a", "2"), ("set-cookie", "b=2")],
                b"ok",
                Want::Length,
            )],
        ),
        // Not an RFC rule (a client ignores the reason, RFC 9112 §4): the
        // new path copies the upstream's head, and so its reason phrase.
        relayed(
            "reason_phrase_kept",
            reply(b"HTTP/1.1 299 Custom Reason\r\nContent-Length: 2\r\n\r\nok"),
            vec![msg("HTTP/1.1 299 Custom Reason", &[]).body(b"ok", Want::Length)],
        ),
        // ------------------------------------------- invalid framing: 502
        // RFC 9112 §6.3 (3): "ought to be handled as an error".
        broken(
            "cl_and_te",
            reply(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n\
                6\r\nSECRET\r\n0\r\n\r\n",
            ),
            Expect::BadGateway,
        ),
        broken(
            "te_and_cl",
            reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n\
                6\r\nSECRET\r\n0\r\n\r\n",
            ),
            Expect::BadGateway,
        ),
        // RFC 9112 §6.3 (5): a proxy MUST NOT forward it, and answers 502.
        broken(
            "cl_twice_differing",
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\nSECRET!"),
            Expect::BadGateway,
        ),
        broken(
            "cl_not_a_number",
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 6x\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        broken(
            "invalid_status_line",
            reply(b"HTTP/1.1 2OO OK\r\nContent-Length: 6\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        broken(
            "obs_fold",
            reply(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 6\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        // RFC 9112 §2.2 lets a recipient take LF alone (MAY); strict here.
        broken(
            "bare_lf",
            reply(b"HTTP/1.1 200 OK\nContent-Length: 6\n\nSECRET"),
            Expect::BadGateway,
        ),
        broken(
            "bare_cr",
            reply(b"HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 6\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        broken(
            "nul_in_value",
            reply(b"HTTP/1.1 200 OK\r\nX-A: 1\x002\r\nContent-Length: 6\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        // RFC 9112 §5.1 lets a proxy strip the space instead; strict here.
        broken(
            "space_before_colon",
            reply(b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 6\r\n\r\nSECRET"),
            Expect::BadGateway,
        ),
        // The response head is held to the request head's limit.
        broken("head_too_large", reply(big_head), Expect::BadGateway),
        broken(
            "closed_before_head_complete",
            then_close(b"HTTP/1.1 200 OK\r\nContent-Le"),
            Expect::BadGateway,
        ),
        broken("closed_without_answer", then_close(b""), Expect::BadGateway),
        // ------------------------------------------- broken bodies: cut
        broken(
            "bad_chunk_size_mid_body",
            reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\
                SECRET\r\n0\r\n\r\n",
            ),
            Expect::Truncated,
        ),
        broken(
            "content_length_short",
            then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
            Expect::Truncated,
        ),
        broken(
            "chunked_cut",
            then_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            Expect::Truncated,
        ),
        // ------------------------------------- trailers over their bounds
        // Nothing of the response was sent yet (the body failed in the
        // first bytes read): a 502 in its place.
        broken(
            "trailers_too_many_before_any_byte",
            reply(TOO_MANY_TRAILERS),
            Expect::BadGateway,
        ),
        // The head and the data before went out: the client gets them, no
        // last chunk, and the close.
        broken(
            "trailers_too_large_after_data",
            reply(TOO_LARGE_TRAILERS),
            Expect::Cut(b"hello"),
        ),
    ]
}

/// 101 trailer fields after an empty body.
const TOO_MANY_TRAILERS: &[u8] = {
    const LINE: &[u8] = b"X-N: 1\r\n";
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    const LEN: usize = HEAD.len() + 101 * LINE.len() + 2 + 6;
    const fn build() -> [u8; LEN] {
        let mut out = [0u8; LEN];
        let mut i = 0;
        while i < HEAD.len() {
            out[i] = HEAD[i];
            i += 1;
        }
        let mut n = 0;
        while n < 101 {
            let mut j = 0;
            while j < LINE.len() {
                out[HEAD.len() + n * LINE.len() + j] = LINE[j];
                j += 1;
            }
            n += 1;
        }
        let tail = b"\r\nSECRET";
        let mut k = 0;
        while k < tail.len() {
            out[LEN - tail.len() + k] = tail[k];
            k += 1;
        }
        out
    }
    &build()
};

/// One trailer line over the 16 KiB bound, after 5 bytes of data.
const TOO_LARGE_TRAILERS: &[u8] = {
    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: ";
    const FILL: usize = 17 * 1024;
    const TAIL: &[u8] = b"\r\n\r\nSECRET";
    const LEN: usize = HEAD.len() + FILL + TAIL.len();
    const fn build() -> [u8; LEN] {
        let mut out = [b't'; LEN];
        let mut i = 0;
        while i < HEAD.len() {
            out[i] = HEAD[i];
            i += 1;
        }
        let mut k = 0;
        while k < TAIL.len() {
            out[LEN - TAIL.len() + k] = TAIL[k];
            k += 1;
        }
        out
    }
    &build()
};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs one case: its own origin, its own gateway; the errors found.
pub(crate) async fn run(case: Case, relay: bool) -> Vec<String> {
    let origin = RawOrigin::start(&case.replies);
    let gw = Front::start(origin.addr, relay).await;
    let mut errs = Vec::new();
    let sent: Vec<u8> = case.send.concat();
    let heads: Vec<bool> = wire::parse_all(&sent, true, &[], false)
        .0
        .iter()
        .map(|m| m.method_is_head())
        .collect();
    let (finals, quiet) = match &case.expect {
        Expect::Relayed { responses, closes } => (
            responses
                .iter()
                .filter(|m| !m.start.starts_with("HTTP/1.1 1"))
                .count(),
            if *closes == Some(false) {
                QUIET
            } else {
                CLOSE_WITHIN
            },
        ),
        _ => (1, CLOSE_WITHIN),
    };
    let seen = exchange(gw.addr(), &case.send, &heads, finals, quiet).await;
    origin.settle(QUIET, Duration::from_secs(2)).await;
    let (answers, rest) = check::client_responses(&seen, &heads);
    let client = format!("client got {:?}, then {:?}", show(&seen.bytes), seen.end);
    match &case.expect {
        Expect::Relayed { responses, closes } => {
            if answers.len() != responses.len() || !matches!(&rest, Ok(r) if r.is_empty()) {
                errs.push(format!("want {} message(s); {client}", responses.len()));
            }
            for (i, (g, w)) in answers.iter().zip(responses).enumerate() {
                check::compare(
                    &format!("response {i}"),
                    g,
                    w,
                    GATEWAY_ADDS,
                    &|v| v.to_string(),
                    &mut errs,
                );
            }
            let end_ok = match closes {
                Some(true) => seen.end == End::Closed,
                Some(false) => seen.end == End::Open,
                None => {
                    seen.end != End::Open
                        || answers.iter().all(|m| m.framing != wire::Framing::Close)
                }
            };
            if !end_ok {
                errs.push(format!(
                    "connection end {:?}, want closes = {closes:?}",
                    seen.end
                ));
            }
        }
        Expect::BadGateway => {
            let ok = answers.len() == 1
                && answers[0].start.starts_with(b"HTTP/1.1 502 ")
                && matches!(&rest, Ok(r) if r.is_empty());
            if !ok {
                errs.push(format!("want one 502; {client}"));
            }
            if !origin.all_closed(CLOSE_WITHIN).await {
                errs.push("the upstream connection was kept after an invalid answer".into());
            }
        }
        Expect::Cut(_) => {}
        Expect::Truncated => {
            let only_502 = answers.len() == 1
                && answers[0].status() == 502
                && matches!(&rest, Ok(r) if r.is_empty());
            let cut = answers.is_empty() && seen.end != End::Open;
            if !(only_502 || cut) {
                errs.push(format!("want a 502 or a cut answer; {client}"));
            }
        }
    }
    if let Expect::Cut(data) = &case.expect {
        let text = String::from_utf8_lossy(&seen.bytes);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b);
        let chunk = format!("{:x}\r\n{}\r\n", data.len(), String::from_utf8_lossy(data));
        let ok = answers.is_empty()
            && seen.end != End::Open
            && text.starts_with("HTTP/1.1 200 ")
            && text.contains("\r\ntransfer-encoding: chunked\r\n")
            && body == Some(chunk.as_str());
        if !ok {
            errs.push(format!("want the head, {data:?} and the close; {client}"));
        }
        if !origin.all_closed(CLOSE_WITHIN).await {
            errs.push("the upstream connection was kept after a broken body".into());
        }
    }
    if contains(&seen.bytes, SECRET) && !matches!(case.expect, Expect::Relayed { .. }) {
        errs.push("bytes after the origin's error reached the client".into());
    }
    if case.name == "no_content_with_body" && contains(&seen.bytes, SECRET) {
        errs.push("the bytes after the 204 reached the client".into());
    }
    gw.stop().await;
    errs
}
