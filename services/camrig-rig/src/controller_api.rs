//! The controller's REST API as the operator uses it (`/api/...`, see the controller's
//! API.md), with the polling a person does by watching the page: wait until the rig is idle,
//! until a node shows (un)reachable, until a download is verified. Answers stay JSON values so
//! the harness reads only the fields it needs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Result, RigError};
use crate::http_client::Reply;
use crate::rig::Rig;
use crate::wait;

fn expect_success(what: &str, reply: Reply) -> Result<Value> {
    if reply.is_success() {
        Ok(reply.value())
    } else {
        Err(RigError::Invalid(format!(
            "{what} answered {}: {}",
            reply.status, reply.body
        )))
    }
}

impl Rig {
    /// `GET /api/rig`.
    pub fn rig_view(&self) -> Result<Value> {
        expect_success("GET /api/rig", self.api_get("/api/rig")?)
    }

    /// `POST /api/takes {name}`; the answer is the take with each node's arm result.
    pub fn start_take(&self, name: &str) -> Result<Value> {
        let reply = self.api_post("/api/takes", &json!({ "name": name }))?;
        expect_success("POST /api/takes", reply)
    }

    /// `POST /api/takes/current/mark {note}`.
    pub fn mark_take(&self, note: &str) -> Result<Value> {
        let reply = self.api_post("/api/takes/current/mark", &json!({ "note": note }))?;
        expect_success("POST /api/takes/current/mark", reply)
    }

    /// `POST /api/takes/current/stop`.
    pub fn stop_take(&self) -> Result<Value> {
        let reply = self.api_post("/api/takes/current/stop", &json!({}))?;
        expect_success("POST /api/takes/current/stop", reply)
    }

    /// `GET /api/takes/{name}`.
    pub fn take(&self, name: &str) -> Result<Value> {
        expect_success(
            "GET /api/takes/{name}",
            self.api_get(&format!("/api/takes/{name}"))?,
        )
    }

    /// `POST /api/takes/{name}/download`.
    pub fn download_take(&self, name: &str) -> Result<Value> {
        let reply = self.api_post(&format!("/api/takes/{name}/download"), &json!({}))?;
        expect_success("POST /api/takes/{name}/download", reply)
    }

    /// The controller's view of node `i` (from `GET /api/rig`).
    pub fn node_view(&self, i: usize) -> Result<Value> {
        let ip = self.node(i).ip.to_string();
        self.rig_view()?["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["address"] == ip.as_str()))
            .cloned()
            .ok_or_else(|| RigError::Invalid(format!("GET /api/rig lists no node {ip}")))
    }

    /// Waits until the controller shows node `i` reachable (or not).
    pub fn wait_node_reachable(
        &self,
        i: usize,
        reachable: bool,
        timeout: Duration,
    ) -> Result<Value> {
        let what = format!(
            "the controller to show node {} {}",
            self.node(i).ip,
            if reachable {
                "reachable"
            } else {
                "unreachable"
            }
        );
        wait::until(&what, timeout, || {
            self.node_view(i)
                .ok()
                .filter(|v| v["reachable"].as_bool() == Some(reachable))
        })
    }

    /// Waits until every node is reachable and START would be accepted.
    pub fn wait_start_ready(&self, timeout: Duration) -> Result<Value> {
        wait::until("the controller to be ready to START", timeout, || {
            self.rig_view()
                .ok()
                .filter(|v| v["start_ready"].as_bool() == Some(true))
        })
    }

    /// Waits until the rig is idle again: no current take on the controller, and every node
    /// reports itself idle (a STOP takes effect at its scheduled instant, a moment later).
    pub fn wait_rig_idle(&self, timeout: Duration) -> Result<Value> {
        wait::until("the rig and every node to be idle", timeout, || {
            self.rig_view().ok().filter(|v| {
                v["state"] == "idle"
                    && v["nodes"]
                        .as_array()
                        .is_some_and(|nodes| nodes.iter().all(|n| n["status"]["state"] == "idle"))
            })
        })
    }

    /// Waits until every node's manifest of `take` is final (stopped or recovered).
    pub fn wait_manifests_final(&self, take: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.nodes().len() {
            let left = deadline.saturating_duration_since(Instant::now());
            wait::until(
                &format!("node {i}'s manifest of {take} to be final"),
                left,
                || {
                    self.manifest(i, take)
                        .ok()
                        .filter(|m| m.state != camrig_protocol::manifest::ManifestState::Recording)
                },
            )?;
        }
        Ok(())
    }

    /// Waits until the take's download has ended (verified or failed) for every node, and
    /// returns the take.
    pub fn wait_download_settled(&self, take: &str, timeout: Duration) -> Result<Value> {
        wait::until(
            &format!("the download of {take} to finish"),
            timeout,
            || {
                self.take(take).ok().filter(|t| {
                    t["nodes"].as_array().is_some_and(|nodes| {
                        nodes
                            .iter()
                            .all(|n| n["download"] == "verified" || n["download"] == "failed")
                    })
                })
            },
        )
    }
}
