//! The admin API (control plane). Placeholder until implemented.

use std::sync::Arc;

use super::Control;

/// Serves the admin API on `listener` until the control thread stops.
pub(crate) async fn serve(control: Arc<Control>, listener: tokio::net::TcpListener) {
    let _ = (control, listener);
}
