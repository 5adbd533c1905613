//! Compiles `[middlewares.NAME]` definitions (the policy middlewares,
//! `ip_filter`, `request_limits`, `cors`, `basic_auth`, `api_key`, `jwt`,
//! `forward_auth`, `compress`, `rate_limit` and `connection_limit`, with
//! `policies`, `auth`, `jwt`, `forward_auth`, `compress` and `limits`),
//! access logs (their outputs opened
//! through the `SinkOpener`) and the `server.access_log` fallback, and looks
//! middlewares up by name. Putting them into route chains is left to `routes`.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::limits::{self, RawConns, RawRate};
use super::policies::{self, RawCors, RawLimits};
use super::{auth, compress, forward_auth, jwt, span, Compiler, Defined};
use crate::config::intern;
use crate::config::parse::{header_names, header_pairs};
use crate::config::raw::{RawMiddleware, RawServer};
use crate::config::snapshot::{PolicyNames, ServerSettings};
use crate::middleware::{
    AccessLog, HeaderOps, HttpsRedirect, LogFormat, Middleware, RequestId, Rewrite, StripPrefix,
};

impl Compiler<'_, '_> {
    /// The definitions by name, and the policy middlewares among them (name
    /// and type), indexed as their instances count refusals.
    pub(super) fn middlewares(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawMiddleware>>,
        server: &ServerSettings,
    ) -> (HashMap<String, Defined>, PolicyNames) {
        let mut out = HashMap::new();
        let mut policies = Vec::new();
        for (name, def) in raw {
            // At most one per definition, so never near the bound.
            let policy = u16::try_from(policies.len()).unwrap_or(u16::MAX);
            let built = match def.get_ref() {
                RawMiddleware::IpFilter { allow, deny } => {
                    policies::ip_filter(allow, deny, &server.trusted_proxies, policy)
                }
                RawMiddleware::RequestLimits {
                    max_body,
                    methods,
                    max_header_count,
                    max_header_bytes,
                    max_url_length,
                } => policies::request_limits(
                    RawLimits {
                        max_body,
                        methods,
                        max_header_count: *max_header_count,
                        max_header_bytes: *max_header_bytes,
                        max_url_length: *max_url_length,
                    },
                    policy,
                ),
                RawMiddleware::Cors {
                    allow_origins,
                    allow_methods,
                    allow_headers,
                    expose_headers,
                    allow_credentials,
                    max_age,
                } => policies::cors(
                    RawCors {
                        allow_origins,
                        allow_methods,
                        allow_headers,
                        expose_headers,
                        allow_credentials: allow_credentials.unwrap_or(false),
                        max_age,
                    },
                    policy,
                ),
                raw @ (RawMiddleware::BasicAuth { .. } | RawMiddleware::ApiKey { .. }) => {
                    auth::compile(raw, policy)
                }
                raw @ RawMiddleware::Jwt { .. } => jwt::compile(raw, policy),
                raw @ RawMiddleware::Compress { .. } => compress::compile(raw),
                raw @ RawMiddleware::ForwardAuth { .. } => {
                    forward_auth::compile(raw, &server.trusted_proxies, policy)
                }
                RawMiddleware::RateLimit {
                    rate,
                    burst,
                    delay,
                    key,
                    max_keys,
                    status,
                } => limits::rate_limit(
                    name.get_ref(),
                    RawRate {
                        rate,
                        burst: *burst,
                        delay: *delay,
                        key,
                        max_keys: *max_keys,
                        status: *status,
                    },
                    &server.trusted_proxies,
                    self.limits,
                    policy,
                ),
                RawMiddleware::ConnectionLimit {
                    max,
                    key,
                    max_keys,
                    status,
                } => limits::connection_limit(
                    name.get_ref(),
                    RawConns {
                        max: *max,
                        key,
                        max_keys: *max_keys,
                        status: *status,
                    },
                    &server.trusted_proxies,
                    self.limits,
                    &mut self.conn_tables,
                    policy,
                ),
                other => self.middleware(name.get_ref(), other),
            };
            let built = match built {
                Ok(m) => {
                    let kind = match &m {
                        Middleware::IpFilter(_) => Some("ip_filter"),
                        Middleware::RequestLimits(_) => Some("request_limits"),
                        Middleware::Cors(_) => Some("cors"),
                        Middleware::BasicAuth(_) => Some("basic_auth"),
                        Middleware::ApiKey(_) => Some("api_key"),
                        Middleware::Jwt(_) => Some("jwt"),
                        Middleware::ForwardAuth(_) => Some("forward_auth"),
                        Middleware::RateLimit(_) => Some("rate_limit"),
                        Middleware::ConnectionLimit(_) => Some("connection_limit"),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        policies.push((name.get_ref().as_str().into(), kind));
                    }
                    Defined::Ready(m)
                }
                Err(msg) => {
                    self.d
                        .at(span(def), format!("middleware {:?}: {msg}", name.get_ref()));
                    Defined::Broken
                }
            };
            out.insert(name.get_ref().clone(), built);
        }
        (out, policies)
    }

    fn middleware(&mut self, _name: &str, raw: &RawMiddleware) -> Result<Middleware, String> {
        Ok(match raw {
            RawMiddleware::RequestId {
                header,
                response,
                trust_incoming,
            } => {
                let header_text = header.as_deref().unwrap_or("x-request-id");
                let header = intern::header_name(header_text)
                    .ok_or_else(|| format!("invalid header name {header_text:?}: expected a token such as \"x-request-id\""))?;
                Middleware::RequestId(RequestId {
                    header,
                    response: response.unwrap_or(true),
                    trust_incoming: trust_incoming.unwrap_or(true),
                })
            }
            RawMiddleware::Headers {
                request_set,
                request_append,
                request_remove,
                response_set,
                response_append,
                response_remove,
            } => {
                let mut ops = HeaderOps {
                    request: Default::default(),
                    response: Default::default(),
                };
                ops.request.set = header_pairs(request_set)?;
                ops.request.append = header_pairs(request_append)?;
                ops.request.remove = header_names(request_remove)?;
                ops.response.set = header_pairs(response_set)?;
                ops.response.append = header_pairs(response_append)?;
                ops.response.remove = header_names(response_remove)?;
                Middleware::Headers(ops)
            }
            RawMiddleware::StripPrefix { prefix } => {
                if !prefix.starts_with('/')
                    || (prefix.len() > 1 && prefix.ends_with('/'))
                    || prefix == "/"
                {
                    return Err(format!(
                        "strip_prefix prefix {prefix:?} is invalid: expected a path starting with '/' and not ending with '/', e.g. \"/api\""
                    ));
                }
                Middleware::StripPrefix(StripPrefix {
                    prefix: prefix.as_str().into(),
                })
            }
            RawMiddleware::Rewrite { path } => {
                if !path.starts_with('/') {
                    return Err(format!("rewrite path {path:?} must start with '/'"));
                }
                Middleware::Rewrite(Rewrite::parse(path)?)
            }
            RawMiddleware::AccessLog { format, output } => {
                self.access_log(format.as_deref(), output.as_deref())?
            }
            RawMiddleware::HttpsRedirect { port, status } => {
                let port = port.unwrap_or(443);
                let port = u16::try_from(port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        format!("https_redirect port = {port} is out of range: expected 1 to 65535")
                    })?;
                let status = status.unwrap_or(301);
                if ![301, 302, 307, 308].contains(&status) {
                    return Err(format!(
                        "https_redirect status = {status} is not a redirect status: expected 301, 302, 307 or 308"
                    ));
                }
                Middleware::HttpsRedirect(HttpsRedirect::new(port, status as u16))
            }
            // Compiled by `middlewares` (they need the server's settings
            // and a policy index); never a built-in.
            RawMiddleware::IpFilter { .. }
            | RawMiddleware::RequestLimits { .. }
            | RawMiddleware::Cors { .. }
            | RawMiddleware::BasicAuth { .. }
            | RawMiddleware::ApiKey { .. }
            | RawMiddleware::Jwt { .. }
            | RawMiddleware::ForwardAuth { .. }
            | RawMiddleware::Compress { .. }
            | RawMiddleware::RateLimit { .. }
            | RawMiddleware::ConnectionLimit { .. } => {
                return Err("a policy middleware must be defined under [middlewares]".into())
            }
            RawMiddleware::Custom { name, settings } => {
                let factory = self.registry.get(name).ok_or_else(|| {
                    let known = self.registry.names();
                    if known.is_empty() {
                        format!("custom middleware {name:?} is not registered (no custom middlewares are registered in this build)")
                    } else {
                        format!("custom middleware {name:?} is not registered: expected one of {known:?}")
                    }
                })?;
                Middleware::Custom(factory.build(settings)?)
            }
        })
    }

    fn access_log(
        &mut self,
        format: Option<&str>,
        output: Option<&str>,
    ) -> Result<Middleware, String> {
        let format = match format.unwrap_or("combined") {
            "combined" => LogFormat::Combined,
            "json" => LogFormat::Json,
            other => {
                return Err(format!(
                    "unknown access log format {other:?}: expected \"combined\" or \"json\""
                ))
            }
        };
        let output = output.unwrap_or("stdout");
        if output.is_empty() {
            return Err(
                "access log output is empty: expected \"stdout\", \"stderr\" or a file path".into(),
            );
        }
        let sink = self.sinks.open(output)?;
        Ok(Middleware::AccessLog(AccessLog { format, sink }))
    }

    /// A middleware by name: a definition, or a built-in used with its defaults.
    pub(super) fn lookup(
        &mut self,
        name: &str,
        defined: &HashMap<String, Defined>,
    ) -> Result<Option<Middleware>, String> {
        match defined.get(name) {
            Some(Defined::Ready(m)) => Ok(Some(m.clone())),
            Some(Defined::Broken) => Ok(None),
            None => match name {
                "request_id" => self
                    .middleware(
                        name,
                        &RawMiddleware::RequestId {
                            header: None,
                            response: None,
                            trust_incoming: None,
                        },
                    )
                    .map(Some),
                "access_log" => self.access_log(None, None).map(Some),
                _ => {
                    let mut known: Vec<&str> = defined.keys().map(String::as_str).collect();
                    known.extend(["request_id", "access_log"]);
                    known.sort_unstable();
                    known.dedup();
                    Err(format!("unknown middleware {name:?}: expected one of {known:?} (define it under [middlewares.{name}])"))
                }
            },
        }
    }

    pub(super) fn fallback_log(
        &mut self,
        raw: &RawServer,
        defined: &HashMap<String, Defined>,
    ) -> Option<AccessLog> {
        let name = raw.access_log.as_ref()?;
        match self.lookup(name.get_ref(), defined) {
            Ok(Some(Middleware::AccessLog(log))) => Some(log),
            Ok(Some(_)) => {
                self.d.at(
                    span(name),
                    format!(
                        "server.access_log = {:?} is not an access_log middleware",
                        name.get_ref()
                    ),
                );
                None
            }
            Ok(None) => None,
            Err(msg) => {
                self.d.at(span(name), format!("server.access_log: {msg}"));
                None
            }
        }
    }
}
