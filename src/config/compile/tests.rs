//! Unit tests of the compile pass, one module per part (as in `compile/`): a
//! small configuration in, the compiled values (defaults spelled out as numbers)
//! or the exact errors with their line and column out. The helpers are here.

mod checks;
mod hash;
mod listeners;
mod middlewares;
mod routes;
mod server;
mod tls;
mod upstreams;

use std::time::Duration;

use super::compile;
use crate::balance::BalancePolicy;
use crate::config::names::{Names, SystemResolver};
use crate::config::snapshot::Route;
use crate::config::{ConfigErrors, DetachedSinks, Snapshot};
use crate::middleware::CustomRegistry;
use crate::upstream::UpstreamSpec;

/// Compiles `source` the way `strait check` does (detached log sinks, names
/// resolved afresh; the snippets use IP endpoints only, so none is resolved).
/// Every test goes through here, so a change to `compile`'s inputs is made once.
fn compile_text(source: &str) -> Result<Snapshot, ConfigErrors> {
    compile(
        "t.toml",
        source,
        1,
        &CustomRegistry::default(),
        &DetachedSinks,
        &Names::fresh(&SystemResolver),
        &crate::limit::LimitTables::default(),
    )
}

/// What every snippet is completed with, after its own lines so that the lines
/// and columns a test expects are the snippet's: the least a configuration needs.
const BASE: &str = r#"
[[listeners]]
address = "127.0.0.1:18080"

[upstreams.base]
endpoints = ["127.0.0.1:19000"]

[[routes]]
name = "base"
match = { path_prefix = "/base" }
upstream = "base"
"#;

fn with_base(lines: &[&str]) -> String {
    format!("{}\n{BASE}", lines.join("\n"))
}

/// The snapshot of a snippet completed with `BASE`; it must compile.
fn compiled(lines: &[&str]) -> Snapshot {
    compile_text(&with_base(lines)).unwrap_or_else(|e| panic!("{e}"))
}

/// Every error of `source` as `"line:column: message"` (`0:0` for file-wide).
fn errors(source: &str) -> Vec<String> {
    match compile_text(source) {
        Ok(_) => panic!("compiled, but errors were expected:\n{source}"),
        Err(e) => {
            let located =
                |e: &crate::config::ConfigError| format!("{}:{}: {}", e.line, e.column, e.message);
            e.0.iter().map(located).collect()
        }
    }
}

/// Each snippet (completed with `BASE`) must fail with exactly these errors,
/// in report order.
fn assert_errors(cases: &[(&[&str], &[&str])]) {
    for (lines, expected) in cases {
        let got = errors(&with_base(lines));
        assert_eq!(got, *expected, "snippet:\n{}", lines.join("\n"));
    }
}

fn upstream<'a>(snap: &'a Snapshot, name: &str) -> &'a UpstreamSpec {
    let found = snap.upstreams.iter().find(|u| &*u.name == name);
    found.unwrap_or_else(|| panic!("no upstream {name:?}"))
}

/// How upstream `name` picks its endpoints.
fn balancing<'a>(snap: &'a Snapshot, name: &str) -> &'a BalancePolicy {
    let found = snap.upstreams.iter().position(|u| &*u.name == name);
    let i = found.unwrap_or_else(|| panic!("no upstream {name:?}"));
    &snap.balancing[i]
}

fn route<'a>(snap: &'a Snapshot, name: &str) -> &'a Route {
    let found = snap.routes.iter().find(|r| &*r.name == name);
    found.unwrap_or_else(|| panic!("no route {name:?}"))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
