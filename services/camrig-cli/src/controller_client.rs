//! A small client for the controller's REST API, with errors that say what to do.

use std::time::Duration;

use camrig_protocol::views::{
    AbortNodeView, ApiErrorBody, DeleteFromNodes, DownloadsView, MarkTake, MarkerView, RigView,
    StartTake, TakeView, VerifyView,
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
}

pub struct ControllerClient {
    http: reqwest::Client,
    base: String,
}

impl ControllerClient {
    pub fn new(base: &str) -> ControllerClient {
        ControllerClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
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
        self.call(self.http.post(self.url("/api/takes/current/stop")))
            .await
    }

    /// Tells node `index` to abort whatever it records (the recovery for a node that did
    /// not take STOP).
    pub async fn abort_node(&self, index: usize) -> Result<AbortNodeView, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/nodes/{index}/abort")))
                .json(&serde_json::json!({})),
        )
        .await
    }

    pub async fn download(&self, take: Option<&str>) -> Result<DownloadsView, ClientError> {
        let url = match take {
            Some(t) => self.url(&format!("/api/takes/{t}/download")),
            None => self.url("/api/downloads"),
        };
        self.call(self.http.post(url)).await
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
                .json(&serde_json::json!({})),
        )
        .await
    }

    /// Makes the take's sync report again (re-reads every node's timestamps).
    pub async fn sync_report(
        &self,
        take: &str,
    ) -> Result<camrig_controller::sync_report::SyncReport, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/api/takes/{take}/sync-report")))
                .timeout(Duration::from_secs(600)),
        )
        .await
    }

    pub async fn downloads(&self) -> Result<DownloadsView, ClientError> {
        self.call(self.http.get(self.url("/api/downloads"))).await
    }
}
