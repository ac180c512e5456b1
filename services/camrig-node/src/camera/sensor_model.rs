//! A camera sensor as its timing behaves (DESIGN.md decision 8), in simulated time, pure: the
//! synthetic camera drives it against the wall clock, the phase-lock tests drive it alone.
//!
//! What it models, because phase lock depends on each of these:
//! - its own oscillator: lines last `line_ns × (1 + ppm)⁻¹` true ns, `ppm` a rate error that
//!   wanders slowly (a random walk pulled back towards its starting value);
//! - a start phase that has nothing to do with the wall clock (the first frame starts when
//!   [`SensorModel::new`] is told to, usually "now");
//! - frame durations in whole lines, requested per frame and taking effect
//!   [`SensorParams::apply_delay`] frames after the request (V4L2 sensors apply vertical
//!   blanking 2–3 frames late), never shorter than the mode's minimum (its maximum frame rate);
//! - a frame's timestamp: its true start instant, seen through the wall clock (a clock step
//!   moves it, [`SensorModel::step_clock`]), plus timestamp noise (a start-of-frame interrupt's
//!   jitter). The timestamp is computed, never read when a thread wakes: ten simulated sensors on
//!   two cores must measure the loop, not the machine;
//! - delivery: the frame reaches the node later ([`SensorFrame::delivered_at`]: exposure,
//!   readout and ISP latency plus jitter); nothing may depend on that instant.
//!
//! The true start instants are kept in `f64` ns relative to the model's origin (exact to
//! well under a ns for days), and mapped to Unix ns only at the edge.

use std::collections::VecDeque;

use camrig_protocol::UnixNanos;

use crate::camera::test_pattern::XorShift;

/// imx219's line time in its 1640×1232 and 1920×1080 modes, ns.
pub const IMX219_LINE_NS: f64 = 18_904.0;

/// A sensor's timing parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorParams {
    /// Oscillator rate error: positive runs fast (frames shorter than asked).
    pub ppm: f64,
    /// Standard deviation of the rate error's random walk per second of frames, ppm.
    pub wander_ppm_per_s: f64,
    /// One line's duration on the sensor's own clock, ns.
    pub line_ns: f64,
    /// The shortest frame the mode allows, in lines (its maximum frame rate).
    pub min_lines: u32,
    /// The longest frame, in lines (the vertical blanking register's limit).
    pub max_lines: u32,
    /// Frames between a duration request and the frame it lengthens (1–4).
    pub apply_delay: u32,
    /// Standard deviation of the timestamp noise, ns.
    pub timestamp_noise_ns: f64,
    /// Mean time from a frame's start to its delivery to the node, ns.
    pub delivery_latency_ns: f64,
    /// Seed of the model's randomness (wander, noise, delivery jitter).
    pub seed: u64,
}

impl SensorParams {
    /// An imx219-like sensor whose mode's maximum frame rate is `max_fps`.
    pub fn imx219_like(max_fps: f64, ppm: f64, seed: u64) -> SensorParams {
        SensorParams {
            ppm,
            wander_ppm_per_s: 0.05,
            line_ns: IMX219_LINE_NS,
            min_lines: (1e9 / max_fps / IMX219_LINE_NS).ceil() as u32,
            max_lines: 65_535,
            apply_delay: 2,
            timestamp_noise_ns: 2_000.0,
            delivery_latency_ns: 8_000_000.0,
            seed,
        }
    }

    /// The nearest whole number of lines to a frame of `fps`, within the mode's limits.
    pub fn lines_for_fps(&self, fps: f64) -> u32 {
        ((1e9 / fps / self.line_ns).round() as u32).clamp(self.min_lines, self.max_lines)
    }

    /// The shortest frame, ns on the sensor's own clock.
    pub fn min_frame_ns(&self) -> f64 {
        self.min_lines as f64 * self.line_ns
    }

    /// The longest frame, ns on the sensor's own clock.
    pub fn max_frame_ns(&self) -> f64 {
        self.max_lines as f64 * self.line_ns
    }
}

/// One frame as the pipeline reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SensorFrame {
    pub sequence: u64,
    /// Start of the frame mapped to wall clock, plus noise: what the node gets.
    pub timestamp_ns: UnixNanos,
    /// The frame's true start (wall clock without noise), for measuring the model itself.
    pub true_start_ns: UnixNanos,
    /// When the frame reaches the node.
    pub delivered_at: UnixNanos,
    /// The frame's length in lines.
    pub lines: u32,
}

/// A free-running sensor.
#[derive(Debug)]
pub struct SensorModel {
    params: SensorParams,
    /// The instant the model's origin (0.0) stands for, on the clock its timestamps are in
    /// (Unix ns in the tests; CLOCK_MONOTONIC in the synthetic camera, mapped to wall clock
    /// as a driver maps a sensor's timestamps).
    origin: UnixNanos,
    /// Wall clock − true time, ns: a clock step moves it.
    clock_offset: i64,
    /// True start of the next frame, ns since the origin.
    next_start: f64,
    /// The rate error now.
    ppm: f64,
    sequence: u64,
    /// Lengths of frames `sequence .. sequence + apply_delay`: the last is the one a request
    /// made now still changes, the others are already fixed in the sensor.
    fixed: VecDeque<u32>,
    /// The length the sensor repeats when nothing else is asked.
    current_lines: u32,
    /// Frames whose start the model skips delivering (drops), by sequence number.
    drops: Vec<u64>,
    rng: XorShift,
}

impl SensorModel {
    /// A sensor whose first frame starts at `first_start` (Unix ns), running `lines` per frame.
    pub fn new(params: SensorParams, first_start: UnixNanos, lines: u32) -> SensorModel {
        let lines = lines.clamp(params.min_lines, params.max_lines);
        let fixed = std::iter::repeat_n(lines, params.apply_delay.clamp(1, 4) as usize).collect();
        SensorModel {
            ppm: params.ppm,
            rng: XorShift(0x9E37_79B9_7F4A_7C15 ^ params.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            params,
            origin: first_start,
            clock_offset: 0,
            next_start: 0.0,
            sequence: 0,
            fixed,
            current_lines: lines,
            drops: Vec::new(),
        }
    }

    pub fn params(&self) -> &SensorParams {
        &self.params
    }

    /// The oscillator's rate error now, ppm.
    pub fn ppm(&self) -> f64 {
        self.ppm
    }

    /// Sets the rate error (a test's "±100 ppm").
    pub fn set_ppm(&mut self, ppm: f64) {
        self.params.ppm = ppm;
        self.ppm = ppm;
    }

    /// The wall clock steps by `delta_ns` (chrony's step): timestamps move, the sensor does not.
    pub fn step_clock(&mut self, delta_ns: i64) {
        self.clock_offset += delta_ns;
    }

    /// The frame with this sequence number is lost on its way to the node.
    pub fn drop_frame(&mut self, sequence: u64) {
        self.drops.push(sequence);
    }

    /// The sequence number of the next frame [`SensorModel::next_frame`] makes.
    pub fn next_sequence(&self) -> u64 {
        self.sequence
    }

    /// Asks for frames of `lines` from the earliest frame still open to change (the one
    /// [`SensorParams::apply_delay`] frames after the last one delivered) on. The sensor
    /// clamps it to its limits, as a V4L2 control is clamped; the value it took is returned.
    pub fn request_lines(&mut self, lines: u32) -> u32 {
        let lines = lines.clamp(self.params.min_lines, self.params.max_lines);
        self.current_lines = lines;
        if let Some(last) = self.fixed.back_mut() {
            *last = lines;
        }
        lines
    }

    /// Runs the sensor to the start of its next frame and reports it (a dropped frame is
    /// skipped: its sequence number never arrives).
    pub fn next_frame(&mut self) -> SensorFrame {
        loop {
            let frame = self.advance();
            if !self.drops.contains(&frame.sequence) {
                return frame;
            }
        }
    }

    fn advance(&mut self) -> SensorFrame {
        let start = self.next_start;
        let lines = self.fixed.pop_front().unwrap_or(self.current_lines);
        // Until asked otherwise the sensor repeats the last length it was given.
        self.fixed.push_back(self.current_lines);
        let duration = lines as f64 * self.params.line_ns / (1.0 + self.ppm * 1e-6);
        self.next_start = start + duration;
        self.wander(duration);
        let true_start = self.origin + start.round() as i64 + self.clock_offset;
        let noise = self.gaussian() * self.params.timestamp_noise_ns;
        let latency = self.params.delivery_latency_ns * (1.0 + 0.25 * self.uniform());
        let frame = SensorFrame {
            sequence: self.sequence,
            timestamp_ns: true_start + noise.round() as i64,
            true_start_ns: true_start,
            delivered_at: true_start + latency.round() as i64,
            lines,
        };
        self.sequence += 1;
        frame
    }

    /// A slow random walk of the rate error, pulled back towards its configured value so it
    /// stays within a few tenths of a ppm of it over a take.
    fn wander(&mut self, duration_ns: f64) {
        if self.params.wander_ppm_per_s <= 0.0 {
            return;
        }
        let dt = duration_ns * 1e-9;
        let step = self.gaussian() * self.params.wander_ppm_per_s * dt.sqrt();
        self.ppm += step - (self.ppm - self.params.ppm) * dt / 60.0;
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A seed's pseudo-random rate error within ±`range_ppm`, and start phase within one frame
/// of `period_ns`: what each synthetic camera gets when nothing is configured.
pub fn random_ppm_and_phase(seed: u64, range_ppm: f64, period_ns: i64) -> (f64, i64) {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next();
    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let phase = (rng.next() % period_ns.max(1) as u64) as i64;
    ((2.0 * u - 1.0) * range_ppm, phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(ppm: f64) -> SensorParams {
        SensorParams {
            wander_ppm_per_s: 0.0,
            timestamp_noise_ns: 0.0,
            ..SensorParams::imx219_like(60.0, ppm, 1)
        }
    }

    #[test]
    fn a_fast_oscillator_makes_shorter_frames() {
        let p = quiet(100.0);
        let lines = p.lines_for_fps(30.0);
        let mut s = SensorModel::new(p.clone(), 1_000, lines);
        let a = s.next_frame();
        let b = s.next_frame();
        let nominal = lines as f64 * p.line_ns;
        let measured = (b.timestamp_ns - a.timestamp_ns) as f64;
        assert!((measured - nominal / 1.0001).abs() < 1.0, "{measured}");
        assert_eq!(a.timestamp_ns, 1_000);
        assert!(a.delivered_at > a.timestamp_ns + 7_000_000);
    }

    #[test]
    fn a_request_takes_effect_apply_delay_frames_late_and_never_past_the_maximum_rate() {
        let p = SensorParams {
            apply_delay: 2,
            ..quiet(0.0)
        };
        let lines = p.lines_for_fps(30.0);
        let mut s = SensorModel::new(p.clone(), 0, lines);
        let f0 = s.next_frame();
        assert_eq!(s.request_lines(lines + 100), lines + 100);
        let seen: Vec<u32> = (0..4).map(|_| s.next_frame().lines).collect();
        assert_eq!(f0.lines, lines);
        assert_eq!(seen, vec![lines, lines + 100, lines + 100, lines + 100]);
        assert_eq!(
            s.request_lines(1),
            p.min_lines,
            "clamped to the maximum rate"
        );
    }

    #[test]
    fn a_clock_step_moves_timestamps_and_not_the_sensor() {
        let mut s = SensorModel::new(quiet(0.0), 0, 1763);
        let a = s.next_frame();
        s.step_clock(5_000_000);
        let b = s.next_frame();
        let period = (1763.0 * IMX219_LINE_NS).round() as i64;
        assert_eq!(b.timestamp_ns - a.timestamp_ns, period + 5_000_000);
    }

    #[test]
    fn dropped_frames_never_arrive_and_their_sequence_numbers_are_skipped() {
        let mut s = SensorModel::new(quiet(0.0), 0, 1763);
        s.drop_frame(1);
        assert_eq!(s.next_frame().sequence, 0);
        assert_eq!(s.next_frame().sequence, 2);
    }

    #[test]
    fn timestamp_noise_has_the_configured_size_and_no_bias() {
        let p = SensorParams {
            timestamp_noise_ns: 3_000.0,
            ..quiet(0.0)
        };
        let mut s = SensorModel::new(p, 0, 1763);
        let errs: Vec<f64> = (0..5000)
            .map(|_| {
                let f = s.next_frame();
                (f.timestamp_ns - f.true_start_ns) as f64
            })
            .collect();
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        let sd = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / errs.len() as f64).sqrt();
        assert!(mean.abs() < 200.0, "{mean}");
        assert!((sd - 3_000.0).abs() < 200.0, "{sd}");
    }

    #[test]
    fn the_rate_error_wanders_slowly() {
        let p = SensorParams {
            wander_ppm_per_s: 0.05,
            ..quiet(20.0)
        };
        let mut s = SensorModel::new(p, 0, 1763);
        for _ in 0..30 * 600 {
            s.next_frame();
        }
        assert!(s.ppm() != 20.0);
        assert!((s.ppm() - 20.0).abs() < 2.0, "{}", s.ppm());
    }

    #[test]
    fn random_ppm_and_phase_stay_in_range_and_differ_by_seed() {
        let a = random_ppm_and_phase(1, 30.0, 33_333_333);
        let b = random_ppm_and_phase(2, 30.0, 33_333_333);
        assert_ne!(a, b);
        for seed in 0..100 {
            let (ppm, phase) = random_ppm_and_phase(seed, 30.0, 33_333_333);
            assert!(ppm.abs() <= 30.0 && (0..33_333_333).contains(&phase));
        }
    }
}
