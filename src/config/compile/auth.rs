//! Compiles the authentication middlewares, `basic_auth` (its htpasswd
//! file read and every line's hash format checked: insecure formats are
//! refused here, never at a request) and `api_key` (its keys file and
//! inline keys, SHA-256 hashes only). The files are read on every load and
//! reload, as certificates are. Putting the instances into chains is
//! `middlewares`' and `routes`' part.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};
use rustc_hash::FxHashMap;

use crate::config::intern;
use crate::config::raw::RawMiddleware;
use crate::middleware::{
    ApiKey, ApiKeySettings, BasicAuth, BasicAuthSettings, Middleware, PasswordHash,
};

/// bcrypt's cost at most: `htpasswd -B -C`'s own ceiling (each step
/// doubles the time of a check: 17 is seconds).
const MAX_BCRYPT_COST: u32 = 17;
/// SHA-crypt's rounds: the scheme's minimum, and a ceiling that keeps a
/// check under a second.
const SHA_CRYPT_ROUNDS: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
const DEFAULT_MAX_VERIFICATIONS: i64 = 16;
const MAX_NAME: usize = 128;
/// Names a header an authentication middleware sets upstream (a consumer,
/// a claim) may not take: the proxy's own or the credentials'.
pub(super) const RESERVED: [&str; 9] = [
    "host",
    "authorization",
    "proxy-authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
];

/// `type = "basic_auth"` or `type = "api_key"`.
pub(super) fn compile(raw: &RawMiddleware, policy: u16) -> Result<Middleware, String> {
    match raw {
        RawMiddleware::BasicAuth {
            realm,
            htpasswd,
            consumer_header,
            forward_credentials,
            max_verifications,
        } => {
            let realm = realm_of("basic_auth", realm.as_deref().unwrap_or("restricted"))?;
            let path = htpasswd.as_deref().filter(|p| !p.is_empty()).ok_or(
                "basic_auth needs htpasswd: expected the path of an htpasswd file, e.g. htpasswd = \"/etc/strait/htpasswd\"",
            )?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read htpasswd file {path:?}: {e}"))?;
            let users = htpasswd_users(path, &text)?;
            let max = max_verifications.unwrap_or(DEFAULT_MAX_VERIFICATIONS);
            if !(1..=1024).contains(&max) {
                return Err(format!(
                    "basic_auth max_verifications = {max} is out of range: expected 1 to 1024"
                ));
            }
            let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
            let mut salt = [0u8; 32];
            SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| "basic_auth: the system's random generator failed")?;
            Ok(Middleware::BasicAuth(BasicAuth::new(
                BasicAuthSettings {
                    challenge: challenge_value(&challenge)?,
                    realm: realm.into(),
                    htpasswd: path.into(),
                    users,
                    consumer_header: consumer_header_of("basic_auth", consumer_header)?,
                    forward_credentials: forward_credentials.unwrap_or(false),
                    max_verifications: max as usize,
                    salt,
                },
                policy,
            )))
        }
        RawMiddleware::ApiKey {
            keys_file,
            keys,
            header,
            query,
            realm,
            consumer_header,
            forward_credentials,
        } => {
            let mut hashes = FxHashMap::default();
            if let Some(path) = keys_file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read api_key keys_file {path:?}: {e}"))?;
                keys_from_file(path, &text, &mut hashes)?;
            }
            for (name, hash) in keys.iter().flatten() {
                add_key("api_key keys", name, hash, &mut hashes)?;
            }
            if hashes.is_empty() {
                return Err("api_key has no keys: expected keys_file or keys = { NAME = \"sha256:<64 hex digits>\" }".into());
            }
            let query = match query {
                Some(q) if q.is_empty() || !q.bytes().all(is_unreserved) => {
                    return Err(format!("api_key query {q:?} is invalid: expected a parameter name of letters, digits and - . _ ~, e.g. \"api_key\""));
                }
                q => q.as_deref(),
            };
            let header = match (header.as_deref(), query) {
                (None, Some(_)) => None,
                (name, _) => Some(name.unwrap_or("x-api-key")),
            };
            let header = header
                .map(|name| {
                    intern::header_name(name).ok_or_else(|| {
                        format!("api_key header {name:?} is invalid: expected a header name such as \"x-api-key\"")
                    })
                })
                .transpose()?;
            let realm = realm_of("api_key", realm.as_deref().unwrap_or("api"))?;
            let challenge = format!("ApiKey realm=\"{realm}\"");
            Ok(Middleware::ApiKey(ApiKey::new(
                ApiKeySettings {
                    keys: hashes,
                    keys_file: keys_file.as_deref().map(Into::into),
                    header,
                    query: query.map(Into::into),
                    challenge: challenge_value(&challenge)?,
                    realm: realm.into(),
                    consumer_header: consumer_header_of("api_key", consumer_header)?,
                    forward_credentials: forward_credentials.unwrap_or(false),
                },
                policy,
            )))
        }
        _ => Err("not an authentication middleware".into()),
    }
}

fn challenge_value(text: &str) -> Result<HeaderValue, String> {
    intern::header_value(text).ok_or_else(|| format!("{text:?} cannot be sent as a header value"))
}

/// A realm goes into a quoted string (RFC 9110 §11.2): printable ASCII,
/// no `"` nor `\` (no escapes to get wrong).
fn realm_of<'r>(kind: &str, realm: &'r str) -> Result<&'r str, String> {
    let printable = realm.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable || realm.contains(['"', '\\']) || realm.len() > MAX_NAME {
        return Err(format!(
            "{kind} realm {realm:?} is invalid: expected printable ASCII without '\"' or '\\', at most {MAX_NAME} bytes (it is sent as a quoted string), e.g. \"admin\""
        ));
    }
    Ok(realm)
}

fn consumer_header_of(kind: &str, name: &Option<String>) -> Result<Option<HeaderName>, String> {
    let Some(name) = name else { return Ok(None) };
    let header = intern::header_name(name).ok_or_else(|| {
        format!("{kind} consumer_header {name:?} is invalid: expected a header name such as \"x-consumer\"")
    })?;
    if RESERVED.contains(&header.as_str()) {
        return Err(format!(
            "{kind} consumer_header {name:?} is refused: the proxy or the credentials use that header; choose another, e.g. \"x-consumer\""
        ));
    }
    Ok(Some(header))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The lines of an htpasswd file that matter: `(line number, text)`,
/// comments (`#`) and blank lines left out.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The users of an htpasswd file (`path`'s `text`): `user:hash` lines,
/// each hash bcrypt or SHA-crypt.
pub(super) fn htpasswd_users(
    path: &str,
    text: &str,
) -> Result<HashMap<Box<str>, PasswordHash>, String> {
    let mut users = HashMap::new();
    let mut lines_of: HashMap<&str, usize> = HashMap::new();
    for (n, line) in lines(text) {
        let at = format!("htpasswd file {path:?} line {n}");
        let (user, hash) = line.split_once(':').ok_or_else(|| {
            format!("{at}: expected user:hash, e.g. a line made by htpasswd -B {path} USER")
        })?;
        if user.is_empty()
            || user.len() > MAX_NAME
            || user.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!("{at}: user name {user:?} is invalid: expected 1 to {MAX_NAME} bytes without spaces or control characters"));
        }
        let hash = password_hash(hash).map_err(|why| format!("{at}: user {user:?} {why}"))?;
        match lines_of.entry(user) {
            std::collections::hash_map::Entry::Occupied(first) => {
                return Err(format!(
                    "{at}: user {user:?} is already defined on line {}",
                    first.get()
                ));
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(n);
            }
        }
        users.insert(user.into(), hash);
    }
    if users.is_empty() {
        return Err(format!(
            "htpasswd file {path:?} has no users: expected user:hash lines, e.g. made by htpasswd -B -c {path} USER"
        ));
    }
    Ok(users)
}

const REGENERATE: &str = "regenerate the line with htpasswd -B (bcrypt)";

/// The hash of an htpasswd line, its format recognised and checked (never
/// quoted back: even a weak hash is a secret).
fn password_hash(hash: &str) -> Result<PasswordHash, String> {
    let insecure = |what: &str| {
        Err(format!(
            "has {what}, which is insecure and refused: {REGENERATE}"
        ))
    };
    if let Some(rest) = ["$2y$", "$2b$", "$2a$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    {
        return bcrypt_check(rest).map(|()| PasswordHash::Bcrypt(hash.into()));
    }
    if let Some(rest) = hash.strip_prefix("$5$") {
        return sha_crypt_check(rest, 43).map(|()| PasswordHash::Sha256Crypt(hash.into()));
    }
    if let Some(rest) = hash.strip_prefix("$6$") {
        return sha_crypt_check(rest, 86).map(|()| PasswordHash::Sha512Crypt(hash.into()));
    }
    if hash.starts_with("$apr1$") {
        return insecure("an Apache MD5 ($apr1$) hash");
    }
    if hash.starts_with("$1$") {
        return insecure("an MD5-crypt ($1$) hash");
    }
    if hash.starts_with("{SHA}") || hash.starts_with("{SSHA}") {
        return insecure("a SHA-1 ({SHA}) hash");
    }
    if hash.len() == 13 && hash.bytes().all(is_crypt64) {
        return insecure("a DES crypt hash (or a 13-character plain password)");
    }
    Err(format!(
        "has a password that is not a supported hash (plain text, or an unknown format): expected bcrypt ($2y$, $2b$, $2a$) or SHA-crypt ($5$, $6$); {REGENERATE}"
    ))
}

/// The crypt base64 alphabet (`./0-9A-Za-z`).
fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// After `$2y$`: `NN$` and 53 characters of salt and hash.
fn bcrypt_check(rest: &str) -> Result<(), String> {
    let malformed = || {
        Err(format!(
            "has a malformed bcrypt hash: expected $2y$NN$ and 53 characters; {REGENERATE}"
        ))
    };
    let Some((cost, tail)) = rest.split_once('$') else {
        return malformed();
    };
    let Ok(cost) = cost.parse::<u32>() else {
        return malformed();
    };
    if cost.to_string().len() > 2 || tail.len() != 53 || !tail.bytes().all(is_crypt64) {
        return malformed();
    }
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "has a bcrypt cost of {cost}: expected 4 to {MAX_BCRYPT_COST} (each step doubles the time of a check); regenerate the line with htpasswd -B -C 10"
        ));
    }
    Ok(())
}

/// After `$5$` or `$6$`: `[rounds=N$]salt$hash`, a salt of at most 16
/// characters and a hash of `len`.
fn sha_crypt_check(rest: &str, len: usize) -> Result<(), String> {
    let malformed = || {
        Err(format!(
            "has a malformed SHA-crypt hash: expected $5$ or $6$, [rounds=N$], a salt of up to 16 characters, $ and {len} characters; {REGENERATE}"
        ))
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    if let Some(rounds) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        let Ok(n) = rounds.parse::<u64>() else {
            return malformed();
        };
        if !SHA_CRYPT_ROUNDS.contains(&n) {
            return Err(format!(
                "has a SHA-crypt rounds={n}: expected {} to {}",
                SHA_CRYPT_ROUNDS.start(),
                SHA_CRYPT_ROUNDS.end()
            ));
        }
        parts.remove(0);
    }
    match parts[..] {
        [salt, hash]
            if salt.len() <= 16
                && salt.bytes().all(is_crypt64)
                && hash.len() == len
                && hash.bytes().all(is_crypt64) =>
        {
            Ok(())
        }
        _ => malformed(),
    }
}

/// The lines of an api_key keys file: `consumer sha256:<64 hex digits>`.
fn keys_from_file(
    path: &str,
    text: &str,
    keys: &mut FxHashMap<[u8; 32], Arc<str>>,
) -> Result<(), String> {
    for (n, line) in lines(text) {
        let at = format!("api_key keys_file {path:?} line {n}");
        let mut fields = line.split_ascii_whitespace();
        let (Some(name), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!(
                "{at}: expected a consumer name and its key's hash, e.g. \"alice sha256:<64 hex digits>\""
            ));
        };
        add_key(&at, name, hash, keys)?;
    }
    Ok(())
}

fn add_key(
    at: &str,
    name: &str,
    hash: &str,
    keys: &mut FxHashMap<[u8; 32], Arc<str>>,
) -> Result<(), String> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-');
    if name.is_empty() || name.len() > MAX_NAME || !name.bytes().all(valid) {
        return Err(format!("{at}: consumer name {name:?} is invalid: expected 1 to {MAX_NAME} letters, digits and . _ @ + -"));
    }
    let digest =
        key_hash(hash).map_err(|why| format!("{at}: the key of consumer {name:?} {why}"))?;
    match keys.entry(digest) {
        Entry::Occupied(other) => Err(format!(
            "{at}: consumer {name:?} has the same key as consumer {:?}: each key names one consumer",
            &**other.get()
        )),
        Entry::Vacant(v) => {
            v.insert(name.into());
            Ok(())
        }
    }
}

/// `sha256:<64 hex digits>` as the 32 bytes of the digest.
fn key_hash(text: &str) -> Result<[u8; 32], String> {
    const HOW: &str = "write sha256:<64 hex digits>, made with printf %s \"$KEY\" | sha256sum";
    let Some(hex) = text.strip_prefix("sha256:") else {
        return Err(format!("is not hashed (plain keys are refused): {HOW}"));
    };
    if hex.len() != 64 {
        return Err(format!(
            "has a hash of {} hex digits: expected 64; {HOW}",
            hex.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        let (Some(h), Some(l)) = (digit(pair[0]), digit(pair[1])) else {
            return Err(format!("has a hash that is not hexadecimal: {HOW}"));
        };
        out[i] = (h << 4 | l) as u8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_lines_are_checked_by_format() {
        let users = htpasswd_users(
            "f",
            "# admins\n\nalice:$2y$05$abcdefghijklmnopqrstuOabcdefghijklmnopqrstuvwxyz01234\r\n  bob:$6$salt$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\ncarol:$5$rounds=5000$s$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        )
        .unwrap();
        assert_eq!(users.len(), 3);
        let err = |text: &str| htpasswd_users("f", text).unwrap_err();
        assert!(err("a:$apr1$x$y").contains("line 1: user \"a\" has an Apache MD5 ($apr1$) hash, which is insecure and refused: regenerate the line with htpasswd -B"));
        assert!(err("\na:{SHA}abc=").contains("line 2: user \"a\" has a SHA-1"));
        assert!(err("a:abcdefghijklm").contains("DES crypt"));
        assert!(err("a:hunter2").contains("not a supported hash (plain text"));
        assert!(err("a:$1$x$y").contains("MD5-crypt"));
        assert!(err("a:$2y$5$short").contains("malformed bcrypt"));
        assert!(
            err("a:$2y$31$abcdefghijklmnopqrstuOabcdefghijklmnopqrstuvwxyz01234")
                .contains("bcrypt cost of 31")
        );
        assert!(err("a:$6$rounds=10$s$x").contains("rounds=10: expected 1000"));
        assert!(err("a:$6$s$short").contains("malformed SHA-crypt"));
        assert!(err("nocolon").contains("expected user:hash"));
        assert!(err("a b:$6$x").contains("user name \"a b\" is invalid"));
        assert!(err("# only a comment\n").contains("has no users"));
        let twice = "a:$2b$05$abcdefghijklmnopqrstuOabcdefghijklmnopqrstuvwxyz01234\n";
        assert!(err(&format!("{twice}{twice}"))
            .contains("line 2: user \"a\" is already defined on line 1"));
        // A hash is never quoted back.
        assert!(!err("a:hunter2").contains("hunter2"));
    }

    #[test]
    fn key_hashes_are_sha256_hex_only() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(key_hash(&format!("sha256:{hex}")).unwrap()[0], 0x9f);
        assert!(key_hash(&format!("sha256:{}", hex.to_uppercase())).is_ok());
        assert!(key_hash("test").unwrap_err().starts_with("is not hashed"));
        assert!(key_hash("sha256:abc")
            .unwrap_err()
            .contains("3 hex digits: expected 64"));
        assert!(key_hash(&format!("sha256:{}", "z".repeat(64)))
            .unwrap_err()
            .contains("not hexadecimal"));
        let mut keys = FxHashMap::default();
        let line = format!("alice sha256:{hex}\n# x\nbob sha256:{hex}\n");
        let e = keys_from_file("k", &line, &mut keys).unwrap_err();
        assert!(
            e.contains("line 3: consumer \"bob\" has the same key as consumer \"alice\""),
            "{e}"
        );
        let e = keys_from_file("k", "carol secret\n", &mut keys).unwrap_err();
        assert!(
            e.contains("line 1: the key of consumer \"carol\" is not hashed"),
            "{e}"
        );
        assert!(keys_from_file("k", "a b c\n", &mut keys).is_err());
    }
}
