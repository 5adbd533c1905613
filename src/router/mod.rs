//! The route table: compiled once per configuration from [`RouteSpec`]s, immutable
//! afterwards, and read lock-free by worker threads to pick the route for each request.
//!
//! # Precedence
//!
//! The most specific matching route wins; ties go to the route earlier in the file.
//!
//! 1. Host: an exact host beats a wildcard host, a longer wildcard suffix beats a shorter
//!    one (`*.a.example.com` before `*.example.com`), and any wildcard beats a route with
//!    no host condition. When no route of the best host class matches on its other
//!    conditions, the next class is tried, so an exact-host route for `/admin` does not
//!    hide a host-less catch-all for other paths.
//! 2. Path: exact > pattern (more literal segments first, then more segments, a trailing
//!    `{*rest}` counting as a segment) > regex > prefix (longer prefix first) > no path
//!    condition. The forms that must match the whole path (exact, pattern, regex) beat the
//!    one that matches a start of it (prefix), so a `/` catch-all never hides a regex
//!    route; a regex says nothing measurable about its specificity, so it comes after the
//!    literal whole-path forms, and two regexes rank by the rules below.
//! 3. A route with a method condition beats one without; then more header, query and
//!    cookie conditions (counted together) beat fewer.
//! 4. Earlier in the file wins.
//!
//! Matching uses the raw path as received (no percent-decoding, no query). A regex must
//! match the whole path, as if written `\A(?:...)\z`. Hosts match case-insensitively
//! after dropping the port and one trailing dot. Header `Equals` holds when any value of
//! that header equals the given value byte for byte. Query and cookie conditions are
//! described in `pairs.rs`: query parameters compare percent-decoded, cookies as sent;
//! `Equals` holds when any parameter or cookie of that name has that value.

mod host;
mod pairs;
mod path_regex;
mod pattern;

use std::cmp::Reverse;
use std::collections::HashMap;

use bumpalo::collections::Vec as BumpVec;
use http::{HeaderName, HeaderValue, Method};

use crate::context::Headers;
use host::{HostMatcher, MAX_HOST_LEN};
use pairs::PairMatcher;
use pattern::PathMatcher;

/// One configured route; its position in the list given to [`Router::build`] is its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `None` matches any host; `"api.example.com"` matches exactly (case-insensitive);
    /// `"*.example.com"` matches any subdomain at any depth but not `example.com` itself.
    pub host: Option<String>,
    /// The path condition.
    pub path: PathSpec,
    /// Empty matches any method.
    pub methods: Vec<Method>,
    /// All must hold.
    pub headers: Vec<HeaderCond>,
    /// Query-parameter conditions; all must hold.
    pub query: Vec<PairCond>,
    /// Cookie conditions; all must hold.
    pub cookies: Vec<PairCond>,
}

/// The path condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSpec {
    /// No path condition.
    Any,
    /// The whole path, e.g. `"/healthz"`.
    Exact(String),
    /// A prefix ending on a segment boundary: `"/api"` matches `/api`, `/api/` and
    /// `/api/x` but not `/apix`; `"/api/"` matches `/api/` and `/api/x`; `"/"` matches
    /// every path.
    Prefix(String),
    /// Segments compared literally, `{name}` capturing exactly one non-empty segment and a
    /// trailing `{*name}` capturing the remainder (possibly empty, possibly with `/`), e.g.
    /// `"/users/{id}/files/{*rest}"`. `"/files/{*rest}"` also matches `/files` with an empty
    /// `rest`; a path with a trailing slash has an extra, empty segment.
    Pattern(String),
    /// A regular expression (the `regex` crate's syntax) that must match the whole path,
    /// e.g. `"/v[0-9]+/items/(?P<id>[0-9]+)"`; named groups capture parameters like a
    /// pattern's `{id}`, a group that took no part capturing `""`.
    Regex(String),
}

impl PathSpec {
    /// The parameters a match captures, in order: a pattern's `{name}`s, a regex's named
    /// groups. An invalid spec has none (building the router reports it).
    pub fn param_names(&self) -> Vec<String> {
        match self {
            PathSpec::Pattern(p) => p
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(|n| n.trim_start_matches('*').to_string())
                .collect(),
            PathSpec::Regex(r) => path_regex::param_names(r),
            PathSpec::Any | PathSpec::Exact(_) | PathSpec::Prefix(_) => Vec::new(),
        }
    }
}

/// A header condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCond {
    /// Holds when the header is present, whatever its value.
    Present(HeaderName),
    /// Holds when any value of the header equals this one byte for byte.
    Equals(HeaderName, HeaderValue),
}

/// A query-parameter or cookie condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairCond {
    /// Holds when a parameter (cookie) of this name is present, whatever its value.
    Present(String),
    /// Holds when a parameter (cookie) of this name has this value.
    Equals(String, String),
}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'p, 'h> {
    /// The request method.
    pub method: &'p Method,
    /// As received: may carry a port, any case, or a trailing dot.
    pub host: Option<&'p str>,
    /// The raw path without the query.
    pub path: &'p str,
    /// The raw query as received, without `?` (for query conditions).
    pub query: Option<&'p str>,
    /// The request headers (for header and cookie conditions).
    pub headers: &'h Headers<'h>,
}

/// The compiled, immutable route table.
#[derive(Debug)]
pub struct Router {
    /// Indexed by route id.
    routes: Vec<Route>,
    /// Keyed by lowercase host; each list is sorted most specific first, as are the others.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Keyed by lowercase suffix with its leading dot, longest suffix first.
    wildcard: Vec<(Box<str>, Vec<usize>)>,
    any_host: Vec<usize>,
}

#[derive(Debug)]
struct Route {
    path: PathMatcher,
    methods: Box<[Method]>,
    headers: Box<[HeaderCond]>,
    query: Box<[PairMatcher]>,
    cookies: Box<[PairMatcher]>,
}

impl Route {
    /// Sort key for precedence within a host class: a higher key is more specific.
    fn specificity(&self) -> ((u8, usize, usize), bool, usize) {
        (
            self.path.specificity(),
            !self.methods.is_empty(),
            self.headers.len() + self.query.len() + self.cookies.len(),
        )
    }

    /// Everything but the path; empty condition lists cost one length check each.
    fn matches_conditions(&self, input: &RouteInput<'_, '_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(input.method))
            && self.headers.iter().all(|cond| match cond {
                HeaderCond::Present(name) => input.headers.contains(name),
                HeaderCond::Equals(name, value) => {
                    input.headers.get_all(name).any(|v| v == value.as_bytes())
                }
            })
            && self.query.iter().all(|cond| cond.query_holds(input.query))
            && self
                .cookies
                .iter()
                .all(|cond| cond.cookie_holds(input.headers))
    }
}

impl Router {
    /// Compiles the table, or returns every invalid spec as (route index, message).
    pub fn build(specs: Vec<RouteSpec>) -> Result<Router, Vec<(usize, String)>> {
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(specs.len());
        let mut hosts = Vec::with_capacity(specs.len());
        for (id, spec) in specs.into_iter().enumerate() {
            let host = HostMatcher::compile(spec.host.as_deref())
                .map_err(|e| errors.push((id, e)))
                .ok();
            let path = PathMatcher::compile(&spec.path)
                .map_err(|e| errors.push((id, e)))
                .ok();
            let mut pairs = |conds: &[PairCond], compile: fn(&PairCond) -> Result<_, _>| {
                let mut ok = Vec::with_capacity(conds.len());
                for cond in conds {
                    match compile(cond) {
                        Ok(m) => ok.push(m),
                        Err(e) => errors.push((id, e)),
                    }
                }
                ok.into_boxed_slice()
            };
            let query = pairs(&spec.query, PairMatcher::query);
            let cookies = pairs(&spec.cookies, PairMatcher::cookie);
            if let (Some(host), Some(path)) = (host, path) {
                hosts.push(host);
                routes.push(Route {
                    path,
                    methods: spec.methods.into(),
                    headers: spec.headers.into(),
                    query,
                    cookies,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // One cache table per router: each worker's caches for the old router go
        // together when the new one is in use.
        let table = path_regex::new_table();
        let regexes = routes.iter_mut().filter_map(|r| match &mut r.path {
            PathMatcher::Regex(re) => Some(re),
            _ => None,
        });
        for (index, re) in regexes.enumerate() {
            re.place(table, index);
        }

        // A stable sort on descending specificity keeps file order among equals.
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&id| Reverse(routes[id].specificity()));

        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard: Vec<(Box<str>, Vec<usize>)> = Vec::new();
        let mut any_host = Vec::new();
        for id in order {
            match &hosts[id] {
                HostMatcher::Any => any_host.push(id),
                HostMatcher::Exact(h) => exact.entry(h.clone()).or_default().push(id),
                HostMatcher::Wildcard(suffix) => {
                    match wildcard.iter_mut().find(|(s, _)| s == suffix) {
                        Some((_, list)) => list.push(id),
                        None => wildcard.push((suffix.clone(), vec![id])),
                    }
                }
            }
        }
        wildcard.sort_by_key(|(suffix, _)| Reverse(suffix.len()));

        Ok(Router {
            routes,
            exact,
            wildcard,
            any_host,
        })
    }

    /// Finds the most specific matching route. On success `params` holds the captures of
    /// its path pattern as (name, value) in pattern order; otherwise it is left empty.
    pub fn find<'r, 'p>(
        &'r self,
        input: &RouteInput<'p, '_>,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> Option<usize> {
        params.clear();
        let mut buf = [0u8; MAX_HOST_LEN];
        if let Some(host) = input.host.and_then(|h| host::normalize(h, &mut buf)) {
            if let Some(id) = self
                .exact
                .get(host)
                .and_then(|list| self.first_match(list, input, params))
            {
                return Some(id);
            }
            for (suffix, list) in &self.wildcard {
                if host::wildcard_matches(host, suffix) {
                    if let Some(id) = self.first_match(list, input, params) {
                        return Some(id);
                    }
                }
            }
        }
        self.first_match(&self.any_host, input, params)
    }

    fn first_match<'r, 'p>(
        &'r self,
        candidates: &[usize],
        input: &RouteInput<'p, '_>,
        params: &mut BumpVec<'_, (&'r str, &'p str)>,
    ) -> Option<usize> {
        for &id in candidates {
            let route = &self.routes[id];
            // Cheap checks first so the path only captures for viable candidates.
            if !route.matches_conditions(input) {
                continue;
            }
            if route.path.matches(input.path, params) {
                return Some(id);
            }
            params.clear();
        }
        None
    }

    /// Whether a query condition can be built, with the message [`Router::build`] gives.
    pub fn check_query(cond: &PairCond) -> Result<(), String> {
        PairMatcher::query(cond).map(drop)
    }

    /// Whether a cookie condition can be built, with the message [`Router::build`] gives.
    pub fn check_cookie(cond: &PairCond) -> Result<(), String> {
        PairMatcher::cookie(cond).map(drop)
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod match_tests;
#[cfg(test)]
mod tests;
