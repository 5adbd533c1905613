//! docs/architecture.md's pointers are kept true: every path it names in
//! backticks (or as a `.rs` file in a diagram) exists, and every name
//! written right after a file (`` `proxy/handler.rs` `process` ``) is
//! defined in that file, not merely mentioned in a comment. Paths are
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

/// The doc split into its prose and its fenced blocks (diagrams, examples).
fn prose_and_fences(text: &str) -> (String, String) {
    let (mut prose, mut fences) = (String::new(), String::new());
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let into = if fenced { &mut fences } else { &mut prose };
        into.push_str(line);
        into.push('\n');
    }
    (prose, fences)
}

/// The backticked spans of `text`, in order, with whether each directly
/// follows the previous one (only whitespace between them).
fn spans(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let before = &rest[..start];
        let adjacent = !out.is_empty() && before.chars().all(char::is_whitespace);
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        out.push((after[..end].to_string(), adjacent));
        rest = &after[end + 1..];
    }
    out
}

/// Whether a span names a file or folder of the repository: it starts with
/// a top-level folder or a folder of `src/`, or is a `.rs` file (then it is
/// in `src/`). A `:line` suffix is dropped.
fn as_path(span: &str) -> Option<PathBuf> {
    let span = match span.rsplit_once(':') {
        Some((path, line)) if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) => path,
        _ => span,
    };
    let plain = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-'));
    if !plain || span.starts_with('/') || !span.contains(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let first = span.split('/').next().unwrap_or(span);
    if ROOT_FOLDERS.iter().any(|f| span.starts_with(f)) {
        Some(root().join(span))
    } else if span.ends_with(".rs")
        || (span.contains('/') && root().join("src").join(first).is_dir())
    {
        Some(root().join("src").join(span))
    } else {
        None
    }
}

/// `source` with its comments and the contents of its string literals
/// blanked, so that a name only mentioned there is not taken for defined.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    if c == '\n' {
                        out.push('\n');
                    }
                    last = c;
                }
            }
            // A quote as a character ('"' or '\"') opens no string.
            '\'' if chars.peek() == Some(&'"') || chars.peek() == Some(&'\\') => {
                out.push(c);
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == '\'' {
                        break;
                    }
                }
                out.push('\'');
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Whether `code` (from [`code_only`]) defines `name`: a line that starts,
/// after its visibility and qualifiers, with `fn`, `struct`, `enum`,
/// `trait`, `type`, `const`, `static` or `mod` and then `name`.
fn defines(code: &str, name: &str) -> bool {
    const KINDS: [&str; 8] = [
        "fn", "struct", "enum", "trait", "type", "const", "static", "mod",
    ];
    const QUALIFIERS: [&str; 5] = ["pub", "async", "const", "unsafe", "default"];
    code.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.iter().enumerate().any(|(i, word)| {
            let named = words.get(i + 1).is_some_and(|next| {
                next.strip_prefix(name).is_some_and(|rest| {
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            });
            KINDS.contains(word)
                && named
                && words[..i]
                    .iter()
                    .all(|q| QUALIFIERS.contains(q) || q.starts_with("pub("))
        })
    })
}

/// The names a span after a file asks for: a plain name (`process`, a
/// trailing `()` allowed), or a path whose types and last segment are
/// named (`ProxyError::grpc_response`: both; `tls::server::Tickets`: the
/// type only, the modules are not in the file). `None`: not a name.
fn names_in(span: &str) -> Option<Vec<&str>> {
    let span = span.strip_suffix("()").unwrap_or(span);
    let segments: Vec<&str> = span.split("::").collect();
    let identifier = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
            && p.chars().next().is_some_and(char::is_alphabetic)
    };
    if !segments.iter().all(identifier) {
        return None;
    }
    let last = segments.len() - 1;
    Some(
        segments
            .into_iter()
            .enumerate()
            .filter(|(i, s)| *i == last || s.starts_with(char::is_uppercase))
            .map(|(_, s)| s)
            .collect(),
    )
}

fn check(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (prose, fences) = prose_and_fences(text);
    let mut file: Option<(String, PathBuf)> = None;
    for (span, adjacent) in spans(&prose) {
        if let Some(path) = as_path(&span) {
            if !path.exists() {
                problems.push(format!("`{span}` does not exist ({})", path.display()));
            }
            file = path.is_file().then_some((span, path));
            continue;
        }
        let Some((shown, path)) = file.as_ref().filter(|_| adjacent) else {
            file = None;
            continue;
        };
        if path.extension().map_or(true, |e| e != "rs") {
            file = None;
            continue;
        }
        let Some(names) = names_in(&span) else {
            problems.push(format!("`{shown}` `{span}`: not a name defined in a file"));
            file = None;
            continue;
        };
        let code = code_only(&std::fs::read_to_string(path).unwrap_or_default());
        for name in names {
            if !defines(&code, name) {
                problems.push(format!(
                    "`{shown}` `{span}`: no `{name}` is defined in {shown}"
                ));
            }
        }
        // Several names may follow one file: `a.rs` `Type` `method`.
    }
    // The diagrams name files without backticks (a bare `parse.rs` there is
    // shorthand under the folder beside it; only paths are checked).
    for word in fences.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.')))
    {
        if word.ends_with(".rs") && word.contains('/') {
            if let Some(path) = as_path(word).filter(|p| !p.exists()) {
                problems.push(format!(
                    "`{word}` (in a diagram) does not exist ({})",
                    path.display()
                ));
            }
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
    // Names only mentioned in comments, strings or inside other words are
    // not definitions.
    for stale in [
        "`middleware/mod.rs` `variants`",
        "`proxy/attempt.rs` `keeps`",
        "`context/mod.rs` `str`",
        "`proxy/handler.rs` `nothere()`",
        "`proxy/handler.rs` `Nothere::process`",
        "`proxy/handler.rs` `not a name`",
    ] {
        assert_eq!(check(stale).len(), 1, "{stale} passed: {:?}", check(stale));
    }
    assert!(check("`proxy/handler.rs` `process()` `Plain`").is_empty());
    // A quote written as a character does not hide the code after it.
    let code = code_only("let q = '\"'; let e = '\\''; // fn in_comment\nfn after() {}");
    assert!(
        defines(&code, "after") && !defines(&code, "in_comment"),
        "{code}"
    );
    assert!(check("`proxy/error.rs` `ProxyError::is_connect_failure`").is_empty());
    // Paths of every kind, a line suffix and the diagrams' file names.
    for stale in [
        "`bench/nothere.sh`",
        "`docs/nothere.md`",
        "`proxy/nothere`",
        "`proxy/nothere.rs:12`",
        "```\nworker/nothere.rs ─> proxy/mod.rs\n```",
    ] {
        assert_eq!(check(stale).len(), 1, "{stale} passed: {:?}", check(stale));
    }
    assert!(check("`proxy/handler.rs:12`, `bench/run.sh`, `http/1.1`, `/metrics`").is_empty());
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").is_dir());
}
