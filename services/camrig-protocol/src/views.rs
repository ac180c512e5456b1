//! The JSON bodies of the controller's REST API (`/api/...`) and SSE events: what the web
//! UI and the `camrig` CLI read. Documented in `API.md`. The states are enums serialised as
//! the strings the API has always carried (`"arm_failed"`, `"waiting_for_node"`, ...).

use crate::api::NodeStatus;
use crate::UnixNanos;

/// A state name that is none of its enum's (e.g. read back from a newer controller's database).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

/// An enum whose values travel as fixed strings: serde, [`std::fmt::Display`], `as_str` and
/// [`std::str::FromStr`] all use the same text.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<$name, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState {
                        kind: stringify!($name),
                        value: s.to_owned(),
                    }),
                }
            }
        }
    };
}

wire_enum! {
    /// The rig as a whole (`RigView::state`).
    RigState {
        Idle = "idle",
        /// START sent, no node recording yet.
        Armed = "armed",
        Recording = "recording",
        /// Not idle yet: STOP sent and some node of the take did not take it and may still
        /// record (see the take's nodes; STOP again or abort that node), or no take is
        /// current but a node still records up to the STOP instant or finishes its files.
        Stopping = "stopping",
        /// A take is open but no node of it is armed or recording any more (every one was
        /// lost); STOP closes it.
        Failed = "failed",
    }
}

wire_enum! {
    /// A take in the controller's history.
    TakeState {
        Starting = "starting",
        Recording = "recording",
        Stopped = "stopped",
        Aborted = "aborted",
        /// STOP came before the start instant: every node aborted, nothing recorded; the
        /// name is free again.
        Cancelled = "cancelled",
    }
}

wire_enum! {
    /// A node's part in a take.
    TakeNodeState {
        Armed = "armed",
        Recording = "recording",
        Stopped = "stopped",
        /// Lost mid-take, or not recording the take any more when STOP came. A node that did
        /// not take STOP keeps `armed`/`recording`, with the reason.
        Failed = "failed",
        /// Never armed: START failed on this node.
        ArmFailed = "arm_failed",
        /// Armed, then told to abort because another node failed, or by the operator
        /// before it began recording.
        Aborted = "aborted",
        /// Armed, then the take was cancelled (STOP before its start instant) and the node
        /// confirmed the abort: it recorded nothing.
        Cancelled = "cancelled",
    }
}

wire_enum! {
    /// A take's download over every node that recorded it.
    TakeDownload {
        None = "none",
        Downloading = "downloading",
        /// Some nodes' files verified, others failed.
        Partial = "partial",
        Failed = "failed",
        Verified = "verified",
    }
}

wire_enum! {
    /// One node's download of a take.
    NodeDownload {
        None = "none",
        Downloading = "downloading",
        Verified = "verified",
        Failed = "failed",
    }
}

wire_enum! {
    /// Whether a node's copy of a take was deleted.
    NodeDeletionState {
        /// Still on the node (the default).
        None = "none",
        /// The node was being told to delete it (or a controller restart interrupted that).
        Deleting = "deleting",
        Deleted = "deleted",
        /// Refused or not reachable; the reason says why. The take is still on the node.
        Failed = "failed",
    }
}

wire_enum! {
    /// One file of a node's take, as the download sees it.
    FileState {
        Pending = "pending",
        Transferring = "transferring",
        Verified = "verified",
        Failed = "failed",
    }
}

wire_enum! {
    /// Where a running download of one node's take is.
    DownloadPhase {
        Queued = "queued",
        WaitingForNode = "waiting_for_node",
        Transferring = "transferring",
        Verifying = "verifying",
        Verified = "verified",
        Failed = "failed",
    }
}

/// A measured clock offset: positive when the node's clock is ahead of the controller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockSample {
    pub offset_ns: i64,
    pub rtt_ns: i64,
    /// Controller wall clock when the sample was taken.
    pub measured_at_ns: UnixNanos,
}

/// `GET /api/rig`: the whole rig at a glance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RigView {
    pub state: RigState,
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
    pub state: TakeState,
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
    /// Every node's files together.
    pub download: TakeDownload,
    /// The sync report's verdict (`pass` or `fail`) once the take is verified and reported.
    #[serde(default)]
    pub sync_verdict: Option<String>,
    /// Why no sync report could be made (a damaged or missing file), if so.
    #[serde(default)]
    pub sync_error: Option<String>,
    /// The last export started on the controller, while it runs and after.
    #[serde(default)]
    pub export: Option<ExportProgress>,
}

/// An export of a take running (or run) on the controller (`POST /api/takes/{name}/export`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportProgress {
    /// `running`, `done` or `failed`.
    pub state: String,
    pub format: String,
    pub trim_common: bool,
    /// Cameras written so far, of `cameras_total`.
    pub cameras_done: usize,
    pub cameras_total: usize,
    /// Where the files go (on the controller).
    pub out_dir: String,
    pub message: Option<String>,
}

/// Body of `POST /api/takes/{name}/export`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `mkv` or `mp4`.
    #[serde(default = "mkv")]
    pub format: String,
    /// Cut every camera to the common slot range, filling drops (`--trim common`).
    #[serde(default)]
    pub trim_common: bool,
}

fn mkv() -> String {
    "mkv".into()
}

/// One node's part in a take.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeNodeView {
    pub address: String,
    pub name: String,
    pub state: TakeNodeState,
    pub reason: Option<String>,
    pub offset_start_ns: Option<i64>,
    pub rtt_start_ns: Option<i64>,
    pub offset_stop_ns: Option<i64>,
    #[serde(default)]
    pub rtt_stop_ns: Option<i64>,
    pub download: NodeDownload,
    pub download_reason: Option<String>,
    /// Whether the node's copy was deleted (`POST /api/takes/{name}/delete-from-nodes`):
    /// `failed`: still on the node; see the reason.
    #[serde(default = "no_deletion")]
    pub node_deletion: NodeDeletionState,
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
    pub state: FileState,
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
    pub frames: Vec<crate::manifest::MarkerFrame>,
}

/// Live progress of one node's download of one take.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DownloadProgress {
    pub take: String,
    pub address: String,
    pub phase: DownloadPhase,
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

/// Body of `POST /api/login`: the operator password, or the API token (the demo's
/// one-click link logs in with the token).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Body of `POST /api/password`. `current` may be left out by a client holding the API token.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    pub new: String,
}

/// Answer of `POST /api/login`, `/api/logout` and `/api/password`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessView {
    pub ok: bool,
    pub message: String,
}

/// SSE `node_deletion`: one node's deletion of a take changed state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeDeletionEvent {
    pub take: String,
    pub address: String,
    /// `deleting`, `deleted` or `failed`.
    pub state: NodeDeletionState,
    pub reason: Option<String>,
    pub at_ns: UnixNanos,
}

fn no_deletion() -> NodeDeletionState {
    NodeDeletionState::None
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

/// `POST /api/takes/{name}/verify`: every verified sorted copy checked again.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerifyView {
    /// True when every copy still matches its manifest.
    pub ok: bool,
    pub files_checked: usize,
    /// The copies that no longer match (now `failed`, fetched again by DOWNLOAD).
    pub failed: Vec<FileFailure>,
    pub take: TakeView,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileFailure {
    pub address: String,
    pub name: String,
    pub reason: String,
}

/// `POST /api/nodes/{index}/abort`: what the node was doing when told to abort, and the
/// current take afterwards when the node was part of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AbortNodeView {
    pub address: String,
    /// The node's state as it took the abort (`idle` when it recorded nothing).
    pub node_state: crate::api::NodeState,
    /// The take the node was armed for or recording, if any.
    pub node_take: Option<String>,
    pub take: Option<TakeView>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeFailure {
    pub address: String,
    pub error: String,
}

impl TakeNodeView {
    /// How many of the node's files the controller has verified.
    pub fn files_verified(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.state == FileState::Verified)
            .count()
    }
}

impl DownloadProgress {
    /// Still queued or running (not yet verified or failed).
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, DownloadPhase::Verified | DownloadPhase::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_travel_as_the_strings_the_api_always_had() {
        assert_eq!(
            serde_json::to_string(&TakeNodeState::ArmFailed).unwrap(),
            r#""arm_failed""#
        );
        assert_eq!(
            serde_json::from_str::<DownloadPhase>(r#""waiting_for_node""#).unwrap(),
            DownloadPhase::WaitingForNode
        );
        assert_eq!(RigState::Idle.to_string(), "idle");
        assert_eq!("partial".parse(), Ok(TakeDownload::Partial));
        let err = "sideways".parse::<FileState>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown FileState "sideways""#);
    }
}
