//! The differential check of the HTTP/1.1 head parsers, on stable, in
//! `cargo test`: every seed head and 30,000 deterministic mutations of them
//! go to `strait::http1::parse_request` (and `parse_response`) and to the
//! reference of
//! `fuzz/src/http1_model.rs` (httparse + hyper's framing rules + each
//! stricter rule of Strait's as its own filter), which must agree on
//! accept/refuse/incomplete, method, target, version, fields, head length,
//! framing and keep-alive (for responses: status, reason, framing by the
//! request's kind). The fuzz targets `http1_request` and `http1_response`
//! run the same checks on libFuzzer's inputs.

use std::time::{Duration, Instant};

// The model is shared with the fuzz package, where its items are the
// library's API; here they are the test's own.
#[path = "../fuzz/src/http1_model.rs"]
#[allow(dead_code, unreachable_pub)]
mod http1_model;

use bumpalo::Bump;
use http1_model::{
    check, check_response, corpus, later_minor_as_11, reference, reference_response,
    response_seeds, seeds, strait, strait_response, Verdict,
};

/// `HTTP1_ITERS` (mutations besides the seeds, default 30,000) and
/// `HTTP1_SEED` (the generator's seed) make a longer or another run.
fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn parser_and_reference_agree_on_a_generated_corpus() {
    let started = Instant::now();
    let (mut heads, mut refused, mut incomplete, mut total) = (0, 0, 0, 0);
    for input in corpus(
        seeds(),
        env("HTTP1_ITERS", 30_000) as usize,
        env("HTTP1_SEED", 0x5EED_1212),
    ) {
        check(&input);
        match strait(&input, &Bump::new()) {
            Verdict::Head(_) => heads += 1,
            Verdict::Refused(_) => refused += 1,
            Verdict::Incomplete => incomplete += 1,
        }
        total += 1;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the corpus took over 600 s ({total} inputs)"
        );
    }
    eprintln!(
        "{total} inputs in {:?}: {heads} heads, {refused} refused, {incomplete} incomplete",
        started.elapsed()
    );
    assert!(total > 20_000);
    // A corpus that only ever refuses (or only accepts) would test little.
    assert!(heads > total / 20 && refused > total / 5 && incomplete > 0);
}

#[test]
fn response_parser_and_reference_agree_on_a_generated_corpus() {
    let started = Instant::now();
    let (mut heads, mut total) = (0, 0);
    let n = env("HTTP1_ITERS", 30_000) as usize;
    for input in corpus(response_seeds(), n, env("HTTP1_SEED", 0x5EED_1212)) {
        check_response(&input);
        heads += matches!(strait_response(&input, &Bump::new()), Verdict::Head(_)) as usize;
        total += 1;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "over 600 s ({total} inputs)"
        );
    }
    eprintln!(
        "{total} responses in {:?}: {heads} heads",
        started.elapsed()
    );
    assert!(total > 20_000 && heads > total / 20 && heads < total / 2);
}

/// Each seed's verdict is pinned: the valid ones parse, every smuggling
/// pattern is refused, by both sides.
#[test]
fn seeds_have_their_expected_verdicts() {
    let accepted = [
        "get",
        "get-query",
        "post-length",
        "post-chunked",
        "http10",
        "absolute",
        "connect",
        "options-star",
        "leading-crlf",
        "upgrade",
        "expect",
        "pipelined",
        "obs-text",
        "many-fields",
        "long-target",
        "http12",
        "host-ipv6",
    ];
    let ours = |d: &[u8]| head(strait(d, &Bump::new()));
    let theirs = |d: &[u8]| {
        let d = later_minor_as_11(d).unwrap_or_else(|| d.to_vec());
        head(reference(&d))
    };
    pinned(seeds(), &accepted, check, ours, theirs);
    let accepted = [
        "200-length",
        "200-chunked",
        "200-close",
        "204",
        "304",
        "100",
        "101",
        "103",
        "http10",
        "no-reason",
        "obs-text",
        "connection-close",
        "head",
        "connect-200",
        "connect-407",
    ];
    let ours = |d: &[u8]| head(strait_response(d, &Bump::new()));
    pinned(response_seeds(), &accepted, check_response, ours, |d| {
        head(reference_response(d))
    });
}

fn head<H>(verdict: Verdict<H>) -> bool {
    matches!(verdict, Verdict::Head(_))
}

/// Each seed passes its check, and both sides accept it exactly when it is
/// named in `accepted`.
fn pinned(
    seeds: Vec<(&'static str, Vec<u8>)>,
    accepted: &[&str],
    check: fn(&[u8]),
    ours: impl Fn(&[u8]) -> bool,
    theirs: impl Fn(&[u8]) -> bool,
) {
    for (name, input) in seeds {
        check(&input);
        assert_eq!(ours(&input), accepted.contains(&name), "{name}: Strait");
        assert_eq!(
            theirs(&input),
            accepted.contains(&name),
            "{name}: the reference"
        );
    }
}

/// The check can fail: a reference that disagrees is caught.
#[test]
fn a_disagreement_is_reported() {
    let input = b"GET / HTTP/1.1\nHost: a\r\n\r\n";
    assert!(matches!(strait(input, &Bump::new()), Verdict::Refused(_)));
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let plain = httparse::Request::new(&mut headers).parse(input);
    assert!(
        plain.is_ok_and(|s| s.is_complete()),
        "httparse alone accepts a bare LF"
    );
    let caught = std::panic::catch_unwind(|| check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(caught.is_ok(), "agreement passes");
}

/// The corpora in `fuzz/corpus/http1_request/` and `http1_response/` are
/// the generator's seeds, one file each; `WRITE_CORPUS=1` rewrites them.
#[test]
fn the_fuzz_corpora_are_the_generated_ones() {
    for (target, seeds) in [
        ("http1_request", seeds()),
        ("http1_response", response_seeds()),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let write = std::env::var_os("WRITE_CORPUS").is_some();
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, input) in &seeds {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, input).unwrap();
            }
            let stored = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{} ({e}): run with WRITE_CORPUS=1", path.display()));
            assert_eq!(&stored, input, "{} differs from its seed", path.display());
        }
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            files,
            seeds.len(),
            "{} holds files that are not seeds",
            dir.display()
        );
    }
}
