//! JSON Web Tokens (`type = "jwt"`, RFC 7519, bearer use RFC 6750): the
//! token from `Authorization: Bearer`, a cookie or a query parameter,
//! its signature checked with the configured keys (`keys.rs`: a JWKS file
//! or URL, PEM public keys, an HMAC secret), its `exp`, `nbf`, `iss`,
//! `aud` and required claims checked, then its subject made the request's
//! consumer and chosen claims copied into upstream headers. Verification
//! runs on the worker's loop (tens of microseconds for RSA and ECDSA);
//! a worker remembers the tokens it verified (`cache.rs`), so a client
//! that sends one token many times pays for one check.

mod cache;
mod keys;
mod token;

use std::sync::Arc;

use http::{header, HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, Validation};

use super::consumer::refuse;
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

pub(crate) use keys::ALL as ALL_ALGORITHMS;
pub(crate) use keys::{algorithm, algorithm_name, parse_jwks, parse_pem, Key, KeySet, RemoteKeys};

/// The most claims a token leaves as `claim:NAME` variables.
const MAX_VARS: usize = 16;

const UNAUTHORIZED: &str = "401 Unauthorized: this route needs a valid bearer token\n";

/// Where a token may be read, in this order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `Authorization: Bearer <token>`.
    pub(crate) header: bool,
    pub(crate) cookie: Option<Box<str>>,
    pub(crate) query: Option<Box<str>>,
}

/// What a `jwt` definition compiles to.
pub(crate) struct Settings {
    /// Keys given at load: a JWKS file, PEM files, a secret.
    pub(crate) local: KeySet,
    /// Keys fetched by the control plane.
    pub(crate) remote: Option<Arc<RemoteKeys>>,
    /// For the admin API: the files the keys came from, and whether a
    /// secret was given (never shown).
    pub(crate) key_files: Vec<Box<str>>,
    pub(crate) has_secret: bool,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuers: Vec<Box<str>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) leeway: u64,
    /// Registered claims beyond `exp` (always required unless
    /// `require_exp = false`) and custom ones: present and not null.
    pub(crate) required_claims: Vec<Box<str>>,
    pub(crate) require_exp: bool,
    pub(crate) sources: Sources,
    pub(crate) consumer_claim: Option<Box<str>>,
    /// Claim → upstream header.
    pub(crate) claims_to_headers: Vec<(Box<str>, HeaderName)>,
    pub(crate) forward_credentials: bool,
    pub(crate) realm: Box<str>,
}

/// `type = "jwt"`. Cloned into every route that lists it.
#[derive(Clone)]
pub(crate) struct Jwt {
    shared: Arc<Shared>,
    /// Its index in the snapshot's policies (where refusals count).
    policy: u16,
}

struct Shared {
    settings: Settings,
    /// One validation per key family (`jsonwebtoken` checks that every
    /// algorithm of a validation fits the key): `[RSA, EC, Ed, HMAC]`.
    validations: [Validation; 4],
    /// `Bearer realm="…"` and the same with each refusal's `error`.
    challenges: Challenges,
    /// Tells this instance's entries in a worker's cache from another's.
    instance: u64,
}

struct Challenges {
    missing: HeaderValue,
    invalid: Vec<(Refusal, HeaderValue)>,
}

/// The family index of `validations`.
fn family(a: Algorithm) -> usize {
    match a {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => 0,
        Algorithm::ES256 | Algorithm::ES384 => 1,
        Algorithm::EdDSA => 2,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => 3,
    }
}

/// What each refusal tells the client (RFC 6750 §3: `error_description`
/// is for the developer, so it says what was wrong, never a claim's value).
const INVALID: [(Refusal, &str); 9] = [
    (Refusal::JwtMalformed, "the token is not a well-formed JWT"),
    (
        Refusal::JwtAlgorithm,
        "the token's algorithm is not accepted",
    ),
    (Refusal::JwtUnknownKid, "the token's key is not known"),
    (Refusal::JwtSignature, "the token's signature is not valid"),
    (Refusal::JwtExpired, "the token has expired"),
    (Refusal::JwtNotYetValid, "the token is not valid yet"),
    (Refusal::JwtIssuer, "the token's issuer is not accepted"),
    (Refusal::JwtAudience, "the token's audience is not accepted"),
    (Refusal::JwtClaim, "the token lacks a required claim"),
];

impl Jwt {
    pub(crate) fn new(settings: Settings, policy: u16) -> Result<Self, String> {
        let instance = cache::Generation::fresh();
        let validation = |family_of: usize| {
            let mut v = Validation::new(Algorithm::RS256);
            v.algorithms = settings
                .algorithms
                .iter()
                .copied()
                .filter(|a| family(*a) == family_of)
                .collect();
            v.leeway = settings.leeway;
            // An `exp` a token has is always checked; `require_exp` says
            // whether it must have one.
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required: Vec<&str> = Vec::new();
            if settings.require_exp {
                required.push("exp");
            }
            if settings.issuers.is_empty() {
                v.iss = None;
            } else {
                v.set_issuer(&settings.issuers);
                required.push("iss");
            }
            if settings.audiences.is_empty() {
                // A token naming an audience is not refused for it when the
                // route names none (the check is then the issuer's).
                v.validate_aud = false;
            } else {
                v.set_audience(&settings.audiences);
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            v
        };
        let challenge = |error: Option<&str>| {
            let text = match error {
                None => format!("Bearer realm=\"{}\"", settings.realm),
                Some(why) => format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{why}\"",
                    settings.realm
                ),
            };
            HeaderValue::from_str(&text).map_err(|_| format!("{text:?} cannot be a header value"))
        };
        let challenges = Challenges {
            missing: challenge(None)?,
            invalid: INVALID
                .iter()
                .map(|(r, why)| Ok((*r, challenge(Some(why))?)))
                .collect::<Result<_, String>>()?,
        };
        Ok(Jwt {
            shared: Arc::new(Shared {
                validations: [validation(0), validation(1), validation(2), validation(3)],
                challenges,
                settings,
                instance,
            }),
            policy,
        })
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub(crate) fn on_request<'a>(
        &self,
        ctx: &mut RequestContext<'a>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        let s = &self.shared.settings;
        let Some(found) = token::find(ctx, req, &s.sources) else {
            return self.refused(ctx, Refusal::JwtMissing);
        };
        let instance = self.shared.instance;
        let generation = self.generation();
        let key = cache::key(instance, found.token);
        let verified = match cache::lookup(&key, generation) {
            Some(v) => v,
            None => match self.verify(found.token) {
                Ok(v) => cache::store(key, generation, s.leeway, v),
                Err(reason) => return self.refused(ctx, reason),
            },
        };
        if !s.forward_credentials {
            token::remove(ctx, req, &found, &s.sources);
        }
        for (_, name) in &s.claims_to_headers {
            // The client's own field of that name never passes.
            req.headers.remove(name);
        }
        for (i, value) in verified.headers.iter().enumerate() {
            if let Some(value) = value {
                req.headers.insert(&s.claims_to_headers[i].1, value);
            }
        }
        if let Some(consumer) = verified.consumer.as_deref() {
            ctx.consumer = Some(ctx.alloc_str(consumer));
        }
        for (name, value) in &verified.vars {
            let (name, value) = (ctx.alloc_str(name), ctx.alloc_str(value));
            ctx.set_var(name, value);
        }
        Flow::Continue
    }

    /// What the cache entries of this instance are valid for: the fetched
    /// set they were verified with (a rotation drops them).
    fn generation(&self) -> cache::Generation {
        match &self.shared.settings.remote {
            Some(r) => cache::Generation::of(&r.keys.load()),
            None => cache::Generation::LOCAL,
        }
    }

    /// Checks `token`: which key, its signature, its claims.
    fn verify(&self, token: &str) -> Result<cache::Verified, Refusal> {
        let s = &self.shared.settings;
        let head = token::header(token)?;
        if !s.algorithms.contains(&head.alg) {
            return Err(Refusal::JwtAlgorithm);
        }
        let kid = head.kid.as_deref();
        let remote = s.remote.as_ref().map(|r| r.keys.load());
        let remote_keys = remote.as_deref().map(|set| set.candidates(kid, head.alg));
        let mut candidates = s
            .local
            .candidates(kid, head.alg)
            .chain(remote_keys.into_iter().flatten())
            .peekable();
        if candidates.peek().is_none() {
            let known = |set: &KeySet| kid.is_some_and(|k| set.has_kid(k));
            return Err(match (kid, &s.remote) {
                (Some(_), _)
                    if known(&s.local) || remote.as_deref().is_some_and(|set| known(set)) =>
                {
                    // The key exists, for another algorithm.
                    Refusal::JwtAlgorithm
                }
                (Some(_), Some(r)) => {
                    r.want_refresh();
                    Refusal::JwtUnknownKid
                }
                (Some(_), None) => Refusal::JwtUnknownKid,
                (None, _) => Refusal::JwtAlgorithm,
            });
        }
        let validation = &self.shared.validations[family(head.alg)];
        let mut refusal = Refusal::JwtSignature;
        for key in candidates {
            match token::check(token, key, validation) {
                Ok(claims) => return self.claims(&claims),
                // A token without kid tried against several keys: a bad
                // signature under one says nothing; any other refusal
                // came from a key that verified it, and is the answer.
                Err(Refusal::JwtSignature) => {}
                Err(other) => {
                    refusal = other;
                    break;
                }
            }
        }
        Err(refusal)
    }

    /// The verified token's claims: the required ones present, the
    /// consumer and the header values taken out.
    fn claims(&self, claims: &token::Claims) -> Result<cache::Verified, Refusal> {
        let s = &self.shared.settings;
        let present = |name: &str| claims.get(name).is_some_and(|v| !v.is_null());
        if !s.required_claims.iter().all(|c| present(c)) {
            return Err(Refusal::JwtClaim);
        }
        let consumer = s
            .consumer_claim
            .as_deref()
            .and_then(|c| claims.get(c))
            .and_then(token::consumer_value);
        let headers = s
            .claims_to_headers
            .iter()
            .map(|(claim, _)| claims.get(&**claim).and_then(token::header_value))
            .collect();
        let vars = claims
            .iter()
            .filter_map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                (name.len() <= 64 && text.len() <= 256)
                    .then(|| (format!("claim:{name}").into(), text.into()))
            })
            .take(MAX_VARS)
            .collect();
        Ok(cache::Verified {
            consumer,
            headers,
            expires: claims.get("exp").and_then(|e| e.as_u64()),
            vars,
        })
    }

    fn refused(&self, ctx: &mut RequestContext<'_>, reason: Refusal) -> Flow {
        let status = StatusCode::UNAUTHORIZED;
        let mut flow = refuse(ctx, self.policy, reason, status, UNAUTHORIZED);
        if let Flow::Respond(resp) = &mut flow {
            let c = &self.shared.challenges;
            let challenge = c
                .invalid
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(&c.missing, |(_, v)| v);
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        flow
    }
}
