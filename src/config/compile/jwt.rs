//! Compiles `type = "jwt"`: its keys read and checked (a JWKS file, PEM
//! public keys, an HMAC secret; a `jwks_url` is only checked here and
//! fetched by the control plane, `control/jwks.rs`), the algorithms each
//! may verify, the claims it checks and copies, where the token is read.
//! Files are read on every load and reload, as certificates are.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::auth::RESERVED;
use crate::config::intern;
use crate::config::parse::parse_duration;
use crate::config::raw::RawMiddleware;
use crate::middleware::jwt::{
    algorithm, algorithm_name, parse_jwks, parse_pem, Jwt, Key, KeySet, RemoteKeys,
    Settings as JwtSettings, Sources, ALL_ALGORITHMS,
};
use crate::middleware::Middleware;

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// An HMAC secret's least length: RFC 7518 §3.2 asks for a key as long
/// as the hash (32 bytes for HS256).
const MIN_SECRET: usize = 32;

/// `type = "jwt"`.
pub(super) fn compile(raw: &RawMiddleware, policy: u16) -> Result<Middleware, String> {
    let RawMiddleware::Jwt {
        jwks_file,
        jwks_url,
        jwks_refresh,
        jwks_cooldown,
        jwks_ca_file,
        public_keys,
        secret,
        secret_file,
        algorithms,
        issuer,
        audiences,
        leeway,
        require_exp,
        required_claims,
        token_header,
        token_cookie,
        token_query,
        consumer_claim,
        claims_to_headers,
        forward_credentials,
        realm,
    } = raw
    else {
        return Err("not a jwt middleware".into());
    };
    let algorithms = match algorithms {
        None => None,
        Some(list) => Some(algorithm_list(list)?),
    };
    // Without a list, every asymmetric algorithm, and HMAC only when a
    // secret is given (or an `oct` key is in the JWKS file): a public
    // key can never be taken for a secret.
    let given_secret = secret.is_some() || secret_file.is_some();
    let allowed: Vec<Algorithm> = match &algorithms {
        Some(list) => list.clone(),
        None => ALL_ALGORITHMS.to_vec(),
    };
    let mut local = Vec::new();
    let mut key_files = Vec::new();
    if let Some(path) = jwks_file {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read jwt jwks_file {path:?}: {e}"))?;
        let (set, _) = parse_jwks(&text, &allowed, true)
            .map_err(|why| format!("jwt jwks_file {path:?} {why}"))?;
        local.extend(set.keys);
        key_files.push(path.as_str().into());
    }
    for path in public_keys.iter().flatten() {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read jwt public key {path:?}: {e}"))?;
        let key =
            parse_pem(&text, &allowed).map_err(|why| format!("jwt public key {path:?} {why}"))?;
        local.push(key);
        key_files.push(path.as_str().into());
    }
    match (secret, secret_file) {
        (Some(_), Some(_)) => {
            return Err("jwt has both secret and secret_file: give one".into());
        }
        (Some(s), None) => local.push(secret_key(s.as_bytes(), &allowed, "secret")?),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read jwt secret_file {path:?}: {e}"))?;
            // A trailing line end is the editor's, not the secret's.
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            local.push(secret_key(bytes, &allowed, "secret_file")?);
        }
        (None, None) => {}
    }
    let remote = match jwks_url {
        None => None,
        Some(url) => {
            check_url(url)?;
            let refresh = duration(jwks_refresh, DEFAULT_REFRESH, "jwks_refresh")?;
            let cooldown = duration(jwks_cooldown, DEFAULT_COOLDOWN, "jwks_cooldown")?;
            if refresh < Duration::from_secs(1) || cooldown > refresh {
                return Err(format!(
                    "jwt jwks_refresh must be at least 1s and jwks_cooldown at most jwks_refresh (got {refresh:?} and {cooldown:?})"
                ));
            }
            // A fetched set never holds a secret.
            let asymmetric: Vec<Algorithm> =
                allowed.iter().copied().filter(|a| !is_hmac(*a)).collect();
            let tls = if url.starts_with("https:") {
                Some(super::tls::https_client(
                    jwks_ca_file.as_deref(),
                    "jwt jwks_ca_file",
                )?)
            } else {
                None
            };
            Some(RemoteKeys::new(url, refresh, cooldown, asymmetric, tls))
        }
    };
    if jwks_ca_file.is_some() && !jwks_url.as_deref().is_some_and(|u| u.starts_with("https:")) {
        return Err("jwt jwks_ca_file needs an https jwks_url".into());
    }
    if remote.is_none() && (jwks_refresh.is_some() || jwks_cooldown.is_some()) {
        return Err("jwt jwks_refresh and jwks_cooldown need jwks_url".into());
    }
    if local.is_empty() && remote.is_none() {
        return Err("jwt has no keys: expected jwks_file, jwks_url, public_keys, secret or secret_file, e.g. jwks_url = \"https://idp.example/.well-known/jwks.json\"".into());
    }
    let algorithms = match algorithms {
        Some(list) => list,
        None => {
            let hmac = given_secret
                || local
                    .iter()
                    .any(|k| k.algorithms.iter().any(|a| is_hmac(*a)));
            ALL_ALGORITHMS
                .iter()
                .copied()
                .filter(|a| hmac || !is_hmac(*a))
                .collect()
        }
    };
    let issuers = issuer.as_ref().map(|i| i.to_vec()).unwrap_or_default();
    if issuers.iter().any(String::is_empty) {
        return Err("jwt issuer is empty: expected the identity provider's issuer, e.g. \"https://idp.example\"".into());
    }
    let audiences = audiences.clone().unwrap_or_default();
    if audiences.iter().any(String::is_empty) {
        return Err("jwt audiences has an empty entry".into());
    }
    let leeway = duration(leeway, DEFAULT_LEEWAY, "leeway")?;
    if leeway > Duration::from_secs(600) {
        return Err(
            "jwt leeway is over 10m: a clock that far off needs fixing, not a leeway".into(),
        );
    }
    let required_claims = required_claims.clone().unwrap_or_default();
    if let Some(c) = required_claims.iter().find(|c| c.is_empty()) {
        return Err(format!("jwt required_claims has an empty name {c:?}"));
    }
    let sources = Sources {
        header: token_header.unwrap_or(true),
        cookie: token_cookie
            .as_deref()
            .map(|c| name_of("token_cookie", c))
            .transpose()?,
        query: token_query
            .as_deref()
            .map(|q| name_of("token_query", q))
            .transpose()?,
    };
    if !sources.header && sources.cookie.is_none() && sources.query.is_none() {
        return Err(
            "jwt reads the token nowhere: token_header = false needs token_cookie or token_query"
                .into(),
        );
    }
    let mut headers = Vec::new();
    for (claim, header) in claims_to_headers.iter().flatten() {
        if claim.is_empty() {
            return Err("jwt claims_to_headers has an empty claim name".into());
        }
        let name = intern::header_name(header).ok_or_else(|| {
            format!("jwt claims_to_headers {claim:?} = {header:?}: expected a header name such as \"x-user\"")
        })?;
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "jwt claims_to_headers {claim:?} = {header:?} is refused: the proxy or the credentials use that header; choose another, e.g. \"x-user\""
            ));
        }
        if headers.iter().any(|(_, n)| *n == name) {
            return Err(format!(
                "jwt claims_to_headers names header {header:?} twice"
            ));
        }
        headers.push((claim.as_str().into(), name));
    }
    let realm = realm.as_deref().unwrap_or("api");
    if realm.len() > 128
        || !realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(format!("jwt realm {realm:?} is invalid: expected printable ASCII without '\"' or '\\', at most 128 bytes, e.g. \"api\""));
    }
    let consumer_claim = match consumer_claim.as_deref() {
        None => Some("sub".into()),
        Some("") => None,
        Some(c) => Some(c.into()),
    };
    let settings = JwtSettings {
        local: KeySet::new(local),
        remote,
        key_files,
        has_secret: given_secret,
        algorithms,
        issuers: issuers.into_iter().map(Into::into).collect(),
        audiences: audiences.into_iter().map(Into::into).collect(),
        leeway: leeway.as_secs(),
        required_claims: required_claims.into_iter().map(Into::into).collect(),
        require_exp: require_exp.unwrap_or(true),
        sources,
        consumer_claim,
        claims_to_headers: headers,
        forward_credentials: forward_credentials.unwrap_or(false),
        realm: realm.into(),
    };
    Jwt::new(settings, policy).map(Middleware::Jwt)
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// `algorithms = ["RS256", ...]`: known names, no repeats, not empty.
fn algorithm_list(list: &[String]) -> Result<Vec<Algorithm>, String> {
    let known = || {
        ALL_ALGORITHMS
            .iter()
            .map(|a| algorithm_name(*a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if list.is_empty() {
        return Err(format!(
            "jwt algorithms is empty: expected some of {}",
            known()
        ));
    }
    let mut out = Vec::new();
    for name in list {
        let Some(a) = algorithm(name) else {
            if name.eq_ignore_ascii_case("none") {
                return Err(
                    "jwt algorithms lists \"none\": unsigned tokens are never accepted".into(),
                );
            }
            return Err(format!(
                "jwt algorithm {name:?} is not supported: expected one of {}",
                known()
            ));
        };
        if out.contains(&a) {
            return Err(format!("jwt algorithm {name:?} is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

fn secret_key(bytes: &[u8], allowed: &[Algorithm], what: &str) -> Result<Key, String> {
    if bytes.len() < MIN_SECRET {
        return Err(format!(
            "jwt {what} is {} bytes: expected at least {MIN_SECRET} (RFC 7518 §3.2), e.g. made with openssl rand -base64 48",
            bytes.len()
        ));
    }
    let algorithms: Vec<Algorithm> = allowed.iter().copied().filter(|a| is_hmac(*a)).collect();
    if algorithms.is_empty() {
        return Err(format!(
            "jwt {what} is given but algorithms lists no HS256, HS384 or HS512"
        ));
    }
    Ok(Key {
        kid: None,
        key: DecodingKey::from_secret(bytes),
        algorithms,
    })
}

fn duration(value: &Option<String>, default: Duration, what: &str) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|e| format!("jwt {what}: {e}")),
    }
}

/// An `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "jwt jwks_url {url:?} is invalid: {why}; expected e.g. \"https://idp.example/.well-known/jwks.json\""
        ))
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("not a URL");
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return bad("the scheme must be http or https"),
    }
    if uri.host().map_or(true, str::is_empty) {
        return bad("it has no host");
    }
    Ok(())
}

/// A cookie or query parameter name: a token.
fn name_of(what: &str, name: &str) -> Result<Box<str>, String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(format!("jwt {what} {name:?} is invalid: expected a name of letters, digits and - . _, e.g. \"access_token\""));
    }
    Ok(name.into())
}
