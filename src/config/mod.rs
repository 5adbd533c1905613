//! Configuration in three stages: `raw` (the TOML file as serde sees it, unknown
//! keys refused), validation (`compile`, with `parse` for the values and
//! `diagnostics` collecting every error with file and line, never a panic) and the
//! compiled `Snapshot` the data plane reads. `names` is how the compiler
//! learns the addresses of endpoint names.

mod compile;
mod diagnostics;
pub(crate) mod intern;
pub(crate) mod names;
mod parse;
mod raw;
mod snapshot;

pub(crate) use compile::{compile, DetachedSinks, SinkOpener};
pub use diagnostics::{ConfigError, ConfigErrors};
pub use snapshot::Snapshot;
pub(crate) use snapshot::{
    admin_exposed_message, ConnectSettings, ConnectTarget, RetryPolicy, Route, ServerSettings,
    SnapshotRef,
};

/// The built-in configuration `strait` runs with no arguments; `{DEMO_ORIGIN}` is
/// replaced by the address of the bundled demo origin.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");
