use super::*;

/// Decodes `input` fed in pieces of `step` bytes (the caller keeping what
/// was not consumed, as a connection's buffer does): (data, trailers, rest).
fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>, usize), ChunkError> {
    let mut decoder = ChunkedDecoder::new();
    let (mut data, mut trailers) = (Vec::new(), Vec::new());
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    for _ in 0..100_000 {
        let d = decoder.decode(&buf)?;
        if let Some(r) = d.data.clone() {
            data.extend_from_slice(&buf[r]);
        }
        if let Some(r) = d.trailers.clone() {
            trailers.extend_from_slice(&buf[r]);
        }
        buf.drain(..d.consumed);
        if d.done {
            assert!(decoder.is_done());
            return Ok((data, trailers, buf.len() + input.len() - fed));
        }
        if d.consumed == 0 || buf.is_empty() {
            if fed == input.len() {
                return Ok((data, trailers, usize::MAX));
            }
            let n = step.min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
    panic!("decoder made no progress on {input:?}");
}

#[test]
fn bodies_decode_alike_at_once_and_byte_by_byte() {
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b"0\r\n\r\n", b"", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
            b"",
        ),
        (b"A\r\n0123456789\r\n00\r\n\r\n", b"0123456789", b""),
        (b"3;a\r\nabc\r\n0;b=c;d=\"e\\\"f\"\r\n\r\n", b"abc", b""),
        (
            b"3;a=b;c\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:\t v\r\n\r\n",
            b"abc",
            b"X-Sum: 1\r\nX-Other:\t v\r\n",
        ),
        (b"1\r\n\r\r\n0\r\n\r\n", b"\r", b""),
    ];
    for (input, data, trailers) in cases {
        for step in [input.len(), 1, 2, 3, 7] {
            let (d, t, rest) = decode(input, step).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            assert_eq!(
                (&d[..], &t[..], rest),
                (*data, *trailers, 0),
                "{input:?} by {step}"
            );
        }
    }
}

#[test]
fn the_body_ends_at_its_last_chunk() {
    let (data, _, rest) = decode(b"2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 64).unwrap();
    assert_eq!((&data[..], rest), (&b"ab"[..], 16));
    let mut d = ChunkedDecoder::new();
    let once = d.decode(b"0\r\n\r\nnext").unwrap();
    assert_eq!((once.consumed, once.done), (5, true));
    assert_eq!(
        d.decode(b"next").unwrap(),
        Decoded {
            consumed: 0,
            done: true,
            ..Decoded::default()
        }
    );
    // Incomplete: everything is consumed, nothing is done.
    let (_, _, rest) = decode(b"5\r\nhel", 2).unwrap();
    assert_eq!(rest, usize::MAX);
}

#[test]
fn payload_is_a_range_of_the_input_never_a_copy() {
    let mut d = ChunkedDecoder::new();
    let input = b"4\r\nabcd\r\n";
    let out = d.decode(input).unwrap();
    assert_eq!((out.consumed, out.data), (7, Some(3..7)));
    let out = d.decode(&input[7..]).unwrap();
    assert_eq!((out.consumed, out.data, out.done), (2, None, false));
}

#[test]
fn large_sizes_up_to_the_bound() {
    let mut d = ChunkedDecoder::new();
    let out = d.decode(b"7fffffffffffffff\r\nxy").unwrap();
    assert_eq!(out.data, Some(18..20));
    for size in ["8000000000000000", "ffffffffffffffff", "10000000000000000"] {
        let input = format!("{size}\r\n");
        assert_eq!(
            ChunkedDecoder::new().decode(input.as_bytes()),
            Err(ChunkError::SizeOverflow),
            "{size}"
        );
    }
    let zeros = format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(100));
    assert_eq!(decode(zeros.as_bytes(), 5).unwrap().0, b"x");
}

#[test]
fn each_rule_refuses_its_body() {
    let long_ext = format!("1;{}\r\n", "a".repeat(4094));
    let ok_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(4093));
    assert!(decode(ok_ext.as_bytes(), 100).is_ok());
    let many = "X: 1\r\n".repeat(101);
    let big = format!("Y: {}\r\n", "v".repeat(16 * 1024));
    let cases: &[(&[u8], ChunkError)] = &[
        (b"\r\n", ChunkError::InvalidSize),
        (b"+5\r\nhello\r\n", ChunkError::InvalidSize),
        (b"-5\r\n", ChunkError::InvalidSize),
        (b"0x5\r\nhello\r\n", ChunkError::InvalidSize),
        (b" 5\r\nhello\r\n", ChunkError::InvalidSize),
        (b"5 \r\nhello\r\n", ChunkError::InvalidSize),
        (b"5\n", ChunkError::BareLf),
        (b"5;a\n", ChunkError::BareLf),
        (b"5\rx", ChunkError::BareCr),
        (b"5;\r\n", ChunkError::InvalidExtension),
        (b"5;a=\r\n", ChunkError::InvalidExtension),
        (b"5; a\r\n", ChunkError::InvalidExtension),
        (b"5;a =b\r\n", ChunkError::InvalidExtension),
        (b"5;a=\"b\r\n", ChunkError::InvalidExtension),
        (b"5;a=\"b\"c\r\n", ChunkError::InvalidExtension),
        (b"5;a=b\x00\r\n", ChunkError::InvalidExtension),
        (long_ext.as_bytes(), ChunkError::SizeLineTooLong),
        (b"2\r\nabc\r\n", ChunkError::MissingCrlf),
        (b"2\r\nab\n0\r\n\r\n", ChunkError::MissingCrlf),
        (b"2\r\nab\rx", ChunkError::BareCr),
        (b"0\r\nX: 1\n\r\n", ChunkError::BareLf),
        (b"0\r\n\n", ChunkError::BareLf),
        (b"0\r\n X: 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX : 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\n: 1\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX: a\rb\r\n\r\n", ChunkError::InvalidTrailer),
        (b"0\r\nX: \x00\r\n\r\n", ChunkError::InvalidTrailer),
    ];
    for (input, error) in cases {
        for step in [input.len(), 1] {
            assert_eq!(
                decode(input, step).map(|_| ()),
                Err(*error),
                "{:?} by {step}",
                String::from_utf8_lossy(input)
            );
        }
    }
    let many = format!("0\r\n{many}\r\n");
    assert_eq!(
        decode(many.as_bytes(), 64).map(|_| ()),
        Err(ChunkError::TooManyTrailers)
    );
    let big = format!("0\r\n{big}\r\n");
    assert_eq!(
        decode(big.as_bytes(), 64).map(|_| ()),
        Err(ChunkError::TrailersTooLarge)
    );
    let fits = format!("0\r\n{}\r\n\r\n", "X: 1\r\n".repeat(99) + "Y: 2");
    assert!(decode(fits.as_bytes(), 64).is_ok());
    for error in cases.iter().map(|c| c.1) {
        assert_eq!(error.to_string(), error.reason());
    }
}

#[test]
fn chunk_heads_are_lowercase_hex_and_crlf() {
    let mut out = [0; 18];
    for (len, head) in [
        (1, "1\r\n"),
        (10, "a\r\n"),
        (255, "ff\r\n"),
        (4096, "1000\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        assert_eq!(chunk_head(len, &mut out), head.as_bytes());
    }
    // What the encoder writes, the decoder reads back.
    let body = [
        chunk_head(3, &mut out),
        b"abc\r\n",
        LAST_CHUNK_LINE,
        b"X: 1\r\n",
        b"\r\n",
    ]
    .concat();
    assert_eq!(
        decode(&body, 1).unwrap(),
        (b"abc".to_vec(), b"X: 1\r\n".to_vec(), 0)
    );
    assert_eq!(decode(LAST_CHUNK, 1).unwrap().2, 0);
}

#[test]
fn forbidden_trailers_are_valid_lines_for_the_recipient_to_drop() {
    let input =
        b"0\r\nContent-Length: 5\r\nX-Ok: 1\r\ntransfer-encoding: chunked\r\nHost: evil\r\n\r\n";
    for step in [input.len(), 1, 5] {
        let (_, trailers, rest) = decode(input, step).unwrap();
        assert_eq!(rest, 0);
        assert_eq!(trailers, &input[3..input.len() - 2]);
    }
    for name in FORBIDDEN_TRAILERS {
        assert!(is_forbidden_trailer(name.as_bytes()), "{name}");
        assert!(is_forbidden_trailer(name.to_ascii_uppercase().as_bytes()));
    }
    for name in [
        "x-checksum",
        "grpc-status",
        "server-timing",
        "content-lengthx",
    ] {
        assert!(!is_forbidden_trailer(name.as_bytes()), "{name}");
    }
}
