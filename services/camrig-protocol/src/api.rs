//! JSON bodies of the node's HTTP API (`/v1/...`, port 8081 by default).
//!
//! Every request carries `Authorization: Bearer <rig token>` unless the node's config turns
//! authentication off. Errors are `{"error": "<what went wrong and what to do>"}` with a
//! 4xx/5xx status. Commands are idempotent by `command_id`: repeating one returns the first
//! answer again and changes nothing.
//!
//! Endpoints: `GET /v1/status`, `GET /v1/time`, `GET /v1/takes` ([`TakeListing`]s),
//! `GET /v1/takes/{take}/manifest`, `POST /v1/takes/{start,stop,mark,abort}`,
//! `DELETE /v1/takes/{take}` ([`DeleteTakeRequest`] → [`DeleteTakeReply`]; 409 while the
//! take is armed, recording or stopping, or when the file list is not exactly the manifest;
//! 404 for a take never on this node; repeating it answers the first answer again) and
//! `GET /v1/cameras/{n}/preview.jpg`, and `GET`/`PUT /v1/camera-settings`
//! ([`crate::camera_settings::NodeCameraSettings`], [`crate::camera_settings::ApplySettingsRequest`];
//! PUT is 409 while a take is armed or recording, 400 naming the camera and range).
//! `GET /metrics` (same token) is Prometheus's text format (see the controller's API.md,
//! "Metrics").

use crate::manifest::{ClockHealth, FileEntry, ManifestState, MarkerFrame, StopReason};
use crate::take_name::TakeName;
use crate::UnixNanos;

/// Default TCP port of the node API.
pub const NODE_API_PORT: u16 = 8081;
/// Largest request body the node accepts (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest `DELETE /v1/takes/{take}` body: it lists every file of the take, and a long
/// take has thousands of segments.
pub const MAX_DELETE_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `POST /v1/takes/start`
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StartRequest {
    pub take: TakeName,
    /// The first kept frame is the first whose timestamp is at or after this instant.
    pub start_at_ns: UnixNanos,
    pub command_id: String,
}

/// `POST /v1/takes/stop`
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StopRequest {
    /// The last kept frame is the last whose timestamp is before this instant.
    pub stop_at_ns: UnixNanos,
    pub command_id: String,
}

/// `POST /v1/takes/mark`
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkRequest {
    pub at_ns: UnixNanos,
    #[serde(default)]
    pub note: String,
    pub command_id: String,
}

/// `POST /v1/takes/abort`: cancel an armed take (nothing recorded yet, nothing kept) or
/// stop a recording one immediately (everything recorded is kept).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AbortRequest {
    pub command_id: String,
}

/// Answer to every take command.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandReply {
    pub command_id: String,
    /// The node's state right after the command.
    pub state: NodeState,
    pub take: Option<TakeName>,
    pub start_at_ns: Option<UnixNanos>,
    pub stop_at_ns: Option<UnixNanos>,
    /// For MARK: the mark's position in each camera's frames, where already known.
    #[serde(default)]
    pub marker_frames: Vec<MarkerFrame>,
}

/// `GET /v1/time`: the node's wall clock when the request arrived and when the answer left,
/// for the controller's four-timestamp (NTP-style) offset probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeReply {
    pub receive_ns: UnixNanos,
    pub send_ns: UnixNanos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Idle,
    /// A START was accepted; recording begins at `start_at_ns`.
    Armed,
    Recording,
}

/// `GET /v1/status`
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// The `<node>` label used in file names.
    pub node: String,
    pub version: String,
    pub state: NodeState,
    pub take: Option<TakeName>,
    pub start_at_ns: Option<UnixNanos>,
    pub stop_at_ns: Option<UnixNanos>,
    /// Index of the segment being written, while recording.
    pub segment: Option<u32>,
    pub cameras: Vec<CameraStatus>,
    pub disk_free_bytes: u64,
    /// START is refused (507) below this much free space.
    pub disk_floor_bytes: u64,
    pub clock: ClockHealth,
    pub standalone: bool,
    /// Something a person must act on, e.g. "no camera found" or why the last take stopped.
    pub problem: Option<String>,
    /// How the most recent take ended, once it has.
    pub last_take: Option<TakeOutcome>,
    /// Takes found interrupted at start-up and finalised as recovered.
    #[serde(default)]
    pub recovered_takes: Vec<TakeName>,
    /// The node's wall clock when this status was made.
    pub now_ns: UnixNanos,
    /// Host health (temperature, throttling, memory, recordable time); absent from nodes
    /// older than it.
    #[serde(default)]
    pub health: Option<crate::health::NodeHealth>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeOutcome {
    pub take: TakeName,
    pub state: ManifestState,
    pub stop_reason: Option<StopReason>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraStatus {
    pub index: usize,
    pub label: Option<String>,
    /// e.g. `synthetic` or the sensor model (`imx219`, `imx477`).
    pub model: String,
    /// Width×height@fps as configured.
    pub mode: String,
    /// Frames received since the service started.
    pub frames: u64,
    /// Frames kept in the current (or last) take.
    pub take_frames: u64,
    /// Measured over the last second.
    pub fps: f64,
    /// Drops detected in the current (or last) take.
    pub drops: u64,
    /// The current (or last) take's most recent drop bursts, oldest first (at most
    /// [`RECENT_DROP_BURSTS`]); absent from older nodes.
    #[serde(default)]
    pub drop_bursts: Vec<DropBurst>,
    pub last_frame_ns: Option<UnixNanos>,
    /// Phase lock on the rig's frame grid; absent from nodes older than phase lock.
    #[serde(default)]
    pub phase: Option<crate::phase::PhaseStatus>,
}

/// How many recent drop bursts a camera's status carries.
pub const RECENT_DROP_BURSTS: usize = 16;

/// Why frames were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropCause {
    /// The camera (or its driver) skipped sequence numbers, or a frame came more than 1.5
    /// periods late: lost before the node's frame path saw it.
    SequenceGap,
    /// The camera's queue to its writer was full: encoding or writing fell behind.
    QueueFull,
    /// The encoder did not return the frame (it failed or timed out).
    EncoderLate,
}

impl DropCause {
    pub const ALL: [DropCause; 3] = [
        DropCause::SequenceGap,
        DropCause::QueueFull,
        DropCause::EncoderLate,
    ];

    /// The wire name (`sequence_gap`, `queue_full`, `encoder_late`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::SequenceGap => "sequence_gap",
            DropCause::QueueFull => "queue_full",
            DropCause::EncoderLate => "encoder_late",
        }
    }
}

impl std::fmt::Display for DropCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Consecutive frames lost for one cause, just before a kept frame.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DropBurst {
    pub cause: DropCause,
    /// Frames lost.
    pub frames: u64,
    /// Index (within the take) of the kept frame the loss came before.
    pub before_frame: u64,
    /// The camera's sequence number of that frame.
    pub sequence: u64,
    /// Its timestamp.
    pub at_ns: UnixNanos,
}

/// One entry of `GET /v1/takes`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeListing {
    pub take: TakeName,
    pub state: ManifestState,
    pub start_at_ns: UnixNanos,
    /// Directory name under the node's recordings directory (the take name).
    pub dir: String,
    pub manifest: String,
    pub files: Vec<FileEntry>,
    pub bytes: u64,
}

/// `DELETE /v1/takes/{take}`: the files the controller holds verified copies of, as the
/// node's own manifest lists them. The node deletes the take only when this list is
/// exactly its manifest's `files` (every name, size and sha256); otherwise it answers 409
/// naming the first file that differs and deletes nothing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteTakeRequest {
    pub files: Vec<FileEntry>,
}

/// Answer to `DELETE /v1/takes/{take}`, also when the take was deleted by an earlier
/// request (deleting is idempotent).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteTakeReply {
    pub take: TakeName,
    /// True when an earlier request had already deleted it; nothing changed now.
    pub already_deleted: bool,
    /// When the node deleted it (its wall clock).
    pub deleted_at_ns: UnixNanos,
    /// Files and bytes removed (the manifest and markers file included).
    pub files: usize,
    pub bytes: u64,
}

/// The body of every error answer, from node and controller alike.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
