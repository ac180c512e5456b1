//! Why a take command (START, MARK, STOP, abort, DOWNLOAD, VERIFY, DELETE FROM NODES) was
//! refused or failed: one error type for every subsystem that acts on takes, mapped to HTTP
//! status codes in [`crate::http_error`].

use camrig_protocol::take_name::TakeNameError;

use crate::take_store::StoreError;
use crate::views::NodeFailure;

pub const MAX_NOTE_CHARS: usize = 500;
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("{0}")]
    BadName(#[from] TakeNameError),
    #[error("note is {0} characters long; at most {MAX_NOTE_CHARS} are allowed")]
    NoteTooLong(usize),
    #[error("take {0:?} is still recording; stop it before starting another")]
    TakeRunning(String),
    #[error("take name {0:?} is already used; choose another name (takes are never overwritten)")]
    NameUsed(String),
    #[error("START refused: {}", .0.join("; "))]
    NotReady(Vec<String>),
    #[error("START failed on {} node(s), the others were aborted: {}", .failures.len(), describe(.failures))]
    ArmFailed {
        /// Some node refused (4xx): a conflict with its state rather than a broken link.
        conflict: bool,
        failures: Vec<NodeFailure>,
    },
    #[error("no take is recording; start one first")]
    NoTake,
    #[error("take {take} is not stopped: {} node(s) did not take the STOP and may still record: {}; STOP again, or abort that node (`camrig abort-node <address>`, or Abort in the web UI)", .failures.len(), describe(.failures))]
    StopIncomplete {
        take: String,
        /// Some node refused (4xx) rather than being unreachable.
        conflict: bool,
        failures: Vec<NodeFailure>,
    },
    #[error("abort failed: {}", describe(.failures))]
    AbortFailed {
        conflict: bool,
        failures: Vec<NodeFailure>,
    },
    #[error("{0}")]
    UnknownNode(String),
    #[error("no take named {0:?}")]
    UnknownTake(String),
    #[error("take {0:?} is still recording; stop it before downloading")]
    StillRecording(String),
    /// DELETE FROM NODES refused before anything was deleted.
    #[error("{0}")]
    NotVerified(String),
    #[error("{0}")]
    BadNode(String),
    #[error("take {take} was not deleted from {} node(s): {}", .failures.len(), describe(.failures))]
    DeleteFailed {
        take: String,
        /// Some node's copy was refused (a failed check) rather than unreachable.
        conflict: bool,
        failures: Vec<NodeFailure>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn describe(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.address, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}
