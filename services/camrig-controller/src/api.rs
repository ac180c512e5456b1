//! The controller's HTTP surface: the REST API under `/api` (documented in `API.md`),
//! Prometheus's `/metrics`, the
//! SSE event stream, the camera preview proxy, and the embedded web UI at `/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use camrig_protocol::camera_settings::CameraSettings;
use futures_util::stream::{self, Stream, StreamExt};

use crate::access::{self, AccessError, Credential};
use crate::camera_settings::LockRequest;
use crate::http_error::ApiError;
use crate::rig::Rig;
use crate::views::{
    AccessView, ChangePassword, DeleteFromNodes, ExportRequest, Login, MarkTake, StartTake,
};

/// Largest request body accepted (413 beyond), as on the node.
pub const MAX_BODY_BYTES: usize = camrig_protocol::api::MAX_BODY_BYTES;

pub fn router(rig: Arc<Rig>) -> Router {
    let access = rig.access.clone();
    Router::new()
        .route("/", ui_file(HTML, include_str!("ui/index.html")))
        .route("/login", ui_file(HTML, include_str!("ui/login.html")))
        .route("/login.js", ui_file(JS, include_str!("ui/login.js")))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/password", post(change_password))
        .route("/app.js", ui_file(JS, include_str!("ui/app.js")))
        .route("/style.css", ui_file(CSS, include_str!("ui/style.css")))
        .route("/api/rig", get(get_rig))
        .route("/api/takes", get(list_takes).post(start_take))
        .route("/api/takes/current/mark", post(mark_take))
        .route("/api/takes/current/stop", post(stop_take))
        .route("/api/takes/{name}", get(get_take))
        .route("/api/takes/{name}/download", post(download_take))
        .route("/api/takes/{name}/verify", post(verify_take))
        .route(
            "/api/takes/{name}/sync-report",
            get(get_sync_report).post(make_sync_report),
        )
        .route("/api/takes/{name}/frames.csv", get(get_frames_csv))
        .route("/api/takes/{name}/export", post(export_take))
        .route(
            "/api/takes/{name}/delete-from-nodes",
            post(delete_from_nodes),
        )
        .route("/api/downloads", get(list_downloads).post(download_pending))
        .route("/api/nodes/{index}/abort", post(abort_node))
        .route("/api/events", get(events))
        .route(
            "/api/camera-settings",
            get(get_camera_settings).put(put_camera_settings),
        )
        .route("/api/camera-settings/lock", post(lock_camera_settings))
        .route("/api/camera-settings/unlock", post(unlock_camera_settings))
        .route(
            "/api/nodes/{index}/cameras/{camera}/preview.jpg",
            get(preview),
        )
        .route("/metrics", get(metrics))
        .route("/api", get(api_not_found))
        .route(
            "/api/{*rest}",
            get(api_not_found).post(api_not_found).put(api_not_found),
        )
        // After every route: it applies to the routes already added.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Over every route, the fallback included (see `access`).
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
        .with_state(rig)
}

type ApiResult<T> = Result<T, ApiError>;

fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    parsed.map(|Json(t)| t).map_err(|rejection| {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("request body is larger than {MAX_BODY_BYTES} bytes")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send the body as JSON with Content-Type: application/json".into()
            }
            _ => format!("bad JSON body: {}", rejection.body_text()),
        };
        ApiError::new(status, message)
    })
}

async fn login(
    State(rig): State<Arc<Rig>>,
    parsed: Result<Json<Login>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(parsed)?;
    if req.password.is_none() && req.token.is_none() {
        return Err(ApiError::bad_request("give \"password\" (or \"token\")"));
    }
    let Some(session) = rig
        .access
        .login(req.password.as_deref(), req.token.as_deref())
        .await
    else {
        let what = if req.token.is_some() {
            "wrong API token"
        } else if rig.access.has_password() {
            "wrong password"
        } else {
            "this rig has no operator password; log in with its API token"
        };
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, what));
    };
    tracing::info!("operator logged in");
    Ok((
        [(header::SET_COOKIE, access::session_cookie(Some(&session)))],
        Json(AccessView {
            ok: true,
            message: "logged in".into(),
        }),
    )
        .into_response())
}

async fn logout(State(rig): State<Arc<Rig>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = access::session_of(&headers) {
        rig.access.logout(&id);
    }
    (
        [(header::SET_COOKIE, access::session_cookie(None))],
        Json(AccessView {
            ok: true,
            message: "logged out".into(),
        }),
    )
        .into_response()
}

async fn change_password(
    State(rig): State<Arc<Rig>>,
    Extension(credential): Extension<Credential>,
    headers: axum::http::HeaderMap,
    parsed: Result<Json<ChangePassword>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(parsed)?;
    let session = access::session_of(&headers);
    rig.access
        .change_password(
            credential,
            req.current.as_deref(),
            &req.new,
            session.as_deref(),
        )
        .await
        .map_err(|e| match e {
            AccessError::WrongPassword => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            AccessError::BadPassword(_) => ApiError::bad_request(e.to_string()),
            AccessError::Save { .. } => {
                tracing::error!(error = %e, "cannot change the operator password");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        })?;
    tracing::info!("operator password changed");
    Ok(Json(AccessView {
        ok: true,
        message: "password changed; other sessions are logged out".into(),
    })
    .into_response())
}

async fn get_rig(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok(Json(rig.rig_view()?).into_response())
}

async fn list_takes(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok(Json(rig.takes()?).into_response())
}

async fn start_take(
    State(rig): State<Arc<Rig>>,
    parsed: Result<Json<StartTake>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(parsed)?;
    let take = rig.takes.start_take(req).await?;
    Ok((StatusCode::CREATED, Json(take)).into_response())
}

async fn mark_take(
    State(rig): State<Arc<Rig>>,
    parsed: Result<Json<MarkTake>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(parsed)?;
    Ok(Json(rig.takes.mark_take(req).await?).into_response())
}

async fn stop_take(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok(Json(rig.takes.stop_take().await?).into_response())
}

fn take_name(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(name) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    camrig_protocol::take_name::TakeName::parse(&name)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn get_take(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let take = stored_take(&rig, &name)?;
    Ok(Json(rig.take_view(take)).into_response())
}

/// The stored take `name`, or 404.
fn stored_take(rig: &Rig, name: &str) -> ApiResult<crate::views::TakeView> {
    rig.store
        .take_by_name(name)?
        .ok_or_else(|| ApiError::not_found(format!("no take named {name:?}")))
}

/// A body that may be left out: none (or only white space) reads as `{}`, every field its
/// default.
fn optional_body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> ApiResult<T> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        raw
    };
    serde_json::from_slice(raw).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

async fn download_take(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let jobs = rig.downloader.download_take(&name)?;
    let pending_takes = if jobs.is_empty() { vec![] } else { vec![name] };
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::views::DownloadsView {
            jobs,
            pending_takes,
        }),
    )
        .into_response())
}

async fn verify_take(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    Ok(Json(rig.verification.verify_take(&name).await?).into_response())
}

/// The body is optional: none (or `{}`) means every node that recorded the take.
async fn delete_from_nodes(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let req: DeleteFromNodes = optional_body(&raw)?;
    Ok(Json(rig.deletion.delete_from_nodes(&name, req).await?).into_response())
}

/// The take's sync report as written beside its node folders (404 before there is one).
async fn get_sync_report(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let take = stored_take(&rig, &name)?;
    let dir = rig.reports.take_dir(&name);
    match camrig_sorted_takes::take_dir::read_report(&dir, &name) {
        Ok(r) => Ok(Json(r).into_response()),
        Err(camrig_sorted_takes::take_dir::TakeDirError::Missing { .. }) => Err(ApiError::not_found(
            take.sync_error.map_or_else(
                || format!("take {name} has no sync report yet: it is made when the take is verified (POST to make it now)"),
                |e| format!("take {name} has no sync report: {e}"),
            ),
        )),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

/// Makes the sync report again (or for the first time), from the sorted files.
async fn make_sync_report(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    Ok(Json(rig.reports.make_sync_report(&name).await?).into_response())
}

async fn get_frames_csv(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let p = camrig_sorted_takes::take_dir::frames_path(&rig.reports.take_dir(&name), &name);
    let csv = tokio::fs::read(&p).await.map_err(|_| {
        ApiError::not_found(format!(
            "take {name} has no frames table yet (it comes with the sync report)"
        ))
    })?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

/// Starts an export on the controller; progress in the take's `export`.
async fn export_take(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<String>, PathRejection>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let name = take_name(path)?;
    let req: ExportRequest = optional_body(&raw)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(rig.reports.start_export(&name, req)?),
    )
        .into_response())
}

async fn list_downloads(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok(Json(rig.downloader.downloads_view()?).into_response())
}

async fn download_pending(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok((
        StatusCode::ACCEPTED,
        Json(rig.downloader.download_pending()?),
    )
        .into_response())
}

async fn abort_node(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<usize>, PathRejection>,
) -> ApiResult<Response> {
    let Path(index) = path.map_err(|e| {
        ApiError::bad_request(format!("node index must be a number: {}", e.body_text()))
    })?;
    Ok(Json(rig.takes.abort_node(index).await?).into_response())
}

async fn preview(
    State(rig): State<Arc<Rig>>,
    path: Result<Path<(usize, usize)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((index, camera)) = path.map_err(|e| {
        ApiError::bad_request(format!(
            "node index and camera must be numbers: {}",
            e.body_text()
        ))
    })?;
    let slot = rig.fleet.node(index).ok_or_else(|| {
        ApiError::not_found(format!(
            "no node {index}; nodes are numbered 0-{}",
            rig.fleet.nodes().len().saturating_sub(1)
        ))
    })?;
    if camera == 0 {
        return Err(ApiError::not_found("cameras are numbered from 1"));
    }
    if let Some(status) = rig.fleet.status(index) {
        if camera > status.cameras.len() {
            return Err(ApiError::not_found(format!(
                "node {} has {} camera(s)",
                slot.config.address,
                status.cameras.len()
            )));
        }
    }
    let jpeg = slot.client.preview(camera).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("preview from node {}: {e}", slot.config.address),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `GET /metrics`: Prometheus's text format ([`crate::metrics`]).
async fn metrics(State(rig): State<Arc<Rig>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        rig.metrics.render(&rig.fleet, &rig.config),
    )
        .into_response()
}

async fn get_camera_settings(State(rig): State<Arc<Rig>>) -> Response {
    Json(rig.camera_settings.camera_settings_view().await).into_response()
}

/// `?nodes=a,b`: only those nodes (by address); none = every node.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsTargets {
    #[serde(default)]
    nodes: String,
}

async fn put_camera_settings(
    State(rig): State<Arc<Rig>>,
    query: Result<Query<SettingsTargets>, QueryRejection>,
    parsed: Result<Json<CameraSettings>, JsonRejection>,
) -> ApiResult<Response> {
    let Query(targets) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let settings = body(parsed)?;
    let nodes: Vec<String> = targets
        .nodes
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Json(
        rig.camera_settings
            .put_camera_settings(settings, &nodes)
            .await?,
    )
    .into_response())
}

/// The body is optional: none (or `{}`) locks each camera to its own values.
async fn lock_camera_settings(
    State(rig): State<Arc<Rig>>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: LockRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        LockRequest::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?
    };
    Ok(Json(rig.camera_settings.lock_camera_settings(req).await?).into_response())
}

async fn unlock_camera_settings(State(rig): State<Arc<Rig>>) -> ApiResult<Response> {
    Ok(Json(rig.camera_settings.unlock_camera_settings().await?).into_response())
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on this endpoint; see API.md for each endpoint's methods"),
    )
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see API.md for the list")
}

/// Server-sent events: `rig` (the [`crate::views::RigView`]) every second and on every
/// change, `takes` (every take) whenever takes, downloads or deletions changed, and
/// `node_deletion` for every step of a deletion from the nodes.
async fn events(State(rig): State<Arc<Rig>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = rig.subscribe();
    let deletions = rig.deletion.subscribe();
    let state = (rig, rx, deletions, None::<u64>);
    let stream = stream::unfold(state, |(rig, mut rx, mut deletions, sent)| async move {
        let mut events = Vec::with_capacity(3);
        if sent.is_some() {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None },
                deletion = deletions.recv() => match deletion {
                    Ok(d) => events.push(json_event("node_deletion", &d)),
                    // Missed some: the `takes` event below carries the state anyway.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let version = *rx.borrow_and_update();
        if let Ok(view) = rig.rig_view() {
            events.push(json_event("rig", &view));
        }
        if sent != Some(version) {
            if let Ok(takes) = rig.takes() {
                events.push(json_event("takes", &takes));
            }
        }
        Some((stream::iter(events), (rig, rx, deletions, Some(version))))
    })
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn json_event<T: serde::Serialize>(name: &str, value: &T) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event(name)
        .data(serde_json::to_string(value).expect("views serialise")))
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A file of the web UI (`src/ui/`, embedded in the binary: no build step, no files to ship).
fn ui_file(content_type: &'static str, body: &'static str) -> MethodRouter<Arc<Rig>> {
    get(move || async move { ([(header::CONTENT_TYPE, content_type)], body).into_response() })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::take_store::Store;

    /// A rig whose one node never answers (nothing listens on port 9), without background
    /// tasks: what the handlers do on their own.
    fn rig(dir: &Path) -> Arc<Rig> {
        let config = Config::parse(
            &format!(
                "token = \"t\"\ndata_dir = \"{}\"\n[access]\napi_token = \"{TOKEN}\"\npassword_hash = \"{}\"\ntrusted_subnets = [\"10.9.0.0/16\"]\n[[node]]\naddress = \"127.0.0.1\"\nport = 9\nrsync_source = \"/nonexistent\"\n",
                dir.display(),
                camrig_protocol::operator_password::hash(PASSWORD, &[1; 16]).unwrap()
            ),
            Path::new("test.toml"),
        )
        .unwrap();
        let store = Store::open(&dir.join("takes.sqlite3")).unwrap();
        Rig::new(config, store)
    }

    const TOKEN: &str = "test-api-token-0123456789";
    const PASSWORD: &str = "operator password 1";

    /// A request as the CLI sends it: the API token, JSON for anything but GET.
    async fn call(
        rig: &Arc<Rig>,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:8080")
            .header("authorization", format!("Bearer {TOKEN}"));
        if method != "GET" {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Body::from(body.unwrap_or_default().to_owned()))
            .unwrap();
        send(rig, req).await
    }

    async fn send(rig: &Arc<Rig>, req: Request<Body>) -> (StatusCode, String, String) {
        let resp = router(rig.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn error_of(body: &str) -> String {
        serde_json::from_str::<crate::views::ApiErrorBody>(body)
            .unwrap_or_else(|_| panic!("JSON error body: {body}"))
            .error
    }

    #[tokio::test]
    async fn serves_the_ui_and_the_rig() {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let (s, ctype, html) = call(&rig, "GET", "/", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(ctype.starts_with("text/html"));
        assert!(html.contains("id=\"btn-start\"") && html.contains("/app.js"));
        assert_eq!(call(&rig, "GET", "/app.js", None).await.0, StatusCode::OK);
        assert_eq!(
            call(&rig, "GET", "/style.css", None).await.0,
            StatusCode::OK
        );

        let (s, _, body) = call(&rig, "GET", "/api/rig", None).await;
        assert_eq!(s, StatusCode::OK);
        let view: crate::views::RigView = serde_json::from_str(&body).unwrap();
        assert_eq!(view.state, crate::views::RigState::Idle);
        assert!(!view.nodes[0].reachable);
        assert!(!view.start_ready);
        assert!(view.start_blockers[0].contains("127.0.0.1"));
        assert_eq!(call(&rig, "GET", "/api/takes", None).await.2, "[]");
    }

    #[tokio::test]
    async fn bad_requests_get_json_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let (s, _, body) = call(&rig, "POST", "/api/takes", Some(r#"{"name":"a/b"}"#)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).contains("1-64 characters"), "{body}");

        let (s, _, body) = call(&rig, "POST", "/api/takes", Some("{")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).starts_with("bad JSON body"), "{body}");

        let big = format!("{{\"name\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        let (s, _, body) = call(&rig, "POST", "/api/takes", Some(&big)).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

        let (s, _, body) = call(&rig, "POST", "/api/takes", Some(r#"{"name":"t1"}"#)).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let e = error_of(&body);
        assert!(
            e.contains("START refused") && e.contains("127.0.0.1") && e.contains("unreachable"),
            "{e}"
        );

        for path in ["/api/takes/current/stop", "/api/takes/current/mark"] {
            let (s, _, body) = call(&rig, "POST", path, Some("{}")).await;
            assert_eq!(s, StatusCode::CONFLICT, "{path}");
            assert!(error_of(&body).contains("no take is recording"));
        }
        let (s, _, body) = call(&rig, "GET", "/api/takes/t1", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(error_of(&body).contains("no take named"));
        let (s, _, _) = call(&rig, "POST", "/api/takes/t1/download", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, body) = call(&rig, "POST", "/api/takes/t1/delete-from-nodes", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(error_of(&body).contains("no take named"), "{body}");
        let (s, _, body) = call(
            &rig,
            "POST",
            "/api/takes/t1/delete-from-nodes",
            Some(r#"{"node":[]}"#),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).contains("unknown field"), "{body}");
        let (s, _, _) = call(&rig, "GET", "/api/nodes/1/cameras/1/preview.jpg", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, body) = call(&rig, "GET", "/api/nodes/0/cameras/1/preview.jpg", None).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert!(error_of(&body).contains("127.0.0.1"));
        let (s, _, body) = call(&rig, "GET", "/api/bogus", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(error_of(&body).contains("API.md"));
        // A wrong method gets a JSON error too, not an empty 405.
        for (method, path) in [
            ("PUT", "/api/takes"),
            ("DELETE", "/api/takes/t1"),
            ("GET", "/api/takes/current/stop"),
            ("PATCH", "/api/bogus"),
        ] {
            let (s, ctype, body) = call(&rig, method, path, None).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                ctype.starts_with("application/json"),
                "{method} {path}: {ctype}"
            );
            assert!(error_of(&body).contains(method), "{body}");
        }
        assert!(
            rig.store.list_takes().unwrap().is_empty(),
            "nothing was recorded"
        );
    }

    #[tokio::test]
    async fn events_stream_starts_with_rig_and_takes() {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let req = Request::builder()
            .uri("/api/events")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let resp = router(rig.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut stream = resp.into_body().into_data_stream();
        let mut text = String::new();
        while !(text.contains("event: rig") && text.contains("event: takes")) {
            let chunk = stream.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.contains("\"state\":\"idle\""), "{text}");
    }

    /// A request built by hand: `headers` are (name, value) pairs.
    async fn raw(
        rig: &Arc<Rig>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(rig, req.body(Body::from(body.to_owned())).unwrap()).await
    }

    #[tokio::test]
    async fn nothing_is_served_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let host = [("host", "127.0.0.1:8080")];
        for (method, path) in [
            ("GET", "/api/rig"),
            ("GET", "/api/takes"),
            ("GET", "/api/events"),
            ("GET", "/api/downloads"),
            ("GET", "/api/nodes/0/cameras/1/preview.jpg"),
            ("GET", "/api/takes/t1"),
            ("GET", "/app.js"),
            ("GET", "/api/bogus"),
        ] {
            let (s, _, body) = raw(&rig, method, path, &host, "").await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(error_of(&body).contains("log in"), "{body}");
        }
        let json = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
        ];
        for path in [
            "/api/takes",
            "/api/takes/current/stop",
            "/api/takes/current/mark",
            "/api/takes/t1/download",
            "/api/takes/t1/delete-from-nodes",
            "/api/downloads",
            "/api/password",
        ] {
            let (s, _, _) = raw(&rig, "POST", path, &json, "{}").await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "POST {path}");
        }
        // A wrong token is refused even with nothing else wrong.
        let bad = [("host", "127.0.0.1"), ("authorization", "Bearer nope")];
        assert_eq!(
            raw(&rig, "GET", "/api/rig", &bad, "").await.0,
            StatusCode::UNAUTHORIZED
        );
        // The page itself sends a browser to the login page, which anyone may load.
        let (s, _, _) = raw(&rig, "GET", "/", &host, "").await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (s, _, html) = raw(&rig, "GET", "/login", &host, "").await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("id=\"login-password\""));
        assert_eq!(
            raw(&rig, "GET", "/login.js", &host, "").await.0,
            StatusCode::OK
        );
        assert!(rig.store.list_takes().unwrap().is_empty());
    }

    fn cookie_of(resp: &axum::response::Response) -> String {
        let set = resp.headers()["set-cookie"].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        set.split(';').next().unwrap().to_owned()
    }

    async fn login(rig: &Arc<Rig>, body: &str) -> axum::response::Response {
        let req = Request::builder()
            .method("POST")
            .uri("/api/login")
            .header("host", "camrig.test:8080")
            .header("content-type", "application/json")
            .header("origin", "http://camrig.test:8080")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(body.to_owned()))
            .unwrap();
        router(rig.clone()).oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn password_login_gives_a_session_cookie_and_the_password_can_change() {
        let dir = tempfile::tempdir().unwrap();
        // "camrig.test" is configured, as a card's hostname is.
        let rig = rig_with_hosts(dir.path(), &["camrig.test"]);
        let resp = login(&rig, r#"{"password":"wrong password"}"#).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get("set-cookie").is_none());
        let resp = login(&rig, &format!(r#"{{"password":"{PASSWORD}"}}"#)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let cookie = cookie_of(&resp);
        let browser = |extra: &'static [(&'static str, &'static str)]| {
            let mut h = vec![
                ("host", "camrig.test:8080"),
                ("origin", "http://camrig.test:8080"),
                ("sec-fetch-site", "same-origin"),
            ];
            h.extend_from_slice(extra);
            h
        };
        let mut get = browser(&[]);
        get.push(("cookie", cookie.as_str()));
        let (s, _, _) = raw(&rig, "GET", "/api/rig", &get, "").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(raw(&rig, "GET", "/", &get, "").await.0, StatusCode::OK);

        // Changing needs the current password from a session.
        let mut post = browser(&[("content-type", "application/json")]);
        post.push(("cookie", cookie.as_str()));
        let (s, _, body) = raw(
            &rig,
            "POST",
            "/api/password",
            &post,
            r#"{"current":"nope nope nope","new":"another password"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        let (s, _, body) = raw(
            &rig,
            "POST",
            "/api/password",
            &post,
            &format!(r#"{{"current":"{PASSWORD}","new":"short"}}"#),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).contains("10-256 characters"), "{body}");
        let (s, _, body) = raw(
            &rig,
            "POST",
            "/api/password",
            &post,
            &format!(r#"{{"current":"{PASSWORD}","new":"another password"}}"#),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(
            login(&rig, &format!(r#"{{"password":"{PASSWORD}"}}"#))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            login(&rig, r#"{"password":"another password"}"#)
                .await
                .status(),
            StatusCode::OK
        );
        // The change survives a restart (a new Rig on the same data directory).
        let again = rig_with_hosts(dir.path(), &["camrig.test"]);
        assert_eq!(
            login(&again, r#"{"password":"another password"}"#)
                .await
                .status(),
            StatusCode::OK
        );

        // Log out: the cookie is worthless afterwards.
        let (s, _, _) = raw(&rig, "POST", "/api/logout", &post, "{}").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            raw(&rig, "GET", "/api/rig", &get, "").await.0,
            StatusCode::UNAUTHORIZED
        );
        // The one-click link logs in with the token.
        let resp = login(&again, &format!(r#"{{"token":"{TOKEN}"}}"#)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    fn rig_with_hosts(dir: &Path, hosts: &[&str]) -> Arc<Rig> {
        let base = rig(dir);
        let mut config = base.config.clone();
        config.access.hosts = hosts.iter().map(|h| h.to_string()).collect();
        drop(base);
        let store = Store::open(&dir.join("takes.sqlite3")).unwrap();
        Rig::new(config, store)
    }

    #[tokio::test]
    async fn cross_site_requests_and_foreign_hosts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let auth = format!("Bearer {TOKEN}");
        let auth = auth.as_str();
        // DNS rebinding: evil.example resolves to the controller, the browser says so in Host.
        let (s, _, body) = raw(
            &rig,
            "GET",
            "/api/rig",
            &[("host", "evil.example"), ("authorization", auth)],
            "",
        )
        .await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST);
        assert!(error_of(&body).contains("evil.example"), "{body}");
        assert_eq!(
            raw(&rig, "GET", "/login", &[("host", "evil.example:8080")], "")
                .await
                .0,
            StatusCode::MISDIRECTED_REQUEST
        );
        let (s, _, _) = raw(&rig, "GET", "/api/rig", &[("authorization", auth)], "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "no Host at all");

        // A form post or text/plain body from any page: refused before anything happens.
        for ctype in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            let (s, _, body) = raw(
                &rig,
                "POST",
                "/api/takes/current/stop",
                &[
                    ("host", "127.0.0.1:8080"),
                    ("authorization", auth),
                    ("content-type", ctype),
                ],
                "{}",
            )
            .await;
            assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ctype}");
            assert!(error_of(&body).contains("must be JSON"), "{body}");
        }
        let (s, _, _) = raw(
            &rig,
            "POST",
            "/api/downloads",
            &[("host", "127.0.0.1:8080"), ("authorization", auth)],
            "",
        )
        .await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
        // JSON, but from another origin (fetch with a credential it somehow holds).
        let json = ("content-type", "application/json");
        for headers in [
            vec![
                ("host", "127.0.0.1:8080"),
                json,
                ("origin", "http://evil.example"),
            ],
            vec![
                ("host", "127.0.0.1:8080"),
                json,
                ("sec-fetch-site", "cross-site"),
            ],
            vec![
                ("host", "127.0.0.1:8080"),
                json,
                ("sec-fetch-site", "same-site"),
            ],
            vec![("host", "127.0.0.1:8080"), json, ("origin", "null")],
        ] {
            let mut h = headers.clone();
            h.push(("authorization", auth));
            let (s, _, body) = raw(&rig, "POST", "/api/takes/t1/delete-from-nodes", &h, "{}").await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{headers:?}");
            assert!(
                error_of(&body).contains("cross-site request refused"),
                "{body}"
            );
            // Not even the login answers a foreign page.
            let (s, _, _) = raw(
                &rig,
                "POST",
                "/api/login",
                &headers,
                &format!(r#"{{"token":"{TOKEN}"}}"#),
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN);
        }
        // The UI's own origin goes through (to the handler, which has no such take).
        let (s, _, _) = raw(
            &rig,
            "POST",
            "/api/takes/t1/delete-from-nodes",
            &[
                ("host", "127.0.0.1:8080"),
                json,
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
                ("authorization", auth),
            ],
            "{}",
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_trusted_subnet_skips_the_login_only_when_configured() {
        use axum::extract::ConnectInfo;
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(dir.path());
        let from = |peer: &str| {
            let mut req = Request::builder()
                .uri("/api/rig")
                .header("host", "127.0.0.1")
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
            req
        };
        assert_eq!(send(&rig, from("10.9.3.4:5000")).await.0, StatusCode::OK);
        assert_eq!(
            send(&rig, from("10.8.3.4:5000")).await.0,
            StatusCode::UNAUTHORIZED
        );
        let mut config = rig.config.clone();
        config.access.trusted_subnets.clear();
        let closed = Rig::new(config, Store::open(&dir.path().join("b.sqlite3")).unwrap());
        assert_eq!(
            send(&closed, from("10.9.3.4:5000")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}
