//! The request-rate limit (`type = "rate_limit"`): GCRA per key over a
//! process-wide table (`limit/rate.rs`), nginx `limit_req` made explicit.
//! A request over the limit is answered with the configured status (429
//! by default), `Retry-After` and the IETF RateLimit fields
//! (draft-ietf-httpapi-ratelimit-headers-08). With `delay = N`, a request
//! past the first N of a burst waits for its turn on the worker's timer
//! (nginx `limit_req delay=N`) instead of passing at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};

use super::limit_key::LimitKey;
use super::refusal;
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::limit::{RateTable, Verdict};
use crate::metrics::Refusal;

static RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

const TOO_MANY: &str = "429 Too Many Requests: over this route's rate limit\n";
const UNAVAILABLE: &str = "503 Service Unavailable: over this route's rate limit\n";

/// The unit of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    pub(crate) fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        }
    }

    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

/// `type = "rate_limit"`: cloned into every route that lists it; the
/// settings and the table are shared.
#[derive(Clone)]
pub(crate) struct RateLimit {
    pub(crate) settings: Arc<RateSettings>,
    /// Its index in the snapshot's policies (where refusals count).
    pub(crate) policy: u16,
}

/// What a `rate_limit` was compiled into.
pub(crate) struct RateSettings {
    /// The process-wide GCRA states (kept across reloads by the registry).
    pub(crate) table: Arc<RateTable>,
    /// What a request counts under.
    pub(crate) key: LimitKey,
    /// `rate` as configured: `count` per `per`.
    pub(crate) count: u64,
    pub(crate) per: Per,
    /// Requests a key may send above the rate at once.
    pub(crate) burst: u64,
    /// `delay`: how many requests of a burst pass at once (`burst`, nginx
    /// `nodelay`, unless configured); later ones wait for their time.
    pub(crate) delay: u64,
    /// `delay` intervals in microseconds: the head start a request of a
    /// burst is given before it waits.
    pub(crate) delay_us: u64,
    /// As configured (the table has it rounded up to whole sets), for /config.
    pub(crate) max_keys: u64,
    /// 429, or 503 when configured.
    pub(crate) status: StatusCode,
    /// `RateLimit-Policy: "NAME";q=COUNT;w=SECONDS` (interned at load).
    pub(crate) policy_value: HeaderValue,
    /// `"NAME"` as an sf-string, the start of each `RateLimit` value.
    pub(crate) quoted_name: Box<str>,
}

/// A request's decision before its wait, if any.
pub(crate) enum Decided {
    Flow(Flow),
    /// Passes once this instant is reached (`delay` mode).
    WaitUntil(Instant),
}

impl RateLimit {
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Decided {
        let s = &*self.settings;
        let Some(hash) = s.key.hash(s.table.seed(), ctx, req) else {
            return Decided::Flow(Flow::Continue);
        };
        // Now, not the request's start: a middleware before this one may
        // have waited (a password check), and a stale time would read a
        // key's arrival time as further ahead than it is.
        let now = Instant::now();
        match s.table.check(hash, now) {
            // `wait_us` is how far ahead of its rate the key is: the
            // request is the (wait_us / interval)-th of a burst.
            Verdict::Pass { wait_us } if wait_us > s.delay_us => {
                let wait = Duration::from_micros(wait_us - s.delay_us);
                Decided::WaitUntil(now + wait)
            }
            Verdict::Pass { .. } => Decided::Flow(Flow::Continue),
            Verdict::Refuse { retry_us } => Decided::Flow(self.refuse(ctx, retry_us)),
        }
    }

    fn refuse(&self, ctx: &mut RequestContext<'_>, retry_us: u64) -> Flow {
        let s = &*self.settings;
        ctx.ids.set_refusal(self.policy, Refusal::Rate);
        ctx.log.cause = Some(Refusal::Rate.label());
        let body = if s.status == StatusCode::TOO_MANY_REQUESTS {
            TOO_MANY
        } else {
            UNAVAILABLE
        };
        let mut response = refusal(s.status, body);
        // Seconds, rounded up: a client that waits that long passes.
        let secs = retry_us.div_ceil(1_000_000).max(1);
        let mut digits = [0u8; 20];
        let secs = decimal(secs, &mut digits);
        let slab = &ctx.tools.slab;
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER.clone(), slab.value(&[secs]));
        headers.insert(RATELIMIT_POLICY.clone(), s.policy_value.clone());
        let limit = slab.value(&[s.quoted_name.as_bytes(), b";r=0;t=", secs]);
        headers.insert(RATELIMIT.clone(), limit);
        Flow::respond(response)
    }
}

/// `n` in decimal, written at the end of `out`.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(86_400, &mut buf), b"86400");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
