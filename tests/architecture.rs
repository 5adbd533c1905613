//! docs/architecture.md's pointers are kept true: every path it names in
//! backticks exists, and every name written right after a file
//! (`` `proxy/handler.rs` `process` ``) is defined in that file. Paths are
//! relative to `src/` unless they start with a top-level folder of the
//! repository.

use std::path::{Path, PathBuf};

/// Top-level folders a path may start with instead of `src/`.
const ROOT_FOLDERS: [&str; 7] = [
    "src/",
    "tests/",
    "benches/",
    "bench/",
    "fuzz/",
    "examples/",
    "docs/",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked spans of `text`, in order, with whether each directly
/// follows the previous one (only whitespace between them).
fn spans(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut gap_is_space = false;
    while let Some(start) = rest.find('`') {
        let before = &rest[..start];
        let adjacent = gap_is_space && before.chars().all(char::is_whitespace) && !out.is_empty();
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        out.push((after[..end].to_string(), adjacent));
        rest = &after[end + 1..];
        gap_is_space = true;
    }
    out
}

/// Whether a span names a file or folder of the repository.
fn as_path(span: &str) -> Option<PathBuf> {
    let plain = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'));
    let looks_like_path = span.ends_with(".rs") || span.ends_with(".toml") || span.ends_with('/');
    if !plain
        || !looks_like_path
        || span.starts_with('/')
        || !span.contains(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    if ROOT_FOLDERS.iter().any(|f| span.starts_with(f)) {
        Some(root().join(span))
    } else if span.contains('/') || span.ends_with(".rs") {
        Some(root().join("src").join(span))
    } else {
        None
    }
}

/// Whether `source` defines `name` (a function, type, constant or module).
fn defines(source: &str, name: &str) -> bool {
    let name = name.rsplit("::").next().unwrap_or(name);
    [
        "fn", "struct", "enum", "trait", "type", "const", "static", "mod",
    ]
    .iter()
    .any(|kind| {
        let needle = format!("{kind} {name}");
        source.match_indices(&needle).any(|(i, _)| {
            let next = source[i + needle.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

fn is_identifier(span: &str) -> bool {
    !span.is_empty()
        && span
            .split("::")
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        && span.chars().next().is_some_and(|c| c.is_alphabetic())
}

fn check(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut file: Option<(String, PathBuf)> = None;
    for (span, adjacent) in spans(text) {
        if let Some(path) = as_path(&span) {
            if !path.exists() {
                problems.push(format!("`{span}` does not exist ({})", path.display()));
            }
            file = path.is_file().then_some((span, path));
            continue;
        }
        match (&file, adjacent && is_identifier(&span)) {
            (Some((shown, path)), true) if path.extension().is_some_and(|e| e == "rs") => {
                let source = std::fs::read_to_string(path).unwrap_or_default();
                if !defines(&source, &span) {
                    problems.push(format!(
                        "`{shown}` `{span}`: no `{span}` is defined in {shown}"
                    ));
                }
                // Several names may follow one file: `a.rs` `Type` `method`.
            }
            _ => file = None,
        }
    }
    problems
}

#[test]
fn every_path_and_name_in_the_architecture_doc_exists() {
    let doc_path = root().join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc_path.display()));
    let problems = check(&doc);
    assert!(
        problems.is_empty(),
        "docs/architecture.md points at things that are not there:\n{}",
        problems.join("\n")
    );
    // The page still covers the request path (a check that cannot pass on
    // an empty file).
    for must in [
        "## The life of a request",
        "## Concern → file",
        "`worker/accept.rs`",
    ] {
        assert!(doc.contains(must), "docs/architecture.md lost {must:?}");
    }
}

#[test]
fn the_checker_finds_stale_pointers() {
    let broken = "See `proxy/handler.rs` `no_such_phase` and `data/handler.rs`, \
                  but `proxy/handler.rs` `process` and `context/` are fine.";
    let problems = check(broken);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("no_such_phase"), "{problems:?}");
    assert!(problems[1].contains("data/handler.rs"), "{problems:?}");
    assert!(check("`worker/local.rs` `WorkerLocal` `snapshot`").is_empty());
    assert!(!check("`worker/local.rs` `WorkerLocal` `no_method`").is_empty());
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").is_dir());
}
