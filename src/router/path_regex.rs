//! `path_regex` conditions: parsed, anchored to the whole path and compiled once at
//! build time under fixed size limits, then matched against the raw request path with
//! named groups captured into the caller's parameter list without allocating.
//!
//! The engine is `regex-automata`'s meta regex, the one `regex::Regex` wraps, with the
//! same limits `RegexBuilder::size_limit` and `dfa_size_limit` set. It is used directly
//! for two reasons: `search_slots_with` writes the captures into a slice on the stack,
//! where `regex::Regex::captures` allocates per request; and it takes the search cache
//! from the caller, where `regex::Regex` takes one from a pool that every thread but the
//! first reaches through a mutex. Each worker keeps its own caches in a thread-local
//! (`CACHES`), so matching takes no lock and shares no cache line.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use bumpalo::collections::Vec as BumpVec;
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{meta, Anchored, Input};
use regex_syntax::hir::{Hir, HirKind, Look};

/// The compiled NFA's limit (`regex::RegexBuilder::size_limit`): 1 MiB, a tenth of the
/// regex crate's default, ample for path shapes; `\w{100}` (Unicode) exceeds it.
pub(crate) const SIZE_LIMIT: usize = 1 << 20;
/// The lazy DFA's cache per worker thread (`regex::RegexBuilder::dfa_size_limit`):
/// 1 MiB, grown only as paths need states; when full it is cleared and refilled.
pub(crate) const DFA_SIZE_LIMIT: usize = 1 << 20;
/// Capture groups a path regex may have, the whole match counted (slots live on the stack).
pub(crate) const MAX_GROUPS: usize = 32;

/// Tables of search caches a worker keeps: the current router's and the one before, so
/// the few requests that loaded the snapshot just before a reload do not evict the new
/// router's caches (a third table evicts the least recently used).
const TABLES: usize = 2;

/// The next cache table: one per router built (and per regex compiled alone).
static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This worker's search caches (the lazy DFA's states, the NFA simulation's
    /// scratch), by table, then by the regex's index in it, made on first use. A worker
    /// is one thread, so they are its own: no lock, nothing shared. Most recent first.
    static CACHES: RefCell<Vec<(u64, Vec<Option<meta::Cache>>)>> =
        const { RefCell::new(Vec::new()) };
}

/// A path regex that matches whole paths only.
#[derive(Debug)]
pub(crate) struct PathRegex {
    regex: meta::Regex,
    /// (group index, name) of the named groups, in group order: the route's parameters.
    names: Box<[(usize, Box<str>)]>,
    /// Slots `search_slots` must fill: two per group up to the last named one.
    slots: usize,
    /// Where this regex's cache is in each worker's `CACHES`: (table, index). The
    /// router gives all its regexes one table ([`PathRegex::place`]).
    cache: (u64, usize),
}

impl PathRegex {
    pub(crate) fn compile(pattern: &str) -> Result<PathRegex, String> {
        if pattern.is_empty() {
            // It would match only the empty path, which no request has.
            return Err(
                "empty path_regex: expected a regex matching whole paths, e.g. \"/v[0-9]+/items\""
                    .into(),
            );
        }
        let (hir, names) = parse(pattern)?;
        let config = meta::Config::new()
            .nfa_size_limit(Some(SIZE_LIMIT))
            .hybrid_cache_capacity(DFA_SIZE_LIMIT);
        // `\A(?:...)\z` as a tree, not as text: text could be reopened by the pattern
        // itself (`(?x)...#` comments out a closing parenthesis).
        let anchored = Hir::concat(vec![Hir::look(Look::Start), hir, Hir::look(Look::End)]);
        let regex = meta::Builder::new()
            .configure(config)
            .build_from_hir(&anchored)
            .map_err(|e| match e.size_limit() {
                Some(limit) => format!(
                    "path_regex {pattern:?} compiles to more than the size limit of {limit} \
                     bytes: use fewer or smaller repetitions, or ASCII classes such as \
                     (?-u:\\w) instead of Unicode ones"
                ),
                None => format!("path_regex {pattern:?} cannot be compiled: {e}"),
            })?;
        let groups = regex
            .group_info()
            .group_len(regex_automata::PatternID::ZERO);
        if groups > MAX_GROUPS {
            return Err(format!(
                "path_regex {pattern:?} has {} capture groups: expected at most {} \
                 (use (?:...) for groups that capture nothing)",
                groups - 1,
                MAX_GROUPS - 1
            ));
        }
        let names: Box<[(usize, Box<str>)]> =
            names.into_iter().map(|(i, n)| (i as usize, n)).collect();
        let slots = names.last().map_or(0, |&(i, _)| 2 * (i + 1));
        Ok(PathRegex {
            regex,
            names,
            slots,
            cache: (new_table(), 0),
        })
    }

    /// Puts this regex's cache at `index` of `table` (from [`new_table`]), so a router's
    /// regexes share one table in each worker and a reload replaces it whole.
    pub(crate) fn place(&mut self, table: u64, index: usize) {
        self.cache = (table, index);
    }

    /// Runs `f` with this worker's cache for this regex.
    fn with_cache<R>(&self, f: impl FnOnce(&mut meta::Cache) -> R) -> R {
        let (table, index) = self.cache;
        CACHES.with(|tables| {
            let mut tables = tables.borrow_mut();
            match tables.iter().position(|(t, _)| *t == table) {
                Some(at) => tables.swap(0, at),
                None => {
                    tables.truncate(TABLES - 1);
                    tables.insert(0, (table, Vec::new()));
                }
            }
            let caches = &mut tables[0].1;
            if caches.len() <= index {
                caches.resize_with(index + 1, || None);
            }
            f(caches[index].get_or_insert_with(|| self.regex.create_cache()))
        })
    }

    /// On success `params` holds the named groups (a group that took no part in the
    /// match captures `""`); on failure it is untouched.
    pub(crate) fn matches<'r, 'p>(
        &'r self,
        path: &'p str,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> bool {
        let input = Input::new(path).anchored(Anchored::Yes);
        if self.names.is_empty() {
            let input = input.earliest(true);
            return self.with_cache(|c| self.regex.search_half_with(c, &input).is_some());
        }
        let mut slots: [Option<NonMaxUsize>; 2 * MAX_GROUPS] = [None; 2 * MAX_GROUPS];
        let slots = &mut slots[..self.slots];
        if self
            .with_cache(|c| self.regex.search_slots_with(c, &input, slots))
            .is_none()
        {
            return false;
        }
        for (group, name) in self.names.iter() {
            let value = match (slots[2 * group], slots[2 * group + 1]) {
                (Some(start), Some(end)) => path.get(start.get()..end.get()).unwrap_or(""),
                _ => "",
            };
            params.push((&**name, value));
        }
        true
    }
}

/// A new cache table for [`PathRegex::place`].
pub(crate) fn new_table() -> u64 {
    NEXT_TABLE.fetch_add(1, Ordering::Relaxed)
}

/// The names of the named groups, in group order, for checking `rewrite` templates at
/// load; an invalid pattern has none (building the router reports it).
pub(crate) fn param_names(pattern: &str) -> Vec<String> {
    parse(pattern).map_or_else(
        |_| Vec::new(),
        |(_, names)| names.into_iter().map(|(_, n)| n.into()).collect(),
    )
}

type Names = Vec<(u32, Box<str>)>;

fn parse(pattern: &str) -> Result<(Hir, Names), String> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| syntax_error(pattern, &e))?;
    let mut names = Vec::new();
    collect_names(&hir, &mut names);
    names.sort_by_key(|&(i, _)| i);
    for (_, name) in &names {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "capture group name {name:?} in path_regex {pattern:?}: expected letters, \
                 digits or '_' (it becomes a route parameter)"
            ));
        }
    }
    Ok((hir, names))
}

fn collect_names(hir: &Hir, out: &mut Names) {
    match hir.kind() {
        HirKind::Capture(c) => {
            if let Some(name) = &c.name {
                out.push((c.index, name.clone()));
            }
            collect_names(&c.sub, out);
        }
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            for sub in subs {
                collect_names(sub, out);
            }
        }
        HirKind::Repetition(r) => collect_names(&r.sub, out),
        _ => {}
    }
}

/// The regex crate's message on one line: what is wrong and where, without its
/// multi-line drawing of the pattern.
fn syntax_error(pattern: &str, e: &regex_syntax::Error) -> String {
    let (what, span) = match e {
        regex_syntax::Error::Parse(e) => (e.kind().to_string(), *e.span()),
        regex_syntax::Error::Translate(e) => (e.kind().to_string(), *e.span()),
        other => return format!("invalid path_regex {pattern:?}: {other}"),
    };
    let (start, end) = (span.start.offset, span.end.offset);
    if end <= start + 1 {
        format!("invalid path_regex {pattern:?}: {what} (at byte {start})")
    } else {
        format!("invalid path_regex {pattern:?}: {what} (at bytes {start}..{end})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bumpalo::Bump;

    fn captures(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        let re = PathRegex::compile(pattern).expect("valid regex");
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        re.matches(path, &mut params).then(|| {
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_whole_path_must_match() {
        let p = "/v[0-9]+/items";
        assert_eq!(captures(p, "/v2/items"), pairs(&[]));
        assert_eq!(captures(p, "/v2/items/"), None);
        assert_eq!(captures(p, "/x/v2/items"), None);
        // Leftmost-first would stop at "a"; the anchors make the longer branch match.
        assert_eq!(captures("/(?:a|ab)", "/ab"), pairs(&[]));
        // Anchors written by the user are harmless.
        assert_eq!(captures("^/a$", "/a"), pairs(&[]));
        // A multi-line flag inside cannot end the match at a newline-free boundary.
        assert_eq!(captures("(?m)/a$", "/a"), pairs(&[]));
        // Verbose mode's comment cannot swallow the anchoring.
        assert_eq!(captures("(?x) /a # comment", "/a"), pairs(&[]));
        assert_eq!(captures("(?x) /a # comment", "/ab"), None);
    }

    #[test]
    fn named_groups_become_params_in_group_order() {
        let p = r"^/v(?P<version>[0-9]+)/items/(?<id>[0-9]+)(/(?P<rest>.*))?$";
        assert_eq!(
            captures(p, "/v2/items/42"),
            pairs(&[("version", "2"), ("id", "42"), ("rest", "")])
        );
        assert_eq!(
            captures(p, "/v10/items/7/a/b"),
            pairs(&[("version", "10"), ("id", "7"), ("rest", "a/b")])
        );
        assert_eq!(captures(p, "/v2/items/x"), None);
        assert_eq!(param_names(p), ["version", "id", "rest"]);
    }

    #[test]
    fn matches_raw_bytes_of_any_path() {
        let p = "/files/(?P<name>[^/]+)";
        assert_eq!(captures(p, "/files/%2F"), pairs(&[("name", "%2F")]));
        assert_eq!(captures(p, "/files/é"), pairs(&[("name", "é")]));
        assert_eq!(captures(p, ""), None);
        let long = format!("/files/{}", "a".repeat(100_000));
        assert!(captures(p, &long).is_some());
    }

    #[test]
    fn bad_regexes_are_rejected_with_messages() {
        let err = |p: &str| PathRegex::compile(p).expect_err("must be rejected");
        assert_eq!(
            err("/(?P<id[0-9]+"),
            r#"invalid path_regex "/(?P<id[0-9]+": invalid capture group character (at byte 9)"#
        );
        assert_eq!(
            err("/(a"),
            r#"invalid path_regex "/(a": unclosed group (at byte 1)"#
        );
        assert_eq!(
            err("/(?P<a.b>x)"),
            r#"capture group name "a.b" in path_regex "/(?P<a.b>x)": expected letters, digits or '_' (it becomes a route parameter)"#
        );
        assert_eq!(
            err(r"/\w{1000}"),
            r#"path_regex "/\\w{1000}" compiles to more than the size limit of 1048576 bytes: use fewer or smaller repetitions, or ASCII classes such as (?-u:\w) instead of Unicode ones"#
        );
        let many = "(a)".repeat(32);
        assert_eq!(
            err(&many),
            format!(
                "path_regex {many:?} has 32 capture groups: expected at most 31 (use (?:...) for groups that capture nothing)"
            )
        );
        assert_eq!(
            err("/[z-a]"),
            r#"invalid path_regex "/[z-a]": invalid character class range, the start must be <= the end (at bytes 2..5)"#
        );
        assert_eq!(
            err(""),
            r#"empty path_regex: expected a regex matching whole paths, e.g. "/v[0-9]+/items""#
        );
        assert!(param_names("/(a").is_empty());
    }
}
