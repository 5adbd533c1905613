use super::*;
use crate::http1::Limits;

fn parse(input: &[u8]) -> Result<Option<RequestHead<'_>>, HeadError> {
    // The arena outlives the head only inside the test: leaked, a few bytes.
    let arena: &'static Bump = Box::leak(Box::new(Bump::new()));
    // A Host problem is the caller's to refuse: here, refused.
    parse_request(input, arena, &Limits::default()).and_then(|h| match h {
        Some(h) => h.host.map(|_| Some(h)),
        None => Ok(None),
    })
}

fn head(input: &[u8]) -> RequestHead<'_> {
    match parse(input) {
        Ok(Some(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

/// Each rule: a head it refuses, with the error, next to a head like it that
/// passes (the rule is what differs, not something else in the input).
const RULES: &[(&str, HeadError, &str)] = &[
    // Line endings.
    ("GET / HTTP/1.1\nHost: a\r\n\r\n", HeadError::BareLf, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\n\r\n", HeadError::BareLf, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\n\n", HeadError::BareLf, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::BareLf, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", HeadError::BareCr, "GET / HTTP/1.1\r\nHost: ab\r\n\r\n"),
    ("GET / HTTP/1.1\r\nX: 1\r\rHost: a\r\n\r\n", HeadError::BareCr, "GET / HTTP/1.1\r\nX: 1\r\nHost: a\r\n\r\n"),
    ("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::BareCr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    // Field lines.
    ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", HeadError::ObsFold, "GET / HTTP/1.1\r\nHost: a\r\nX: 1 2\r\n\r\n"),
    ("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", HeadError::ObsFold, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", HeadError::WhitespaceBeforeColon, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HeadError::WhitespaceBeforeColon, "GET / HTTP/1.1\r\nHost:\ta\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", HeadError::InvalidFieldName, "GET / HTTP/1.1\r\nHost: a\r\nx:\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", HeadError::InvalidFieldName, "GET / HTTP/1.1\r\nHost: a\r\nX-y: 1\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n", HeadError::InvalidFieldName, "GET / HTTP/1.1\r\nHost: a\r\nNo:colon\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\x002\r\n\r\n", HeadError::InvalidFieldValue, "GET / HTTP/1.1\r\nHost: a\r\nX: 1\t2\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", HeadError::InvalidFieldValue, "GET / HTTP/1.1\r\nHost: a\r\nX: ~\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n", HeadError::InvalidFieldValue, "GET / HTTP/1.1\r\nHost: a\r\nX: [0m\r\n\r\n"),
    // Request line.
    ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidMethod, "G-T / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET /é HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "GET /%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "GET /a/b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::TargetFormForMethod, "CONNECT a:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::TargetFormForMethod, "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::TargetFormForMethod, "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("CONNECT a:65536 HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidTarget, "CONNECT a:065535 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::TargetFormForMethod, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HeadError::UnsupportedVersion, "GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HeadError::UnsupportedVersion, "GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", HeadError::InvalidVersion, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / http/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidVersion, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    // Framing.
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HeadError::LengthAndTransferEncoding, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", HeadError::RepeatedContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", HeadError::RepeatedContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", HeadError::InvalidContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 01\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", HeadError::InvalidContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12 \r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", HeadError::InvalidContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:0\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", HeadError::InvalidContentLength, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", HeadError::ChunkedNotFinal, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", HeadError::ChunkedNotFinal, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked,\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", HeadError::ChunkedNotFinal, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", HeadError::ChunkedNotFinal, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", HeadError::ChunkedRepeated, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", HeadError::ChunkedRepeated, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n", HeadError::ChunkedRepeated, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HeadError::UnsupportedCoding, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom, chunked\r\n\r\n", HeadError::UnsupportedCoding, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HeadError::TransferEncodingHttp10, "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n", HeadError::InvalidUpgrade, "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a, b\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: \u{e9}\r\n\r\n", HeadError::InvalidUpgrade, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: \u{e9}\r\n\r\n"),
    // Host.
    ("GET / HTTP/1.1\r\nX: a\r\n\r\n", HeadError::MissingHost, "GET / HTTP/1.0\r\nX: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", HeadError::RepeatedHost, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", HeadError::RepeatedHost, "GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: a.b-c_d~e\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: a:\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost:\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: [a:b\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: [a::b]\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: [m::e.!]\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]\r\n\r\n"),
    ("GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n", HeadError::InvalidHost, "GET / HTTP/1.1\r\nHost: [fe80::1]:80\r\n\r\n"),
    ("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::InvalidHost, "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", HeadError::HostMismatch, "GET http://A:80/ HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("GET https://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", HeadError::HostMismatch, "GET https://a:443/ HTTP/1.1\r\nHost: a\r\n\r\n"),
];

#[test]
fn each_rule_refuses_its_head_and_passes_its_neighbour() {
    crate::http1::head::assert_rules(RULES, |input| parse(input).map(|h| h.is_some()));
}

#[test]
fn statuses_and_reasons() {
    assert_eq!(HeadError::TooManyFields.status(), 431);
    assert_eq!(HeadError::HeadTooLarge.status(), 431);
    assert_eq!(HeadError::TargetTooLong.status(), 414);
    assert_eq!(HeadError::UnsupportedCoding.status(), 501);
    assert_eq!(HeadError::UnsupportedVersion.status(), 505);
    assert_eq!(HeadError::BareLf.status(), 400);
    for (_, error, _) in RULES {
        assert!(!error.reason().is_empty() && error.to_string() == error.reason());
    }
}

#[test]
fn a_valid_head_is_read_into_views() {
    let input = b"\r\n\r\nPOST /a?b=1 HTTP/1.1\r\nhOST: Example.com:8080\r\nX-Empty:\r\nX-Pad: \t v 1 \t\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\nhello";
    let h = head(input);
    assert_eq!(
        (h.method, h.target, h.version),
        ("POST", "/a?b=1", Version::Http11)
    );
    assert_eq!(h.head_len, input.len() - 5);
    assert_eq!(h.framing, Framing::Length(5));
    assert_eq!(h.host, Ok(Some("Example.com:8080")));
    assert!(h.keep_alive && h.expect_continue && !h.connect && h.upgrade.is_none());
    let fields: Vec<(&str, &[u8])> = h.fields.iter().map(|f| (f.name, f.value)).collect();
    assert_eq!(
        fields,
        [
            ("hOST", &b"Example.com:8080"[..]),
            ("X-Empty", b""),
            ("X-Pad", b"v 1"),
            ("Content-Length", b"5"),
            ("Expect", b"100-Continue"),
        ]
    );
    // Views of the input, not copies.
    let range = input.as_ptr_range();
    assert!(range.contains(&h.target.as_ptr()) && range.contains(&h.fields[2].value.as_ptr()));
}

#[test]
fn framing_keep_alive_upgrade_and_connect() {
    let cases: &[(&str, Framing, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::None, true),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Framing::None,
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: Close\r\n\r\n",
            Framing::None,
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", Framing::None, false),
        (
            "GET / HTTP/1.0\r\nConnection: x, Keep-Alive\r\n\r\n",
            Framing::None,
            true,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            Framing::None,
            false,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            Framing::Length(0),
            true,
        ),
    ];
    for (input, framing, keep_alive) in cases {
        let h = head(input.as_bytes());
        assert_eq!(
            (h.framing, h.keep_alive),
            (*framing, *keep_alive),
            "{input:?}"
        );
    }
    let up =
        head(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(up.upgrade, Some("websocket"));
    let not = head(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(not.upgrade, None, "Upgrade without the Connection token");
    let old = head(b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(old.upgrade, None, "HTTP/1.0 Upgrade is ignored");
    let c = head(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    assert!(c.connect && c.target == "a.example:443");
    assert!(head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target == "*");
}

#[test]
fn hop_by_hop_names_include_those_connection_lists() {
    let h =
        head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n");
    for name in [
        "connection",
        "Keep-Alive",
        "TE",
        "transfer-encoding",
        "upgrade",
        "x-secret",
    ] {
        assert!(h.is_hop_by_hop(name), "{name}");
    }
    assert!(!h.is_hop_by_hop("host") && !h.is_hop_by_hop("x-other"));
    let plain = head(b"GET / HTTP/1.1\r\nHost: a\r\nX-Secret: 1\r\n\r\n");
    assert!(!plain.is_hop_by_hop("x-secret"));
}

#[test]
fn pipelined_heads_end_at_the_first() {
    let first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    let both = format!("{first}GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    let h = head(both.as_bytes());
    assert_eq!(
        (h.target, h.head_len, h.fields.len()),
        ("/1", first.len(), 1)
    );
    let second = head(&both.as_bytes()[h.head_len..]);
    assert_eq!(second.target, "/2");
}

#[test]
fn every_prefix_of_a_valid_head_is_incomplete() {
    let inputs: &[&[u8]] = &[
        b"\r\nPOST /upload?x=1 HTTP/1.1\r\nHost: a:1\r\nTransfer-Encoding: chunked\r\nX: \t1\r\n\r\n",
        b"GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ];
    for input in inputs {
        for n in 0..input.len() {
            assert_eq!(
                parse(&input[..n]).map(|h| h.is_some()),
                Ok(false),
                "{n} of {input:?}"
            );
        }
        assert!(head(input).head_len == input.len());
    }
}

#[test]
fn garbage_is_refused_before_the_head_is_complete() {
    let cases: &[(&[u8], HeadError)] = &[
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00",
            HeadError::InvalidFieldValue,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX y",
            HeadError::InvalidFieldName,
        ),
        (b"GET / HTTP/1.1\r\n X", HeadError::ObsFold),
        (b"GET / HTTP/1.1\n", HeadError::BareLf),
        (b"GE\x00", HeadError::InvalidMethod),
    ];
    for (input, error) in cases {
        assert_eq!(parse(input).map(|h| h.is_some()), Err(*error), "{input:?}");
    }
}

#[test]
fn limits_refuse_early_and_at_the_bound() {
    let limits = Limits {
        max_head_bytes: 64,
        max_fields: 2,
        max_target: 8,
    };
    let arena = Bump::new();
    let p = |input: &str| parse_request(input.as_bytes(), &arena, &limits).map(|h| h.is_some());
    assert_eq!(p("GET /2345678 HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(true));
    assert_eq!(
        p("GET /23456789 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(HeadError::TargetTooLong)
    );
    assert_eq!(
        p("GET /23456789"),
        Err(HeadError::TargetTooLong),
        "before the line ends"
    );
    assert_eq!(p("GET /2345678"), Ok(false));
    assert_eq!(p("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n"), Ok(true));
    assert_eq!(
        p("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n"),
        Err(HeadError::TooManyFields),
        "before the head ends"
    );
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nA: {}\r\n\r\n",
        "x".repeat(64 - 32)
    );
    assert_eq!(exact.len(), 64);
    assert_eq!(p(&exact), Ok(true));
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nA: {}\r\n\r\n",
        "x".repeat(64 - 31)
    );
    assert_eq!(p(&over), Err(HeadError::HeadTooLarge));
    let long = format!("GET / HTTP/1.1\r\nHost: a\r\nA: {}", "x".repeat(40));
    assert_eq!(
        p(&long),
        Err(HeadError::HeadTooLarge),
        "before the head ends"
    );
    assert_eq!(
        p(&"\r\n".repeat(33)),
        Err(HeadError::HeadTooLarge),
        "empty lines count"
    );
}

#[test]
fn many_fields_beyond_the_partial_stack_array() {
    let limits = Limits {
        max_fields: 500,
        ..Limits::default()
    };
    let arena = Bump::new();
    let mut input = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..300 {
        input.push_str(&format!("X-{i}: {i}\r\n"));
    }
    assert_eq!(
        parse_request(input.as_bytes(), &arena, &limits).map(|h| h.is_some()),
        Ok(false)
    );
    input.push_str("\r\n");
    let h = parse_request(input.as_bytes(), &arena, &limits)
        .unwrap()
        .unwrap();
    assert_eq!((h.fields.len(), h.fields[300].name), (301, "X-299"));
}

#[test]
fn a_scheme_is_at_most_64_bytes() {
    let at = |n: usize| format!("GET {}://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "w".repeat(n));
    assert!(parse(at(64).as_bytes()).is_ok_and(|h| h.is_some()));
    assert_eq!(
        parse(at(65).as_bytes()).err(),
        Some(HeadError::InvalidTarget)
    );
}

#[test]
fn a_later_http1_minor_version_is_read_as_11() {
    let h = head(b"GET /x HTTP/1.2\r\nHost: a\r\n\r\nGET");
    assert_eq!(
        (h.version, h.target, h.head_len),
        (Version::Http11, "/x", 28)
    );
    assert_eq!(h.fields[0].name, "Host");
    // Still checked line by line: a bad field in a later line is refused,
    // complete or not.
    for bad in [
        &b"GET / HTTP/1.9\r\nHost: a\r\nX : 1\r\n\r\n"[..],
        b"GET / HTTP/1.9\r\nX : 1\r\n",
    ] {
        assert_eq!(parse(bad).err(), Some(HeadError::WhitespaceBeforeColon));
    }
    assert!(matches!(parse(b"GET / HTTP/1.2\r\nHost"), Ok(None)));
}
