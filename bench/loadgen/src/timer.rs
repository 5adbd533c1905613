//! The clock and the wake-ups of the schedule: CLOCK_MONOTONIC in
//! nanoseconds, and a timerfd per connection armed at an absolute time.
//! tokio's timer rounds every sleep up to its 1 ms tick (and epoll_wait's
//! timeout to a millisecond), which at 5,000 requests/s would add up to 1 ms
//! of the generator's own lateness to latencies of ~100 µs; a timerfd fires
//! within a few microseconds of its deadline.

use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Nanoseconds of CLOCK_MONOTONIC, the one time base of the whole run.
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A one-shot timer on CLOCK_MONOTONIC, readable once its deadline passed.
pub struct Timer {
    fd: AsyncFd<OwnedFd>,
}

impl Timer {
    #[allow(unsafe_code)]
    pub fn new() -> std::io::Result<Timer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: tokio's one requirement: the descriptor stays open and the
        // same for the AsyncFd's whole life. It is an OwnedFd that the
        // AsyncFd owns and that nothing else can close or replace.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Timer { fd })
    }

    /// Waits until `now_ns() >= deadline` (returns at once if it already is).
    pub async fn sleep_until(&self, deadline: u64) -> std::io::Result<()> {
        if now_ns() >= deadline {
            return Ok(());
        }
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (deadline / 1_000_000_000) as _,
                tv_nsec: (deadline % 1_000_000_000) as _,
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec)?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(result) => {
                    result?;
                    return Ok(());
                }
                Err(_would_block) => continue,
            }
        }
    }
}
