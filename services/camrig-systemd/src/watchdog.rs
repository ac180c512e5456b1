//! A watchdog tied to real progress.
//!
//! The service's work loop calls [`Progress::tick`] each time it really gets something done
//! (a frame arrived; an event-loop turn completed). [`run`] wakes at half of `WatchdogSec=`
//! and sends WATCHDOG=1 only if the counter moved since the last wake-up. A frozen camera,
//! a deadlocked task or a SIGSTOPped process thus stops the pets and systemd restarts us.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A monotonically increasing count of units of work done.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `WatchdogSec=` as systemd passed it (`$WATCHDOG_USEC` for our PID), if enabled.
pub fn interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Pets the watchdog while `progress` moves. Returns at once when systemd set no watchdog.
pub async fn run(progress: Progress) {
    let Some(period) = interval() else { return };
    // The first check comes half a period after the start: `interval`'s immediate first
    // tick found no progress yet and logged "no progress" at every service start.
    let half = period / 2;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = progress.get();
    loop {
        ticker.tick().await;
        let now = progress.get();
        if should_pet(last, now) {
            crate::notify::watchdog();
        } else {
            tracing::warn!("no progress for {:?}: withholding the watchdog ping", half);
        }
        last = now;
    }
}

fn should_pet(last: u64, now: u64) -> bool {
    now != last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pets_only_when_work_was_done() {
        let p = Progress::new();
        let before = p.get();
        assert!(!should_pet(before, p.get()));
        p.tick();
        assert!(should_pet(before, p.get()));
    }
}
