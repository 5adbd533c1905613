//! The compile pass, raw configuration → `Snapshot`: the entry point, the
//! `Compiler` that records every error with its location and goes on (so one run
//! reports every problem), and the helpers its parts share. Each part of the file
//! is compiled by a child module; a snapshot is built only when none reported an error.

mod auth;
mod checks;
mod compress;
mod forward_auth;
mod hash;
mod jwt;
mod limits;
mod listeners;
mod middlewares;
mod policies;
mod routes;
mod server;
mod tls;
mod upstreams;

#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use crate::config::diagnostics::{ConfigErrors, Diagnostics};
use crate::config::names::Names;
use crate::config::parse::{humanize, parse_duration};
use crate::config::raw::RawConfig;
use crate::config::snapshot::Snapshot;
use crate::limit::{ConnTable, LimitTables};
use crate::log::Sink;
use crate::middleware::{CustomRegistry, Middleware};

/// Opens access-log outputs (the control plane's writer threads; a detached
/// stand-in for `strait check`).
pub(crate) trait SinkOpener {
    fn open(&self, output: &str) -> Result<Arc<Sink>, String>;
}

/// Sinks that go nowhere, for `strait check` (no file is created).
pub(crate) struct DetachedSinks;

impl SinkOpener for DetachedSinks {
    fn open(&self, output: &str) -> Result<Arc<Sink>, String> {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        Ok(Arc::new(Sink::new(output, tx)))
    }
}

/// An idle tunnel's limit, upgraded (`[[routes]]`) and `CONNECT` (`[connect]`) alike.
const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Compiles `source` (read from `file`) into a snapshot, or returns every error.
pub(crate) fn compile(
    file: &str,
    source: &str,
    generation: u64,
    registry: &CustomRegistry,
    sinks: &dyn SinkOpener,
    names: &Names<'_>,
    limits: &LimitTables,
) -> Result<Snapshot, ConfigErrors> {
    let mut d = Diagnostics::new(file, source);
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            match e.span() {
                Some(span) => d.at(span, humanize(e.message())),
                None => d.global(humanize(e.message())),
            }
            return Err(d.finish());
        }
    };
    let mut c = Compiler {
        d,
        registry,
        sinks,
        names,
        limits,
        conn_tables: Vec::new(),
    };
    let server = c.server(&raw.server);
    let listeners = c.listeners(&raw, &server);
    let admin = c.admin(&raw.admin);
    let (upstreams, balancing, upstream_ids) = c.upstreams(&raw.upstreams);
    let (middlewares, policies) = c.middlewares(&raw.middlewares, &server);
    let fallback_log = c.fallback_log(&raw.server, &middlewares);
    let (router, routes) = c.routes(&raw.routes, &upstream_ids, &middlewares);
    let connect = raw.connect.as_ref().map(|raw| c.connect(raw.get_ref()));
    if !c.d.is_empty() {
        return Err(c.d.finish());
    }
    // The router is missing only when it reported errors, handled above.
    let Some(router) = router else {
        return Err(c.d.finish());
    };
    Ok(Snapshot {
        generation,
        source: file.to_string(),
        server,
        listeners,
        router,
        routes,
        upstreams,
        balancing,
        fallback_log,
        policies,
        admin,
        stats: Default::default(),
        endpoint_states: Vec::new(),
        connect,
        conn_tables: c.conn_tables.into(),
    })
}

/// A middleware definition after checking, ready to be put into chains.
enum Defined {
    Ready(Middleware),
    /// Defined but invalid: already reported; routes using it add no error.
    Broken,
}

struct Compiler<'s, 'r> {
    d: Diagnostics<'s>,
    registry: &'r CustomRegistry,
    sinks: &'r dyn SinkOpener,
    names: &'r Names<'r>,
    /// The control plane's limit tables, kept across compiles.
    limits: &'r LimitTables,
    /// The `connection_limit` tables of this snapshot, by index.
    conn_tables: Vec<Arc<ConnTable>>,
}

fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

impl Compiler<'_, '_> {
    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.d
                    .at(span(value), format!("{what} must be greater than zero"));
                default
            }
            Ok(d) => d,
            Err(msg) => {
                self.d.at(span(value), format!("{what}: {msg}"));
                default
            }
        }
    }

    fn int_in(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: i64,
        range: Range<i64>,
        what: &str,
    ) -> i64 {
        let Some(value) = value else { return default };
        let n = *value.get_ref();
        if range.contains(&n) {
            n
        } else {
            self.d.at(
                span(value),
                format!(
                    "{what} = {n} is out of range: expected {} to {}",
                    range.start,
                    range.end - 1
                ),
            );
            default
        }
    }

    /// Diagnostics only grows; comparing counts tells whether a part added errors.
    fn error_count(&self) -> usize {
        self.d.len()
    }
}
