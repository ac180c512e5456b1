//! The loop against the sensor model in simulated time: no sleeping, no wall clock.

use super::*;
use crate::camera::sensor_model::{random_ppm_and_phase, SensorModel, SensorParams};

const START: UnixNanos = 1_800_000_000_000_000_000;

/// A sensor and its loop, run frame by frame.
struct Rig {
    sensor: SensorModel,
    lock: PhaseLock,
    grid: FrameGrid,
    /// Every duration the loop asked for, ns.
    asked: Vec<f64>,
    /// Frames seen so far.
    frames: u64,
}

fn control_of(p: &SensorParams, fps: f64) -> FrameControl {
    FrameControl {
        min_ns: p.min_frame_ns(),
        max_ns: p.max_frame_ns(),
        quantum_ns: p.line_ns,
        latency_frames: p.apply_delay,
        initial_ns: p.lines_for_fps(fps) as f64 * p.line_ns,
    }
}

impl Rig {
    fn new(params: SensorParams, fps: f64, phase_ns: i64) -> Rig {
        let grid = FrameGrid::new(fps).unwrap();
        let lines = params.lines_for_fps(fps);
        let control = control_of(&params, fps);
        Rig {
            lock: PhaseLock::new("cam1", grid, control, LockSettings::default()),
            sensor: SensorModel::new(params, START + phase_ns, lines),
            grid,
            asked: Vec::new(),
            frames: 0,
        }
    }

    /// Runs one frame; returns its true phase error (no timestamp noise), ns.
    fn step(&mut self) -> i64 {
        let f = self.sensor.next_frame();
        if let Some(r) = self.lock.on_frame(f.sequence, f.timestamp_ns) {
            self.asked.push(r.duration_ns);
            let lines = (r.duration_ns / self.sensor.params().line_ns).round() as u32;
            self.sensor.request_lines(lines);
        }
        self.frames += 1;
        self.grid.phase_error_ns(f.true_start_ns)
    }

    /// Runs until `locked` (at most `limit` frames); the number of frames it took.
    fn until_locked(&mut self, limit: u64) -> Option<u64> {
        for n in 1..=limit {
            self.step();
            if self.lock.state() == LockState::Locked {
                return Some(n);
            }
        }
        None
    }

    /// Runs `n` frames; their true phase errors, absolute.
    fn run(&mut self, n: u64) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n).map(|_| self.step().abs()).collect();
        v.sort_unstable();
        v
    }
}

fn imx219(ppm: f64, seed: u64) -> SensorParams {
    SensorParams::imx219_like(60.0, ppm, seed)
}

#[test]
fn converges_from_any_start_phase_within_two_seconds_and_stays_on_the_grid() {
    let period = 33_333_333;
    for seed in 0..24 {
        let (ppm, _) = random_ppm_and_phase(seed, 30.0, period);
        let phase = seed as i64 * period / 24 + 1_234;
        let mut rig = Rig::new(imx219(ppm, seed), 30.0, phase);
        let frames = rig
            .until_locked(60)
            .unwrap_or_else(|| panic!("phase {phase} ppm {ppm:.1} not locked in 2 s"));
        assert!(frames <= 60);
        let errors = rig.run(30 * 60);
        let p99 = percentile(&errors, 99.0);
        let max = *errors.last().unwrap();
        assert!(p99 <= 15_000, "phase {phase}: true error p99 {p99} ns");
        assert!(max <= 25_000, "phase {phase}: true error max {max} ns");
        assert_eq!(rig.lock.state(), LockState::Locked);
        assert_eq!(rig.lock.monitor().lock_losses(), 0);
        assert!(
            (rig.lock.ppm() - rig.sensor.ppm()).abs() < 3.0,
            "estimated {:.2} ppm, sensor {:.2}",
            rig.lock.ppm(),
            rig.sensor.ppm()
        );
    }
}

#[test]
fn tracks_a_hundred_ppm_either_way() {
    for ppm in [100.0, -100.0] {
        let mut rig = Rig::new(imx219(ppm, 7), 30.0, 9_000_000);
        assert!(rig.until_locked(60).is_some(), "{ppm} ppm");
        let errors = rig.run(30 * 120);
        assert!(percentile(&errors, 99.0) <= 15_000, "{ppm} ppm");
        assert!((rig.lock.ppm() - ppm).abs() < 3.0, "{}", rig.lock.ppm());
        let status = rig.lock.monitor().status();
        assert_eq!(status.state, LockState::Locked);
        assert!(status.ppm.is_some_and(|p| (p - ppm).abs() < 3.0));
        assert!(status.error_ns.p99 <= 20_000, "{:?}", status.error_ns);
    }
}

#[test]
fn every_control_latency_from_one_to_four_frames_locks() {
    for delay in 1..=4 {
        let p = SensorParams {
            apply_delay: delay,
            ..imx219(-25.0, 3)
        };
        let mut rig = Rig::new(p, 30.0, 20_000_000);
        assert!(rig.until_locked(60).is_some(), "delay {delay}");
        assert!(percentile(&rig.run(900), 99.0) <= 15_000, "delay {delay}");
    }
}

#[test]
fn rides_out_a_dropped_frame() {
    let mut rig = Rig::new(imx219(12.0, 5), 30.0, 4_000_000);
    rig.until_locked(60).unwrap();
    rig.run(100);
    let next = rig.sensor.next_sequence();
    rig.sensor.drop_frame(next + 1);
    let errors = rig.run(300);
    assert_eq!(rig.lock.state(), LockState::Locked);
    assert_eq!(rig.lock.monitor().lock_losses(), 0);
    assert!(*errors.last().unwrap() <= 25_000);
}

#[test]
fn a_burst_of_lost_frames_loses_the_lock_with_its_reason_and_relocks() {
    let mut rig = Rig::new(imx219(12.0, 5), 30.0, 4_000_000);
    rig.until_locked(60).unwrap();
    let next = rig.sensor.next_sequence();
    for s in next + 1..next + 9 {
        rig.sensor.drop_frame(s);
    }
    rig.run(3);
    let status = rig.lock.monitor().status();
    assert_eq!(status.state, LockState::Locking);
    assert!(status.reason.unwrap().contains("8 frames lost"));
    assert!(rig.until_locked(60).is_some());
    assert_eq!(rig.lock.monitor().lock_losses(), 1);
}

#[test]
fn a_five_ms_clock_step_is_logged_and_relocks() {
    let mut rig = Rig::new(imx219(-8.0, 11), 30.0, 30_000_000);
    rig.until_locked(60).unwrap();
    rig.run(100);
    rig.sensor.step_clock(5_000_000);
    rig.step();
    let status = rig.lock.monitor().status();
    assert_eq!(status.state, LockState::Locking);
    let reason = status.reason.unwrap();
    assert!(reason.contains("clock stepped by +5.0"), "{reason}");
    assert_eq!(rig.lock.monitor().lock_losses(), 1);
    let frames = rig.until_locked(60).expect("relocked within 2 s");
    assert!(frames <= 60);
    // The rate estimate did not take the step for an oscillator error.
    assert!((rig.lock.ppm() + 8.0).abs() < 3.0, "{}", rig.lock.ppm());
    assert!(percentile(&rig.run(600), 99.0) <= 15_000);
}

#[test]
fn never_asks_past_the_maximum_frame_rate_and_still_locks_with_little_headroom() {
    // 30 fps on a mode whose maximum is 30.3: 1% headroom.
    let p = SensorParams::imx219_like(30.3, 25.0, 2);
    let min = p.min_frame_ns();
    for phase in [1_000_000, 16_000_000, 32_000_000] {
        let mut rig = Rig::new(p.clone(), 30.0, phase);
        assert!(rig.until_locked(90).is_some(), "phase {phase}");
        rig.run(600);
        assert!(
            rig.asked.iter().all(|&d| d >= min - 1e-3),
            "a request below the minimum"
        );
        if phase < 16_000_000 {
            assert!(
                rig.asked.iter().any(|&d| d < min + 1.0),
                "the bound was reached: {:?}",
                &rig.asked[..10]
            );
        }
    }
}

#[test]
fn a_rate_at_the_maximum_is_unavailable_with_the_reason() {
    let p = SensorParams::imx219_like(30.0, 0.0, 2);
    let grid = FrameGrid::new(30.0).unwrap();
    let mut lock = PhaseLock::new("cam1", grid, control_of(&p, 30.0), LockSettings::default());
    assert_eq!(lock.state(), LockState::Unavailable);
    assert!(lock.on_frame(0, START + 5_000).is_none());
    let status = lock.monitor().status();
    assert!(status.reason.unwrap().contains("no frame-rate headroom"));
    // Still measured: the free-running camera's error shows.
    assert_eq!(status.error_ns.p50, 5_000);
}

#[test]
fn corrections_never_look_like_a_lost_frame() {
    // Intervals stay under 1.5 periods (the drop counter's bound) even while acquiring.
    let mut rig = Rig::new(imx219(30.0, 9), 30.0, 16_600_000);
    let mut last = None;
    for _ in 0..120 {
        let f = rig.sensor.next_frame();
        if let Some(r) = rig.lock.on_frame(f.sequence, f.timestamp_ns) {
            rig.sensor
                .request_lines((r.duration_ns / rig.sensor.params().line_ns).round() as u32);
        }
        if let Some(l) = last {
            let interval = f.timestamp_ns - l;
            assert!(interval * 2 < 33_333_333 * 3, "{interval}");
            assert!(interval * 2 > 33_333_333, "{interval}");
        }
        last = Some(f.timestamp_ns);
    }
}

#[test]
fn percentiles_take_the_nearest_rank() {
    assert_eq!(percentile(&[], 50.0), 0);
    let v: Vec<i64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 99.0), 99);
    assert_eq!(percentile(&[7], 99.0), 7);
}
