//! The one error type of the REST API: a status code and a JSON body
//! `{"error": "...", "nodes": [...]}` telling the client what to fix. Internal failures
//! (the database) are logged in full and answered with a short 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::camera_settings::SettingsError;
use crate::take_error::TakeError;
use crate::take_store::StoreError;
use crate::views::{ApiErrorBody, NodeFailure};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub nodes: Vec<NodeFailure>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            nodes: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiErrorBody {
                error: self.message,
                nodes: self.nodes,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "take database failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the controller's take database failed; see the controller's log",
        )
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> ApiError {
        let status = match &e {
            SettingsError::TakeRunning(_) | SettingsError::NoReference(_) => StatusCode::CONFLICT,
            SettingsError::BadRequest(_) | SettingsError::Unsupported(_) => StatusCode::BAD_REQUEST,
            SettingsError::NodesUnreadable(_) => StatusCode::BAD_GATEWAY,
            SettingsError::ApplyFailed { conflict: true, .. } => StatusCode::CONFLICT,
            SettingsError::ApplyFailed {
                conflict: false, ..
            } => StatusCode::BAD_GATEWAY,
            SettingsError::Store(_) | SettingsError::NotSaved(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let nodes = match &e {
            SettingsError::NodesUnreadable(f) => f.clone(),
            SettingsError::ApplyFailed {
                failures, stuck, ..
            } => failures
                .iter()
                .cloned()
                .chain(stuck.iter().map(|s| NodeFailure {
                    address: s.address.clone(),
                    error: format!("could not be set back, keeps the new settings: {}", s.error),
                }))
                .collect(),
            _ => Vec::new(),
        };
        if let SettingsError::Store(inner) = e {
            return inner.into();
        }
        ApiError {
            status,
            message: e.to_string(),
            nodes,
        }
    }
}

impl From<TakeError> for ApiError {
    fn from(e: TakeError) -> ApiError {
        let status = match &e {
            TakeError::BadName(_) | TakeError::NoteTooLong(_) | TakeError::BadNode(_) => {
                StatusCode::BAD_REQUEST
            }
            TakeError::UnknownTake(_) | TakeError::UnknownNode(_) => StatusCode::NOT_FOUND,
            TakeError::StopIncomplete { conflict: true, .. }
            | TakeError::AbortFailed { conflict: true, .. } => StatusCode::CONFLICT,
            TakeError::StopIncomplete {
                conflict: false, ..
            }
            | TakeError::AbortFailed {
                conflict: false, ..
            } => StatusCode::BAD_GATEWAY,
            TakeError::TakeRunning(_)
            | TakeError::NameUsed(_)
            | TakeError::NotReady(_)
            | TakeError::NoTake
            | TakeError::StillRecording(_)
            | TakeError::NotVerified(_) => StatusCode::CONFLICT,
            TakeError::DeleteFailed { conflict: true, .. } => StatusCode::CONFLICT,
            TakeError::DeleteFailed {
                conflict: false, ..
            } => StatusCode::BAD_GATEWAY,
            TakeError::ArmFailed { conflict: true, .. } => StatusCode::CONFLICT,
            TakeError::ArmFailed {
                conflict: false, ..
            } => StatusCode::BAD_GATEWAY,
            TakeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let TakeError::Store(inner) = e {
            return inner.into();
        }
        let nodes = match &e {
            TakeError::ArmFailed { failures, .. }
            | TakeError::DeleteFailed { failures, .. }
            | TakeError::StopIncomplete { failures, .. }
            | TakeError::AbortFailed { failures, .. } => failures.clone(),
            _ => Vec::new(),
        };
        ApiError {
            status,
            message: e.to_string(),
            nodes,
        }
    }
}
