//! The policy middlewares' families: refusals by middleware name, type and
//! reason (`ip_filter`, `request_limits`, `cors`, `basic_auth`, `api_key`,
//! `jwt`, `forward_auth`, `rate_limit`, `connection_limit`), one row per reason its
//! type can give; the preflights each `cors` middleware answered; and the
//! limit tables' keys and slots (a scan of each table per scrape).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counters, gauges};
use crate::config::Snapshot;
use crate::metrics::{PolicyStats, Refusal};
use crate::middleware::Middleware;

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

/// The `rate_limit` and `connection_limit` tables the snapshot's routes
/// use, once each: the keys they hold, their slots (`max_keys` rounded up
/// to whole sets of 4) and, for `connection_limit`, the requests in flight.
pub(super) fn encode_tables(enc: &mut DescriptorEncoder, snapshot: &Snapshot) -> fmt::Result {
    let mut tables: Vec<(&str, &Middleware)> = Vec::new();
    for route in &snapshot.routes {
        for (m, name) in route.chain.iter().zip(route.middleware_names.iter()) {
            let limit = matches!(m, Middleware::RateLimit(_) | Middleware::ConnectionLimit(_));
            if limit && !tables.iter().any(|(n, _)| *n == &**name) {
                tables.push((name, m));
            }
        }
    }
    let now = Instant::now();
    let rows: Vec<(&str, &'static str, i64, i64)> = tables
        .iter()
        .filter_map(|&(name, m)| match m {
            Middleware::RateLimit(r) => {
                let t = &r.settings.table;
                Some((
                    name,
                    "rate_limit",
                    t.live_keys(now) as i64,
                    t.slots() as i64,
                ))
            }
            Middleware::ConnectionLimit(c) => {
                let t = &c.settings.table;
                Some((
                    name,
                    "connection_limit",
                    t.live_keys() as i64,
                    t.slots() as i64,
                ))
            }
            _ => None,
        })
        .collect();
    gauges(
        enc,
        "strait_limit_keys",
        "Keys a rate_limit (limit not yet expired) or connection_limit (requests in flight) table holds, by middleware and type.",
        rows.iter()
            .map(|&(name, kind, keys, _)| ([("middleware", name), ("type", kind)], keys)),
    )?;
    gauges(
        enc,
        "strait_limit_key_slots",
        "Slots of a rate_limit or connection_limit table (max_keys rounded up to sets of 4; 8 bytes each), by middleware and type.",
        rows.iter()
            .map(|&(name, kind, _, slots)| ([("middleware", name), ("type", kind)], slots)),
    )?;
    gauges(
        enc,
        "strait_connection_limit_in_flight",
        "Requests a connection_limit counts in flight, over all its keys, by middleware.",
        tables.iter().filter_map(|&(name, m)| match m {
            Middleware::ConnectionLimit(c) => {
                Some(([("middleware", name)], c.settings.table.in_flight() as i64))
            }
            _ => None,
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
        "jwt" => &[
            Refusal::JwtMissing,
            Refusal::JwtMalformed,
            Refusal::JwtAlgorithm,
            Refusal::JwtUnknownKid,
            Refusal::JwtSignature,
            Refusal::JwtExpired,
            Refusal::JwtNotYetValid,
            Refusal::JwtIssuer,
            Refusal::JwtAudience,
            Refusal::JwtClaim,
        ],
        "forward_auth" => &[
            Refusal::AuthDenied,
            Refusal::AuthUnavailable,
            Refusal::AuthFailedOpen,
        ],
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
