//! Retries: which outcomes a route retries, which requests may be replayed,
//! how long to wait between attempts, and the per-upstream budget that keeps
//! retries from multiplying the load on a failing upstream.
//!
//! A request is replayable only when its body is known in full before the
//! first attempt: no body, or a `Content-Length` within the route's
//! `replay_limit`, read into one buffer first. Larger or chunked bodies stream
//! as usual and are never retried. Routes without `retry` pay nothing: their
//! attempts (`attempt.rs` `forward_with_retries`) are boxed.

use std::time::Duration;

use crate::context::body::ClientBody;
use bytes::Bytes;
use http::{Method, Response};
use http_body_util::BodyExt;

use super::error::ProxyError;
use crate::config::RetryPolicy;
use crate::context::Headers;
use crate::metrics::UpstreamCounters;
use crate::upstream::RetryBudget;

// The policy is compiled into the snapshot (`config::RetryPolicy`); what it
// means for a request is decided here.
impl RetryPolicy {
    /// Whether `method` may be sent again.
    pub(crate) fn allows_method(&self, method: &Method) -> bool {
        self.non_idempotent
            || matches!(
                *method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            )
    }

    /// Whether the body can be kept for replay (known in full, within the
    /// limit) judging by the headers and the body's own end-of-stream flag.
    pub(crate) fn replayable(&self, headers: &Headers<'_>, body: &ClientBody) -> bool {
        use http_body::Body;
        if body.is_end_stream() {
            return true;
        }
        headers
            .get_str(http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= self.replay_limit)
    }

    /// Whether an attempt that ended with `result` is one the route retries:
    /// a status it lists, or a failure of a kind it names (a connection
    /// failure, a reset, a response-head timeout). Other failures (the
    /// client's body, the upstream's limits, no endpoint) are not the
    /// endpoint's doing and are never retried.
    pub(super) fn retries<B>(&self, result: &Result<Response<B>, ProxyError>) -> bool {
        match result {
            Ok(r) => self.on_statuses.contains(&r.status().as_u16()),
            Err(e) if e.is_connect_failure() => self.on_connect_failure,
            Err(ProxyError::UpstreamReset) => self.on_reset,
            Err(ProxyError::ResponseTimeout) => self.on_timeout,
            Err(_) => false,
        }
    }

    /// The wait before attempt `n` (2 for the first retry): exponential,
    /// capped, with full jitter.
    pub(crate) fn backoff(&self, n: u32, random: u64) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << (n.saturating_sub(2)).min(16))
            .min(self.backoff_max);
        let ms = exp.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { random % (ms + 1) })
    }
}

/// Reads a body announced within the replay limit into one buffer. A body
/// that turns out longer than announced, or fails, is an error.
pub(crate) async fn collect(body: ClientBody, limit: u64) -> Result<Bytes, ()> {
    let limited = http_body_util::Limited::new(body, limit as usize);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(()),
    }
}

/// Milli-tokens a worker's budget can hold at most: a burst of 10 retries.
const BUDGET_CAP: u64 = 10_000;

/// Deposits the budget share of one request (`percent` % of a retry).
#[inline]
pub(crate) fn deposit(counters: &UpstreamCounters, budget: RetryBudget) {
    let tokens = counters.retry_tokens.get();
    if tokens < BUDGET_CAP {
        counters
            .retry_tokens
            .set((tokens + u64::from(budget.percent) * 10).min(BUDGET_CAP));
    }
}

/// Takes one retry out of the worker's budget if there is one: the
/// deposits of requests, plus `min_per_second` (this worker's share) refilled
/// with time. `now_ms` is a millisecond clock that never reads 0.
pub(crate) fn withdraw(
    counters: &UpstreamCounters,
    budget: RetryBudget,
    workers: usize,
    now_ms: u64,
) -> bool {
    let last = counters.retry_refilled_ms.get();
    let mut tokens = counters.retry_tokens.get();
    // min_per_second retries a second over all workers: 1000 milli-tokens
    // per retry, shared out; a worker starts with one second's worth.
    let per_second = u64::from(budget.min_per_second) * 1000 / workers.max(1) as u64;
    if last == 0 {
        tokens = (tokens + per_second).min(BUDGET_CAP);
    } else if now_ms > last {
        tokens = (tokens + (now_ms - last) * per_second / 1000).min(BUDGET_CAP);
    }
    counters.retry_refilled_ms.set(now_ms);
    if tokens >= 1000 {
        counters.retry_tokens.set(tokens - 1000);
        true
    } else {
        counters.retry_tokens.set(tokens);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            per_try_timeout: None,
            on_connect_failure: true,
            on_reset: true,
            on_timeout: false,
            on_statuses: vec![503],
            non_idempotent: false,
            replay_limit: 1024,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn idempotent_methods_only_by_default() {
        let p = policy();
        assert!(p.allows_method(&Method::GET));
        assert!(p.allows_method(&Method::PUT));
        assert!(!p.allows_method(&Method::POST));
        assert!(!p.allows_method(&Method::PATCH));
        let p = RetryPolicy {
            non_idempotent: true,
            ..policy()
        };
        assert!(p.allows_method(&Method::POST));
    }

    #[test]
    fn only_the_outcomes_the_policy_names_are_retried() {
        let p = policy();
        let status = |s: u16| Ok::<_, ProxyError>(Response::builder().status(s).body(()).unwrap());
        assert!(p.retries(&status(503)));
        assert!(!p.retries(&status(502)), "502 is not in on_statuses");
        assert!(!p.retries(&status(200)));
        for e in [
            ProxyError::ConnectRefused,
            ProxyError::ConnectTimeout,
            ProxyError::ConnectFailed,
            ProxyError::UpstreamReset,
        ] {
            assert!(p.retries(&Err::<Response<()>, _>(e)), "{e:?}");
        }
        // on_timeout is off in this policy; the client's body and the
        // upstream's limits are never retried.
        for e in [
            ProxyError::ResponseTimeout,
            ProxyError::ClientBody,
            ProxyError::MaxRequests,
            ProxyError::NoHealthyEndpoint,
        ] {
            assert!(!p.retries(&Err::<Response<()>, _>(e)), "{e:?}");
        }
        let p = RetryPolicy {
            on_timeout: true,
            on_connect_failure: false,
            ..policy()
        };
        assert!(p.retries(&Err::<Response<()>, _>(ProxyError::ResponseTimeout)));
        assert!(!p.retries(&Err::<Response<()>, _>(ProxyError::ConnectRefused)));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = policy();
        // The ceiling doubles: 25, 50, 100, 200, then 250.
        for (n, ceiling) in [(2, 25), (3, 50), (4, 100), (5, 200), (6, 250), (30, 250)] {
            let top = p.backoff(n, u64::MAX - (u64::MAX % (ceiling + 1)) - 1);
            assert!(top <= Duration::from_millis(ceiling), "{n}: {top:?}");
            assert_eq!(p.backoff(n, ceiling), Duration::from_millis(ceiling));
            assert_eq!(p.backoff(n, 0), Duration::ZERO);
        }
    }

    #[test]
    fn the_budget_allows_its_share_and_refills_slowly() {
        let c = UpstreamCounters::default();
        let b = RetryBudget {
            percent: 20,
            min_per_second: 0,
        };
        // 100 requests deposit 20 retries' worth, capped at 10.
        for _ in 0..100 {
            deposit(&c, b);
        }
        let allowed = (0..50).filter(|_| withdraw(&c, b, 1, 1)).count();
        assert_eq!(allowed, 10);
        // 10 more requests: 2 more retries.
        for _ in 0..10 {
            deposit(&c, b);
        }
        assert_eq!((0..50).filter(|_| withdraw(&c, b, 1, 2)).count(), 2);
        // min_per_second: a worker starts with one second's worth (3/s over
        // 2 workers = 1,500 milli-retries), then refills at 1.5 a second.
        let b = RetryBudget {
            percent: 0,
            min_per_second: 3,
        };
        let c = UpstreamCounters::default();
        assert!(withdraw(&c, b, 2, 1)); // 1,500 → 500
        assert!(!withdraw(&c, b, 2, 2)); // 501
        assert!(!withdraw(&c, b, 2, 300)); // 948
        assert!(withdraw(&c, b, 2, 400)); // 1,098 → 98
        assert!(!withdraw(&c, b, 2, 401));
    }
}
