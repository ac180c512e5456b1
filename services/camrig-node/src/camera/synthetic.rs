//! The synthetic camera: a [`CaptureBackend`] that runs a whole node on any PC, each camera a
//! [`SensorModel`] (its own oscillator, a random start phase, frame lengths in lines applied
//! late, a maximum frame rate) locked to the rig's grid by its [`PhaseLock`], as a real
//! sensor would be. Nothing here puts frames on the grid by construction: with
//! `phase.lock = false` the cameras free-run at their own rates and phases.
//!
//! Each camera has two threads. The *sensor* thread runs the model on the monotonic clock: it
//! computes the next frame (its timestamp is the model's start of frame plus noise, mapped to
//! wall clock with the kernel's current monotonic → realtime offset as a driver's is, never
//! the instant a thread woke), sleeps until the frame's delivery instant (absolute, real-time
//! priority, see [`crate::camera::capture_timing`]; `synthetic.jitter_us` delays it further),
//! feeds the timestamp to the loop and applies the frame length the loop asks for, then hands
//! `(sequence, timestamp)` over. The *render* thread (normal priority) draws the picture and
//! feeds the sink. When the renderer falls behind, the frame is lost (a sequence gap), as when
//! a sensor's buffers run out. Grain (`synthetic.noise`) gives the footage a real sensor's
//! entropy, hence a real file size; `synthetic.drop_every` loses frames on the way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use camrig_protocol::camera_settings::{CameraLimits, CameraSettings};
use camrig_protocol::grid::FrameGrid;
use camrig_protocol::now_unix_ns;

use crate::camera::capture_timing;
use crate::camera::libcamera_support::ClockPair;
use crate::camera::phase_lock::{FrameControl, LockSettings, PhaseLock, PhaseMonitor};
use crate::camera::sensor_model::{self, SensorModel, SensorParams};
use crate::camera::synthetic_exposure::{self, SensorControls};
use crate::camera::test_pattern::{TestPattern, XorShift};
use crate::camera::{
    CameraControls, CameraInfo, CaptureBackend, CaptureError, Frame, FramePixels, FrameSink,
};
use crate::config::{CameraConfig, PhaseConfig, SyntheticConfig};

pub struct SyntheticBackend {
    cameras: Vec<CameraInfo>,
    /// Each camera's exposure/gain/colour state, read by its renderer.
    controls: Arc<SyntheticControls>,
    faults: SyntheticConfig,
    /// Each camera's sensor and loop, until [`CaptureBackend::start`] takes them.
    sensors: Vec<Option<(SensorModel, PhaseLock)>>,
    monitors: Vec<Arc<PhaseMonitor>>,
    running: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The sensor parameters of one synthetic camera: a rate error of `drift_ppm` plus a random
/// one within `ppm_range`, different for every camera and every node process.
pub fn sensor_params(faults: &SyntheticConfig, seed: u64, fps: f64) -> (SensorParams, i64) {
    let period = (1e9 / fps).round() as i64;
    let (ppm, phase) = sensor_model::random_ppm_and_phase(seed, faults.ppm_range, period);
    let line_ns = faults.line_us * 1000.0;
    let params = SensorParams {
        ppm: ppm + faults.drift_ppm,
        wander_ppm_per_s: faults.wander_ppm,
        line_ns,
        min_lines: (1e9 / faults.max_fps / line_ns).ceil() as u32,
        max_lines: 65_535,
        apply_delay: faults.control_delay_frames.clamp(1, 4),
        timestamp_noise_ns: faults.timestamp_noise_us * 1000.0,
        delivery_latency_ns: 8_000_000.0,
        seed,
    };
    (params, phase)
}

impl SyntheticBackend {
    pub fn new(
        camera: &CameraConfig,
        phase: &PhaseConfig,
        faults: &SyntheticConfig,
    ) -> SyntheticBackend {
        let info = CameraInfo {
            model: "synthetic".into(),
            width: camera.width,
            height: camera.height,
            fps: camera.fps,
        };
        // The simulated AE/AWB start from a phase no test can predict.
        let seed = now_unix_ns() as u64 ^ u64::from(std::process::id()).rotate_left(32);
        let grid = FrameGrid::new(camera.fps).expect("camera.fps is validated");
        let settings = LockSettings {
            tolerance_ns: i64::from(phase.tolerance_us) * 1000,
            lock_frames: phase.lock_frames,
        };
        // A seed per process and camera: ten nodes started together differ in rate and phase.
        let process_seed = now_unix_ns() as u64 ^ (u64::from(std::process::id()) << 32);
        let mut sensors = Vec::new();
        let mut monitors = Vec::new();
        for index in 0..camera.count {
            let seed = process_seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (params, phase_ns) = sensor_params(faults, seed, camera.fps);
            let lines = params.lines_for_fps(camera.fps);
            let label = format!("cam{}", index + 1);
            let lock = if phase.lock {
                let control = FrameControl {
                    min_ns: params.min_frame_ns(),
                    max_ns: params.max_frame_ns(),
                    quantum_ns: params.line_ns,
                    latency_frames: params.apply_delay,
                    initial_ns: f64::from(lines) * params.line_ns,
                };
                PhaseLock::new(label, grid, control, settings.clone())
            } else {
                PhaseLock::unavailable(
                    label,
                    grid,
                    settings.clone(),
                    "phase lock is switched off (phase.lock = false): the camera free-runs".into(),
                )
            };
            tracing::info!(
                camera = index + 1,
                ppm = (params.ppm * 100.0).round() / 100.0,
                phase_ms = phase_ns as f64 / 1e6,
                "synthetic sensor"
            );
            // The model runs on the monotonic clock, as a sensor's timestamps do; the first
            // frame starts at a phase unrelated to the grid, shortly after now.
            let now = ClockPair::now();
            let first = if faults.phase_offset_us != 0 {
                // An injected, known phase: the first frame starts this far after a grid
                // instant (with `phase.lock = false` and `ppm_range = 0` it stays there).
                let wall = grid.instant_ns(grid.nearest_slot(now.realtime_ns) + 2)
                    + faults.phase_offset_us * 1_000;
                wall - now.realtime_ns + now.monotonic_ns
            } else {
                now.monotonic_ns + 50_000_000 + phase_ns
            };
            monitors.push(lock.monitor());
            sensors.push(Some((SensorModel::new(params, first, lines), lock)));
        }
        SyntheticBackend {
            controls: Arc::new(SyntheticControls {
                cameras: (0..camera.count)
                    .map(|i| {
                        Arc::new(SensorControls::new(
                            camera.fps,
                            seed.wrapping_add(i as u64 * 7919),
                        ))
                    })
                    .collect(),
                max_fps: faults.max_fps,
            }),
            cameras: vec![info; camera.count],
            faults: faults.clone(),
            sensors,
            monitors,
            running: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
}

impl CaptureBackend for SyntheticBackend {
    fn cameras(&self) -> &[CameraInfo] {
        &self.cameras
    }

    fn phase(&self) -> Vec<Arc<PhaseMonitor>> {
        self.monitors.clone()
    }

    fn start(&mut self, sink: FrameSink) -> Result<(), CaptureError> {
        self.running.store(true, Ordering::SeqCst);
        for (index, info) in self.cameras.iter().enumerate() {
            let Some((model, lock)) = self.sensors.get_mut(index).and_then(Option::take) else {
                continue;
            };
            let (tx, rx) = mpsc::sync_channel(SHUTTER_QUEUE);
            let sensor = SensorThread {
                model,
                lock,
                jitter_us: self.faults.jitter_us,
                drop_every: self.faults.drop_every,
                seed: index as u64 + 1,
                running: self.running.clone(),
                tx,
            };
            let render = Renderer {
                index,
                info: info.clone(),
                controls: self.controls.cameras[index].clone(),
                noise: self.faults.noise,
                rx,
                sink: sink.clone(),
            };
            let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
                std::thread::Builder::new()
                    .name(name)
                    .spawn(f)
                    .map_err(CaptureError::Thread)
            };
            self.threads.push(spawn(
                format!("synthetic-cam{}", index + 1),
                Box::new(move || sensor.run()),
            )?);
            self.threads.push(spawn(
                format!("synthetic-draw{}", index + 1),
                Box::new(move || render.run()),
            )?);
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    fn controls(&self) -> Arc<dyn CameraControls> {
        self.controls.clone()
    }
}

/// Every synthetic camera's [`SensorControls`], and the sensors' maximum frame rate.
struct SyntheticControls {
    cameras: Vec<Arc<SensorControls>>,
    max_fps: f64,
}

impl CameraControls for SyntheticControls {
    fn limits(&self, _camera: usize) -> CameraLimits {
        synthetic_exposure::limits(self.max_fps)
    }

    fn apply(&self, camera: usize, settings: &CameraSettings) -> Result<(), CaptureError> {
        let c = self
            .cameras
            .get(camera)
            .ok_or_else(|| CaptureError::Camera(format!("no camera {camera}")))?;
        c.set(*settings);
        Ok(())
    }
}

impl Drop for SyntheticBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Exposures handed from the sensor to the renderer that may wait: a second's worth at
/// 30 fps, so a renderer starved of CPU for a while catches up instead of losing frames
/// (an exposure is 16 bytes; pictures are only made once it is taken off the queue).
const SHUTTER_QUEUE: usize = 32;

/// One frame's exposure: its sensor sequence number and timestamp.
struct Exposure {
    sequence: u64,
    timestamp_ns: i64,
}

/// The real-time half: runs the sensor model and its loop, delivers each frame when due.
struct SensorThread {
    model: SensorModel,
    lock: PhaseLock,
    jitter_us: u64,
    drop_every: u64,
    seed: u64,
    running: Arc<AtomicBool>,
    tx: SyncSender<Exposure>,
}

impl SensorThread {
    fn run(mut self) {
        capture_timing::make_capture_thread();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ self.seed);
        let line_ns = self.model.params().line_ns;
        while self.running.load(Ordering::Relaxed) {
            let frame = self.model.next_frame();
            let jitter = if self.jitter_us > 0 {
                (rng.next() % (self.jitter_us * 1000)) as i64
            } else {
                0
            };
            let deliver = ClockPair::now().to_wall(frame.delivered_at) + jitter;
            capture_timing::sleep_until(deliver, &self.running);
            if !self.running.load(Ordering::Relaxed) {
                return;
            }
            let sequence = frame.sequence;
            if self.drop_every > 0 && sequence > 0 && sequence.is_multiple_of(self.drop_every) {
                // Lost on the way: neither the loop nor the node ever sees it.
                continue;
            }
            // Sensor time (monotonic) to wall clock with the kernel's current offset, as a
            // camera driver's timestamp is mapped: a step of the wall clock (chrony) shows in
            // the timestamps and the loop relocks. The mapping does not depend on when this
            // thread woke, only on the offset, which moves by the clock's slew alone.
            let timestamp_ns = ClockPair::now().to_wall(frame.timestamp_ns);
            if let Some(request) = self.lock.on_frame(sequence, timestamp_ns) {
                self.model
                    .request_lines((request.duration_ns / line_ns).round() as u32);
            }
            match self.tx.try_send(Exposure {
                sequence,
                timestamp_ns,
            }) {
                // Full: the renderer is behind and this frame is lost (a sequence gap).
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// The normal-priority half: draws each exposed frame and delivers it.
struct Renderer {
    index: usize,
    info: CameraInfo,
    controls: Arc<SensorControls>,
    noise: u8,
    rx: Receiver<Exposure>,
    sink: FrameSink,
}

impl Renderer {
    fn run(self) {
        let name = format!("cam{} synthetic", self.index + 1);
        let mut pattern = TestPattern::new(self.info.width, self.info.height, self.index, &name)
            .with_noise(self.noise, self.index as u64 + 1);
        // Ends when the shutter thread ends (stop) and drops its sender.
        for e in self.rx.iter() {
            let applied = self.controls.applied(e.timestamp_ns);
            let i420 = pattern.render_lit(
                e.sequence,
                e.timestamp_ns,
                synthetic_exposure::look(&applied),
            );
            (self.sink)(Frame {
                camera: self.index,
                sequence: e.sequence,
                timestamp_ns: e.timestamp_ns,
                width: self.info.width,
                height: self.info.height,
                pixels: FramePixels::I420(i420),
                applied: Some(applied),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_get_different_rates_and_phases_within_the_configured_range() {
        let faults = SyntheticConfig::default();
        let (a, pa) = sensor_params(&faults, 1, 30.0);
        let (b, pb) = sensor_params(&faults, 2, 30.0);
        assert_ne!((a.ppm, pa), (b.ppm, pb));
        assert!(a.ppm.abs() <= 30.0 && b.ppm.abs() <= 30.0);
        assert_eq!(a.apply_delay, 2);
        // 60 fps maximum on 18.904 µs lines: 882 lines.
        assert_eq!(a.min_lines, 882);
    }

    #[test]
    fn no_headroom_makes_the_camera_unavailable_and_lock_off_says_so() {
        let camera = CameraConfig {
            fps: 60.0,
            ..CameraConfig::default()
        };
        let b = SyntheticBackend::new(
            &camera,
            &PhaseConfig::default(),
            &SyntheticConfig::default(),
        );
        let s = b.phase()[0].status();
        assert_eq!(s.state, camrig_protocol::phase::LockState::Unavailable);
        assert!(s.reason.unwrap().contains("headroom"));
        let off = PhaseConfig {
            lock: false,
            ..PhaseConfig::default()
        };
        let b = SyntheticBackend::new(&CameraConfig::default(), &off, &SyntheticConfig::default());
        assert!(b.phase()[0]
            .status()
            .reason
            .unwrap()
            .contains("phase.lock = false"));
    }
}
