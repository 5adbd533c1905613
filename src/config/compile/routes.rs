//! Compiles `[[routes]]`: match conditions, middleware chains, retry policies,
//! upgrades and timeouts, then builds the router. Middleware definitions are left
//! to `middlewares`, path-pattern syntax to the router.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::{span, Compiler, Defined, DEFAULT_TUNNEL_IDLE_TIMEOUT};
use crate::config::intern;
use crate::config::parse::is_token;
use crate::config::raw::{RawHeaderMatch, RawMatch, RawRetry, RawRoute};
use crate::config::snapshot::Route;
use crate::config::snapshot::{
    RetryPolicy, CONDITIONS, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX,
    DEFAULT_REPLAY_LIMIT,
};
use crate::router::{HeaderCond, PairCond, PathSpec, RouteSpec, Router};

impl Compiler<'_, '_> {
    pub(super) fn routes(
        &mut self,
        raw: &[Spanned<RawRoute>],
        upstream_ids: &HashMap<String, usize>,
        defined: &HashMap<String, Defined>,
    ) -> (Option<Router>, Vec<Route>) {
        if raw.is_empty() {
            self.d.global("no [[routes]]: every request would get 404; expected at least one route with an upstream");
        }
        let mut specs = Vec::new();
        let mut routes = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, spanned) in raw.iter().enumerate() {
            let r = spanned.get_ref();
            let name = r
                .name
                .as_ref()
                .map_or_else(|| format!("route-{}", i + 1), |n| n.get_ref().clone());
            if let Some(prev) = names.insert(name.clone(), i) {
                let at = r.name.as_ref().map_or_else(|| span(spanned), span);
                self.d.at(
                    at,
                    format!("duplicate route name {name:?} (also route {})", prev + 1),
                );
            }
            let (spec, params) = self.route_match(&name, r.matcher.as_ref());
            let upstream = match upstream_ids.get(r.upstream.get_ref()) {
                Some(&id) => id,
                None => {
                    let mut known: Vec<&str> = upstream_ids.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    self.d.at(
                        span(&r.upstream),
                        format!(
                            "route {name:?}: unknown upstream {:?}: expected one of {known:?}",
                            r.upstream.get_ref()
                        ),
                    );
                    usize::MAX
                }
            };
            let mut chain = Vec::new();
            let mut middleware_names = Vec::new();
            for m in &r.middlewares {
                match self.lookup(m.get_ref(), defined) {
                    Ok(Some(mw)) => {
                        if let Some(names) = mw.rewrite_params() {
                            for p in names {
                                if !params.iter().any(|q| q == p) {
                                    self.d.at(
                                        span(m),
                                        format!(
                                            "route {name:?}: middleware {:?} uses parameter {{{p}}} that the route's path_pattern or path_regex does not capture",
                                            m.get_ref()
                                        ),
                                    );
                                }
                            }
                        }
                        chain.push(mw);
                        middleware_names.push(m.get_ref().as_str().into());
                    }
                    Ok(None) => {}
                    Err(msg) => self.d.at(span(m), format!("route {name:?}: {msg}")),
                }
            }
            specs.push(spec.clone());
            let timeout = r.timeout.as_ref().map(|t| {
                self.duration(
                    &Some(t.clone()),
                    Duration::ZERO,
                    &format!("route {name:?}: timeout"),
                )
            });
            let retry = r
                .retry
                .as_ref()
                .map(|raw| Box::new(self.retry(&name, raw.get_ref())));
            let upgrades = self.upgrades(&name, r.upgrades.as_deref());
            let tunnel_idle_timeout = self.duration(
                &r.tunnel_idle_timeout,
                DEFAULT_TUNNEL_IDLE_TIMEOUT,
                &format!("route {name:?}: tunnel_idle_timeout"),
            );
            routes.push(Route {
                name: name.into(),
                chain: chain.into(),
                upstream,
                timeout,
                retry,
                matcher: spec,
                middleware_names: middleware_names.into(),
                upgrades,
                tunnel_idle_timeout,
            });
        }
        let router = match Router::build(specs) {
            Ok(router) => Some(router),
            Err(errors) => {
                for (i, msg) in errors {
                    let r = &raw[i];
                    let at = r.get_ref().matcher.as_ref().map_or_else(|| span(r), span);
                    self.d.at(at, format!("route {:?}: {msg}", routes[i].name));
                }
                None
            }
        };
        (router, routes)
    }

    /// The route's match conditions, and the parameter names its pattern captures.
    fn route_match(
        &mut self,
        route: &str,
        m: Option<&Spanned<RawMatch>>,
    ) -> (RouteSpec, Vec<String>) {
        let mut spec = RouteSpec {
            host: None,
            path: PathSpec::Any,
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            cookies: Vec::new(),
        };
        let Some(m) = m else {
            return (spec, Vec::new());
        };
        let at = span(m);
        let m = m.get_ref();
        spec.host = m.host.as_ref().map(|h| h.get_ref().clone());
        let paths = [&m.path, &m.path_prefix, &m.path_pattern, &m.path_regex]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if paths > 1 {
            self.d.at(
                at.clone(),
                format!("route {route:?}: a route matches one path form: expected only one of path, path_prefix, path_pattern, path_regex"),
            );
        }
        if let Some(p) = &m.path {
            spec.path = PathSpec::Exact(p.get_ref().clone());
        } else if let Some(p) = &m.path_prefix {
            spec.path = PathSpec::Prefix(p.get_ref().clone());
        } else if let Some(p) = &m.path_pattern {
            spec.path = PathSpec::Pattern(p.get_ref().clone());
        } else if let Some(p) = &m.path_regex {
            spec.path = PathSpec::Regex(p.get_ref().clone());
        }
        let params = spec.path.param_names();
        for method in &m.methods {
            let upper = method.get_ref().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(mt) if !upper.is_empty() => spec.methods.push(mt),
                _ => self.d.at(
                    span(method),
                    format!(
                        "route {route:?}: invalid method {:?}: expected a token like \"GET\"",
                        method.get_ref()
                    ),
                ),
            }
        }
        for h in &m.headers {
            let raw = h.get_ref();
            let Some(name) = intern::header_name(&raw.name) else {
                self.d.at(
                    span(h),
                    format!(
                        "invalid header name {:?}: expected a token such as \"x-canary\"",
                        raw.name
                    ),
                );
                continue;
            };
            match &raw.value {
                None => spec.headers.push(HeaderCond::Present(name)),
                Some(value) => match intern::header_value(value) {
                    Some(v) => spec.headers.push(HeaderCond::Equals(name, v)),
                    None => self.d.at(
                        span(h),
                        format!("invalid value {value:?} for header {:?}", raw.name),
                    ),
                },
            }
        }
        spec.query = self.pairs(route, &m.query, Router::check_query);
        spec.cookies = self.pairs(route, &m.cookies, Router::check_cookie);
        (spec, params)
    }

    /// `query = [...]` or `cookies = [...]` of a match: the names and values are
    /// checked by the router (its messages, prefixed with the route); here they only
    /// get their own locations.
    fn pairs(
        &mut self,
        route: &str,
        raw: &[Spanned<RawHeaderMatch>],
        check: fn(&PairCond) -> Result<(), String>,
    ) -> Vec<PairCond> {
        let mut out = Vec::with_capacity(raw.len());
        for entry in raw {
            let r = entry.get_ref();
            let cond = match &r.value {
                None => PairCond::Present(r.name.clone()),
                Some(v) => PairCond::Equals(r.name.clone(), v.clone()),
            };
            match check(&cond) {
                Ok(()) => out.push(cond),
                Err(msg) => self.d.at(span(entry), format!("route {route:?}: {msg}")),
            }
        }
        out
    }

    fn retry(&mut self, route: &str, r: &RawRetry) -> RetryPolicy {
        let what = |k: &str| format!("route {route:?}: retry.{k}");
        let mut policy = RetryPolicy {
            attempts: self.int_in(
                &r.attempts,
                i64::from(DEFAULT_ATTEMPTS),
                2..11,
                &what("attempts"),
            ) as u32,
            per_try_timeout: r
                .per_try_timeout
                .as_ref()
                .map(|t| self.duration(&Some(t.clone()), Duration::ZERO, &what("per_try_timeout"))),
            on_connect_failure: false,
            on_reset: false,
            on_timeout: false,
            on_statuses: Vec::new(),
            non_idempotent: r.non_idempotent.unwrap_or(false),
            replay_limit: self.int_in(
                &r.replay_limit,
                DEFAULT_REPLAY_LIMIT as i64,
                0..(16 << 20) + 1,
                &what("replay_limit"),
            ) as u64,
            backoff_base: self.duration(
                &r.backoff_base,
                DEFAULT_BACKOFF_BASE,
                &what("backoff_base"),
            ),
            backoff_max: self.duration(&r.backoff_max, DEFAULT_BACKOFF_MAX, &what("backoff_max")),
        };
        if r.on.is_empty() {
            policy.on_connect_failure = true;
            policy.on_reset = true;
            policy.on_statuses = vec![502, 503, 504];
        }
        for cond in &r.on {
            match cond.get_ref().as_str() {
                "connect_failure" => policy.on_connect_failure = true,
                "reset" => policy.on_reset = true,
                "timeout" => policy.on_timeout = true,
                other => match other.parse::<u16>() {
                    Ok(status) if (500..=599).contains(&status) => policy.on_statuses.push(status),
                    _ => self.d.at(
                        span(cond),
                        format!(
                            "{}: unknown condition {other:?}: expected one of {:?} or a 5xx status like \"503\"",
                            what("on"),
                            CONDITIONS
                        ),
                    ),
                },
            }
        }
        if policy.backoff_max < policy.backoff_base {
            if let Some(m) = &r.backoff_max {
                self.d.at(
                    span(m),
                    format!(
                        "{} ({:?}) is shorter than backoff_base ({:?})",
                        what("backoff_max"),
                        policy.backoff_max,
                        policy.backoff_base
                    ),
                );
            }
        }
        policy
    }

    /// `upgrades = [...]` of a route: protocol tokens (`name` or
    /// `name/version`, RFC 9110 §7.8), lowercased; absent: websocket only.
    fn upgrades(&mut self, route: &str, raw: Option<&[Spanned<String>]>) -> Box<[Box<str>]> {
        let Some(raw) = raw else {
            return Box::new(["websocket".into()]);
        };
        let mut out: Vec<Box<str>> = Vec::new();
        for p in raw {
            let text = p.get_ref();
            let valid = match text.split_once('/') {
                Some((name, version)) => is_token(name) && is_token(version),
                None => is_token(text),
            };
            if !valid {
                self.d.at(
                    span(p),
                    format!("route {route:?}: invalid upgrade protocol {text:?}: expected a token such as \"websocket\" (or name/version)"),
                );
                continue;
            }
            let lower: Box<str> = text.to_ascii_lowercase().into();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
        out.into()
    }
}
