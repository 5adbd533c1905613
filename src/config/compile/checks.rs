//! Compiles an upstream's `health_check` and `outlier_detection` tables. The
//! upstream they belong to is assembled by `upstreams`.

use http::Method;
use toml::Spanned;

use super::{span, Compiler};
use crate::config::parse::{parse_duration, parse_status_range};
use crate::config::raw::{RawHealthCheck, RawOutlierDetection};
use crate::upstream::{self, HealthCheckSpec, OutlierSpec, Probe};

impl Compiler<'_, '_> {
    pub(super) fn health_check(
        &mut self,
        upstream: &str,
        raw: &Spanned<RawHealthCheck>,
    ) -> HealthCheckSpec {
        let h = raw.get_ref();
        let what = |k: &str| format!("upstreams.{upstream}.health_check.{k}");
        let kind = h.kind.as_ref().map_or("http", |k| k.get_ref().as_str());
        let probe = match kind {
            "tcp" => {
                for (set, key) in [
                    (h.method.as_ref().map(span), "method"),
                    (h.path.as_ref().map(span), "path"),
                    (h.host.as_ref().map(span), "host"),
                    (h.expected_statuses.first().map(span), "expected_statuses"),
                ] {
                    if let Some(at) = set {
                        self.d.at(
                            at,
                            format!("{} applies to type = \"http\" only, not \"tcp\"", what(key)),
                        );
                    }
                }
                Probe::Tcp
            }
            "http" => {
                let method = match &h.method {
                    None => Method::GET,
                    Some(m) => match Method::from_bytes(m.get_ref().as_bytes()) {
                        Ok(m) => m,
                        Err(_) => {
                            self.d.at(
                                span(m),
                                format!(
                                    "{}: invalid method {:?}: expected a token like \"GET\"",
                                    what("method"),
                                    m.get_ref()
                                ),
                            );
                            Method::GET
                        }
                    },
                };
                let path = match &h.path {
                    None => "/".to_string(),
                    Some(p)
                        if p.get_ref().starts_with('/')
                            && http::uri::PathAndQuery::try_from(p.get_ref().as_str()).is_ok() =>
                    {
                        p.get_ref().clone()
                    }
                    Some(p) => {
                        self.d.at(
                            span(p),
                            format!(
                                "{}: invalid path {:?}: expected an absolute path like \"/healthz\"",
                                what("path"),
                                p.get_ref()
                            ),
                        );
                        "/".to_string()
                    }
                };
                let host = match &h.host {
                    None => None,
                    Some(v)
                        if http::HeaderValue::from_str(v.get_ref()).is_ok()
                            && !v.get_ref().is_empty() =>
                    {
                        Some(v.get_ref().clone())
                    }
                    Some(v) => {
                        self.d.at(
                            span(v),
                            format!("{}: invalid host {:?}", what("host"), v.get_ref()),
                        );
                        None
                    }
                };
                let mut statuses = Vec::new();
                for s in &h.expected_statuses {
                    match parse_status_range(s.get_ref()) {
                        Ok(r) => statuses.push(r),
                        Err(msg) => self
                            .d
                            .at(span(s), format!("{}: {msg}", what("expected_statuses"))),
                    }
                }
                if statuses.is_empty() {
                    statuses.push((200, 399));
                }
                Probe::Http {
                    method,
                    path,
                    host,
                    statuses,
                }
            }
            other => {
                if let Some(k) = &h.kind {
                    self.d.at(
                        span(k),
                        format!(
                            "{}: unknown type {other:?}: expected \"http\" or \"tcp\"",
                            what("type")
                        ),
                    );
                }
                Probe::Tcp
            }
        };
        let interval = self.duration(
            &h.interval,
            upstream::DEFAULT_HEALTH_INTERVAL,
            &what("interval"),
        );
        let timeout = self.duration(
            &h.timeout,
            upstream::DEFAULT_HEALTH_TIMEOUT,
            &what("timeout"),
        );
        if timeout > interval {
            if let Some(t) = &h.timeout {
                self.d.at(
                    span(t),
                    format!(
                        "{} ({timeout:?}) is longer than the interval ({interval:?}): probes would overlap",
                        what("timeout")
                    ),
                );
            }
        }
        HealthCheckSpec {
            probe,
            interval,
            timeout,
            healthy_threshold: self.int_in(
                &h.healthy_threshold,
                i64::from(upstream::DEFAULT_HEALTHY_THRESHOLD),
                1..101,
                &what("healthy_threshold"),
            ) as u32,
            unhealthy_threshold: self.int_in(
                &h.unhealthy_threshold,
                i64::from(upstream::DEFAULT_UNHEALTHY_THRESHOLD),
                1..101,
                &what("unhealthy_threshold"),
            ) as u32,
            fail_open: h.fail_open.unwrap_or(false),
        }
    }

    pub(super) fn outlier(&mut self, upstream: &str, o: &RawOutlierDetection) -> OutlierSpec {
        let what = |k: &str| format!("upstreams.{upstream}.outlier_detection.{k}");
        let spec = OutlierSpec {
            consecutive_5xx: self.int_in(
                &o.consecutive_5xx,
                i64::from(upstream::DEFAULT_CONSECUTIVE_5XX),
                0..1001,
                &what("consecutive_5xx"),
            ) as u32,
            consecutive_connect_failures: self.int_in(
                &o.consecutive_connect_failures,
                i64::from(upstream::DEFAULT_CONSECUTIVE_CONNECT_FAILURES),
                0..1001,
                &what("consecutive_connect_failures"),
            ) as u32,
            base_ejection_time: self.duration(
                &o.base_ejection_time,
                upstream::DEFAULT_BASE_EJECTION_TIME,
                &what("base_ejection_time"),
            ),
            max_ejection_time: self.duration(
                &o.max_ejection_time,
                upstream::DEFAULT_MAX_EJECTION_TIME.max(
                    o.base_ejection_time
                        .as_ref()
                        .and_then(|b| parse_duration(b.get_ref()).ok())
                        .unwrap_or_default(),
                ),
                &what("max_ejection_time"),
            ),
            max_ejection_percent: self.int_in(
                &o.max_ejection_percent,
                i64::from(upstream::DEFAULT_MAX_EJECTION_PERCENT),
                0..101,
                &what("max_ejection_percent"),
            ) as u32,
        };
        if spec.max_ejection_time < spec.base_ejection_time {
            if let Some(m) = &o.max_ejection_time {
                self.d.at(
                    span(m),
                    format!(
                        "{} ({:?}) is shorter than base_ejection_time ({:?})",
                        what("max_ejection_time"),
                        spec.max_ejection_time,
                        spec.base_ejection_time
                    ),
                );
            }
        }
        spec
    }
}
