//! Path conditions of a route: validating exact paths, prefixes and `{param}` patterns at
//! build time, and matching them against the raw request path at request time (regexes
//! are `path_regex`'s).

use bumpalo::collections::Vec as BumpVec;

use super::path_regex::PathRegex;
use super::PathSpec;

/// A validated path condition, ready to match without allocating.
#[derive(Debug)]
pub(crate) enum PathMatcher {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Pattern(Pattern),
    Regex(PathRegex),
}

#[derive(Debug)]
pub(crate) struct Pattern {
    segments: Box<[Segment]>,
}

#[derive(Debug)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    CatchAll(Box<str>),
}

impl PathMatcher {
    pub(crate) fn compile(spec: &PathSpec) -> Result<PathMatcher, String> {
        match spec {
            PathSpec::Any => Ok(PathMatcher::Any),
            PathSpec::Exact(p) => {
                require_slash(p, "exact path")?;
                Ok(PathMatcher::Exact(p.as_str().into()))
            }
            PathSpec::Prefix(p) => {
                require_slash(p, "path prefix")?;
                Ok(PathMatcher::Prefix(p.as_str().into()))
            }
            PathSpec::Pattern(p) => Pattern::parse(p).map(PathMatcher::Pattern),
            PathSpec::Regex(r) => PathRegex::compile(r).map(PathMatcher::Regex),
        }
    }

    /// Sort key for precedence: a higher key is more specific.
    pub(crate) fn specificity(&self) -> (u8, usize, usize) {
        match self {
            PathMatcher::Exact(_) => (4, 0, 0),
            PathMatcher::Pattern(p) => (3, p.literal_count(), p.segments.len()),
            PathMatcher::Regex(_) => (2, 0, 0),
            PathMatcher::Prefix(p) => (1, p.len(), 0),
            PathMatcher::Any => (0, 0, 0),
        }
    }

    /// On success `params` holds the pattern's captures; on failure it may hold partial
    /// captures, which the caller clears.
    pub(crate) fn matches<'r, 'p>(
        &'r self,
        path: &'p str,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> bool {
        match self {
            PathMatcher::Any => true,
            PathMatcher::Exact(p) => path == &**p,
            PathMatcher::Prefix(p) => prefix_matches(p, path),
            PathMatcher::Pattern(p) => p.matches(path, params),
            PathMatcher::Regex(r) => r.matches(path, params),
        }
    }
}

fn require_slash(p: &str, what: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!("{what} {p:?} must start with '/'"))
    }
}

/// A prefix only matches on a segment boundary, so "/api" does not claim "/apix".
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
    }
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern, String> {
        let body = pattern
            .strip_prefix('/')
            .ok_or_else(|| format!("path pattern {pattern:?} must start with '/'"))?;
        let raw: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            let parsed = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(inner) => {
                    let (name, catch_all) = match inner.strip_prefix('*') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    if name.is_empty() {
                        return Err(format!("empty parameter name in path pattern {pattern:?}"));
                    }
                    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!(
                            "invalid parameter name {name:?} in path pattern {pattern:?}: \
                             expected letters, digits or '_'"
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!(
                            "duplicate parameter name {name:?} in path pattern {pattern:?}"
                        ));
                    }
                    names.push(name);
                    if catch_all {
                        if i + 1 != raw.len() {
                            return Err(format!(
                                "{seg} must be the last segment in path pattern {pattern:?}"
                            ));
                        }
                        Segment::CatchAll(name.into())
                    } else {
                        Segment::Param(name.into())
                    }
                }
                None if seg.contains(['{', '}']) => {
                    return Err(format!(
                        "segment {seg:?} in path pattern {pattern:?} must be a literal or a \
                         whole parameter like \"{{id}}\" or \"{{*rest}}\""
                    ));
                }
                None => Segment::Literal((*seg).into()),
            };
            segments.push(parsed);
        }
        Ok(Pattern {
            segments: segments.into_boxed_slice(),
        })
    }

    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    fn matches<'r, 'p>(
        &'r self,
        path: &'p str,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        for (i, seg) in self.segments.iter().enumerate() {
            let (current, next) = match seg {
                Segment::CatchAll(name) => {
                    params.push((&**name, rest));
                    return true;
                }
                _ => match rest.split_once('/') {
                    Some((current, next)) => (current, Some(next)),
                    None => (rest, None),
                },
            };
            match seg {
                Segment::Literal(lit) if current != &**lit => return false,
                Segment::Param(_) if current.is_empty() => return false,
                Segment::Param(name) => params.push((&**name, current)),
                _ => {}
            }
            match next {
                Some(next) => rest = next,
                // The path is used up: only an (empty) catch-all may remain.
                None => {
                    return match self.segments.get(i + 1) {
                        None => true,
                        Some(Segment::CatchAll(name)) => {
                            params.push((&**name, ""));
                            true
                        }
                        Some(_) => false,
                    };
                }
            }
        }
        // Every segment matched but the path has more of them.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bumpalo::Bump;

    fn compile(spec: PathSpec) -> PathMatcher {
        PathMatcher::compile(&spec).expect("valid path spec")
    }

    fn pattern_err(p: &str) -> String {
        PathMatcher::compile(&PathSpec::Pattern(p.into())).expect_err("pattern must be rejected")
    }

    /// Returns the captures on a match, `None` otherwise.
    fn captures(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        let m = compile(PathSpec::Pattern(pattern.into()));
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        m.matches(path, &mut params).then(|| {
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

    fn prefix(p: &str, path: &str) -> bool {
        let m = compile(PathSpec::Prefix(p.into()));
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        m.matches(path, &mut params)
    }

    #[test]
    fn prefix_respects_segment_boundaries() {
        let cases = [
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/x/y", true),
            ("/api", "/apix", false),
            ("/api", "/ap", false),
            ("/api", "/", false),
            ("/api/", "/api/", true),
            ("/api/", "/api/x", true),
            ("/api/", "/api", false),
            ("/", "/", true),
            ("/", "/anything/at/all", true),
        ];
        for (p, path, want) in cases {
            assert_eq!(prefix(p, path), want, "prefix {p:?} vs path {path:?}");
        }
    }

    #[test]
    fn exact_compares_raw_path() {
        let m = compile(PathSpec::Exact("/healthz".into()));
        let bump = Bump::new();
        let mut params = BumpVec::new_in(&bump);
        assert!(m.matches("/healthz", &mut params));
        assert!(!m.matches("/healthz/", &mut params));
        assert!(!m.matches("/HEALTHZ", &mut params));
        assert!(!m.matches("/health%7A", &mut params));
    }

    #[test]
    fn params_capture_single_non_empty_segments() {
        let p = "/users/{id}/posts/{post}";
        assert_eq!(
            captures(p, "/users/42/posts/7"),
            pairs(&[("id", "42"), ("post", "7")])
        );
        assert_eq!(captures(p, "/users//posts/7"), None);
        assert_eq!(captures(p, "/users/42/posts/7/"), None);
        assert_eq!(captures(p, "/users/42/posts"), None);
        assert_eq!(captures(p, "/users/42/comments/7"), None);
        assert_eq!(captures(p, "/Users/42/posts/7"), None);
        assert_eq!(captures("/{a}", "/%2F"), pairs(&[("a", "%2F")]));
    }

    #[test]
    fn catch_all_takes_the_remainder() {
        let p = "/files/{*rest}";
        assert_eq!(captures(p, "/files/a/b/c"), pairs(&[("rest", "a/b/c")]));
        assert_eq!(captures(p, "/files/a/"), pairs(&[("rest", "a/")]));
        assert_eq!(captures(p, "/files/"), pairs(&[("rest", "")]));
        assert_eq!(captures(p, "/files"), pairs(&[("rest", "")]));
        assert_eq!(captures(p, "/filesx"), None);
        assert_eq!(captures("/{*all}", "/"), pairs(&[("all", "")]));
        assert_eq!(
            captures("/{bucket}/{*key}", "/b/k/1"),
            pairs(&[("bucket", "b"), ("key", "k/1")])
        );
    }

    #[test]
    fn literal_only_patterns_and_paths_without_slash() {
        assert_eq!(captures("/", "/"), pairs(&[]));
        assert_eq!(captures("/", "/a"), None);
        assert_eq!(captures("/a/b", "/a/b"), pairs(&[]));
        assert_eq!(captures("/{id}", "*"), None);
        assert_eq!(captures("/{id}", ""), None);
    }

    #[test]
    fn bad_patterns_are_rejected_with_messages() {
        let cases = [
            (
                "/a/{}/b",
                r#"empty parameter name in path pattern "/a/{}/b""#,
            ),
            ("/a/{*}", r#"empty parameter name in path pattern "/a/{*}""#),
            (
                "/a/{*rest}/b",
                r#"{*rest} must be the last segment in path pattern "/a/{*rest}/b""#,
            ),
            (
                "/{id}/x/{id}",
                r#"duplicate parameter name "id" in path pattern "/{id}/x/{id}""#,
            ),
            (
                "/{id}/{*id}",
                r#"duplicate parameter name "id" in path pattern "/{id}/{*id}""#,
            ),
            (
                "users/{id}",
                r#"path pattern "users/{id}" must start with '/'"#,
            ),
            (
                "/a{id}",
                r#"segment "a{id}" in path pattern "/a{id}" must be a literal or a whole parameter like "{id}" or "{*rest}""#,
            ),
            (
                "/{id",
                r#"segment "{id" in path pattern "/{id" must be a literal or a whole parameter like "{id}" or "{*rest}""#,
            ),
            (
                "/{a-b}",
                r#"invalid parameter name "a-b" in path pattern "/{a-b}": expected letters, digits or '_'"#,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(pattern_err(p), want, "pattern {p:?}");
        }
    }

    #[test]
    fn exact_and_prefix_need_a_leading_slash() {
        assert_eq!(
            PathMatcher::compile(&PathSpec::Exact("healthz".into())).unwrap_err(),
            r#"exact path "healthz" must start with '/'"#
        );
        assert_eq!(
            PathMatcher::compile(&PathSpec::Prefix(String::new())).unwrap_err(),
            r#"path prefix "" must start with '/'"#
        );
    }
}
