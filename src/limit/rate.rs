//! The `rate_limit` table: per key, the GCRA theoretical arrival time
//! (TAT), packed with a 20-bit fingerprint of the key into one `AtomicU64`
//! and advanced with one compare-and-swap per request that passes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{set_of, sets, Seed, Set, WAYS};

/// The bits of a slot that hold the TAT, in microseconds since the
/// table's epoch, modulo 2^44 (203 days; compared with wrapping
/// arithmetic, so a table outlives the wrap).
const TAT_BITS: u32 = 44;
const TAT_MASK: u64 = (1 << TAT_BITS) - 1;
/// The fingerprint's bits (0 is a free slot, never a fingerprint).
const FP_MASK: u64 = (1 << (64 - TAT_BITS)) - 1;

/// How far two requests' views of now may differ (each reads the clock
/// just before its check; a thread may be preempted in between): a TAT
/// further ahead than the tolerance, one interval and this is stale (left
/// by a key at rest for longer than the wrap, 203 days), not a limit.
const SKEW_US: u64 = 1_000_000;

/// The largest tolerance plus interval a table takes (`burst` ×
/// interval): 30 days, well inside the half-range of the wrapping TAT.
pub(crate) const MAX_HORIZON_US: u64 = 30 * 86_400 * 1_000_000;

/// What the table says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit; its conforming time is `wait_us` from its start
    /// (0 unless it used the burst): `delay` mode waits that long.
    Pass {
        /// Microseconds from now to its conforming time.
        wait_us: u64,
    },
    /// Over the limit: it would conform in `retry_us`.
    Refuse {
        /// Microseconds from now until a request of the key would pass.
        retry_us: u64,
    },
}

/// A bounded table of GCRA states: `interval_us` (T = 1 / rate) and
/// `tolerance_us` (τ = burst × T), shared by every worker.
pub struct RateTable {
    sets: Box<[Set]>,
    seed: Seed,
    epoch: Instant,
    interval_us: u64,
    tolerance_us: u64,
}

impl RateTable {
    /// `interval_us` ≥ 1 and `tolerance_us + interval_us` ≤
    /// [`MAX_HORIZON_US`] (checked at load).
    pub fn new(max_keys: usize, interval_us: u64, tolerance_us: u64) -> Self {
        RateTable {
            sets: sets(max_keys),
            seed: Seed::new(),
            epoch: Instant::now(),
            interval_us: interval_us.max(1),
            tolerance_us,
        }
    }

    /// The table's keyed hash, which a key's bytes go through.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// Slots in the table (`max_keys` rounded up to whole sets).
    pub(crate) fn slots(&self) -> usize {
        self.sets.len() * WAYS
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64 & TAT_MASK
    }

    /// How far the TAT in `slot` is ahead of `now`, if it is (`None`: the
    /// key's limit has expired, it is as good as absent).
    fn ahead(&self, slot: u64, now: u64) -> Option<u64> {
        let ahead = (slot & TAT_MASK).wrapping_sub(now) & TAT_MASK;
        let horizon = self.tolerance_us + self.interval_us + SKEW_US;
        (ahead != 0 && ahead <= horizon).then_some(ahead)
    }

    /// GCRA for the key whose hash is `hash`, for a request that started
    /// `at`: it passes when its TAT is at most τ ahead, and the TAT moves
    /// one interval on. A key not in its set takes a free or expired slot,
    /// else the slot whose TAT is nearest (the least limit lost).
    pub fn check(&self, hash: u64, at: Instant) -> Verdict {
        let set = &self.sets[set_of(hash, self.sets.len())].0;
        let fp = match hash & FP_MASK {
            0 => 1,
            fp => fp,
        };
        let now = self.micros(at);
        loop {
            let mut found = None;
            // The victim: (rank, slot, value), rank 0 for free or expired.
            let mut victim = (u64::MAX, 0, 0);
            for (i, slot) in set.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                let ahead = if v == 0 { None } else { self.ahead(v, now) };
                if v != 0 && v >> TAT_BITS == fp {
                    found = Some((i, v, ahead.unwrap_or(0)));
                    break;
                }
                let rank = ahead.unwrap_or(0);
                if rank < victim.0 {
                    victim = (rank, i, v);
                }
            }
            let (i, old, ahead) = found.unwrap_or((victim.1, victim.2, 0));
            if ahead > self.tolerance_us {
                return Verdict::Refuse {
                    retry_us: ahead - self.tolerance_us,
                };
            }
            let tat = (now + ahead + self.interval_us) & TAT_MASK;
            let new = fp << TAT_BITS | tat;
            if set[i]
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Verdict::Pass { wait_us: ahead };
            }
            // Another request of this set moved first: read it again.
        }
    }

    /// Keys whose limit has not expired as of `at` (a scan, for /metrics).
    pub(crate) fn live_keys(&self, at: Instant) -> usize {
        let now = self.micros(at);
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .filter(|slot| {
                let v = slot.load(Ordering::Relaxed);
                v != 0 && self.ahead(v, now).is_some()
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;
    use std::time::Duration;

    use super::*;

    fn hash(table: &RateTable, key: u64) -> u64 {
        let mut h = table.seed().hasher();
        h.write_u64(key);
        h.finish()
    }

    /// Requests of one key at `at + offsets[i]` ms: which pass.
    fn run(table: &RateTable, key: u64, start: Instant, offsets_ms: &[u64]) -> Vec<bool> {
        let h = hash(table, key);
        offsets_ms
            .iter()
            .map(|&ms| {
                let v = table.check(h, start + Duration::from_millis(ms));
                matches!(v, Verdict::Pass { .. })
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_rate() {
        // 10/s (T = 100ms), burst 2: three at once, then one per 100ms.
        let t = RateTable::new(100, 100_000, 200_000);
        let start = t.epoch + Duration::from_secs(5);
        assert_eq!(
            run(&t, 1, start, &[0, 0, 0, 0, 50, 100, 150, 200, 250, 300]),
            [true, true, true, false, false, true, false, true, false, true]
        );
        // Another key has its own limit.
        assert_eq!(run(&t, 2, start, &[0, 0, 0, 0]), [true, true, true, false]);
    }

    #[test]
    fn the_wait_and_the_retry_are_told() {
        let t = RateTable::new(100, 100_000, 200_000);
        let h = hash(&t, 7);
        let at = t.epoch + Duration::from_secs(1);
        assert_eq!(t.check(h, at), Verdict::Pass { wait_us: 0 });
        assert_eq!(t.check(h, at), Verdict::Pass { wait_us: 100_000 });
        assert_eq!(t.check(h, at), Verdict::Pass { wait_us: 200_000 });
        assert_eq!(t.check(h, at), Verdict::Refuse { retry_us: 100_000 });
        let later = at + Duration::from_millis(30);
        assert_eq!(t.check(h, later), Verdict::Refuse { retry_us: 70_000 });
    }

    #[test]
    fn the_table_stays_within_its_bound_under_100000_keys() {
        let t = RateTable::new(1000, 1_000_000, 0);
        let at = t.epoch + Duration::from_secs(1);
        // A new key is refused only when its 20-bit fingerprint is that of
        // a key live in its set (3 others: 3 in 2^20, 0.3 expected here).
        let refused = (0..100_000u64)
            .filter(|&key| matches!(t.check(hash(&t, key), at), Verdict::Refuse { .. }))
            .count();
        assert!(refused <= 5, "{refused} new keys refused");
        assert_eq!(t.slots(), 1000);
        let live = t.live_keys(at);
        assert!(live <= 1000 && live > 900, "{live} live keys");
        // A key seen last is held; its second request is refused.
        let last = hash(&t, 99_999);
        assert!(matches!(t.check(last, at), Verdict::Refuse { .. }));
        // Once every limit expires, none is live.
        assert_eq!(t.live_keys(at + Duration::from_secs(3)), 0);
    }

    #[test]
    fn a_stale_or_wrapped_tat_is_no_limit() {
        let t = RateTable::new(4, 1_000_000, 0);
        let h = hash(&t, 1);
        let at = t.epoch + Duration::from_secs(10);
        assert!(matches!(t.check(h, at), Verdict::Pass { .. }));
        // Past the wrap (2^44 µs, 203 days) and the horizon: no limit.
        let wrapped = at + Duration::from_micros(1 << TAT_BITS) + Duration::from_secs(2);
        assert!(matches!(t.check(h, wrapped), Verdict::Pass { .. }));
        let much_later = wrapped + Duration::from_secs(50 * 86_400);
        assert!(matches!(t.check(h, much_later), Verdict::Pass { .. }));
    }

    #[test]
    fn workers_share_the_limit() {
        // 4 threads, one key, all at one instant: exactly burst + 1 pass.
        let t = std::sync::Arc::new(RateTable::new(100, 1_000_000, 49_000_000));
        let at = t.epoch + Duration::from_secs(1);
        let h = hash(&t, 3);
        let passed: usize = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| matches!(t.check(h, at), Verdict::Pass { .. }))
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|j| j.join().unwrap())
            .sum();
        assert_eq!(passed, 50);
    }
}
