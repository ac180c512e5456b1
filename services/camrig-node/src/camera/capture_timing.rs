//! Waking capture threads on time: a thread that must read the clock at a scheduled
//! wall-clock instant asks for real-time priority and no timer slack, and sleeps on an
//! absolute CLOCK_REALTIME deadline.
//!
//! Why each piece (measured with `ci/rig-bench`'s start spread, 10 node processes on two
//! cores all waking for the same frame):
//! - An absolute `clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME)` wakes at the instant itself,
//!   also across a clock step by NTP; a relative sleep computed from a clock read adds the
//!   time between that read and the sleep call, and sleeps the old length after a step.
//! - The default timer slack lets the kernel wake a normal thread up to 50 µs late to batch
//!   timers; 1 ns asks for the deadline itself.
//! - Under SCHED_FIFO a woken thread preempts every normal thread (encoders, HTTP, other
//!   nodes' renderers) instead of queueing behind them for a time slice. That is safe only
//!   for a thread that holds the CPU for microseconds: callers do nothing but read the clock
//!   and hand the reading over. It needs CAP_SYS_NICE or an RLIMIT_RTPRIO (systemd
//!   `LimitRTPRIO=`); without either the thread carries on at normal priority, said once
//!   in the log.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use camrig_protocol::{now_unix_ns, UnixNanos};
use nix::sys::time::TimeSpec;
use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};

/// SCHED_FIFO priority of capture threads: above every normal thread, below the kernel's
/// interrupt threads (50) so the timer and network interrupts still come first.
pub const CAPTURE_RT_PRIORITY: i32 = 10;

/// The longest single sleep, so a stop request or a backward clock step is noticed soon.
const MAX_NAP_NS: i64 = 200_000_000;

/// How a thread's priority request went.
#[derive(Clone, Debug, PartialEq)]
pub enum Priority {
    Realtime,
    /// Not permitted or not supported; the reason from the kernel.
    Normal(String),
}

static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// Makes the calling thread a capture thread: SCHED_FIFO at [`CAPTURE_RT_PRIORITY`] when
/// permitted, and 1 ns timer slack. A refusal is logged once per process, not per thread.
pub fn make_capture_thread() -> Priority {
    // Timer slack does not apply to real-time threads, but it does if FIFO is refused.
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!("cannot set timer slack: {e}");
    }
    let priority = set_fifo(CAPTURE_RT_PRIORITY);
    if let Priority::Normal(reason) = &priority {
        if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "capture threads run at normal priority ({reason}): frame timestamps may be late by scheduling delays; grant CAP_SYS_NICE or LimitRTPRIO={CAPTURE_RT_PRIORITY} for real-time wake-ups"
            );
        }
    }
    priority
}

fn set_fifo(priority: i32) -> Priority {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is the
    // calling thread, whose policy is all this changes.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Priority::Realtime
    } else {
        Priority::Normal(std::io::Error::last_os_error().to_string())
    }
}

/// Sleeps until CLOCK_REALTIME reaches `due` (ns since the epoch), or `running` turns
/// false. Returns at once for a past instant.
pub fn sleep_until(due: UnixNanos, running: &Arc<AtomicBool>) {
    loop {
        let now = now_unix_ns();
        if now >= due || !running.load(Ordering::Relaxed) {
            return;
        }
        let until = due.min(now + MAX_NAP_NS);
        let at = TimeSpec::new(
            until.div_euclid(1_000_000_000),
            until.rem_euclid(1_000_000_000),
        );
        // EINTR (a signal) and the nap limit both just go round again.
        let _ = clock_nanosleep(
            ClockId::CLOCK_REALTIME,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &at,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_instant_and_not_before() {
        let running = Arc::new(AtomicBool::new(true));
        let due = now_unix_ns() + 20_000_000;
        sleep_until(due, &running);
        assert!(now_unix_ns() >= due);
        // A past instant returns at once.
        let t = std::time::Instant::now();
        sleep_until(due - 1_000_000_000, &running);
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn a_stopped_thread_does_not_sleep() {
        let running = Arc::new(AtomicBool::new(false));
        let t = std::time::Instant::now();
        sleep_until(now_unix_ns() + 10_000_000_000, &running);
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn priority_is_granted_or_explained() {
        // Either way the thread carries on; a refusal carries the kernel's reason.
        let p = std::thread::spawn(make_capture_thread).join().unwrap();
        if let Priority::Normal(reason) = p {
            assert!(!reason.is_empty());
        }
    }
}
