//! What the node reports about its cameras: the live per-camera numbers the frame callback
//! keeps ([`CameraStats`]: frames seen, the latest frame for previews, the measured fps) and
//! how they become a camera's entry in `/v1/status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use camrig_protocol::api::CameraStatus;
use camrig_protocol::naming;

use super::metrics::CameraCounters;
use crate::camera::{CameraInfo, Frame};
use crate::take::recorder::LiveCamera;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Live per-camera numbers kept by the frame callback.
pub(crate) struct CameraStats {
    frames: AtomicU64,
    latest: Mutex<Option<Frame>>,
    fps: Mutex<f64>,
    /// The camera's `/metrics` counters (captured here; kept, dropped and encode time by
    /// the take's writer).
    pub(crate) counters: CameraCounters,
}

/// A camera's frame count at an instant, for the next fps measurement.
pub(crate) type FrameCount = (u64, Instant);

impl CameraStats {
    pub(crate) fn new(counters: CameraCounters) -> CameraStats {
        CameraStats {
            frames: AtomicU64::new(0),
            latest: Mutex::new(None),
            fps: Mutex::new(0.0),
            counters,
        }
    }

    /// Counts a frame (on the capture thread: must not block).
    pub(crate) fn count(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.counters.captured.inc();
    }

    /// Keeps `frame` as the camera's latest (for previews and `last_frame_ns`).
    pub(crate) fn keep_latest(&self, frame: Frame) {
        *lock(&self.latest) = Some(frame);
    }

    pub(crate) fn latest(&self) -> Option<Frame> {
        lock(&self.latest).clone()
    }

    /// Lets go of the latest frame, giving a lent camera buffer back.
    pub(crate) fn forget_latest(&self) {
        lock(&self.latest).take();
    }

    pub(crate) fn frame_count(&self) -> FrameCount {
        (self.frames.load(Ordering::Relaxed), Instant::now())
    }

    /// Measures the fps since `last` and moves `last` to now.
    pub(crate) fn measure_fps(&self, last: &mut FrameCount) {
        let now = self.frame_count();
        let dt = now.1.duration_since(last.1).as_secs_f64();
        if dt > 0.0 {
            *lock(&self.fps) = (now.0 - last.0) as f64 / dt;
        }
        *last = now;
    }

    /// Camera `index` of `count` as `/v1/status` shows it; `live` is the take's view of it.
    pub(crate) fn camera_status(
        &self,
        index: usize,
        count: usize,
        info: &CameraInfo,
        live: LiveCamera,
    ) -> CameraStatus {
        CameraStatus {
            index,
            label: naming::camera_label(index, count),
            model: info.model.clone(),
            mode: info.mode(),
            frames: self.frames.load(Ordering::Relaxed),
            take_frames: live.frames,
            fps: *lock(&self.fps),
            drops: live.drops,
            drop_bursts: live.bursts,
            last_frame_ns: lock(&self.latest).as_ref().map(|f| f.timestamp_ns),
            phase: None,
        }
    }
}
