//! The controller's HTTP client for one node's API (`/v1/...`): bearer token, short
//! timeouts, and errors that say whether the node was unreachable or refused.

use std::time::Duration;

use camrig_protocol::api::{
    AbortRequest, CommandReply, DeleteTakeReply, DeleteTakeRequest, ErrorBody, MarkRequest,
    NodeStatus, StartRequest, StopRequest, TimeReply,
};
use camrig_protocol::camera_settings::{ApplySettingsRequest, NodeCameraSettings};
use camrig_protocol::manifest::TakeManifest;
use camrig_protocol::take_name::TakeName;

use crate::config::NodeConfig;

/// Why a request to a node did not give the expected answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("answered something this controller does not understand: {0}")]
    BadReply(String),
}

impl NodeError {
    /// True when the node answered with a 4xx: our request conflicts with its state.
    pub fn is_conflict(&self) -> bool {
        matches!(self, NodeError::Refused { status, .. } if (400..500).contains(status))
    }
}

/// A client bound to one node.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Timeout of status polls, time probes and commands: a LAN node answers in milliseconds,
/// and a node that takes longer is unhealthy for the purpose of a scheduled START anyway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// Timeout of `DELETE /v1/takes/{take}`.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

impl NodeClient {
    pub fn new(node: &NodeConfig, token: &str) -> NodeClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(800))
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("building an HTTP client without TLS cannot fail");
        NodeClient {
            http,
            base: node.base_url(),
            token: token.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, NodeError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| NodeError::Unreachable(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(NodeError::Refused {
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, NodeError> {
        let resp = self.send(req).await?;
        resp.json::<T>()
            .await
            .map_err(|e| NodeError::BadReply(e.to_string()))
    }

    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        self.json(self.http.get(self.url("/v1/status"))).await
    }

    pub async fn time(&self) -> Result<TimeReply, NodeError> {
        self.json(self.http.get(self.url("/v1/time"))).await
    }

    pub async fn start(&self, req: &StartRequest) -> Result<CommandReply, NodeError> {
        self.json(self.http.post(self.url("/v1/takes/start")).json(req))
            .await
    }

    pub async fn stop(&self, req: &StopRequest) -> Result<CommandReply, NodeError> {
        self.json(self.http.post(self.url("/v1/takes/stop")).json(req))
            .await
    }

    pub async fn mark(&self, req: &MarkRequest) -> Result<CommandReply, NodeError> {
        self.json(self.http.post(self.url("/v1/takes/mark")).json(req))
            .await
    }

    pub async fn abort(&self, req: &AbortRequest) -> Result<CommandReply, NodeError> {
        self.json(self.http.post(self.url("/v1/takes/abort")).json(req))
            .await
    }

    pub async fn manifest(&self, take: &TakeName) -> Result<TakeManifest, NodeError> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/takes/{}/manifest", take.as_str()))),
            )
            .await?;
        let text = resp
            .text()
            .await
            .map_err(|e| NodeError::Unreachable(describe(&e)))?;
        TakeManifest::parse(&text).map_err(|e| NodeError::BadReply(e.to_string()))
    }

    /// Deletes a verified take on the node. Removing gigabytes takes longer than a command.
    pub async fn delete_take(
        &self,
        take: &TakeName,
        req: &DeleteTakeRequest,
    ) -> Result<DeleteTakeReply, NodeError> {
        self.json(
            self.http
                .delete(self.url(&format!("/v1/takes/{}", take.as_str())))
                .timeout(DELETE_TIMEOUT)
                .json(req),
        )
        .await
    }

    pub async fn camera_settings(&self) -> Result<NodeCameraSettings, NodeError> {
        self.json(self.http.get(self.url("/v1/camera-settings")))
            .await
    }

    pub async fn apply_camera_settings(
        &self,
        req: &ApplySettingsRequest,
    ) -> Result<NodeCameraSettings, NodeError> {
        self.json(self.http.put(self.url("/v1/camera-settings")).json(req))
            .await
    }

    /// The latest preview JPEG of camera `n` (1-based).
    pub async fn preview(&self, camera: usize) -> Result<Vec<u8>, NodeError> {
        let resp = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/cameras/{camera}/preview.jpg"))),
            )
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| NodeError::Unreachable(describe(&e)))
    }
}

/// reqwest's Display stops at the outermost error ("error sending request"); the cause
/// ("connection refused", "operation timed out") is what a person needs. The `camrig` CLI
/// describes its own HTTP failures with this too.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within the timeout".into();
    }
    camrig_protocol::innermost_cause(e)
}

/// A fresh command id: 128 random bits in hex. Nodes use it to make commands idempotent.
pub fn new_command_id() -> String {
    use std::io::Read;
    let mut buf = [0u8; 16];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => hex::encode(buf),
        // Without /dev/urandom the clock and pid still make the id unique on this rig.
        Err(_) => format!(
            "{:x}-{:x}",
            camrig_protocol::now_unix_ns(),
            std::process::id()
        ),
    }
}
