//! The request head's Host (RFC 9112 §3.2, RFC 9113 §8.3.1) and the
//! response's version, table by table: what the client sends, what the
//! origin receives (or that it receives nothing), what the client gets.
mod common;
use common::*;

use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

const MISSING: &str = "400 Bad Request: the request has no Host header\n";
const BARE_LF: &str = "bare LF in the head (CRLF required)\n";
const REPEATED: &str = "400 Bad Request: the request has more than one Host header\n";
const INVALID: &str = "400 Bad Request: the request's host is not a valid host[:port]\n";
const MISMATCH: &str = "400 Bad Request: the Host header disagrees with the request target\n";

/// What the client should get for a case.
enum Want {
    /// This 400 body, and the origin receives nothing.
    Refused(&'static str),
    /// 200 from the echo origin, which saw this one Host (`None`: the
    /// origin's own address, what an upstream gets when the client named
    /// no host).
    Forwarded(Option<&'static str>),
    /// The proxy's answer with this status line start, origin untouched.
    Status(&'static str),
}

/// The status line and the body of a raw answer.
fn split(answer: &str) -> (&str, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    (head.lines().next().unwrap_or(""), body)
}

#[tokio::test]
async fn http1_request_heads_are_checked_for_one_valid_host() {
    use Want::*;
    let origin = Origin::echo();
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    let cases: &[(&str, &[u8], Want)] = &[
        (
            "one Host",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            Forwarded(Some("a.test")),
        ),
        (
            "an IPv6 literal with a port",
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
            Forwarded(Some("[::1]:8080")),
        ),
        (
            "no Host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            Refused(MISSING),
        ),
        (
            "two Host lines",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            Refused(REPEATED),
        ),
        (
            "two equal Host lines",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            Refused(REPEATED),
        ),
        (
            // A bare LF where a CRLF belongs (RFC 9112 §2.2): refused as a
            // whole, never read as a head ending before its Host line.
            "a head with a bare LF before Host",
            b"GET / HTTP/1.1\r\n\nHost: a.test\r\n\r\n",
            Refused(BARE_LF),
        ),
        (
            "an empty Host",
            b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            Refused(INVALID),
        ),
        (
            "a Host with a path",
            b"GET / HTTP/1.1\r\nHost: a.test/admin\r\nConnection: close\r\n\r\n",
            Refused(INVALID),
        ),
        (
            "a Host with userinfo",
            b"GET / HTTP/1.1\r\nHost: user@a.test\r\nConnection: close\r\n\r\n",
            Refused(INVALID),
        ),
        (
            "a Host with a space",
            b"GET / HTTP/1.1\r\nHost: a.test b.test\r\nConnection: close\r\n\r\n",
            Refused(INVALID),
        ),
        (
            "absolute form, the Host agrees (case, default port)",
            b"GET http://a.test/ HTTP/1.1\r\nHost: A.Test:80\r\nConnection: close\r\n\r\n",
            Forwarded(Some("a.test")),
        ),
        (
            "absolute form, the Host names another host",
            b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            Refused(MISMATCH),
        ),
        (
            "absolute form, the Host names another port",
            b"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            Refused(MISMATCH),
        ),
        (
            "absolute form, https default port",
            b"GET https://a.test/ HTTP/1.1\r\nHost: a.test:443\r\nConnection: close\r\n\r\n",
            Forwarded(Some("a.test")),
        ),
        (
            "absolute form, no Host",
            b"GET http://a.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            Refused(MISSING),
        ),
        (
            "HTTP/1.0 without Host",
            b"GET / HTTP/1.0\r\n\r\n",
            Forwarded(None),
        ),
        (
            "HTTP/1.0 with two Host lines",
            b"GET / HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            Refused(REPEATED),
        ),
        (
            // An upgrade request takes the tunnel path's prologue: checked
            // the same.
            "an upgrade without Host",
            b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\r\n",
            Refused(MISSING),
        ),
        (
            "a CONNECT without Host",
            b"CONNECT a.test:443 HTTP/1.1\r\nConnection: close\r\n\r\n",
            Refused(MISSING),
        ),
        (
            // Host and the authority-form target need not be equal (RFC
            // 9110 §9.3.6); CONNECT is off here.
            "a CONNECT with a Host",
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            Status("HTTP/1.1 405"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, want) in cases {
        let before = origin.requests();
        let answer = tokio::time::timeout(LIMIT, raw(gw.addr(), bytes))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer in time"));
        let (status, body) = split(&answer);
        let forwarded = origin.requests() - before;
        let ok = match want {
            Refused(reason) => {
                status.starts_with("HTTP/1.")
                    && status.contains(" 400 ")
                    && body.starts_with(reason)
                    && forwarded == 0
            }
            Status(line) => status.starts_with(line) && forwarded == 0,
            Forwarded(host) => {
                let expected = host.map_or(origin.addr.to_string(), str::to_string);
                let seen: Option<serde_json::Value> = serde_json::from_str(body).ok();
                let hosts = seen.as_ref().map(|j| j["headers"]["host"].clone());
                status.contains(" 200 ")
                    && forwarded == 1
                    && hosts == Some(serde_json::json!([expected]))
            }
        };
        if !ok {
            failures.push(format!("{name}: forwarded {forwarded}, got:\n{answer}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n---\n"));
}

/// One HTTP/2 request (prior knowledge) written frame by frame, since an
/// HTTP/2 client library always sends `:authority` and never two Host
/// fields: `fields` are the request's header block, each a literal (HPACK,
/// no Huffman, no indexing). Returns the status and the body, or what
/// ended the stream instead.
async fn h2_raw(
    addr: std::net::SocketAddr,
    fields: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend(frame(1, 0x5, 1, &block));
    s.write_all(&out).await.unwrap();
    let (mut status, mut body) = (None, Vec::new());
    for _ in 0..64 {
        let mut head = [0u8; 9];
        s.read_exact(&mut head)
            .await
            .map_err(|e| format!("closed: {e}"))?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)
            .await
            .map_err(|e| format!("closed: {e}"))?;
        match (kind, stream) {
            (4, 0) if flags & 1 == 0 => s.write_all(&frame(4, 1, 0, &[])).await.unwrap(),
            (1, 1) => {
                // The encoder sends a status of the static table indexed:
                // index 8 is `:status 200`, 12 `:status 400`.
                status = Some(match payload.first() {
                    Some(0x88) => 200,
                    Some(0x8c) => 400,
                    other => return Err(format!("a status not read here: {other:x?}")),
                });
                if flags & 1 != 0 {
                    break;
                }
            }
            (0, 1) => {
                body.extend_from_slice(&payload);
                if flags & 1 != 0 {
                    break;
                }
            }
            (3, 1) => return Err(format!("RST_STREAM {payload:?}")),
            (7, _) => return Err(format!("GOAWAY {payload:?}")),
            _ => {}
        }
    }
    let status = status.ok_or("no response head")?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/2 header block, field by field.
type Fields = Vec<(&'static str, &'static str)>;

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    use Want::*;
    let origin = Origin::echo();
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    let get = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
    let with = |more: &[(&'static str, &'static str)]| [&get[..], more].concat();
    let cases: Vec<(&str, Fields, Want)> = vec![
        (
            ":authority only",
            with(&[(":authority", "a.test")]),
            Forwarded(Some("a.test")),
        ),
        (
            "Host only",
            with(&[("host", "a.test")]),
            Forwarded(Some("a.test")),
        ),
        (
            ":authority and an equal Host (case, default port)",
            with(&[(":authority", "a.test"), ("host", "A.test:80")]),
            Forwarded(Some("a.test")),
        ),
        (
            ":authority and another Host",
            with(&[(":authority", "a.test"), ("host", "b.test")]),
            Refused(MISMATCH),
        ),
        (
            ":authority and another port",
            with(&[(":authority", "a.test:8080"), ("host", "a.test")]),
            Refused(MISMATCH),
        ),
        (
            "two Host fields",
            with(&[("host", "a.test"), ("host", "b.test")]),
            Refused(REPEATED),
        ),
        ("neither :authority nor Host", with(&[]), Refused(MISSING)),
    ];
    let mut failures = Vec::new();
    for (name, fields, want) in &cases {
        let before = origin.requests();
        let answer = tokio::time::timeout(LIMIT, h2_raw(gw.addr(), fields))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer in time"));
        let forwarded = origin.requests() - before;
        let ok = match (&answer, want) {
            (Ok((status, body)), Refused(reason)) => {
                *status == 400 && body == reason && forwarded == 0
            }
            (Ok((status, body)), Forwarded(host)) => {
                let seen: Option<serde_json::Value> = serde_json::from_str(body).ok();
                let hosts = seen.as_ref().map(|j| j["headers"]["host"].clone());
                *status == 200
                    && forwarded == 1
                    && hosts == Some(serde_json::json!([host.unwrap()]))
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: forwarded {forwarded}, got {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n---\n"));
}

#[tokio::test]
async fn refusals_count_as_the_routes_4xx_and_do_not_warn() {
    let logs = capture_logs();
    let origin = Origin::echo();
    let gw = gateway_with_admin(&simple_config(&[origin.addr], ""), 1);
    let answer = tokio::time::timeout(
        LIMIT,
        raw(gw.addr(), b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("no answer in time");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let labels = [("route", "all"), ("class", "4xx")];
    let mut counted = 0.0;
    // The route's figures are counted when the response body ends.
    for _ in 0..100 {
        counted = metric_sum(&gw, "strait_route_responses_total", &labels).await;
        if counted == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, 1.0, "the refusal counts as the route's 4xx");
    assert_eq!(origin.requests(), 0);
    // The client chose to send it: not a warning (INFO and up are captured).
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!text.contains("GET /x"), "{text}");
    assert!(!text.contains("missing_host"), "{text}");
}

#[tokio::test]
async fn the_fallback_access_log_logs_refusals_routed_or_not() {
    let origin = Origin::echo();
    let dir = TempDir::new("host-log");
    let log = dir.path("json.log");
    let toml = format!(
        r#"
[server]
access_log = "log"

[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{origin}"]

[middlewares.log]
type = "access_log"
format = "json"
output = {path:?}

[[routes]]
name = "api"
match = {{ path_prefix = "/api" }}
upstream = "backend"
"#,
        origin = origin.addr,
        path = log
    );
    let gw = gateway_with(&toml, 1);
    for request in [
        &b"GET /api/a HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n"[..],
        b"GET /elsewhere HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let answer = tokio::time::timeout(LIMIT, raw(gw.addr(), request))
            .await
            .expect("no answer in time");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    gw.shutdown();
    let text = std::fs::read_to_string(&log).expect("the log was written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let seen: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["path"].clone(),
                l["status"].clone(),
                l["route"].clone(),
                l["cause"].clone(),
            )
        })
        .collect();
    use serde_json::json;
    assert_eq!(
        seen,
        [
            (
                json!("/api/a"),
                json!(400),
                json!("api"),
                json!("repeated_host")
            ),
            (
                json!("/elsewhere"),
                json!(400),
                json!(null),
                json!("missing_host")
            ),
        ],
        "{text}"
    );
    assert_eq!(origin.requests(), 0);
}

/// An HTTP/1.0 origin: reads one request head, answers `HTTP/1.0 200 OK`
/// with no keep-alive (the body ends with the connection) and closes.
fn http10_origin() -> Server {
    Server::start(|mut stream: tokio::net::TcpStream, _| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfrom 1.0")
            .await;
        let _ = stream.shutdown().await;
    })
}

#[tokio::test]
async fn http11_clients_get_http11_behind_an_http10_origin() {
    let origin = http10_origin();
    let gw = gateway_with(&simple_config(&[origin.addr], ""), 1);
    let answer = tokio::time::timeout(
        LIMIT,
        raw(
            gw.addr(),
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("no answer in time");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("from 1.0"), "{answer}");

    // Keep-alive holds: two requests over one client connection.
    tokio::time::timeout(LIMIT, async {
        let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        for i in 0..2 {
            sender
                .ready()
                .await
                .unwrap_or_else(|e| panic!("request {i}: closed: {e}"));
            let resp = sender
                .send_request(request("GET", "/", &[]))
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(resp.version(), Version::HTTP_11, "request {i}");
            assert!(
                !resp.headers().contains_key("connection"),
                "{:?}",
                resp.headers()
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "from 1.0", "request {i}");
        }
        assert!(!conn.is_finished(), "the client connection stays open");
    })
    .await
    .expect("keep-alive requests did not finish in time");
}
