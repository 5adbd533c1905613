//! The endpoint-name families (periodic DNS look-ups and their failures), by
//! upstream and `host:port`; the addresses a name resolved to are counted as
//! endpoints by `endpoints`.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::counters;
use crate::control::dns::NameTable;

/// The refresh counters of one endpoint name.
pub(super) struct NameRow {
    pub(super) upstream: String,
    pub(super) host: String,
    pub(super) refreshes: u64,
    pub(super) failures: u64,
}

impl NameRow {
    fn labels(&self) -> [(&'static str, &str); 2] {
        [
            ("upstream", self.upstream.as_str()),
            ("host", self.host.as_str()),
        ]
    }
}

/// The rows of a copy of the name table, sorted because the table is a map
/// whose order is arbitrary.
pub(super) fn rows(table: NameTable) -> Vec<NameRow> {
    let mut names: Vec<NameRow> = table
        .into_iter()
        .map(|(k, s)| NameRow {
            host: k.endpoint(),
            upstream: k.upstream.into(),
            refreshes: s.refreshes,
            failures: s.failures,
        })
        .collect();
    names.sort_by(|a, b| (&a.upstream, &a.host).cmp(&(&b.upstream, &b.host)));
    names
}

pub(super) fn encode(enc: &mut DescriptorEncoder, names: &[NameRow]) -> fmt::Result {
    counters(
        enc,
        "strait_dns_refreshes",
        "Periodic look-ups of an endpoint name (host = host:port as configured), by upstream.",
        names.iter().map(|n| (n.labels(), n.refreshes)),
    )?;
    counters(
        enc,
        "strait_dns_resolution_failures",
        "Periodic look-ups of an endpoint name that failed or found no usable address (the last good addresses stayed), by upstream.",
        names.iter().map(|n| (n.labels(), n.failures)),
    )
}
