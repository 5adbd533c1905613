//! Path rewriting: `strip_prefix` (borrows the rest of the path, no copy) and
//! `rewrite` (a template filled from the route's captured parameters, built in
//! the request's arena).

use bumpalo::collections::String as BumpString;

use crate::context::Flow;
use crate::context::RequestContext;

#[derive(Clone)]
/// `type = "strip_prefix"`: `/api/users` with prefix `/api` goes upstream as `/users`.
pub(crate) struct StripPrefix {
    /// Starts with `/`, has no trailing `/` (checked at load).
    pub(crate) prefix: Box<str>,
}

impl StripPrefix {
    pub(crate) fn on_request(&self, ctx: &mut RequestContext<'_>) -> Flow {
        if let Some(rest) = strip(ctx.upstream_path, &self.prefix) {
            ctx.upstream_path = rest;
        }
        Flow::Continue
    }
}

/// The path without `prefix` when `prefix` ends at a segment boundary.
fn strip<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// One piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(Box<str>),
    Param(Box<str>),
}

/// `type = "rewrite"`: `path = "/v2/users/{id}"`.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    pub(crate) pieces: Vec<Piece>,
}

impl Rewrite {
    /// Parses a template; `{name}` is a captured parameter (or `{*name}` for a
    /// catch-all). The caller has checked that it starts with `/`.
    pub(crate) fn parse(template: &str) -> Result<Rewrite, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| {
                        format!("unclosed '{{' in rewrite path {template:?}: expected {{name}}")
                    })?;
                    let name = rest[1..end].trim_start_matches('*');
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "invalid parameter {:?} in rewrite path {template:?}: expected letters, digits or '_'",
                            &rest[..=end]
                        ));
                    }
                    pieces.push(Piece::Param(name.into()));
                    rest = &rest[end + 1..];
                }
                Some(n) => {
                    pieces.push(Piece::Literal(rest[..n].into()));
                    rest = &rest[n..];
                }
                None => {
                    pieces.push(Piece::Literal(rest.into()));
                    rest = "";
                }
            }
        }
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Literal(l) if l.contains('}')))
        {
            return Err(format!("unmatched '}}' in rewrite path {template:?}"));
        }
        Ok(Rewrite { pieces })
    }

    /// The template as configured (`{*rest}` shows as `{rest}`: both fill
    /// in the same), for the admin API.
    pub(crate) fn template(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.to_string(),
                Piece::Param(n) => format!("{{{n}}}"),
            })
            .collect()
    }

    pub(crate) fn param_names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(&**n),
            Piece::Literal(_) => None,
        })
    }

    pub(crate) fn on_request(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let mut out = BumpString::with_capacity_in(64, ctx.arena());
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Param(n) => out.push_str(ctx.param(n).unwrap_or("")),
            }
        }
        ctx.upstream_path = out.into_bump_str();
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_respects_segments() {
        assert_eq!(strip("/api/users", "/api"), Some("/users"));
        assert_eq!(strip("/api", "/api"), Some("/"));
        assert_eq!(strip("/apix", "/api"), None);
        assert_eq!(strip("/other", "/api"), None);
    }

    #[test]
    fn templates_parse() {
        let r = Rewrite::parse("/v2/users/{id}/x").unwrap();
        assert_eq!(
            r.pieces,
            vec![
                Piece::Literal("/v2/users/".into()),
                Piece::Param("id".into()),
                Piece::Literal("/x".into())
            ]
        );
        assert_eq!(
            Rewrite::parse("/{*rest}")
                .unwrap()
                .param_names()
                .collect::<Vec<_>>(),
            ["rest"]
        );
        assert!(Rewrite::parse("/a/{id").unwrap_err().contains("unclosed"));
        assert!(Rewrite::parse("/a/{}")
            .unwrap_err()
            .contains("invalid parameter"));
        assert!(Rewrite::parse("/a/}").unwrap_err().contains("unmatched"));
    }
}
