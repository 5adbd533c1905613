//! What the authentication middlewares (`basic_auth`, `api_key`) share: a
//! refusal counted and logged, and an admitted request's consumer set in
//! the context and, when configured, sent upstream in a header of its own.

use http::{HeaderName, StatusCode};

use super::refusal;
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

/// A refusal by the policy of index `policy`, counted and given to the
/// access log as its cause.
pub(super) fn refuse(
    ctx: &mut RequestContext<'_>,
    policy: u16,
    reason: Refusal,
    status: StatusCode,
    body: &'static str,
) -> Flow {
    ctx.ids.set_refusal(policy, reason);
    ctx.log.cause = Some(reason.label());
    Flow::respond(refusal(status, body))
}

/// The request is `consumer`'s: later middlewares, the upstream header and
/// the access log read it. A client's own field of that header's name is
/// removed first, so a client cannot name itself.
pub(super) fn admit<'a>(
    ctx: &mut RequestContext<'a>,
    req: &mut UpstreamRequest<'_>,
    consumer: &'a str,
    header: Option<&HeaderName>,
) {
    ctx.consumer = Some(consumer);
    if let Some(name) = header {
        // Consumer names are checked at load to be valid field values;
        // were one not, the field would be left out rather than forged.
        if req.headers.insert_bytes(name, consumer.as_bytes()).is_err() {
            req.headers.remove(name);
        }
    }
}
