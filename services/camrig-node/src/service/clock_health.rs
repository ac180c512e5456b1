//! The wall clock's discipline: the kernel's view (`adjtimex`: whether an NTP daemon such as
//! chrony or timesyncd keeps it synchronised, and its estimated error) and, where chrony runs,
//! chrony's own account (`chronyc -c tracking`: offset, root delay, root dispersion), from
//! which the sync report bounds this node's clock error (|offset| + root dispersion + half
//! the root delay).
//!
//! chrony is asked by a background thread every few seconds, never on the START path: a
//! [`read`] only copies the latest answer (if it is recent).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use camrig_protocol::manifest::ClockHealth;
use camrig_protocol::now_unix_ns;

/// How often chrony is asked.
const CHRONY_PERIOD: Duration = Duration::from_secs(8);
/// An answer older than this is not used.
const CHRONY_MAX_AGE: Duration = Duration::from_secs(30);

/// Reads the kernel's NTP state now, with chrony's latest tracking figures when known.
pub fn read() -> ClockHealth {
    let measured_at_ns = now_unix_ns();
    let mut health = match kernel_ntp_state() {
        Some((status, esterror_us)) => {
            let synced = status & libc::STA_UNSYNC == 0;
            ClockHealth::kernel(
                synced,
                synced.then_some(esterror_us * 1_000),
                measured_at_ns,
            )
        }
        None => ClockHealth::kernel(false, None, measured_at_ns),
    };
    // chrony's figures only mean something while chrony itself is synchronised.
    if let Some(t) = latest_tracking().filter(|t| t.synchronised) {
        health.offset_ns = Some(t.offset_ns);
        health.root_delay_ns = Some(t.root_delay_ns);
        health.root_dispersion_ns = Some(t.root_dispersion_ns);
    }
    health
}

/// chrony's tracking figures, ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracking {
    pub offset_ns: i64,
    pub root_delay_ns: i64,
    pub root_dispersion_ns: i64,
    /// The leap status is not "Not synchronised".
    pub synchronised: bool,
}

/// Parses `chronyc -c tracking` (one CSV line: reference id, name, stratum, reference time,
/// system time offset (s), last offset, RMS offset, frequency, residual frequency, skew,
/// root delay (s), root dispersion (s), update interval, leap status).
pub fn parse_tracking(csv: &str) -> Option<Tracking> {
    let fields: Vec<&str> = csv.trim().split(',').collect();
    if fields.len() < 14 {
        return None;
    }
    let secs = |i: usize| -> Option<i64> {
        let v: f64 = fields[i].trim().parse().ok()?;
        v.is_finite().then(|| (v * 1e9).round() as i64)
    };
    Some(Tracking {
        offset_ns: secs(4)?,
        root_delay_ns: secs(10)?,
        root_dispersion_ns: secs(11)?,
        synchronised: fields[13].trim() != "Not synchronised",
    })
}

fn latest_tracking() -> Option<Tracking> {
    static LATEST: OnceLock<Mutex<Option<(Instant, Tracking)>>> = OnceLock::new();
    let cell = LATEST.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("chrony-tracking".into())
            .spawn(|| loop {
                match ask_chrony() {
                    Ok(Some(t)) => {
                        *LATEST.get().expect("set").lock().expect("not poisoned") =
                            Some((Instant::now(), t))
                    }
                    Ok(None) => {}
                    // No chronyc here (timesyncd, or a PC): nothing to ask, ever.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                    Err(e) => tracing::debug!(error = %e, "chronyc tracking failed"),
                }
                std::thread::sleep(CHRONY_PERIOD);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the chrony tracking thread");
        }
        Mutex::new(None)
    });
    let latest = *cell.lock().expect("not poisoned");
    latest
        .filter(|(at, _)| at.elapsed() < CHRONY_MAX_AGE)
        .map(|(_, t)| t)
}

fn ask_chrony() -> std::io::Result<Option<Tracking>> {
    let out = std::process::Command::new("chronyc")
        .args(["-c", "-n", "tracking"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| parse_tracking(&String::from_utf8_lossy(&out.stdout)))
        .flatten())
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
        let s = summary(&ClockHealth::kernel(true, Some(200_000), 0));
        assert_eq!(s, "clock synced ±0.2ms");
    }

    #[test]
    fn parses_chronyc_tracking_csv() {
        let line = "C0A80101,192.168.1.1,11,1764975600.123456789,-0.000012345,-0.000001,0.000020,-10.5,0.001,0.020,0.000312000,0.000045500,64.2,Normal\n";
        assert_eq!(
            parse_tracking(line),
            Some(Tracking {
                offset_ns: -12_345,
                root_delay_ns: 312_000,
                root_dispersion_ns: 45_500,
                synchronised: true,
            })
        );
        let unsynced = line.replace("Normal", "Not synchronised");
        assert!(!parse_tracking(&unsynced).unwrap().synchronised);
        assert_eq!(parse_tracking("506 Cannot talk to daemon"), None);
        assert_eq!(parse_tracking(&line.replace("-0.000012345", "x")), None);
    }
}
