//! The policy middlewares' families: refusals by middleware name, type and
//! reason (`ip_filter`, `request_limits`, `cors`, `basic_auth`, `api_key`,
//! `rate_limit`, `connection_limit`), one row per reason its
//! type can give; and the preflights each `cors` middleware answered.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::counters;
use crate::metrics::{PolicyStats, Refusal};

pub(super) fn encode(enc: &mut DescriptorEncoder, policies: &[Arc<PolicyStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_middleware_refusals",
        "Requests a policy middleware refused, by middleware, type and reason.",
        policies.iter().flat_map(|p| {
            reasons(p.kind).iter().map(move |&reason| {
                let n = p.shards.sum(|c| c.refusals[reason as usize].get());
                let labels = [
                    ("middleware", &*p.name),
                    ("type", p.kind),
                    ("reason", reason.label()),
                ];
                (labels, n)
            })
        }),
    )?;
    counters(
        enc,
        "strait_cors_preflights",
        "CORS preflights a cors middleware answered itself (204), by middleware.",
        policies.iter().filter(|p| p.kind == "cors").map(|p| {
            let n = p
                .shards
                .sum(|c| c.refusals[Refusal::CorsPreflight as usize].get());
            ([("middleware", &*p.name)], n)
        }),
    )
}

/// The reasons a policy of type `kind` refuses for.
fn reasons(kind: &str) -> &'static [Refusal] {
    match kind {
        "ip_filter" => &[Refusal::Denied, Refusal::NotAllowed],
        "cors" => &[
            Refusal::CorsOrigin,
            Refusal::CorsMethod,
            Refusal::CorsHeaders,
        ],
        "basic_auth" => &[
            Refusal::CredentialsMissing,
            Refusal::CredentialsMalformed,
            Refusal::UnknownUser,
            Refusal::BadPassword,
            Refusal::VerifierBusy,
        ],
        "api_key" => &[Refusal::CredentialsMissing, Refusal::UnknownKey],
        "rate_limit" => &[Refusal::Rate],
        "connection_limit" => &[Refusal::Connections],
        _ => &[
            Refusal::BodyTooLarge,
            Refusal::Method,
            Refusal::HeaderCount,
            Refusal::HeaderBytes,
            Refusal::UrlLength,
        ],
    }
}
