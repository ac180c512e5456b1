//! The synthetic camera: a [`CaptureBackend`] that runs a whole node on any PC.
//!
//! Frames fall on a grid of the wall clock (frame k at k × period since the epoch, stretched
//! by the injected drift), as frame-synchronised sensors on one timeline would; each
//! frame's timestamp is the wall clock read after waking for it, so it carries real
//! scheduling latency. Faults for tests: drift (ppm), jitter (extra random delay) and a
//! dropped frame every N (its sequence number is skipped, as a sensor's would be). Grain
//! (`synthetic.noise`) gives the footage a real sensor's entropy, hence a real file size.
//!
//! Each camera has two threads, as a sensor has a shutter and a readout: the *shutter*
//! thread sleeps until the frame is due (absolute, real-time priority, see
//! [`crate::camera::capture_timing`]), reads the clock and hands `(sequence, timestamp)` over; the
//! *render* thread (normal priority) draws the picture and feeds the sink. The shutter thread
//! holds a CPU for microseconds, so on a busy machine every node's clock read for a frame
//! happens before anyone renders or encodes it: the start spread across a rig is wake-up
//! latency alone, not queueing behind other nodes' picture work. When the renderer falls
//! behind, the frame is lost (a sequence gap), as when a sensor's buffers run out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use camrig_protocol::now_unix_ns;

use crate::camera::capture_timing;
use crate::camera::test_pattern::{TestPattern, XorShift};
use crate::camera::{CameraInfo, CaptureBackend, CaptureError, Frame, FramePixels, FrameSink};
use crate::config::{CameraConfig, SyntheticConfig};

pub struct SyntheticBackend {
    cameras: Vec<CameraInfo>,
    faults: SyntheticConfig,
    running: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl SyntheticBackend {
    pub fn new(camera: &CameraConfig, faults: &SyntheticConfig) -> SyntheticBackend {
        let info = CameraInfo {
            model: "synthetic".into(),
            width: camera.width,
            height: camera.height,
            fps: camera.fps,
        };
        SyntheticBackend {
            cameras: vec![info; camera.count],
            faults: faults.clone(),
            running: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
}

impl CaptureBackend for SyntheticBackend {
    fn cameras(&self) -> &[CameraInfo] {
        &self.cameras
    }

    fn start(&mut self, sink: FrameSink) -> Result<(), CaptureError> {
        self.running.store(true, Ordering::SeqCst);
        for (index, info) in self.cameras.iter().enumerate() {
            let (tx, rx) = mpsc::sync_channel(SHUTTER_QUEUE);
            let shutter = Shutter {
                clock: FrameClock::new(info.fps, self.faults.drift_ppm),
                jitter_us: self.faults.jitter_us,
                drop_every: self.faults.drop_every,
                seed: index as u64 + 1,
                running: self.running.clone(),
                tx,
            };
            let render = Renderer {
                index,
                info: info.clone(),
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
                Box::new(move || shutter.run()),
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
}

impl Drop for SyntheticBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The frame grid: frame k is due at `k × period × (1 + drift)` ns since the epoch.
/// Integer femtoseconds: f64 cannot hold today's epoch nanoseconds exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameClock {
    period_fs: i128,
}

const FS_PER_NS: i128 = 1_000_000;

impl FrameClock {
    pub fn new(fps: f64, drift_ppm: f64) -> FrameClock {
        FrameClock {
            period_fs: (1e15 / fps * (1.0 + drift_ppm * 1e-6)).round() as i128,
        }
    }

    /// The first grid index due at or after `now`.
    pub fn next_index(&self, now: i64) -> u64 {
        let now_fs = i128::from(now) * FS_PER_NS;
        ((now_fs + self.period_fs - 1) / self.period_fs) as u64
    }

    pub fn due(&self, k: u64) -> i64 {
        let fs = i128::from(k) * self.period_fs;
        ((fs + FS_PER_NS - 1) / FS_PER_NS) as i64
    }
}

/// Exposures handed from the shutter to the renderer that may wait: a second's worth at
/// 30 fps, so a renderer starved of CPU for a while catches up instead of losing frames
/// (an exposure is 16 bytes; pictures are only made once it is taken off the queue).
const SHUTTER_QUEUE: usize = 32;

/// One frame's exposure: its sensor sequence number and the clock read for it.
struct Exposure {
    sequence: u64,
    timestamp_ns: i64,
}

/// The real-time half: wakes on the grid, reads the clock, hands the reading over.
struct Shutter {
    clock: FrameClock,
    jitter_us: u64,
    drop_every: u64,
    seed: u64,
    running: Arc<AtomicBool>,
    tx: SyncSender<Exposure>,
}

impl Shutter {
    fn run(self) {
        capture_timing::make_capture_thread();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ self.seed);
        let mut k = self.clock.next_index(now_unix_ns());
        let first = k;
        while self.running.load(Ordering::Relaxed) {
            let jitter = if self.jitter_us > 0 {
                (rng.next() % (self.jitter_us * 1000)) as i64
            } else {
                0
            };
            capture_timing::sleep_until(self.clock.due(k) + jitter, &self.running);
            let timestamp_ns = now_unix_ns();
            let sequence = k - first;
            let dropped =
                self.drop_every > 0 && sequence > 0 && sequence.is_multiple_of(self.drop_every);
            if !dropped && self.running.load(Ordering::Relaxed) {
                match self.tx.try_send(Exposure {
                    sequence,
                    timestamp_ns,
                }) {
                    // Full: the renderer is behind and this frame is lost (a sequence gap).
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            // A frame we were too late for is lost, as on a sensor: skip to the next slot
            // still ahead so the sequence gap shows it.
            k = (k + 1).max(self.clock.next_index(now_unix_ns()));
        }
    }
}

/// The normal-priority half: draws each exposed frame and delivers it.
struct Renderer {
    index: usize,
    info: CameraInfo,
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
            let i420 = pattern.render(e.sequence, e.timestamp_ns);
            (self.sink)(Frame {
                camera: self.index,
                sequence: e.sequence,
                timestamp_ns: e.timestamp_ns,
                width: self.info.width,
                height: self.info.height,
                pixels: FramePixels::I420(i420),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_fall_on_the_wall_clock_grid() {
        let c = FrameClock::new(30.0, 0.0);
        let now = 1_761_228_130_500_000_001;
        let k = c.next_index(now);
        assert!(c.due(k) >= now && c.due(k) - now < 33_333_334);
        let c = FrameClock::new(25.0, 0.0);
        assert_eq!(c.due(25), 1_000_000_000);
    }

    #[test]
    fn drift_stretches_the_grid() {
        let c = FrameClock::new(10.0, 100.0);
        assert_eq!(c.due(10), 1_000_100_000);
    }
}
