//! The per-upstream families (responses, latency, failures, limits, retries,
//! connection reuse), labelled `upstream`; figures per endpoint address are
//! left to `endpoints` and `pools`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::{by_class, counters, gauges, histograms};
use crate::metrics::{sum_classes, HistogramSum, UpstreamStats};

pub(super) fn encode(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    responses(enc, upstreams)?;
    failures(enc, upstreams)?;
    limits(enc, upstreams)?;
    retries(enc, upstreams)?;
    connection_reuse(enc, upstreams)
}

fn responses(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_upstream_responses",
        "Responses from upstreams (or the proxy's own 5xx when the upstream failed), by upstream and status class.",
        upstreams
            .iter()
            .flat_map(|u| by_class("upstream", &u.name, sum_classes(&u.shards, |c| &c.responses))),
    )?;
    histograms(
        enc,
        "strait_upstream_response_duration_seconds",
        "Time from sending the request upstream to its response head, by upstream.",
        by_upstream(upstreams, |u| {
            HistogramSum::of(u.shards.iter().map(|c| &c.latency))
        }),
    )
}

fn failures(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_upstream_connect_failures",
        "Upstream connection attempts that failed (refused, unreachable, timed out), by upstream.",
        by_upstream(upstreams, |u| u.shards.sum(|c| c.connect_failures.get())),
    )?;
    counters(
        enc,
        "strait_upstream_timeouts",
        "Requests that got no response head within response_header_timeout, by upstream.",
        by_upstream(upstreams, |u| u.shards.sum(|c| c.timeouts.get())),
    )
}

/// `max_requests`, `max_connections` and `max_pending`: what each limits, and
/// the requests each turned away.
fn limits(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    gauges(
        enc,
        "strait_upstream_in_flight",
        "Requests in flight to the upstream (what max_requests limits), by upstream.",
        by_upstream(upstreams, |u| {
            u.shards.sum_i64(|c| c.in_flight.get()).max(0)
        }),
    )?;
    counters(
        enc,
        "strait_upstream_limit_rejections",
        "Requests answered 503 because an upstream limit was reached, by upstream and limit.",
        upstreams.iter().flat_map(|u| {
            [
                (
                    [("upstream", &*u.name), ("limit", "max_requests")],
                    u.shards.sum(|c| c.limit_rejections.get()),
                ),
                (
                    [("upstream", &*u.name), ("limit", "max_connections")],
                    u.shards.sum(|c| c.max_connections_rejections.get()),
                ),
                (
                    [("upstream", &*u.name), ("limit", "max_pending")],
                    u.shards.sum(|c| c.max_pending_rejections.get()),
                ),
            ]
        }),
    )?;
    gauges(
        enc,
        "strait_upstream_open_connections",
        "Connections open that the upstream opened (what max_connections limits), by upstream.",
        by_upstream(upstreams, |u| {
            u.shards.sum_i64(|c| c.connections.get()).max(0)
        }),
    )?;
    gauges(
        enc,
        "strait_upstream_pending",
        "Requests waiting for a connection under max_connections (what max_pending limits), by upstream.",
        by_upstream(upstreams, |u| u.shards.sum_i64(|c| c.pending.get()).max(0)),
    )
}

fn retries(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_upstream_retries",
        "Retries sent (attempts after the first), by upstream.",
        by_upstream(upstreams, |u| u.shards.sum(|c| c.retries.get())),
    )?;
    counters(
        enc,
        "strait_upstream_retry_budget_exhausted",
        "Retries not sent because the upstream's retry budget was spent, by upstream.",
        by_upstream(upstreams, |u| {
            u.shards.sum(|c| c.retry_budget_exhausted.get())
        }),
    )
}

fn connection_reuse(enc: &mut DescriptorEncoder, upstreams: &[Arc<UpstreamStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_upstream_connections",
        "Upstream exchanges by connection: reused=\"true\" over a pooled keep-alive connection, reused=\"false\" over a new one.",
        upstreams.iter().flat_map(|u| {
            [
                (
                    [("upstream", &*u.name), ("reused", "true")],
                    u.shards.sum(|c| c.pool_reused.get()),
                ),
                (
                    [("upstream", &*u.name), ("reused", "false")],
                    u.shards.sum(|c| c.pool_new.get()),
                ),
            ]
        }),
    )
}

/// One row per upstream, labelled with its name only.
fn by_upstream<'a, V>(
    upstreams: &'a [Arc<UpstreamStats>],
    value: impl Fn(&UpstreamStats) -> V + 'a,
) -> impl Iterator<Item = ([(&'static str, &'a str); 1], V)> + 'a {
    upstreams
        .iter()
        .map(move |u| ([("upstream", &*u.name)], value(u)))
}
