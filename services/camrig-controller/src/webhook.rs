//! The studio's hook: take events POSTed as JSON to `[webhook] url`, one at a time and in
//! the order they happened, each retried (1 s, 2 s, 4 s … apart) up to `retries` times with
//! `timeout_ms` per attempt. Sending is a channel push: nothing on the take's path waits
//! for the receiver, and an event that still fails is logged and dropped.
//!
//! Body (stable, documented in API.md): `{"event": "take_started" | "take_stopped" |
//! "take_downloaded" | "take_failed", "take": "<name>", "at_ns": <controller clock>,
//! "node": "<address>" | null, "detail": "<words>" | null, "files": n | null,
//! "bytes": n | null}`.

use std::time::Duration;

use camrig_protocol::{now_unix_ns, UnixNanos};
use tokio::sync::mpsc;

use crate::config::WebhookConfig;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
// The variants are the wire's event names (`take_started`, …), prefix and all.
#[allow(clippy::enum_variant_names)]
pub enum WebhookKind {
    /// Every node is armed (START answered).
    TakeStarted,
    /// STOP was fanned out.
    TakeStopped,
    /// One node's files of the take were downloaded and every one verified.
    TakeDownloaded,
    /// START failed, a node was lost mid-take, or a node's download failed.
    TakeFailed,
}

/// One POST's body.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookEvent {
    pub event: WebhookKind,
    pub take: String,
    pub at_ns: UnixNanos,
    pub node: Option<String>,
    pub detail: Option<String>,
    pub files: Option<usize>,
    pub bytes: Option<u64>,
}

impl WebhookEvent {
    pub fn new(event: WebhookKind, take: &str) -> WebhookEvent {
        WebhookEvent {
            event,
            take: take.to_owned(),
            at_ns: now_unix_ns(),
            node: None,
            detail: None,
            files: None,
            bytes: None,
        }
    }

    pub fn node(mut self, address: &str) -> Self {
        self.node = Some(address.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The sending side; a no-op without a configured URL.
pub struct Webhook {
    tx: Option<mpsc::UnboundedSender<WebhookEvent>>,
}

impl Webhook {
    /// Starts the sender task (needs a tokio runtime when `config` is set).
    pub fn new(config: Option<WebhookConfig>) -> Webhook {
        let Some(config) = config else {
            return Webhook { tx: None };
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no async runtime for the webhook; events are not sent");
            return Webhook { tx: None };
        };
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(deliver(config, rx));
        Webhook { tx: Some(tx) }
    }

    /// Queues `event`; never waits.
    pub fn send(&self, event: WebhookEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}

async fn deliver(config: WebhookConfig, mut rx: mpsc::UnboundedReceiver<WebhookEvent>) {
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the webhook's HTTP client; events are not sent");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let mut backoff = Duration::from_secs(1);
        for attempt in 0..=config.retries {
            let result = client.post(&config.url).json(&event).send().await;
            let error = match result {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == config.retries {
                tracing::warn!(url = config.url, event = ?event.event, take = event.take, error, "webhook event not delivered; giving up");
                break;
            }
            tracing::info!(url = config.url, event = ?event.event, attempt = attempt + 1, error, "webhook failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
