//! The per-route families (responses by status class, request duration, body
//! bytes), labelled `route`; what the same requests met upstream is left to
//! `upstreams`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::{by_class, counters, histograms};
use crate::metrics::{sum_classes, HistogramSum, RouteStats};

pub(super) fn encode(enc: &mut DescriptorEncoder, routes: &[Arc<RouteStats>]) -> fmt::Result {
    counters(
        enc,
        "strait_route_responses",
        "Responses sent to clients, by route and status class.",
        routes
            .iter()
            .flat_map(|r| by_class("route", &r.name, sum_classes(&r.shards, |c| &c.responses))),
    )?;
    histograms(
        enc,
        "strait_route_request_duration_seconds",
        "Time from the request head to the end of the response body, by route.",
        by_route(routes, |r| {
            HistogramSum::of(r.shards.iter().map(|c| &c.latency))
        }),
    )?;
    counters(
        enc,
        "strait_route_received_bytes",
        "Request body bytes received from clients, by route.",
        by_route(routes, |r| r.shards.sum(|c| c.bytes_in.get())),
    )?;
    counters(
        enc,
        "strait_route_sent_bytes",
        "Response body bytes sent to clients, by route.",
        by_route(routes, |r| r.shards.sum(|c| c.bytes_out.get())),
    )
}

/// One row per route, labelled with its name only.
fn by_route<'a, V>(
    routes: &'a [Arc<RouteStats>],
    value: impl Fn(&RouteStats) -> V + 'a,
) -> impl Iterator<Item = ([(&'static str, &'a str); 1], V)> + 'a {
    routes
        .iter()
        .map(move |r| ([("route", &*r.name)], value(r)))
}
