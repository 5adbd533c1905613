//! Active health checks (control plane). Placeholder until implemented.

use std::sync::Arc;

use super::Control;

/// Runs the health checks of the current snapshot, following reloads.
pub(crate) async fn run(control: Arc<Control>) {
    let _ = control;
}
