//! What the balancers know of an endpoint's health: its active-check state
//! (written by the control plane's health checker on a change of state
//! only) and its outlier ejection (written by the worker that ejects it, and
//! by the control plane when it returns). Read with one relaxed load per
//! candidate on every pick; each on cache lines of its own. Carried across
//! reloads by (upstream name, address), like the endpoint's statistics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use crate::metrics::Padded;

/// One endpoint's health and ejection state.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) addr: SocketAddr,
    /// Read on every pick; written only when the state changes.
    pub(crate) health: Padded<Health>,
    /// Outlier detection: ejected until this Unix time (ms); read on every
    /// pick of an upstream with outlier detection, written on an ejection
    /// (by the worker that decides it) and on the return (control plane).
    pub(crate) ejected_until_ms: Padded<AtomicU64>,
    /// Ejections so far (each lasts longer than the one before).
    pub(crate) ejections: AtomicU64,
}

impl EndpointState {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        EndpointState {
            addr,
            health: Padded(Health::default()),
            ejected_until_ms: Padded(AtomicU64::new(0)),
            ejections: AtomicU64::new(0),
        }
    }

    /// Whether outlier detection holds the endpoint out at `now_ms`.
    #[inline]
    pub(crate) fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.0.load(Ordering::Relaxed) > now_ms
    }

    /// Whether a pick may choose it at `now_ms`: up, and not ejected.
    #[inline]
    pub(crate) fn is_available(&self, now_ms: u64) -> bool {
        self.health.0.is_healthy() && !self.is_ejected(now_ms)
    }
}

/// Health as the balancers see it: written by the health checker (control
/// plane) on a change of state only, read with one relaxed load per pick.
/// The probe bookkeeping (`streak`, `last_probe`, `last_error`) is written by
/// the checker once per probe interval and never read by a worker.
#[derive(Debug)]
pub(crate) struct Health {
    healthy: AtomicBool,
    /// Whether an active check runs for this endpoint.
    checked: AtomicBool,
    /// Consecutive probe results in the current direction (control plane).
    pub(crate) streak: AtomicU64,
    /// The last probe's outcome: 0 none yet, 1 passed, 2 failed.
    pub(crate) last_probe: AtomicU8,
    /// Why the last failed probe failed ("connection refused", "status 503");
    /// control plane only.
    last_error: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthy: AtomicBool::new(true),
            checked: AtomicBool::new(false),
            streak: AtomicU64::new(0),
            last_probe: AtomicU8::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl Health {
    #[inline]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the state; returns whether it changed.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub(crate) fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    pub(crate) fn set_checked(&self, checked: bool) {
        self.checked.store(checked, Ordering::Relaxed);
    }

    /// The cause of the last failed probe.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, cause: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = cause;
    }
}
