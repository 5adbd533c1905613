//! Configuration in three stages: `raw` (the TOML file as serde sees it, unknown
//! keys refused), validation (`validate` + `compile`, every error collected with
//! file and line, never a panic) and the compiled `Snapshot` the data plane reads.

mod compile;
pub(crate) mod intern;
mod raw;
mod snapshot;
mod validate;

pub(crate) use compile::{compile, SinkOpener};
pub use snapshot::Snapshot;
pub(crate) use snapshot::{
    admin_exposed_message, ConnectSettings, ConnectTarget, Route, ServerSettings, SnapshotRef,
};
pub use validate::{ConfigError, ConfigErrors};

/// The built-in configuration `strait` runs with no arguments; `{DEMO_ORIGIN}` is
/// replaced by the address of the bundled demo origin.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");
