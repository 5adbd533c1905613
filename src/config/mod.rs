//! Configuration in three stages: `raw` (the TOML file as serde sees it, unknown
//! keys refused), validation (`compile`, with `parse` for the values and
//! `diagnostics` collecting every error with file and line, never a panic) and the
//! compiled `Snapshot` the data plane reads.

mod compile;
mod diagnostics;
pub(crate) mod intern;
mod parse;
mod raw;
mod snapshot;

pub(crate) use compile::{compile, SinkOpener};
pub use diagnostics::{ConfigError, ConfigErrors};
pub use snapshot::Snapshot;
pub(crate) use snapshot::{
    admin_exposed_message, ConnectSettings, ConnectTarget, Route, ServerSettings, SnapshotRef,
};

/// The built-in configuration `strait` runs with no arguments; `{DEMO_ORIGIN}` is
/// replaced by the address of the bundled demo origin.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");
