//! Phase lock as the node reports it (DESIGN.md decision 9): each camera's lock state on the
//! rig's [`crate::grid::FrameGrid`], live in `GET /v1/status` ([`PhaseStatus`]) and per take
//! in the manifest ([`PhaseRecord`]).

use serde::{Deserialize, Serialize};

/// A camera's phase-lock state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// The loop is pulling the camera's frame starts onto the grid.
    Locking,
    /// Frame starts have been within the lock threshold for the required number of frames.
    Locked,
    /// The camera cannot be locked (no frame-duration control, or no frame-rate headroom);
    /// it still records. The reason is in [`PhaseStatus::reason`].
    Unavailable,
}

impl LockState {
    /// The wire name (`locking`, `locked`, `unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Locking => "locking",
            LockState::Locked => "locked",
            LockState::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for LockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Percentiles of the phase error (frame start − nearest grid instant) over the last second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentError {
    pub p50: i64,
    pub p99: i64,
}

/// One camera's live phase lock (`GET /v1/status` → `cameras[i].phase`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseStatus {
    pub state: LockState,
    /// Why the camera is `unavailable`, or why it last lost lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Absolute phase error percentiles over the last second, ns.
    pub error_ns: RecentError,
    /// The camera oscillator's rate error as the loop estimates it, ppm.
    pub ppm: Option<f64>,
}

/// Phase-error percentiles over a whole take, ns (absolute values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TakeError {
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

/// One camera's phase lock over a take (the manifest's `cameras[i].phase`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub state_at_start: LockState,
    pub error_ns: TakeError,
    /// Kept frames whose phase error exceeded the lock tolerance.
    pub frames_outside_tolerance: u64,
    /// Times the loop went from `locked` back to `locking` during the take.
    pub lock_losses: u64,
}
