//! When the loop syncs, and how: a pure decision from the clock, what is
//! pending and what was done last, so the rules are tested without a
//! kernel (kube-proxy's `BoundedFrequencyRunner`, plus drain ticks):
//!
//! * nothing happens before the sources have synced (and, with NodeCIDR
//!   detection, before the Node has a pod CIDR);
//! * a **full** sync (drift repair) when none has ended in the last
//!   `syncPeriod`;
//! * else an **incremental** sync when something changed and no sync has
//!   ended in the last `minSyncPeriod`;
//! * else, while real servers drain, a **drain** tick at most every
//!   [`DRAIN_INTERVAL`];
//! * else wait.
//!
//! Periods count from the *end* of a sync, so a full sync longer than
//! `syncPeriod` does not make every following sync a full one.

use std::time::{Duration, Instant};

/// How often drained real servers are checked for removal.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Wait,
    /// A full sync: re-read node facts and the kernel, repair drift.
    Full,
    /// Sync what changed.
    Incremental,
    /// Remove drained real servers that are done.
    Drain,
}

/// What the loop knows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// The current time.
    pub now: Instant,
    /// Whether programming may start (sources synced; NodeCIDR has CIDRs).
    pub ready: bool,
    /// Whether changes wait for a sync.
    pub pending: bool,
    /// Whether real servers are draining.
    pub draining: bool,
}

/// The scheduler's memory: when syncs and drain ticks last ended.
#[derive(Debug, Clone)]
pub struct Schedule {
    sync_period: Duration,
    min_sync_period: Duration,
    last_sync: Option<Instant>,
    last_full: Option<Instant>,
    last_drain: Option<Instant>,
}

impl Schedule {
    /// A schedule with kube-proxy's `syncPeriod` and `minSyncPeriod`.
    pub fn new(sync_period: Duration, min_sync_period: Duration) -> Self {
        Self {
            sync_period,
            min_sync_period,
            last_sync: None,
            last_full: None,
            last_drain: None,
        }
    }

    fn since(t: Option<Instant>, now: Instant) -> Option<Duration> {
        t.map(|t| now.saturating_duration_since(t))
    }

    /// What to do now.
    pub fn decide(&self, i: Inputs) -> Decision {
        if !i.ready {
            return Decision::Wait;
        }
        if Self::since(self.last_full, i.now).is_none_or(|d| d >= self.sync_period) {
            return Decision::Full;
        }
        if i.pending && Self::since(self.last_sync, i.now).is_none_or(|d| d >= self.min_sync_period)
        {
            return Decision::Incremental;
        }
        if i.draining && Self::since(self.last_drain, i.now).is_none_or(|d| d >= DRAIN_INTERVAL) {
            return Decision::Drain;
        }
        Decision::Wait
    }

    /// Records a sync that ended at `at` (`full`: it repaired everything,
    /// possibly because planning found the node's facts changed).
    pub fn synced(&mut self, full: bool, at: Instant) {
        self.last_sync = Some(at);
        if full {
            self.last_full = Some(at);
        }
    }

    /// Records a drain tick at `at`.
    pub fn drained(&mut self, at: Instant) {
        self.last_drain = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC: Duration = Duration::from_secs(30);
    const MIN: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let at = |d: Duration| t0 + d;
        // (last full, last sync, last drain, now, ready, pending, draining) → decision
        type Row = (
            Option<u64>,
            Option<u64>,
            Option<u64>,
            u64,
            bool,
            bool,
            bool,
            Decision,
        );
        let table: &[Row] = &[
            // Not ready: nothing, whatever is due.
            (None, None, None, 0, false, true, true, Decision::Wait),
            // Never synced: full.
            (None, None, None, 0, true, false, false, Decision::Full),
            // Full due after syncPeriod, even within minSyncPeriod of a sync.
            (
                Some(0),
                Some(29_500),
                None,
                30_000,
                true,
                false,
                false,
                Decision::Full,
            ),
            (
                Some(0),
                Some(0),
                None,
                29_999,
                true,
                false,
                false,
                Decision::Wait,
            ),
            // A change within minSyncPeriod of the last sync waits...
            (
                Some(0),
                Some(10_000),
                None,
                10_999,
                true,
                true,
                false,
                Decision::Wait,
            ),
            // ...and goes once it has passed.
            (
                Some(0),
                Some(10_000),
                None,
                11_000,
                true,
                true,
                false,
                Decision::Incremental,
            ),
            // A full sync also counts as the last sync.
            (
                Some(5_000),
                Some(5_000),
                None,
                5_500,
                true,
                true,
                false,
                Decision::Wait,
            ),
            // Draining: a tick when nothing else is due, once a second.
            (
                Some(0),
                Some(0),
                None,
                100,
                true,
                false,
                true,
                Decision::Drain,
            ),
            (
                Some(0),
                Some(0),
                Some(900),
                1_800,
                true,
                false,
                true,
                Decision::Wait,
            ),
            (
                Some(0),
                Some(0),
                Some(900),
                1_900,
                true,
                false,
                true,
                Decision::Drain,
            ),
            // A due sync comes before a drain tick.
            (
                Some(0),
                Some(0),
                None,
                2_000,
                true,
                true,
                true,
                Decision::Incremental,
            ),
        ];
        for &(full, sync, drain, now, ready, pending, draining, want) in table {
            let mut s = Schedule::new(SYNC, MIN);
            if let Some(f) = full {
                s.synced(true, at(ms(f)));
            }
            if let Some(x) = sync {
                s.synced(false, at(ms(x)));
            }
            if let Some(d) = drain {
                s.drained(at(ms(d)));
            }
            let i = Inputs {
                now: at(ms(now)),
                ready,
                pending,
                draining,
            };
            assert_eq!(
                s.decide(i),
                want,
                "{:?}",
                (full, sync, drain, now, ready, pending, draining)
            );
        }
    }

    /// A model run: a loop polling every 50 ms over ten simulated minutes,
    /// with changes arriving and syncs taking time at pseudo-random, checks
    /// the promises the proxy makes: a full sync at least every syncPeriod
    /// (plus one poll and one sync's length), incremental syncs never
    /// within minSyncPeriod of the previous sync's end, every change synced
    /// within minSyncPeriod (plus a poll and a sync) of arriving, drain
    /// ticks at most once a second and only while draining.
    #[test]
    fn model_holds_the_periods() {
        let mut seed: u64 = 0x5eed;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let t0 = Instant::now();
        let poll = ms(50);
        let mut s = Schedule::new(Duration::from_secs(20), Duration::from_secs(2));
        let mut now = t0;
        let mut pending_since: Option<Instant> = None;
        let (mut last_full, mut last_sync, mut last_drain) =
            (None::<Instant>, None::<Instant>, None::<Instant>);
        let mut draining = false;
        let mut syncs = 0;
        while now < t0 + Duration::from_secs(600) {
            if rand(10) == 0 {
                pending_since.get_or_insert(now);
            }
            if rand(50) == 0 {
                draining = !draining;
            }
            let ready = now >= t0 + Duration::from_secs(1);
            let d = s.decide(Inputs {
                now,
                ready,
                pending: pending_since.is_some(),
                draining,
            });
            assert!(ready || d == Decision::Wait);
            match d {
                Decision::Full | Decision::Incremental => {
                    if d == Decision::Incremental {
                        let since = now - last_sync.expect("a full sync came first");
                        assert!(since >= Duration::from_secs(2), "{since:?}");
                    }
                    let took = ms(rand(400));
                    if let Some(p) = pending_since.take() {
                        assert!(
                            now - p <= Duration::from_secs(2) + poll + ms(400),
                            "a change waited {:?}",
                            now - p
                        );
                    }
                    if let Some(f) = last_full {
                        assert!(now - f <= Duration::from_secs(20) + poll + ms(400));
                    }
                    now += took;
                    s.synced(d == Decision::Full, now);
                    last_sync = Some(now);
                    if d == Decision::Full {
                        last_full = Some(now);
                    }
                    syncs += 1;
                }
                Decision::Drain => {
                    assert!(draining);
                    if let Some(t) = last_drain {
                        assert!(now - t >= DRAIN_INTERVAL);
                    }
                    s.drained(now);
                    last_drain = Some(now);
                }
                Decision::Wait => {}
            }
            now += poll;
        }
        assert!(syncs > 100, "{syncs}");
        assert!(last_drain.is_some());
    }
}
