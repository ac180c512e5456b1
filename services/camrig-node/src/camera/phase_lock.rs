//! Phase lock (DESIGN.md decision 9): one loop per camera that pulls the camera's frame starts
//! onto the rig's grid ([`FrameGrid`], `n × T` since the Unix epoch, derived from this node's
//! own disciplined clock) by setting the durations of coming frames. It sits behind the
//! capture seam: a backend with a frame-duration control feeds it every frame's timestamp on
//! its capture thread and applies the duration it returns; a backend without one reports the
//! camera `unavailable` with the reason ([`PhaseLock::unavailable`]). Either way the
//! [`PhaseMonitor`] is what the node shows (status, STATUS line) and records (manifest).
//!
//! The locked instant is the start of exposure: backends hand in that instant (libcamera's
//! SensorTimestamp, the start of readout, minus the exposure time; or FrameWallClock).
//!
//! The loop, per frame `k` with phase error `e_k` (timestamp − nearest grid instant):
//! - the durations already requested for frames `k .. k+L−1` (`L` = the control latency in
//!   frames: the sensor applies a duration that many frames late) are still in flight; their
//!   deviation from `T` is known and is cancelled in full by the duration chosen for frame
//!   `k+L`, so `e_{k+L+1} = (1 − α)·e_k`: stable, and not fooled by its own corrections;
//! - `α` is 1 while far off (fast acquisition) and [`NEAR_GAIN`] near the grid, so a noisy
//!   timestamp moves the next frames by a fraction of its noise;
//! - an integral term, the oscillator's rate estimate, learns from how much each frame
//!   interval differed from the durations asked for (± ppm), so a fast or slow oscillator
//!   leaves no standing phase error;
//! - every duration is bounded to the control's limits (never above the mode's maximum
//!   frame rate) and to ±[`MAX_STEP`] of a period, so a correction never looks like a lost
//!   frame (an interval over 1.5 periods counts as one); far from the grid the loop goes
//!   whichever way (shorter or longer frames) reaches the nearest grid instant sooner;
//! - durations are quantised (whole lines, or libcamera's µs) and the quantisation error
//!   is in flight like any other, so it is cancelled by the next frame.
//!
//! States: `locking` → `locked` after [`LockSettings::lock_frames`] frames in a row within
//! the tolerance → `locking` again when the lock is lost (a clock step, a burst of lost
//! frames, the error outside the tolerance for several frames), logged with the reason.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use camrig_protocol::grid::FrameGrid;
use camrig_protocol::phase::{LockState, PhaseStatus, RecentError};
use camrig_protocol::UnixNanos;

/// Gain on the measured phase error near the grid: a quarter of a frame's noise reaches the
/// next frames, and the error still halves every few frames.
pub const NEAR_GAIN: f64 = 0.4;
/// Beyond this error the loop corrects in full (acquisition).
const FAR_NS: f64 = 200_000.0;
/// The most one frame may differ from the period, as a fraction of it.
pub const MAX_STEP: f64 = 0.25;
/// A frame interval this far from prediction is a clock step (chrony stepping the wall
/// clock), not the oscillator: the rate estimate ignores it.
const STEP_NS: f64 = 1_000_000.0;
/// This many frames lost in a row lose the lock.
const DROP_BURST: u64 = 5;
/// The lock is lost after this many frames in a row outside the tolerance.
const OUTSIDE_TO_LOSE: u32 = 3;
/// A frame-rate headroom below this (fraction of the period) cannot hold a lock: more than
/// an oscillator's rate error and room to correct.
const MIN_HEADROOM: f64 = 0.000_5;
/// Gains of the rate estimate while locking and once locked.
const RATE_GAIN_LOCKING: f64 = 0.05;
const RATE_GAIN_LOCKED: f64 = 0.01;

/// What a camera's frame-duration control can do.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameControl {
    /// Shortest frame (the mode's maximum frame rate), ns on the camera's clock.
    pub min_ns: f64,
    /// Longest frame, ns.
    pub max_ns: f64,
    /// Granularity of a duration (a line, or 1 µs for libcamera's control), ns.
    pub quantum_ns: f64,
    /// Frames between the frame whose timestamp the loop sees and the first frame whose
    /// duration it can still set.
    pub latency_frames: u32,
    /// The duration the camera runs at before the loop asks for anything, ns.
    pub initial_ns: f64,
}

/// The loop's thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct LockSettings {
    /// A frame within this of its grid instant is in tolerance (also the manifest's
    /// `frames_outside_tolerance` bound), ns.
    pub tolerance_ns: i64,
    /// Frames in a row within tolerance to declare `locked`.
    pub lock_frames: u32,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            tolerance_ns: 50_000,
            lock_frames: 10,
        }
    }
}

/// Why a camera cannot be locked (`unavailable`), checked before any frame.
pub fn check_headroom(grid: &FrameGrid, control: &FrameControl) -> Result<(), String> {
    let t = grid.period_ns();
    if control.min_ns > t * (1.0 - MIN_HEADROOM) {
        return Err(format!(
            "no frame-rate headroom: the camera's fastest frame is {:.3} ms ({:.2} fps) and {} fps leaves no room to shorten a frame; lower camera.fps",
            control.min_ns / 1e6,
            1e9 / control.min_ns,
            grid.fps()
        ));
    }
    if control.max_ns < t * (1.0 + MIN_HEADROOM) {
        return Err(format!(
            "the camera's longest frame ({:.3} ms) leaves no room to lengthen one at {} fps",
            control.max_ns / 1e6,
            grid.fps()
        ));
    }
    Ok(())
}

/// The live and per-take view of one camera's lock, shared between its loop (writer, on the
/// capture thread) and the node (status, manifest).
#[derive(Debug)]
pub struct PhaseMonitor {
    tolerance_ns: i64,
    inner: Mutex<MonitorInner>,
}

#[derive(Debug)]
struct MonitorInner {
    state: LockState,
    reason: Option<String>,
    /// (timestamp, |error|) of the last second's frames.
    recent: VecDeque<(UnixNanos, i64)>,
    ppm: Option<f64>,
    lock_losses: u64,
}

impl PhaseMonitor {
    fn new(state: LockState, reason: Option<String>, tolerance_ns: i64) -> PhaseMonitor {
        PhaseMonitor {
            tolerance_ns,
            inner: Mutex::new(MonitorInner {
                state,
                reason,
                recent: VecDeque::new(),
                ppm: None,
                lock_losses: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MonitorInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> LockState {
        self.lock().state
    }

    /// Times the camera went from `locked` back to `locking` since it started.
    pub fn lock_losses(&self) -> u64 {
        self.lock().lock_losses
    }

    /// The tolerance a frame's phase error is judged by, ns.
    pub fn tolerance_ns(&self) -> i64 {
        self.tolerance_ns
    }

    /// `GET /v1/status`'s `cameras[i].phase`: the error percentiles over the last second.
    pub fn status(&self) -> PhaseStatus {
        let inner = self.lock();
        let mut errors: Vec<i64> = inner.recent.iter().map(|&(_, e)| e).collect();
        errors.sort_unstable();
        PhaseStatus {
            state: inner.state,
            reason: inner.reason.clone(),
            error_ns: RecentError {
                p50: percentile(&errors, 50.0),
                p99: percentile(&errors, 99.0),
            },
            ppm: inner.ppm.map(|p| (p * 100.0).round() / 100.0),
        }
    }

    fn record(&self, ts: UnixNanos, error: i64, ppm: Option<f64>) {
        let mut inner = self.lock();
        inner.recent.push_back((ts, error.abs()));
        while inner
            .recent
            .front()
            .is_some_and(|&(t, _)| t < ts - 1_000_000_000 || t > ts)
        {
            inner.recent.pop_front();
        }
        if ppm.is_some() {
            inner.ppm = ppm;
        }
    }

    fn set_state(&self, state: LockState, reason: Option<String>) {
        let mut inner = self.lock();
        if inner.state == LockState::Locked && state == LockState::Locking {
            inner.lock_losses += 1;
        }
        inner.state = state;
        inner.reason = reason;
    }
}

/// The `p`th percentile of sorted values (nearest rank), 0 for none.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration request: frame `sequence` (and the ones after it, until the next request) should
/// last `duration_ns` on the camera's clock, already quantised and within the control's limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurationRequest {
    pub sequence: u64,
    pub duration_ns: f64,
}

/// One camera's loop.
#[derive(Debug)]
pub struct PhaseLock {
    grid: FrameGrid,
    control: Option<FrameControl>,
    settings: LockSettings,
    monitor: Arc<PhaseMonitor>,
    /// Duration requests by target frame, oldest first; a frame lasts the latest request at
    /// or before it (the camera repeats the last one).
    requests: VecDeque<DurationRequest>,
    /// Camera-clock ns per true ns (1 + rate error).
    rate: f64,
    last: Option<(u64, UnixNanos)>,
    /// The last frame's phase error as filtered from the noisy measurements, true ns.
    estimate: Option<f64>,
    in_tolerance: u32,
    outside: u32,
    first_ts: Option<UnixNanos>,
    /// How long the first lock took, ns (for the log and the benchmark).
    pub locked_after_ns: Option<i64>,
    label: String,
}

impl PhaseLock {
    /// A loop for a camera with a frame-duration control; `unavailable` (with the reason)
    /// when the control leaves no headroom at the grid's rate.
    pub fn new(
        label: impl Into<String>,
        grid: FrameGrid,
        control: FrameControl,
        settings: LockSettings,
    ) -> PhaseLock {
        let label = label.into();
        if let Err(reason) = check_headroom(&grid, &control) {
            return PhaseLock::unavailable(label, grid, settings, reason);
        }
        PhaseLock::starting(label, grid, Some(control), settings, None)
    }

    /// A camera that cannot be locked: its frames' phase error is still measured and shown.
    pub fn unavailable(
        label: impl Into<String>,
        grid: FrameGrid,
        settings: LockSettings,
        reason: String,
    ) -> PhaseLock {
        let label = label.into();
        tracing::warn!(camera = %label, reason = %reason, "phase lock unavailable; the camera free-runs and still records");
        PhaseLock::starting(label, grid, None, settings, Some(reason))
    }

    /// A loop with no frame seen yet: `locking` with a control, `unavailable` (for
    /// `reason`) without one.
    fn starting(
        label: String,
        grid: FrameGrid,
        control: Option<FrameControl>,
        settings: LockSettings,
        reason: Option<String>,
    ) -> PhaseLock {
        let state = if control.is_some() {
            LockState::Locking
        } else {
            LockState::Unavailable
        };
        PhaseLock {
            monitor: Arc::new(PhaseMonitor::new(state, reason, settings.tolerance_ns)),
            grid,
            control,
            settings,
            requests: VecDeque::new(),
            rate: 1.0,
            last: None,
            estimate: None,
            in_tolerance: 0,
            outside: 0,
            first_ts: None,
            locked_after_ns: None,
            label,
        }
    }

    pub fn monitor(&self) -> Arc<PhaseMonitor> {
        self.monitor.clone()
    }

    pub fn state(&self) -> LockState {
        self.monitor.state()
    }

    /// The oscillator's rate error as the loop estimates it, ppm.
    pub fn ppm(&self) -> f64 {
        (self.rate - 1.0) * 1e6
    }

    /// How long frame `sequence` lasts on the camera's clock, as far as the loop asked.
    fn duration_of(&self, sequence: u64) -> f64 {
        self.requests
            .iter()
            .rev()
            .find(|r| r.sequence <= sequence)
            .map(|r| r.duration_ns)
            .or(self.control.as_ref().map(|c| c.initial_ns))
            .unwrap_or_else(|| self.grid.period_ns())
    }

    /// Takes frame `sequence`'s start-of-exposure timestamp; returns the duration to request
    /// for a coming frame, or nothing (no control).
    pub fn on_frame(&mut self, sequence: u64, ts: UnixNanos) -> Option<DurationRequest> {
        let error = self.grid.phase_error_ns(ts);
        let first = *self.first_ts.get_or_insert(ts);
        let Some(control) = self.control.clone() else {
            self.monitor.record(ts, error, None);
            self.last = Some((sequence, ts));
            return None;
        };
        let t = self.grid.period_ns();

        // What the last frame's timestamp and the durations asked since predict for this one.
        let mut predicted_phase = None;
        if let Some((last_seq, last_ts)) = self.last.filter(|&(s, _)| s < sequence) {
            let nominal: f64 = (last_seq..sequence).map(|s| self.duration_of(s)).sum();
            predicted_phase = self
                .estimate
                .map(|e| e + nominal / self.rate - (sequence - last_seq) as f64 * t);
            let residual = (ts - last_ts) as f64 - nominal / self.rate;
            let lost = sequence - last_seq - 1;
            if residual.abs() > STEP_NS {
                self.lose(format!(
                    "clock stepped by {:+.2} ms (frame {sequence} came that far off its predicted start)",
                    residual / 1e6
                ));
            } else {
                let gain = if self.state() == LockState::Locked {
                    RATE_GAIN_LOCKED
                } else {
                    RATE_GAIN_LOCKING
                };
                // Frames took longer than asked: the oscillator is slow (rate below 1).
                self.rate *= 1.0 - gain * residual / (ts - last_ts) as f64;
                self.rate = self.rate.clamp(1.0 - 1e-3, 1.0 + 1e-3);
            }
            if lost >= DROP_BURST {
                self.lose(format!(
                    "{lost} frames lost in a row before frame {sequence}"
                ));
            }
        }
        self.last = Some((sequence, ts));
        // Requests for frames before this one are history; what this frame lasts stays.
        let current = self.duration_of(sequence);
        self.requests.retain(|r| r.sequence > sequence);
        self.requests.push_front(DurationRequest {
            sequence,
            duration_ns: current,
        });
        self.update_state(ts, error, first);
        self.monitor.record(ts, error, Some(self.ppm()));

        // Deviations of the frames already in flight, in true ns, cancelled in full.
        let latency = u64::from(control.latency_frames.max(1));
        let in_flight: f64 = (sequence..sequence + latency)
            .map(|s| self.duration_of(s) / self.rate - t)
            .sum();
        let estimate = self.estimate_phase(sequence, error as f64, predicted_phase);
        let mut target = estimate;
        let shortest = (control.min_ns / self.rate).max(t * (1.0 - MAX_STEP));
        let longest = (control.max_ns / self.rate).min(t * (1.0 + MAX_STEP));
        let predicted = target + in_flight;
        if predicted.abs() > FAR_NS {
            // Far off: aim at whichever grid instant the bounded frames reach sooner.
            let e = predicted.rem_euclid(t);
            let frames_shorter = e / (t - shortest);
            let frames_longer = (t - e) / (longest - t);
            let aim = if frames_shorter <= frames_longer {
                e
            } else {
                e - t
            };
            target += aim - predicted;
        }
        let wanted = t - target - in_flight;
        let wanted = wanted.clamp(shortest, longest) * self.rate;
        let duration_ns = quantise(wanted, &control);
        let request = DurationRequest {
            sequence: sequence + latency,
            duration_ns,
        };
        self.requests.retain(|r| r.sequence < request.sequence);
        self.requests.push_back(request);
        Some(request)
    }

    /// The phase error of this frame as the loop believes it: the last belief carried forward
    /// by the durations asked for (exact but for the oscillator), nudged by
    /// [`NEAR_GAIN`] of the measured difference, so timestamp noise is averaged over several
    /// frames; a difference beyond [`FAR_NS`] (first frame, clock step) is believed at once.
    fn estimate_phase(&mut self, _sequence: u64, measured: f64, predicted: Option<f64>) -> f64 {
        let t = self.grid.period_ns();
        let wrap = |x: f64| x - (x / t).round() * t;
        let estimate = match predicted {
            Some(p) => {
                let innovation = wrap(measured - p);
                if innovation.abs() > FAR_NS {
                    measured
                } else {
                    wrap(p + NEAR_GAIN * innovation)
                }
            }
            None => measured,
        };
        self.estimate = Some(estimate);
        estimate
    }

    fn update_state(&mut self, ts: UnixNanos, error: i64, first: UnixNanos) {
        let inside = error.abs() <= self.settings.tolerance_ns;
        if inside {
            self.in_tolerance += 1;
            self.outside = 0;
        } else {
            self.in_tolerance = 0;
            self.outside += 1;
        }
        match self.state() {
            LockState::Locking if self.in_tolerance >= self.settings.lock_frames => {
                let after = ts - first;
                self.locked_after_ns.get_or_insert(after);
                tracing::info!(
                    camera = %self.label,
                    lock_ms = after as f64 / 1e6,
                    ppm = (self.ppm() * 100.0).round() / 100.0,
                    "phase locked"
                );
                self.monitor.set_state(LockState::Locked, None);
            }
            LockState::Locked if self.outside >= OUTSIDE_TO_LOSE => {
                self.lose(format!(
                    "phase error {:+.1} µs, outside ±{} µs for {} frames",
                    error as f64 / 1e3,
                    self.settings.tolerance_ns / 1000,
                    self.outside
                ));
            }
            _ => {}
        }
    }

    /// Back to `locking` (from any state but `unavailable`), logged with the reason.
    fn lose(&mut self, reason: String) {
        self.in_tolerance = 0;
        match self.state() {
            LockState::Locked => {
                tracing::warn!(camera = %self.label, reason = %reason, "phase lock lost");
                self.monitor.set_state(LockState::Locking, Some(reason));
            }
            LockState::Locking => {
                tracing::info!(camera = %self.label, reason = %reason, "phase still locking");
                self.monitor.set_state(LockState::Locking, Some(reason));
            }
            LockState::Unavailable => {}
        }
    }
}

/// Rounds a duration to the control's granularity, never below its minimum nor above its
/// maximum.
fn quantise(ns: f64, control: &FrameControl) -> f64 {
    let q = control.quantum_ns.max(1.0);
    let mut d = (ns / q).round() * q;
    if d < control.min_ns {
        d = (control.min_ns / q).ceil() * q;
    }
    if d > control.max_ns {
        d = (control.max_ns / q).floor() * q;
    }
    d
}

#[cfg(test)]
mod tests;
