//! The node's HTTP API (axum): routes (`/v1/...` and `/metrics`), bearer-token auth, the 64 KiB body limit, and the
//! one error type every handler answers with (`{"error": "..."}`, telling the client what
//! to fix). Handlers parse and delegate to [`Node`]; no take logic lives here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use camrig_protocol::api::{
    AbortRequest, CommandReply, DeleteTakeRequest, MarkRequest, StartRequest, StopRequest,
    TimeReply, MAX_BODY_BYTES, MAX_DELETE_BODY_BYTES,
};
use camrig_protocol::camera_settings::ApplySettingsRequest;
use camrig_protocol::now_unix_ns;
use camrig_protocol::take_name::TakeName;
use serde::de::DeserializeOwned;

use super::node::{CommandError, Node, Verb};
use super::preview;
use crate::take::listing;

/// An error answer: a status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: String) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// A fault on the node's side; the details go to the log, the client gets the gist.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the node failed to do this: {e}; see its journal"),
        )
    }
}

/// The state machine's reasons, as HTTP statuses.
impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let status = match &e {
            CommandError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::Conflict(_) => StatusCode::CONFLICT,
            CommandError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            CommandError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/time", get(time))
        .route("/v1/takes", get(list_takes))
        .route("/v1/takes/start", post(start))
        .route("/v1/takes/stop", post(stop))
        .route("/v1/takes/mark", post(mark))
        .route("/v1/takes/abort", post(abort))
        .route("/v1/takes/{take}/manifest", get(manifest))
        .route(
            "/v1/takes/{take}",
            // The body lists every file of the take; long takes need more than 64 KiB.
            delete(delete_take).layer(DefaultBodyLimit::max(MAX_DELETE_BODY_BYTES)),
        )
        .route("/v1/cameras/{n}/preview.jpg", get(preview_jpg))
        .route("/metrics", get(metrics))
        .route(
            "/v1/camera-settings",
            get(get_camera_settings).put(put_camera_settings),
        )
        // After every route: it applies to the routes already added.
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on this endpoint; see the node API in API.md"),
            )
        })
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/status".into()) })
        .layer(middleware::from_fn_with_state(node.clone(), require_token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

async fn require_token(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    if let Some(token) = &node.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant-time comparison: the token is the rig's only secret on the LAN.
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let msg = if given.is_some() {
                "wrong rig token in Authorization: Bearer <token>"
            } else {
                "missing Authorization: Bearer <rig token>"
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a JSON body, turning every failure into a 4xx that says what was wrong.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    parse_body_limited(body, MAX_BODY_BYTES)
}

fn parse_body_limited<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {limit} bytes"),
            )
        } else {
            ApiError::new(rej.status(), rej.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// START's body before the take name is checked, so a bad name gets the rule verbatim.
#[derive(serde::Deserialize)]
struct RawStart {
    take: String,
    start_at_ns: i64,
    command_id: String,
}

fn command_response(answer: Result<CommandReply, CommandError>) -> Response {
    match answer {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn start(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw: RawStart = parse_body(body)?;
    let take = TakeName::parse(&raw.take).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let req = StartRequest {
        take,
        start_at_ns: raw.start_at_ns,
        command_id: raw.command_id,
    };
    Ok(command_response(node.command(
        Verb::Start,
        &req.command_id,
        || node.start_take(&req),
    )))
}

async fn stop(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: StopRequest = parse_body(body)?;
    Ok(command_response(node.command(
        Verb::Stop,
        &req.command_id,
        || node.stop_take(&req),
    )))
}

async fn mark(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: MarkRequest = parse_body(body)?;
    Ok(command_response(node.command(
        Verb::Mark,
        &req.command_id,
        || node.mark_take(&req),
    )))
}

async fn abort(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: AbortRequest = parse_body(body)?;
    Ok(command_response(node.command(
        Verb::Abort,
        &req.command_id,
        || node.abort_take(&req),
    )))
}

async fn get_camera_settings(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    Ok(Json(node.camera_settings()?).into_response())
}

/// Applies camera settings (applying the same ones again changes nothing).
async fn put_camera_settings(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ApplySettingsRequest = parse_body(body)?;
    let reply = tokio::task::spawn_blocking(move || node.apply_camera_settings(&req))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(reply).into_response())
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    let n = node.clone();
    match tokio::task::spawn_blocking(move || n.status()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `GET /metrics`: Prometheus's text format ([`super::metrics`]), behind the rig token.
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let n = node.clone();
    match tokio::task::spawn_blocking(move || n.metrics.render(&n.status())).await {
        Ok(text) => ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn time() -> Json<TimeReply> {
    let receive_ns = now_unix_ns();
    Json(TimeReply {
        receive_ns,
        send_ns: now_unix_ns(),
    })
}

async fn list_takes(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let dir = node.recordings_dir();
    let takes = tokio::task::spawn_blocking(move || listing::list(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(takes).into_response())
}

async fn manifest(
    State(node): State<Arc<Node>>,
    Path(take): Path<String>,
) -> Result<Response, ApiError> {
    let take = TakeName::parse(&take).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let dir = node.recordings_dir().join(take.as_str());
    let found = tokio::task::spawn_blocking(move || listing::manifest_file(&dir))
        .await
        .map_err(ApiError::internal)?;
    match found {
        Some((_, text)) => Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response()),
        None => Err(ApiError::not_found(format!(
            "take {take} has no manifest on this node"
        ))),
    }
}

/// Deletes a finished take whose files the controller verified; see [`crate::take::deletion`].
async fn delete_take(
    State(node): State<Arc<Node>>,
    Path(take): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let take = TakeName::parse(&take).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let req: DeleteTakeRequest = parse_body_limited(body, MAX_DELETE_BODY_BYTES)?;
    let reply = tokio::task::spawn_blocking(move || node.delete_take(&take, &req.files))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(reply).into_response())
}

async fn preview_jpg(
    State(node): State<Arc<Node>>,
    Path(n): Path<String>,
) -> Result<Response, ApiError> {
    let count = node.camera_count();
    let index = n
        .parse::<usize>()
        .ok()
        .filter(|i| (1..=count).contains(i))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no camera {n}: this node has {count} camera(s), numbered from 1"
            ))
        })?;
    let frame = node.latest_frame(index - 1).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "camera has delivered no frame yet",
        )
    })?;
    let jpeg = tokio::task::spawn_blocking(move || preview::jpeg(&frame))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}
