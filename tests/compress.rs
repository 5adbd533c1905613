//! `type = "compress"` over real sockets, decoded by real decoders
//! (`flate2`, `brotli`, `zstd`): the coding the client prefers among
//! those offered, every skip rule (HEAD, 204/206/304, already encoded,
//! `no-transform`, a type not listed, under `min_size`, no acceptable
//! coding), the headers a compressed response gets (`Vary`, a weak
//! `ETag`, no `Content-Length`), and a 64 MiB response streamed through
//! in flat memory. Load errors are in `tests/config_errors.rs`.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(60);
/// The 64 MiB response.
const LARGE: usize = 64 << 20;

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// Text that compresses, `n` bytes of it.
fn text(n: usize) -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog, again and again. ";
    line.iter().copied().cycle().take(n).collect()
}

/// An origin whose path says what it answers.
fn origin() -> Origin {
    Origin::start(Arc::new(|req| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            drain(req).await;
            let b = Response::builder();
            let (b, body): (_, Vec<u8>) = match path.as_str() {
                "/html" => (
                    b.header("content-type", "text/html; charset=utf-8"),
                    text(5000),
                ),
                "/json" => (
                    b.header("content-type", "application/problem+json"),
                    text(3000),
                ),
                "/small" => (b.header("content-type", "text/plain"), text(100)),
                "/png" => (b.header("content-type", "image/png"), text(5000)),
                "/none" => (b, text(5000)),
                "/encoded" => (
                    b.header("content-type", "text/plain")
                        .header("content-encoding", "gzip"),
                    text(5000),
                ),
                "/no-transform" => (
                    b.header("content-type", "text/plain")
                        .header("cache-control", "public, No-Transform"),
                    text(5000),
                ),
                "/partial" => (
                    b.status(206)
                        .header("content-type", "text/plain")
                        .header("content-range", "bytes 0-4999/10000"),
                    text(5000),
                ),
                "/not-modified" => (b.status(304).header("content-type", "text/plain"), vec![]),
                "/no-content" => (b.status(204), vec![]),
                "/etag" => (
                    b.header("content-type", "text/css")
                        .header("etag", "\"v1\"")
                        .header("accept-ranges", "bytes")
                        .header("vary", "Origin"),
                    text(5000),
                ),
                "/large" => {
                    // Streamed in 64 KiB pieces, never whole in memory.
                    let piece = Bytes::from(text(64 << 10));
                    let pieces = (0..LARGE / piece.len()).map(move |_| {
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece.clone()))
                    });
                    let stream = futures_util::stream::iter(pieces);
                    let resp = Response::builder()
                        .header("content-type", "text/plain")
                        .body(
                            StreamBody::new(stream)
                                .map_err(|never| match never {})
                                .boxed(),
                        )
                        .unwrap();
                    return resp;
                }
                _ => (b.status(404), vec![]),
            };
            let len = body.len();
            let mut resp = b.body(full(body)).unwrap();
            if resp.status() != StatusCode::NOT_MODIFIED && resp.status() != StatusCode::NO_CONTENT
            {
                resp.headers_mut().insert("content-length", len.into());
            }
            resp
        })
    }))
}

fn config(origin: SocketAddr, keys: &str) -> String {
    format!(
        "[middlewares.squeeze]\ntype = \"compress\"\n{keys}\n{}",
        simple_config(&[origin], r#""squeeze""#)
    )
}

/// A real decoder.
type Decode = fn(&[u8]) -> Vec<u8>;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("not gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("not brotli");
    out
}

fn unzstd(b: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(b).expect("not zstd")
}

#[tokio::test]
async fn each_coding_is_decoded_by_its_real_decoder() {
    let o = origin();
    let gw = gateway(&config(o.addr, ""));
    let mut client = H1::connect(gw.addr()).await;
    let cases: [(&str, &str, Decode); 4] = [
        ("gzip", "gzip", gunzip),
        ("br;q=1, gzip;q=0.5", "br", unbrotli),
        ("gzip, deflate, br, zstd", "zstd", unzstd),
        ("zstd;q=0.2, br;q=0.2, gzip;q=0.9", "gzip", gunzip),
    ];
    for (accept, coding, decode) in cases {
        let r = within(client.send(request("GET", "/html", &[("accept-encoding", accept)]))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-encoding"], coding, "{accept}");
        assert_eq!(r.headers["vary"], "Accept-Encoding");
        assert!(
            r.headers.get("content-length").is_none(),
            "a stale length was kept"
        );
        assert!(
            r.body.len() < 1000,
            "{coding}: {} bytes, not compressed",
            r.body.len()
        );
        assert_eq!(decode(&r.body), text(5000), "{coding}");
    }
    // A suffix type of the default list.
    let r = within(client.send(request("GET", "/json", &[("accept-encoding", "gzip")]))).await;
    assert_eq!(gunzip(&r.body), text(3000));
}

#[tokio::test]
async fn what_must_not_be_compressed_is_not() {
    let o = origin();
    let gw = gateway(&config(o.addr, "min_size = \"1KiB\""));
    let mut client = H1::connect(gw.addr()).await;
    let all = [("accept-encoding", "gzip, br, zstd")];
    for path in [
        "/small",
        "/png",
        "/none",
        "/encoded",
        "/no-transform",
        "/partial",
        "/not-modified",
        "/no-content",
    ] {
        let r = within(client.send(request("GET", path, &all))).await;
        let enc = r
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let expected = (path == "/encoded").then(|| "gzip".to_string());
        assert_eq!(enc, expected, "{path} was compressed");
        if path == "/small" || path == "/no-transform" {
            // Still the client's bytes, as the origin sent them.
            assert_eq!(r.body, Bytes::from(text(r.body.len())), "{path}");
        }
    }
    // Small, but eligible by type: the answer still varies.
    let r = within(client.send(request("GET", "/small", &all))).await;
    assert_eq!(r.headers["content-length"], "100");
    // HEAD: the head a GET would have had, minus the coding.
    let r = within(client.send(request("HEAD", "/html", &all))).await;
    assert!(r.headers.get("content-encoding").is_none());
    // No acceptable coding: the identity, and Vary says why.
    for accept in [
        None,
        Some("identity"),
        Some("gzip;q=0, br;q=0, zstd;q=0"),
        Some("*;q=0"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
        let r = within(client.send(request("GET", "/html", &headers))).await;
        assert!(r.headers.get("content-encoding").is_none(), "{accept:?}");
        assert_eq!(r.headers["vary"], "Accept-Encoding", "{accept:?}");
        assert_eq!(r.body, Bytes::from(text(5000)));
    }
    // Only the codings offered, in the order offered.
    drop(client);
    let gw = gateway(&config(
        o.addr,
        "encodings = [\"gzip\"]\ntypes = [\"image/png\"]",
    ));
    let r = within(get(
        gw.addr(),
        "/png",
        &[("accept-encoding", "zstd, br, gzip;q=0.1")],
    ))
    .await;
    assert_eq!(r.headers["content-encoding"], "gzip");
    let r = within(get(gw.addr(), "/html", &[("accept-encoding", "gzip")])).await;
    assert!(
        r.headers.get("content-encoding").is_none(),
        "html is not in the types"
    );
}

#[tokio::test]
async fn a_compressed_response_gets_a_weak_etag_and_keeps_its_vary() {
    let o = origin();
    let gw = gateway(&config(o.addr, "gzip_level = 9"));
    let r = within(get(gw.addr(), "/etag", &[("accept-encoding", "gzip")])).await;
    assert_eq!(r.headers["content-encoding"], "gzip");
    assert_eq!(r.headers["etag"], "W/\"v1\"");
    assert!(r.headers.get("accept-ranges").is_none());
    let vary: Vec<_> = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Origin", "Accept-Encoding"]);
    // Uncompressed, the strong ETag stays.
    let r = within(get(gw.addr(), "/etag", &[])).await;
    assert_eq!(r.headers["etag"], "\"v1\"");
}

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_64_mib_response_streams_through_in_flat_memory() {
    let o = origin();
    let gw = gateway(&config(o.addr, ""));
    for (accept, decode) in [("gzip", gunzip as Decode), ("zstd", unzstd)] {
        let before = rss_kib();
        let r = within(get(gw.addr(), "/large", &[("accept-encoding", accept)])).await;
        assert_eq!(r.headers["content-encoding"], accept);
        let grown = rss_kib().saturating_sub(before);
        // The compressed body (about a thousandth) is all the client
        // kept; the gateway held a window, never the 64 MiB.
        assert!(
            r.body.len() < LARGE / 100,
            "{accept}: {} bytes",
            r.body.len()
        );
        assert!(grown < 32 << 10, "{accept}: memory grew by {grown} KiB");
        let plain = decode(&r.body);
        assert_eq!(plain.len(), LARGE, "{accept}");
        assert!(plain.starts_with(b"The quick brown fox"));
    }
}

#[tokio::test]
async fn curl_compressed_gets_the_text_back() {
    // The README's `curl --compressed`: skipped where curl is not installed.
    let Ok(version) = std::process::Command::new("curl").arg("--version").output() else {
        eprintln!("skipped: no curl on this host");
        return;
    };
    let o = origin();
    let gw = gateway(&config(o.addr, ""));
    let url = format!("http://{}/html", gw.addr());
    let out = within(tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--compressed",
                "--dump-header",
                "-",
            ])
            .arg(&url)
            .output()
            .expect("curl runs")
    }))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    let (head, body) = got.split_once("\r\n\r\n").expect("a head and a body");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-encoding:"), "{head}");
    assert!(!head.contains("content-length:"), "{head}");
    let curl = String::from_utf8_lossy(&version.stdout);
    assert!(body.as_bytes() == text(5000), "{curl}");
}
