//! The kernel's view of the wall clock's discipline (`adjtimex`): whether an NTP daemon
//! (chrony, timesyncd) keeps it synchronised and its estimated error.

use camrig_protocol::manifest::ClockHealth;
use camrig_protocol::now_unix_ns;

/// Reads the kernel's NTP state now.
pub fn read() -> ClockHealth {
    let measured_at_ns = now_unix_ns();
    match kernel_ntp_state() {
        Some((status, esterror_us)) => {
            let synced = status & libc::STA_UNSYNC == 0;
            ClockHealth {
                synced,
                est_error_ns: synced.then_some(esterror_us * 1_000),
                measured_at_ns,
            }
        }
        None => ClockHealth {
            synced: false,
            est_error_ns: None,
            measured_at_ns,
        },
    }
}

/// `(status flags, estimated error in µs)` from a read-only `adjtimex` call.
#[allow(unsafe_code)]
fn kernel_ntp_state() -> Option<(i32, i64)> {
    // SAFETY: with modes = 0 adjtimex only reads the kernel's state into the zeroed struct
    // we own for the duration of the call; no pointer escapes.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    let rc = unsafe { libc::adjtimex(&mut tx) };
    (rc >= 0).then_some((tx.status, tx.esterror as i64))
}

/// `synced ±0.2ms` / `unsynced` for STATUS=.
pub fn summary(c: &ClockHealth) -> String {
    match (c.synced, c.est_error_ns) {
        (true, Some(e)) => format!("clock synced ±{:.1}ms", e as f64 / 1e6),
        (true, None) => "clock synced".into(),
        (false, _) => "clock unsynced".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_state_and_summarises_it() {
        let c = read();
        assert!(c.measured_at_ns > 0);
        let s = summary(&ClockHealth {
            synced: true,
            est_error_ns: Some(200_000),
            measured_at_ns: 0,
        });
        assert_eq!(s, "clock synced ±0.2ms");
    }
}
