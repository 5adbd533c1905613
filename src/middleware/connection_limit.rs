//! The concurrency limit (`type = "connection_limit"`, nginx
//! `limit_conn`): at most `max` requests in flight per key, counted
//! process-wide (`limit/conns.rs`). A request's count is taken here and
//! held by a drop guard that the request's context keeps and hands to the
//! response body (`proxy/request.rs` `epilogue`), so it ends when the
//! response body has been sent or dropped, on every path.

use std::sync::Arc;

use http::StatusCode;

use super::limit_key::LimitKey;
use super::refusal;
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::limit::{Acquired, ConnGuard, ConnTable};
use crate::metrics::Refusal;

const TOO_MANY: &str = "429 Too Many Requests: too many requests in flight on this route\n";
const UNAVAILABLE: &str = "503 Service Unavailable: too many requests in flight on this route\n";

/// `type = "connection_limit"`: cloned into every route that lists it;
/// the settings and the table are shared.
#[derive(Clone)]
pub(crate) struct ConnectionLimit {
    pub(crate) settings: Arc<ConnSettings>,
    /// Its index in the snapshot's policies (where refusals count).
    pub(crate) policy: u16,
}

/// What a `connection_limit` was compiled into.
pub(crate) struct ConnSettings {
    /// The process-wide counts (kept across reloads by the registry).
    pub(crate) table: Arc<ConnTable>,
    /// The table's index in the snapshot's `conn_tables`, where a guard
    /// finds it again.
    pub(crate) index: u16,
    /// What a request counts under.
    pub(crate) key: LimitKey,
    /// The most requests of one key in flight.
    pub(crate) max: u32,
    /// As configured (the table has it rounded up to whole sets), for /config.
    pub(crate) max_keys: u64,
    /// 429, or 503 when configured.
    pub(crate) status: StatusCode,
}

impl ConnectionLimit {
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Flow {
        let s = &*self.settings;
        let Some(hash) = s.key.hash(s.table.seed(), ctx, req) else {
            return Flow::Continue;
        };
        match s.table.acquire(hash, s.max) {
            Acquired::Held(slot) => {
                match ctx.tables {
                    Some(lender) => ctx.hold(ConnGuard::new(lender.lend(), s.index, slot)),
                    // Never: every request that runs middlewares has them.
                    None => s.table.release(slot),
                }
                Flow::Continue
            }
            Acquired::Untracked => Flow::Continue,
            Acquired::Full => {
                ctx.ids.set_refusal(self.policy, Refusal::Connections);
                ctx.log.cause = Some(Refusal::Connections.label());
                let body = if s.status == StatusCode::TOO_MANY_REQUESTS {
                    TOO_MANY
                } else {
                    UNAVAILABLE
                };
                Flow::respond(refusal(s.status, body))
            }
        }
    }
}
