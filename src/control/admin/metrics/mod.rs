//! `GET /metrics`: on each scrape a [`Collector`] sums the workers' shards
//! (`crate::metrics`) over the published snapshot and encodes them with
//! `prometheus-client`, so a route or upstream removed by a reload disappears
//! from the next scrape and one kept by name keeps counting. This module holds
//! the collector, the order of the entities and the helpers that write one
//! family; each entity's families are encoded in its own submodule.

mod endpoints;
mod gateway;
mod names;
mod policies;
mod pools;
mod routes;
#[cfg(test)]
mod tests;
mod upstreams;

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Control;
use crate::config::Snapshot;
use crate::metrics::{HistogramSum, Metrics, STATUS_CLASSES};
use names::NameRow;

/// The `Content-Type` of the OpenMetrics text format.
pub(super) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry whose one collector reads the running gateway.
pub(super) struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub(super) fn new(control: Arc<Control>) -> Self {
        Exposition::with(Box::new(Live(control)))
    }

    fn with(collector: Box<dyn Collector>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(collector);
        Exposition { registry }
    }

    /// The text and its content type: OpenMetrics 1.0 (ending in `# EOF`) or
    /// the classic Prometheus text format 0.0.4.
    pub(super) fn render(&self, openmetrics: bool) -> Result<(String, &'static str), fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            text::encode(&mut out, &self.registry)?;
            Ok((out, OPENMETRICS))
        } else {
            prometheus_text::encode(&mut out, &self.registry)?;
            Ok((out, prometheus_text::CONTENT_TYPE))
        }
    }
}

/// Reads the running gateway on each scrape.
struct Live(Arc<Control>);

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("strait collector")
    }
}

impl Collector for Live {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let c = &self.0;
        let snapshot = c.snapshot();
        let names = names::rows(c.name_table());
        encode(
            encoder,
            &Figures {
                snapshot: &snapshot,
                metrics: &c.metrics,
                connections: (c.budget.open(), c.budget.current_limit()),
                workers: c.workers,
                uptime: c.started.elapsed().as_secs_f64(),
                names: &names,
            },
        )
    }
}

/// What one scrape reads.
struct Figures<'a> {
    snapshot: &'a Snapshot,
    metrics: &'a Metrics,
    /// Client connections open in the process, and the limit in force.
    connections: (usize, usize),
    workers: usize,
    uptime: f64,
    /// The endpoint names, by upstream and `host:port`.
    names: &'a [NameRow],
}

/// Every metric family, entity by entity, in a fixed order.
fn encode(mut enc: DescriptorEncoder, f: &Figures<'_>) -> fmt::Result {
    let stats = &f.snapshot.stats;
    routes::encode(&mut enc, &stats.routes)?;
    policies::encode(&mut enc, &stats.policies)?;
    policies::encode_tables(&mut enc, f.snapshot)?;
    upstreams::encode(&mut enc, &stats.upstreams)?;
    endpoints::encode(&mut enc, f.snapshot)?;
    pools::encode(&mut enc, &stats.pools)?;
    names::encode(&mut enc, f.names)?;
    gateway::encode(&mut enc, f)
}

/// One row per status class of one entity (`key` = its `name`): the rows
/// of a `responses` family.
fn by_class<'a>(
    key: &'static str,
    name: &'a str,
    classes: [u64; 5],
) -> impl Iterator<Item = ([(&'static str, &'a str); 2], u64)> + 'a {
    STATUS_CLASSES
        .iter()
        .zip(classes)
        .map(move |(&class, n)| ([(key, name), ("class", class)], n))
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// A counter family; `name` without `_total` (the encoder appends it).
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histograms<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, HistogramSum)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum,
            h.count,
            &h.buckets(),
            None,
        )?;
    }
    Ok(())
}
