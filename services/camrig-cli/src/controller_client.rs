//! A small client for the controller's REST API, with errors that say what to do. It sends
//! the rig's API token as `Authorization: Bearer` (from `CAMRIG_TOKEN` or a token file, never
//! a command-line value, which every user could read in `ps`) and a JSON body with every
//! request that changes something, as the controller requires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use camrig_protocol::views::{
    AbortNodeView, AccessView, ApiErrorBody, ChangePassword, DeleteFromNodes, DownloadsView,
    MarkTake, MarkerView, RigView, StartTake, TakeView, VerifyView,
};

/// What went wrong with a request, for a person: the cause, not reqwest's outermost error.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the timeout".into();
    }
    camrig_protocol::innermost_cause(e)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the controller at {url} ({cause}); is camrig-controller running? Point --controller or CAMRIG_CONTROLLER at it")]
    Unreachable { url: String, cause: String },
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("the controller answered something this camrig does not understand: {0}")]
    BadReply(String),
    #[error("cannot read the API token from {path}: {cause}; point CAMRIG_TOKEN_FILE (or --token-file) at the rig's token file (`camrig demo` writes <demo dir>/controller-token; provisioning keeps it in <state dir>/api-token)")]
    TokenFile { path: PathBuf, cause: String },
}

/// Where the API token comes from, in this order: `CAMRIG_TOKEN` (the value), then
/// `--token-file`/`CAMRIG_TOKEN_FILE` (a file holding it). `None`: no token (the controller
/// then answers 401 unless the client is in a trusted subnet).
pub fn resolve_token(
    env_token: Option<String>,
    token_file: Option<&Path>,
) -> Result<Option<String>, ClientError> {
    if let Some(t) = env_token
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(t));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::TokenFile {
        path: path.to_owned(),
        cause: e.to_string(),
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(ClientError::TokenFile {
            path: path.to_owned(),
            cause: "the file is empty".into(),
        });
    }
    Ok(Some(token))
}

/// The body of a request that has nothing to say (the controller takes only JSON).
fn empty() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

pub struct ControllerClient {
    http: reqwest::Client,
    base: String,
}

impl ControllerClient {
    pub fn new(base: &str, token: Option<&str>) -> ControllerClient {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer -"));
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        ControllerClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()
                .expect("HTTP client without TLS"),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            cause: describe(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            cause: describe(&e),
        })?;
        if !status.is_success() {
            let message = match serde_json::from_str::<ApiErrorBody>(&text) {
                Ok(body) => {
                    let mut m = body.error;
                    for n in body.nodes {
                        m.push_str(&format!("\n  {}: {}", n.address, n.error));
                    }
                    m
                }
                Err(_) => format!("HTTP {status}: {}", text.trim()),
            };
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| ClientError::BadReply(e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn rig(&self) -> Result<RigView, ClientError> {
        self.call(self.http.get(self.url("/api/rig"))).await
    }

    pub async fn takes(&self) -> Result<Vec<TakeView>, ClientError> {
        self.call(self.http.get(self.url("/api/takes"))).await
    }

    pub async fn take(&self, name: &str) -> Result<TakeView, ClientError> {
        self.call(self.http.get(self.url(&format!("/api/takes/{name}"))))
            .await
    }

    pub async fn start(&self, req: &StartTake) -> Result<TakeView, ClientError> {
        self.call(self.http.post(self.url("/api/takes")).json(req))
            .await
    }

    pub async fn mark(&self, note: &str) -> Result<MarkerView, ClientError> {
        self.call(
            self.http
                .post(self.url("/api/takes/current/mark"))
                .json(&MarkTake {
                    note: note.to_owned(),
                }),
        )
        .await
    }

    /// `GET /api/camera-settings`.
    pub async fn camera_settings(&self) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.get(self.url("/api/camera-settings")))
            .await
    }

    /// `PUT /api/camera-settings[?nodes=a,b]`.
    pub async fn put_camera_settings(
        &self,
        settings: &serde_json::Value,
        nodes: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        let mut req = self.http.put(self.url("/api/camera-settings"));
        if !nodes.is_empty() {
            req = req.query(&[("nodes", nodes.join(","))]);
        }
        self.call(req.json(settings)).await
    }

    /// `POST /api/camera-settings/lock` or `/unlock` with `body`.
    pub async fn camera_settings_action(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/camera-settings/{action}")))
                .json(body),
        )
        .await
    }

    pub async fn stop(&self) -> Result<TakeView, ClientError> {
        self.call(
            self.http
                .post(self.url("/api/takes/current/stop"))
                .json(&empty()),
        )
        .await
    }

    /// Tells node `index` to abort whatever it records (the recovery for a node that did
    /// not take STOP).
    pub async fn abort_node(&self, index: usize) -> Result<AbortNodeView, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/nodes/{index}/abort")))
                .json(&empty()),
        )
        .await
    }

    pub async fn download(&self, take: Option<&str>) -> Result<DownloadsView, ClientError> {
        let url = match take {
            Some(t) => self.url(&format!("/api/takes/{t}/download")),
            None => self.url("/api/downloads"),
        };
        self.call(self.http.post(url).json(&empty())).await
    }

    /// Changes the operator password. With the API token the current one is not needed.
    pub async fn change_password(&self, req: &ChangePassword) -> Result<AccessView, ClientError> {
        self.call(self.http.post(self.url("/api/password")).json(req))
            .await
    }

    /// DELETE FROM NODES. The controller re-hashes every sorted file first, which takes a
    /// while for a long take: the timeout is generous.
    pub async fn delete_from_nodes(
        &self,
        take: &str,
        req: &DeleteFromNodes,
    ) -> Result<TakeView, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/takes/{take}/delete-from-nodes")))
                .timeout(Duration::from_secs(3600))
                .json(req),
        )
        .await
    }

    /// VERIFY: the controller hashes every sorted copy of the take again (slow for a long
    /// take, hence the generous timeout).
    pub async fn verify(&self, take: &str) -> Result<VerifyView, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/takes/{take}/verify")))
                .timeout(Duration::from_secs(3600))
                .json(&empty()),
        )
        .await
    }

    /// Makes the take's sync report again (re-reads every node's timestamps).
    pub async fn sync_report(
        &self,
        take: &str,
    ) -> Result<camrig_sorted_takes::sync_report::SyncReport, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/takes/{take}/sync-report")))
                .timeout(Duration::from_secs(600))
                .json(&empty()),
        )
        .await
    }

    pub async fn downloads(&self) -> Result<DownloadsView, ClientError> {
        self.call(self.http.get(self.url("/api/downloads"))).await
    }
}
