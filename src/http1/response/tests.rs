use super::*;

fn parse_as(input: &[u8], request: RequestKind) -> Result<Option<ResponseHead<'_>>, HeadError> {
    let arena: &'static Bump = Box::leak(Box::new(Bump::new()));
    parse_response(input, arena, &Limits::default(), request)
}

fn parse(input: &[u8]) -> Result<Option<ResponseHead<'_>>, HeadError> {
    parse_as(input, RequestKind::default())
}

const RULES: &[(&str, HeadError, &str)] = &[
    (
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        HeadError::BareLf,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
        HeadError::BareLf,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 O\rK\r\n\r\n",
        HeadError::BareCr,
        "HTTP/1.1 200 O K\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n",
        HeadError::ObsFold,
        "HTTP/1.1 200 OK\r\nX: 1 2\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
        HeadError::WhitespaceBeforeColon,
        "HTTP/1.1 200 OK\r\nX: 1\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
        HeadError::InvalidFieldValue,
        "HTTP/1.1 200 OK\r\nX: 1\r\n\r\n",
    ),
    (
        "HTTP/1.1 20 OK\r\n\r\n",
        HeadError::InvalidStatusLine,
        "HTTP/1.1 200 OK\r\n\r\n",
    ),
    (
        "HTTP/1.1 099 OK\r\n\r\n",
        HeadError::InvalidStatusLine,
        "HTTP/1.1 100 Continue\r\n\r\n",
    ),
    (
        "HTTP/1.1 600 OK\r\n\r\n",
        HeadError::InvalidStatusLine,
        "HTTP/1.1 599 OK\r\n\r\n",
    ),
    (
        "HTTP/1.1 2000 OK\r\n\r\n",
        HeadError::InvalidStatusLine,
        "HTTP/1.1 200\r\n\r\n",
    ),
    (
        "HTTP/2.0 200 OK\r\n\r\n",
        HeadError::UnsupportedVersion,
        "HTTP/1.0 200 OK\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        HeadError::LengthAndTransferEncoding,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        HeadError::RepeatedContentLength,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: 2,2\r\n\r\n",
        HeadError::RepeatedContentLength,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n",
        HeadError::InvalidContentLength,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        HeadError::ChunkedRepeated,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    (
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        HeadError::UnsupportedCoding,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    (
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        HeadError::TransferEncodingHttp10,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    // Leading empty lines are a request's allowance only.
    (
        "\r\nHTTP/1.1 200 OK\r\n\r\n",
        HeadError::InvalidStatusLine,
        "HTTP/1.1 200 OK\r\n\r\n",
    ),
];

#[test]
fn each_rule_refuses_its_head_and_passes_its_neighbour() {
    crate::http1::head::assert_rules(RULES, |input| parse(input).map(|h| h.is_some()));
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    let get = RequestKind::default();
    let head = RequestKind {
        head: true,
        connect: false,
    };
    let connect = RequestKind {
        head: false,
        connect: true,
    };
    let cases: &[(&str, RequestKind, Framing, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            get,
            Framing::Length(12),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            head,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            head,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            get,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            get,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            get,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            get,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 200 Connection established\r\n\r\n",
            connect,
            Framing::Tunnel,
            false,
        ),
        (
            "HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n",
            connect,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
            get,
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
            get,
            Framing::Close,
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", get, Framing::Close, false),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            get,
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            get,
            Framing::Length(1),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            get,
            Framing::Length(1),
            false,
        ),
    ];
    for (input, request, framing, keep_alive) in cases {
        let h = parse_as(input.as_bytes(), *request).unwrap().unwrap();
        assert_eq!(
            (h.framing, h.keep_alive),
            (*framing, *keep_alive),
            "{input:?}"
        );
        assert_eq!(h.head_len, input.len());
    }
}

#[test]
fn status_reason_informational_and_hop_by_hop() {
    // Host is a request's field: two of them in a response mean nothing.
    let hosts = parse(b"HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\n\r\n");
    assert_eq!(hosts.unwrap().unwrap().framing, Framing::Length(1));
    let h = parse(b"HTTP/1.1 404 Not  Found\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\nbody")
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.status, h.reason, h.version),
        (404, "Not  Found", Version::Http11)
    );
    assert_eq!(h.informational(), None);
    assert!(h.is_hop_by_hop("x-hop") && h.is_hop_by_hop("Connection") && !h.is_hop_by_hop("x"));
    let kinds = [
        (100, Some(Informational::Continue)),
        (101, Some(Informational::SwitchingProtocols)),
        (103, Some(Informational::Other(103))),
        (200, None),
    ];
    for (status, kind) in kinds {
        let input = format!("HTTP/1.1 {status} X\r\n\r\n");
        assert_eq!(
            parse(input.as_bytes()).unwrap().unwrap().informational(),
            kind
        );
    }
    assert_eq!(parse(b"HTTP/1.1 200\r\n\r\n").unwrap().unwrap().reason, "");
}

#[test]
fn prefixes_are_incomplete_and_pipelined_heads_stop_at_the_first() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\n";
    for n in 0..input.len() {
        assert_eq!(parse(&input[..n]).map(|h| h.is_some()), Ok(false), "{n}");
    }
    let both = [&input[..], b"abcHTTP/1.1 204 No Content\r\n\r\n"].concat();
    assert_eq!(parse(&both).unwrap().unwrap().head_len, input.len());
    let limits = Limits {
        max_head_bytes: 30,
        ..Limits::default()
    };
    let arena = Bump::new();
    let result = parse_response(&input[..35], &arena, &limits, RequestKind::default());
    assert_eq!(result.map(|h| h.is_some()), Err(HeadError::HeadTooLarge));
}
