//! The JSON bodies of the controller's REST API (`/api/...`) and SSE events: what the web
//! UI and the `camrig` CLI read. Documented in `API.md`.

use camrig_protocol::api::NodeStatus;
use camrig_protocol::UnixNanos;

use crate::clock_probe::ClockSample;

/// `GET /api/rig`: the whole rig at a glance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RigView {
    /// `idle`, `armed` (START sent, no node recording yet), `recording`, or `stopping` (no
    /// take is current, but a node still records or finishes its files).
    pub state: String,
    pub current_take: Option<TakeView>,
    pub nodes: Vec<NodeView>,
    /// Whether START would be accepted now without overrides.
    pub start_ready: bool,
    /// Why START would be refused, one line per node problem (health warnings included:
    /// `override_health` lets those through).
    pub start_blockers: Vec<String>,
    pub require_node_sync: bool,
    pub max_clock_offset_ms: f64,
    pub downloads_pending: usize,
    pub controller_now_ns: UnixNanos,
    pub version: String,
}

/// One node as the controller sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    /// 0-based index in the configuration; `/api/nodes/{index}/...`.
    pub index: usize,
    pub address: String,
    pub port: u16,
    pub name: String,
    pub reachable: bool,
    /// Controller wall clock of the last good status answer.
    pub last_seen_ns: Option<UnixNanos>,
    /// Why the last request failed, while unreachable or refusing.
    pub error: Option<String>,
    pub status: Option<NodeStatus>,
    pub clock: Option<ClockSample>,
    /// Why this node blocks START right now, if it does.
    pub start_blocker: Option<String>,
    /// The node's health problem that holds START back unless overridden (throttled,
    /// under-voltage, hot, short of disk), if any.
    #[serde(default)]
    pub health_warning: Option<String>,
}

/// A take in the controller's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeView {
    pub id: i64,
    pub name: String,
    /// `starting`, `recording`, `stopped` or `aborted`.
    pub state: String,
    pub command_id: String,
    pub created_ns: UnixNanos,
    pub start_at_ns: UnixNanos,
    pub stop_at_ns: Option<UnixNanos>,
    pub allow_partial: bool,
    pub override_clock: bool,
    /// What the clock and health overrides let through (node problems at START), if used.
    pub override_note: Option<String>,
    pub nodes: Vec<TakeNodeView>,
    pub markers: Vec<MarkerView>,
    /// `none`, `downloading`, `partial`, `failed` or `verified` (every node's files).
    pub download: String,
}

/// One node's part in a take.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeNodeView {
    pub address: String,
    pub name: String,
    /// `armed`, `recording`, `stopped`, `failed` (lost mid-take or failed to stop),
    /// `arm_failed` (never recorded) or `aborted`.
    pub state: String,
    pub reason: Option<String>,
    pub offset_start_ns: Option<i64>,
    pub rtt_start_ns: Option<i64>,
    pub offset_stop_ns: Option<i64>,
    /// `none`, `downloading`, `verified` or `failed`.
    pub download: String,
    pub download_reason: Option<String>,
    /// Whether the node's copy was deleted (`POST /api/takes/{name}/delete-from-nodes`):
    /// `none`, `deleting`, `deleted` or `failed` (still on the node; see the reason).
    #[serde(default = "none")]
    pub node_deletion: String,
    #[serde(default)]
    pub node_deletion_reason: Option<String>,
    /// Controller wall clock when the node confirmed the deletion.
    #[serde(default)]
    pub node_deleted_ns: Option<UnixNanos>,
    pub files: Vec<FileView>,
    /// Live progress while downloading.
    pub progress: Option<DownloadProgress>,
}

/// One file of a node's take, as the download sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileView {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    /// `pending`, `transferring`, `verified` or `failed`.
    pub state: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkerView {
    pub at_ns: UnixNanos,
    pub note: String,
    /// Per node: where the mark fell, or why the node did not take it.
    pub nodes: Vec<MarkerNodeView>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkerNodeView {
    pub address: String,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(default)]
    pub frames: Vec<camrig_protocol::manifest::MarkerFrame>,
}

/// Live progress of one node's download of one take.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DownloadProgress {
    pub take: String,
    pub address: String,
    /// `queued`, `waiting_for_node`, `transferring`, `verifying`, `verified` or `failed`.
    pub phase: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub files_total: usize,
    pub files_verified: usize,
    pub files_failed: usize,
    pub message: Option<String>,
}

/// Body of `POST /api/takes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTake {
    pub name: String,
    #[serde(default)]
    pub allow_partial: bool,
    #[serde(default)]
    pub override_clock: bool,
    /// Start although a node's health warns (throttled, under-voltage, hot, short of disk);
    /// what was let through is recorded in the take's `override_note`.
    #[serde(default)]
    pub override_health: bool,
    /// How long the take is planned to last, seconds: nodes must hold that much recording
    /// (else `[health] min_record_minutes`).
    #[serde(default)]
    pub planned_seconds: Option<u64>,
}

/// SSE `node_deletion`: one node's deletion of a take changed state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeDeletionEvent {
    pub take: String,
    pub address: String,
    /// `deleting`, `deleted` or `failed`.
    pub state: String,
    pub reason: Option<String>,
    pub at_ns: UnixNanos,
}

fn none() -> String {
    "none".into()
}

/// Body of `POST /api/takes/{name}/delete-from-nodes` (optional: no body means every node
/// that recorded the take).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFromNodes {
    /// Node addresses to delete the take from; empty means every node that recorded it.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// Body of `POST /api/takes/current/mark`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkTake {
    #[serde(default)]
    pub note: String,
}

/// Answer of the download endpoints: the jobs started (or already running).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DownloadsView {
    pub jobs: Vec<DownloadProgress>,
    /// Takes with something left to download (nothing verified yet, or failures to retry).
    pub pending_takes: Vec<String>,
}

/// Body of every error answer: `error` says what to fix; `nodes` gives per-node reasons
/// when a fan-out failed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeFailure {
    pub address: String,
    pub error: String,
}

impl DownloadProgress {
    /// Still queued or running (not yet verified or failed).
    pub fn is_active(&self) -> bool {
        !matches!(self.phase.as_str(), "verified" | "failed")
    }
}
