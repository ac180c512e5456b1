//! The one-line STATUS= text `systemctl status` shows, e.g.
//! `recording take=t1 seg=3 cam1 imx477 1280x720@30 1234f 30.0fps 0drop locked ±12µs | disk 12.3G free
//! (3h05m of recording) | clock synced ±0.2ms | 61°C`, plus the firmware's throttling flags
//! when set (`throttling unknown` on a board without them).

use camrig_protocol::api::{NodeState, NodeStatus};
use camrig_protocol::phase::{LockState, PhaseStatus};

use super::{clock_health, disk_space};

pub fn render(s: &NodeStatus) -> String {
    let mut out = String::from(match s.state {
        NodeState::Idle => "idle",
        NodeState::Armed => "armed",
        NodeState::Recording => "recording",
    });
    if s.standalone {
        out.push_str(" standalone");
    }
    if let Some(t) = &s.take {
        out.push_str(&format!(" take={t}"));
    }
    if let Some(seg) = s.segment {
        out.push_str(&format!(" seg={seg}"));
    }
    for (i, c) in s.cameras.iter().enumerate() {
        let frames = if s.take.is_some() {
            c.take_frames
        } else {
            c.frames
        };
        // Model and mode first: `systemctl status` then says which sensor records how.
        out.push_str(&format!(
            " cam{} {} {} {}f {:.1}fps {}drop",
            i + 1,
            c.model,
            c.mode,
            frames,
            c.fps,
            c.drops
        ));
        if let Some(p) = &c.phase {
            out.push(' ');
            out.push_str(&phase(p));
        }
    }
    out.push_str(&format!(
        " | disk {} free",
        disk_space::human(s.disk_free_bytes)
    ));
    if let Some(h) = &s.health {
        out.push_str(&format!(
            " ({} of recording)",
            duration(h.recordable_seconds)
        ));
    }
    out.push_str(&format!(" | {}", clock_health::summary(&s.clock)));
    if let Some(h) = &s.health {
        if let Some(t) = h.cpu_temp_c {
            out.push_str(&format!(" | {t:.0}°C"));
        }
        match &h.throttling {
            None => out.push_str(" | throttling unknown"),
            Some(t) => {
                let flags = t.describe();
                if !flags.is_empty() {
                    out.push_str(&format!(" | {}", flags.join(", ")));
                }
            }
        }
    }
    if let Some(p) = &s.problem {
        out.push_str(&format!(" | {p}"));
    }
    out
}

/// `45s`, `12m`, `3h05m`.
fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `locked ±12µs`, `locking ±4.2ms`, `unlocked (no FrameDurationLimits control)`: the state
/// and the last second's p99 phase error.
fn phase(p: &PhaseStatus) -> String {
    let e = p.error_ns.p99;
    let error = if e >= 1_000_000 {
        format!("±{:.1}ms", e as f64 / 1e6)
    } else {
        format!("±{}µs", (e + 500) / 1000)
    };
    match p.state {
        LockState::Unavailable => format!(
            "unlocked {error} ({})",
            p.reason.as_deref().unwrap_or("no frame-duration control")
        ),
        state => format!("{state} {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camrig_protocol::api::CameraStatus;
    use camrig_protocol::manifest::ClockHealth;
    use camrig_protocol::take_name::TakeName;

    #[test]
    fn one_line_with_everything_a_person_checks() {
        let s = NodeStatus {
            node: "n".into(),
            version: "0".into(),
            state: NodeState::Recording,
            take: Some(TakeName::parse("t1").unwrap()),
            start_at_ns: Some(0),
            stop_at_ns: None,
            segment: Some(3),
            cameras: vec![CameraStatus {
                index: 0,
                label: None,
                model: "synthetic".into(),
                mode: "1280x720@30".into(),
                frames: 9999,
                take_frames: 1234,
                fps: 30.0,
                drops: 0,
                drop_bursts: vec![],
                last_frame_ns: None,
                phase: Some(PhaseStatus {
                    state: LockState::Locked,
                    reason: None,
                    error_ns: camrig_protocol::phase::RecentError {
                        p50: 3_000,
                        p99: 11_600,
                    },
                    ppm: Some(-12.5),
                }),
            }],
            disk_free_bytes: 13_207_024_435,
            disk_floor_bytes: 0,
            clock: ClockHealth::kernel(true, Some(200_000), 0),
            standalone: false,
            problem: None,
            last_take: None,
            recovered_takes: vec![],
            now_ns: 0,
            health: None,
        };
        assert_eq!(
            render(&s),
            "recording take=t1 seg=3 cam1 synthetic 1280x720@30 1234f 30.0fps 0drop locked ±12µs | disk 12.3G free | clock synced ±0.2ms"
        );
        let mut vimc = s.cameras[0].phase.clone().unwrap();
        vimc.state = LockState::Unavailable;
        vimc.reason = Some("no FrameDurationLimits control".into());
        vimc.error_ns.p99 = 15_300_000;
        assert_eq!(
            phase(&vimc),
            "unlocked ±15.3ms (no FrameDurationLimits control)"
        );
        let mut hot = s.clone();
        hot.health = Some(camrig_protocol::health::NodeHealth {
            cpu_temp_c: Some(84.4),
            throttling: Some(camrig_protocol::health::Throttling::from_get_throttled(
                0x50005,
            )),
            recordable_seconds: 3 * 3600 + 300,
            ..Default::default()
        });
        assert_eq!(
            render(&hot),
            "recording take=t1 seg=3 cam1 synthetic 1280x720@30 1234f 30.0fps 0drop locked ±12µs | disk 12.3G free (3h05m of recording) | clock synced ±0.2ms | 84°C | under-voltage now, throttled now, under-voltage since boot, throttled since boot"
        );
        hot.health.as_mut().unwrap().throttling = None;
        assert!(render(&hot).ends_with("| 84°C | throttling unknown"));
    }
}
