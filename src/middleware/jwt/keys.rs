//! The keys a `jwt` middleware verifies with: read from a JWKS (a file at
//! load, or a URL the control plane fetches, `control/jwks.rs`), from PEM
//! public keys, or an HMAC secret. Each key verifies only the algorithms
//! of its own family (an RSA key never checks an `HS256` token: the
//! RSA-public-key-as-HMAC-secret confusion cannot happen), narrowed by the
//! JWK's own `alg` and by the configured `algorithms`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Notify;

/// Every algorithm a key of each family may verify.
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// The most keys a JWKS may hold (a larger one is refused): a token
/// without `kid` is tried against each key of its algorithm.
pub(crate) const MAX_KEYS: usize = 64;

/// The algorithm names, as a JWT header writes them.
pub(crate) fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// The algorithm a name stands for (case-sensitive, as in a JWT header).
pub(crate) fn algorithm(name: &str) -> Option<Algorithm> {
    ALL.iter().copied().find(|a| algorithm_name(*a) == name)
}

/// Every algorithm supported.
pub(crate) const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// One verification key.
pub(crate) struct Key {
    /// The JWK's `kid`; PEM keys and secrets have none.
    pub(crate) kid: Option<Box<str>>,
    pub(crate) key: DecodingKey,
    /// What it verifies: one family, never empty.
    pub(crate) algorithms: Vec<Algorithm>,
}

/// The keys of one source, immutable once built.
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Key>,
    /// Tells this set from every other (a worker's verified tokens are
    /// remembered for one set only, `cache.rs`).
    pub(crate) generation: u64,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet::new(Vec::new())
    }
}

impl KeySet {
    pub(crate) fn new(keys: Vec<Key>) -> KeySet {
        KeySet {
            keys,
            generation: super::cache::Generation::fresh(),
        }
    }

    /// The keys a token with this header may be checked with: the one of
    /// its `kid` (when it has one), each of its algorithm otherwise.
    pub(crate) fn candidates<'k>(
        &'k self,
        kid: Option<&'k str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'k Key> + 'k {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The kids, for the admin API and the log.
    pub(crate) fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }
}

/// The algorithms a JWK may verify (its family's, or its own `alg`),
/// within `allowed`; an error names why the key cannot be used.
fn jwk_algorithms(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Vec<Algorithm>, String> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref other => {
                return Err(format!(
                    "its curve {other:?} is not supported (P-256, P-384)"
                ))
            }
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            ref other => return Err(format!("its curve {other:?} is not supported (Ed25519)")),
        },
        AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
    };
    let family = match jwk.common.key_algorithm {
        None => family,
        Some(a) => match algorithm(&a.to_string()) {
            Some(own) if family.contains(&own) => vec![own],
            _ => return Err(format!("its alg {a} does not fit its key type")),
        },
    };
    let usable: Vec<Algorithm> = family.into_iter().filter(|a| allowed.contains(a)).collect();
    if usable.is_empty() {
        return Err("it verifies none of the allowed algorithms".into());
    }
    Ok(usable)
}

/// A JWKS document's keys. `strict`: any key that cannot be used is an
/// error (a file, checked at load); otherwise such keys are left out and
/// named in the second value (a fetched set: an identity provider's set
/// may hold keys for other uses). Encryption keys (`use: enc`) are always
/// left out; keys without a `kid` are kept.
pub(crate) fn parse_jwks(
    text: &[u8],
    allowed: &[Algorithm],
    strict: bool,
) -> Result<(KeySet, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(text)
        .map_err(|e| format!("is not a JWKS (a JSON object with a \"keys\" array): {e}"))?;
    if doc.keys.len() > MAX_KEYS {
        return Err(format!(
            "has {} keys: at most {MAX_KEYS} are taken",
            doc.keys.len()
        ));
    }
    let mut set = KeySet::new(Vec::new());
    let mut skipped = Vec::new();
    for (i, value) in doc.keys.into_iter().enumerate() {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let name = match &kid {
            Some(kid) => format!("key {i} (kid {kid:?})"),
            None => format!("key {i}"),
        };
        let key = members(&value)
            .map_err(|why| format!("{name} {why}"))
            .and_then(|()| {
                serde_json::from_value::<Jwk>(value)
                    .map_err(|e| format!("{name} is not a usable JWK: {e}"))
            })
            .and_then(|jwk| {
                if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                    return Ok(None);
                }
                let algorithms =
                    jwk_algorithms(&jwk, allowed).map_err(|why| format!("{name}: {why}"))?;
                let key = DecodingKey::from_jwk(&jwk)
                    .map_err(|e| format!("{name} is not a usable key: {e}"))?;
                Ok(Some(Key {
                    kid: kid.as_deref().map(Into::into),
                    key,
                    algorithms,
                }))
            });
        match key {
            Ok(Some(key)) => {
                if let Some(kid) = &key.kid {
                    if set.has_kid(kid) {
                        let why = format!("{name}: kid {kid:?} is given twice");
                        if strict {
                            return Err(why);
                        }
                        skipped.push(why);
                        continue;
                    }
                }
                set.keys.push(key);
            }
            Ok(None) => {}
            Err(why) if strict => return Err(why),
            Err(why) => skipped.push(why),
        }
    }
    if set.keys.is_empty() {
        return Err("has no signature key that can be used".into());
    }
    Ok((set, skipped))
}

/// Whether a JWK has the members its `kty` needs (RFC 7518 §6), for a
/// message that names the one missing.
fn members(jwk: &serde_json::Value) -> Result<(), String> {
    let kty = jwk.get("kty").and_then(|k| k.as_str());
    let needed: &[&str] = match kty {
        Some("RSA") => &["n", "e"],
        Some("EC") => &["crv", "x", "y"],
        Some("OKP") => &["crv", "x"],
        Some("oct") => &["k"],
        Some(other) => {
            return Err(format!(
                "has kty {other:?}: expected \"RSA\", \"EC\", \"OKP\" or \"oct\""
            ))
        }
        None => return Err("has no kty".into()),
    };
    match needed
        .iter()
        .find(|m| !jwk.get(**m).is_some_and(|v| v.is_string()))
    {
        Some(m) => Err(format!(
            "lacks {m:?}, which a key of kty {:?} needs",
            kty.unwrap_or_default()
        )),
        None => Ok(()),
    }
}

/// A PEM public key (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`):
/// RSA, EC (P-256 or P-384) or Ed25519, within `allowed`.
pub(crate) fn parse_pem(text: &[u8], allowed: &[Algorithm]) -> Result<Key, String> {
    let pem = String::from_utf8_lossy(text);
    if pem.contains("PRIVATE KEY") {
        return Err("holds a private key: give the public key only (openssl pkey -pubout)".into());
    }
    let (key, family): (DecodingKey, Vec<Algorithm>) = if let Ok(k) =
        DecodingKey::from_rsa_pem(text)
    {
        (k, RSA.to_vec())
    } else if let Ok(k) = DecodingKey::from_ec_pem(text) {
        // The curve is not told: each is tried, and the other
        // curve's signature simply does not verify.
        (k, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(k) = DecodingKey::from_ed_pem(text) {
        (k, vec![Algorithm::EdDSA])
    } else {
        return Err(
                "is not a PEM public key (RSA, EC P-256/P-384 or Ed25519, \"-----BEGIN PUBLIC KEY-----\")"
                    .into(),
            );
    };
    let algorithms: Vec<Algorithm> = family.into_iter().filter(|a| allowed.contains(a)).collect();
    if algorithms.is_empty() {
        return Err("verifies none of the allowed algorithms".into());
    }
    Ok(Key {
        kid: None,
        key,
        algorithms,
    })
}

/// The keys behind a `jwks_url`: fetched and refreshed by the control
/// plane, read by the workers (one atomic load per token). A key id no
/// key has asks for an early fetch, at most once per `cooldown`.
pub(crate) struct RemoteKeys {
    pub(crate) url: Box<str>,
    pub(crate) refresh: Duration,
    pub(crate) cooldown: Duration,
    /// The algorithms its keys may verify.
    pub(crate) allowed: Vec<Algorithm>,
    pub(crate) keys: ArcSwap<KeySet>,
    /// The TLS client configuration of an `https` URL.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// A worker saw an unknown `kid` since the last fetch.
    wanted: AtomicBool,
    pub(crate) notify: Notify,
}

impl RemoteKeys {
    pub(crate) fn new(
        url: &str,
        refresh: Duration,
        cooldown: Duration,
        allowed: Vec<Algorithm>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Arc<RemoteKeys> {
        Arc::new(RemoteKeys {
            url: url.into(),
            refresh,
            cooldown,
            allowed,
            tls,
            keys: ArcSwap::from_pointee(KeySet::default()),
            wanted: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// A worker met a `kid` the set does not have: the first such request
    /// since the last fetch wakes the fetcher (the rest only load a flag).
    pub(crate) fn want_refresh(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// The fetcher took the request (before it fetches, so one made
    /// during the fetch asks again).
    pub(crate) fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }
}
