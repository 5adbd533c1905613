//! HTTP Basic authentication (`type = "basic_auth"`, RFC 7617): the
//! `Authorization` credentials checked against the users of an htpasswd
//! file (read by the control plane at load, `config/compile/auth.rs`).
//! A password hash costs milliseconds, so it is never checked on the
//! worker's loop: it runs on the runtime's blocking threads, at most
//! `max_verifications` at once (beyond: 503), and a verified credential is
//! remembered per worker, keyed by a salted SHA-256 (never the password),
//! so a keep-alive client pays for one check.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use http::{header, HeaderName, HeaderValue, StatusCode};
use ring::digest;
use rustc_hash::FxHashMap;

use super::consumer::{admit, refuse};
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

const UNAUTHORIZED: &str = "401 Unauthorized: this route needs a valid user name and password\n";
const BUSY: &str = "503 Service Unavailable: too many password checks are running; retry shortly\n";

/// The longest `Authorization` value read (longer is malformed): bounds
/// the arena copy and SHA-crypt's work, which grows with the square of
/// the password's length.
pub(crate) const MAX_AUTHORIZATION: usize = 2048;

/// How long a verified credential is remembered by a worker.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(300);

/// How many verified credentials a worker remembers (all instances
/// together); when full, expired ones are dropped, and if none is, all.
pub(crate) const CACHE_ENTRIES: usize = 1024;

/// Standard base64 (RFC 4648 §4) that takes the padding or its absence.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A user's password hash, in one of the accepted formats (the insecure
/// ones are refused at load).
#[derive(Clone, Debug)]
pub(crate) enum PasswordHash {
    /// `$2a$`, `$2b$`, `$2y$`.
    Bcrypt(Arc<str>),
    /// `$5$`.
    Sha256Crypt(Arc<str>),
    /// `$6$`.
    Sha512Crypt(Arc<str>),
}

impl PasswordHash {
    /// Costs milliseconds: call off the worker's loop.
    pub(crate) fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Sha256Crypt(h) => sha_crypt::sha256_check(password, h).is_ok(),
            PasswordHash::Sha512Crypt(h) => sha_crypt::sha512_check(password, h).is_ok(),
        }
    }
}

/// What a `basic_auth` definition compiles to.
pub(crate) struct Settings {
    pub(crate) realm: Box<str>,
    /// The file's path, as configured (for the admin API).
    pub(crate) htpasswd: Box<str>,
    pub(crate) users: HashMap<Box<str>, PasswordHash>,
    pub(crate) consumer_header: Option<HeaderName>,
    pub(crate) forward_credentials: bool,
    pub(crate) max_verifications: usize,
    /// `Basic realm="…", charset="UTF-8"` (interned at load).
    pub(crate) challenge: HeaderValue,
    /// Drawn at load, so a new instance (a reload) never matches what a
    /// worker remembers of the old one.
    pub(crate) salt: [u8; 32],
}

/// `type = "basic_auth"`. Cloned into every route that lists it.
#[derive(Clone)]
pub(crate) struct BasicAuth {
    shared: Arc<Shared>,
    /// Its index in the snapshot's policies (where refusals count).
    policy: u16,
}

struct Shared {
    settings: Settings,
    /// Checks running or queued on the blocking threads, every worker's.
    verifying: AtomicUsize,
}

impl BasicAuth {
    pub(crate) fn new(settings: Settings, policy: u16) -> Self {
        BasicAuth {
            shared: Arc::new(Shared {
                settings,
                verifying: AtomicUsize::new(0),
            }),
            policy,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub(crate) async fn on_request<'a>(
        &self,
        ctx: &mut RequestContext<'a>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        let s = &self.shared.settings;
        let (user, password) = match credentials(ctx, req) {
            Ok(found) => found,
            Err(reason) => return self.refused(ctx, reason),
        };
        let Some(hash) = s.users.get(user) else {
            return self.refused(ctx, Refusal::UnknownUser);
        };
        let key = cache_key(&s.salt, user, password);
        let now = Instant::now();
        if !remembered(&key, now) {
            let Some(slot) = Slot::take(&self.shared) else {
                return self.refused(ctx, Refusal::VerifierBusy);
            };
            let hash = hash.clone();
            let password = zeroize::Zeroizing::new(password.to_owned());
            // The slot goes with the check: released when it ends, even if
            // the client has gone and this future was dropped.
            let check = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                hash.verify(&password)
            });
            match check.await {
                Ok(true) => remember(key, now),
                Ok(false) => return self.refused(ctx, Refusal::BadPassword),
                // The runtime is shutting down: not the client's fault.
                Err(_) => return self.refused(ctx, Refusal::VerifierBusy),
            }
        }
        if !s.forward_credentials {
            req.headers.remove(header::AUTHORIZATION);
        }
        admit(ctx, req, user, s.consumer_header.as_ref());
        Flow::Continue
    }

    fn refused(&self, ctx: &mut RequestContext<'_>, reason: Refusal) -> Flow {
        if reason == Refusal::VerifierBusy {
            let mut flow = refuse(
                ctx,
                self.policy,
                reason,
                StatusCode::SERVICE_UNAVAILABLE,
                BUSY,
            );
            if let Flow::Respond(resp) = &mut flow {
                let h = resp.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return flow;
        }
        let mut flow = refuse(
            ctx,
            self.policy,
            reason,
            StatusCode::UNAUTHORIZED,
            UNAUTHORIZED,
        );
        if let Flow::Respond(resp) = &mut flow {
            let challenge = self.shared.settings.challenge.clone();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        flow
    }
}

/// The user name and password of the request's `Authorization: Basic`,
/// decoded into the arena; anything else is a refusal's reason.
fn credentials<'a>(
    ctx: &RequestContext<'a>,
    req: &UpstreamRequest<'_>,
) -> Result<(&'a str, &'a str), Refusal> {
    let mut values = req.headers.get_all(header::AUTHORIZATION);
    let value = values.next().ok_or(Refusal::CredentialsMissing)?;
    if values.next().is_some() {
        // Two credentials: which one is meant is anyone's guess.
        return Err(Refusal::CredentialsMalformed);
    }
    decode(value, |len| ctx.arena().alloc_slice_fill_copy(len, 0u8))
}

/// Parses `Basic <base64 of user:password>` (the scheme in any case, RFC
/// 9110 §11.1) into a buffer from `buffer`; user and password must be
/// UTF-8 (the `charset="UTF-8"` the challenge announces).
fn decode<'b>(
    value: &[u8],
    buffer: impl FnOnce(usize) -> &'b mut [u8],
) -> Result<(&'b str, &'b str), Refusal> {
    let malformed = Refusal::CredentialsMalformed;
    if value.len() > MAX_AUTHORIZATION {
        return Err(malformed);
    }
    let space = value.iter().position(|&b| b == b' ').ok_or(malformed)?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(malformed);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(malformed);
    }
    let buf = buffer(token.len().div_ceil(4) * 3);
    let len = BASE64.decode_slice(token, buf).map_err(|_| malformed)?;
    let decoded: &'b [u8] = &buf[..len];
    let colon = decoded.iter().position(|&b| b == b':').ok_or(malformed)?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user = std::str::from_utf8(user).map_err(|_| malformed)?;
    let password = std::str::from_utf8(password).map_err(|_| malformed)?;
    Ok((user, password))
}

/// A claim on one of the instance's `max_verifications`.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let max = shared.settings.max_verifications;
        let before = shared.verifying.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            shared.verifying.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.verifying.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the cache is keyed by: SHA-256 of the instance's salt, the user
/// and the password (a user name has no `:`).
fn cache_key(salt: &[u8; 32], user: &str, password: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(user.as_bytes());
    ctx.update(b":");
    ctx.update(password.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

thread_local! {
    /// This worker's verified credentials and when each expires. A worker
    /// is one thread, so this is its own: no lock, nothing shared.
    static VERIFIED: RefCell<FxHashMap<[u8; 32], Instant>> = RefCell::new(FxHashMap::default());
}

fn remembered(key: &[u8; 32], now: Instant) -> bool {
    VERIFIED.with(|v| v.borrow().get(key).is_some_and(|&until| until > now))
}

fn remember(key: [u8; 32], now: Instant) {
    VERIFIED.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() >= CACHE_ENTRIES {
            v.retain(|_, until| *until > now);
            if v.len() >= CACHE_ENTRIES {
                v.clear();
            }
        }
        v.insert(key, now + CACHE_TTL);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &[u8]) -> Result<(String, String), Refusal> {
        let mut buf = Vec::new();
        decode(value, |len| {
            buf.resize(len, 0);
            &mut buf[..]
        })
        .map(|(u, p)| (u.to_string(), p.to_string()))
    }

    #[test]
    fn basic_credentials_are_decoded_and_anything_else_is_malformed() {
        let ok = |u: &str, p: &str| Ok((u.to_string(), p.to_string()));
        // "alice:open sesame", padded and not, any case of the scheme.
        assert_eq!(
            parse(b"Basic YWxpY2U6b3BlbiBzZXNhbWU="),
            ok("alice", "open sesame")
        );
        assert_eq!(
            parse(b"basic  YWxpY2U6b3BlbiBzZXNhbWU "),
            ok("alice", "open sesame")
        );
        assert_eq!(
            parse(b"BASIC YWxpY2U6b3BlbiBzZXNhbWU"),
            ok("alice", "open sesame")
        );
        // A password may hold colons; the user name ends at the first.
        assert_eq!(parse(b"Basic YTpiOmM="), ok("a", "b:c"));
        // "Zoë:pässword" (UTF-8).
        assert_eq!(parse(b"Basic Wm/Dqzpww6Rzc3dvcmQ="), ok("Zoë", "pässword"));
        let malformed = Err(Refusal::CredentialsMalformed);
        for bad in [
            &b"Bearer YWxpY2U6eA=="[..],
            b"Basic",
            b"Basic ",
            b"BasicYWxpY2U6eA==",
            b"Basic YWxpY2U6eA==!",
            b"Basic ***",
            b"Basic YWxpY2U=", // "alice": no colon
            b"Basic /w==",     // 0xff: not UTF-8
            b"Basic YWxp Y2U6eA==",
        ] {
            assert_eq!(parse(bad), malformed, "{:?}", String::from_utf8_lossy(bad));
        }
        let huge = format!("Basic {}", "QUFB".repeat(MAX_AUTHORIZATION / 4));
        assert_eq!(parse(huge.as_bytes()), malformed);
    }

    #[test]
    fn the_cache_remembers_until_expiry_and_stays_bounded() {
        let now = Instant::now();
        let key = cache_key(&[7; 32], "u", "p");
        assert_ne!(key, cache_key(&[8; 32], "u", "p"), "salted");
        assert!(!remembered(&key, now));
        remember(key, now);
        assert!(remembered(&key, now + CACHE_TTL / 2));
        assert!(!remembered(&key, now + CACHE_TTL));
        for i in 0..CACHE_ENTRIES * 2 {
            remember(cache_key(&[0; 32], &i.to_string(), ""), now);
        }
        assert!(VERIFIED.with(|v| v.borrow().len()) <= CACHE_ENTRIES);
    }
}
