//! A stable stand-in for `cargo fuzz run`: feeds every seed in `corpus/<target>/`
//! (and, for `config`, every `*.toml` in `../examples/` and `../tests/configs/`),
//! then random byte strings and random mutations of the seeds, to the same
//! functions the fuzz targets call.
//! It collects every panic with its input, writes each input to
//! `artifacts/smoke-<target>-<n>`, and fails listing them.
//!
//! `SMOKE_ITERS` (default 10000) sets how many random and how many mutated
//! inputs each target gets; `SMOKE_SEED` changes the generator's seed.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use strait_fuzz::http1_model::Rng;

thread_local! {
    /// Set while a target runs, so its panics are collected rather than printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that stays silent inside `target` calls and
/// prints as usual elsewhere (the final report, bugs in this harness).
fn quiet_panics_in_targets() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
}

/// Bytes that mean something to TOML, URLs, hosts, route patterns or HTTP heads; mutations
/// insert these more often than arbitrary bytes.
const INTERESTING: &[u8] = b"{}[]*/:.=\"'\r\n\0#,%?-_ \t\\0123456789azAZ\xff\xc3\x80";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files in `dir` (only `*.ext` ones when `ext` is given), sorted.
/// A folder that is missing, unreadable or holds none is an error: it would
/// feed nothing, and the test would pass having tested nothing.
fn files_in(dir: &Path, ext: Option<&str>) -> Vec<Vec<u8>> {
    let what = match ext {
        Some(ext) => format!("*.{ext} file"),
        None => "seed".to_string(),
    };
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): no {what} to feed", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .filter(|p| ext.map_or(true, |ext| p.extension().is_some_and(|e| e == ext)))
        .collect();
    assert!(
        !paths.is_empty(),
        "{} holds no {what} to feed",
        dir.display()
    );
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())))
        .collect()
}

/// The seeds of `target`, from `corpus/<target>/`.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    files_in(&fuzz_dir().join("corpus").join(target), None)
}

/// One random edit (or a few) of a seed: flip, insert, delete, duplicate, splice.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let b = INTERESTING[rng.below(INTERESTING.len())];
                data.insert(rng.below(len + 1), b);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(16)) + 1;
                data.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(32)) + 1;
                let copy = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            _ => data.push(INTERESTING[rng.below(INTERESTING.len())]),
        }
    }
    data
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(257);
    // Half the strings from the interesting alphabet, so some pass UTF-8 and parsing.
    if rng.below(2) == 0 {
        (0..len).map(|_| rng.next_u64() as u8).collect()
    } else {
        (0..len)
            .map(|_| INTERESTING[rng.below(INTERESTING.len())])
            .collect()
    }
}

/// Feeds seeds, random and mutated inputs to `target`; returns (inputs run, panics).
fn run(name: &str, target: fn(&[u8]), seeds: &[Vec<u8>]) -> (usize, Vec<(String, Vec<u8>)>) {
    assert!(!seeds.is_empty(), "no seeds for {name}");
    quiet_panics_in_targets();
    let iters = env_u64("SMOKE_ITERS", 10_000) as usize;
    let mut rng = Rng(env_u64("SMOKE_SEED", 0x5EED_5EED_5EED_5EED) | 1);
    let mut inputs: Vec<Vec<u8>> = seeds.to_vec();
    let mut panics: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = 0;
    let mut i = 0;
    while i < inputs.len() + 2 * iters {
        let data = if i < inputs.len() {
            std::mem::take(&mut inputs[i])
        } else if rng.below(2) == 0 {
            random_bytes(&mut rng)
        } else {
            mutate(&mut rng, seeds)
        };
        i += 1;
        run += 1;
        QUIET.with(|q| q.set(true));
        let result = panic::catch_unwind(AssertUnwindSafe(|| target(&data)));
        QUIET.with(|q| q.set(false));
        if let Err(payload) = result {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "<non-string panic>".into());
            // One input per distinct message keeps the report readable; keep the shortest.
            match panics.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, kept)) if data.len() < kept.len() => *kept = data,
                Some(_) => {}
                None => panics.push((msg, data)),
            }
        }
    }
    (run, panics)
}

fn check(name: &str, target: fn(&[u8]), seeds: Vec<Vec<u8>>) {
    let (run, panics) = run(name, target, &seeds);
    eprintln!(
        "{name}: {run} inputs ({} seeds), {} distinct panics",
        seeds.len(),
        panics.len()
    );
    if panics.is_empty() {
        return;
    }
    let artifacts = fuzz_dir().join("artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let mut report = String::new();
    for (n, (msg, data)) in panics.iter().enumerate() {
        let file = artifacts.join(format!("smoke-{name}-{n}"));
        let _ = std::fs::write(&file, data);
        report.push_str(&format!(
            "\n--- panic {n}: {msg}\n    input ({} bytes, saved to {}): {:?}\n",
            data.len(),
            file.display(),
            strait_fuzz::describe(data)
        ));
    }
    panic!("{name}: {} distinct panics:{report}", panics.len());
}

#[test]
fn config_never_panics() {
    let mut seeds = corpus("config");
    // The live files too, so seeds added to the main crate are covered before
    // anyone copies them into corpus/.
    for live in ["../examples", "../tests/configs", "../tests/configs/broken"] {
        seeds.extend(files_in(&fuzz_dir().join(live), Some("toml")));
    }
    check("config", strait_fuzz::config, seeds);
}

#[test]
fn router_never_panics() {
    check("router", strait_fuzz::router, corpus("router"));
}

#[test]
fn route_spec_never_panics() {
    check("route_spec", strait_fuzz::route_spec, corpus("route_spec"));
}

#[test]
fn http1_request_agrees_with_its_reference() {
    check(
        "http1_request",
        strait_fuzz::http1_request,
        corpus("http1_request"),
    );
}

#[test]
fn http1_response_agrees_with_its_reference() {
    check(
        "http1_response",
        strait_fuzz::http1_response,
        corpus("http1_response"),
    );
}

#[test]
fn harness_catches_and_dedupes_panics() {
    let seeds = vec![b"a{b".to_vec(), b"plain".to_vec()];
    let (run, panics) = run("selftest", |d| assert!(!d.contains(&b'{'), "brace"), &seeds);
    assert!(run >= seeds.len());
    assert_eq!(panics.len(), 1, "one distinct message: {panics:?}");
    assert!(panics[0].0.contains("brace"));
    assert!(panics[0].1.contains(&b'{'));
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    quiet_panics_in_targets();
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    let payload = result.expect_err("no panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "<non-string panic>".into())
}

#[test]
fn a_missing_or_empty_seed_folder_is_an_error() {
    let root = std::env::temp_dir().join(format!("strait-fuzz-smoke-{}", std::process::id()));
    let (missing, empty, other) = (root.join("missing"), root.join("empty"), root.join("other"));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("seed.txt"), "x").unwrap();
    let messages = [
        panic_message(|| drop(files_in(&missing, None))),
        panic_message(|| drop(files_in(&empty, None))),
        panic_message(|| drop(files_in(&other, Some("toml")))),
    ];
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        messages[0].starts_with(&format!("cannot read {} (", missing.display()))
            && messages[0].ends_with("): no seed to feed"),
        "{}",
        messages[0]
    );
    assert_eq!(
        messages[1],
        format!("{} holds no seed to feed", empty.display())
    );
    assert_eq!(
        messages[2],
        format!("{} holds no *.toml file to feed", other.display())
    );
}
