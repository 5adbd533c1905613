//! The control plane's side of outlier detection: a worker ejects an endpoint
//! by writing its "ejected until" time; nobody needs to act for it to come
//! back, but the return is logged once, here, and the time cleared.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Control;
use crate::upstream::outlier::unix_ms;

/// How often ejected endpoints are looked at.
const TICK: Duration = Duration::from_millis(250);

/// Logs each ejected endpoint's return, once.
pub(crate) async fn watch_returns(control: Arc<Control>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snap = control.snapshot();
        let now = unix_ms();
        for (u, endpoints) in snap.stats.endpoints.iter().enumerate() {
            for e in endpoints {
                let until = e.ejected_until_ms.0.load(Ordering::Relaxed);
                if until != 0
                    && until <= now
                    && e.ejected_until_ms
                        .0
                        .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::info!(
                        upstream = snap.upstreams.get(u).map_or("", |s| &*s.name),
                        endpoint = %e.addr,
                        "ejected endpoint returned"
                    );
                }
            }
        }
    }
}
