//! START, MARK and STOP: validation, the scheduled instants, the parallel fan-out with one
//! command id, per-node results, abort on a failed arm, and the take monitor that notices
//! a node lost mid-take. Every decision is written to the take store before it is answered;
//! START's last step (the take `starting` → `recording`, derivable from the durable record of
//! the take and its armed nodes) is committed right after its answer, under the command lock.

use std::sync::Arc;
use std::time::Duration;

use camrig_protocol::api::{AbortRequest, MarkRequest, NodeState, StartRequest, StopRequest};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::{now_unix_ns, UnixNanos};
use futures_util::future::join_all;
use tokio::sync::Mutex;

use crate::fleet::{Blocker, NodeSlot};
use crate::node_client::new_command_id;
use crate::rig_core::{reads_core, RigCore};
use crate::take_error::{describe, TakeError, MAX_NOTE_CHARS};
use crate::take_store::{NewTake, NewTakeNode, StoreError};
use crate::views::{
    AbortNodeView, MarkTake, MarkerNodeView, MarkerView, NodeFailure, StartTake, TakeNodeState,
    TakeNodeView, TakeState, TakeView,
};
use crate::webhook::{WebhookEvent, WebhookKind};

/// Longest MARK note accepted (characters).
/// A node not recording its take this long after START's instant has failed.
const START_GRACE: Duration = Duration::from_secs(3);
/// How long START waits for nodes still finishing the previous take.
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// START, MARK, STOP, abort of one node, and the mid-take monitor.
pub struct TakeControl {
    core: Arc<RigCore>,
    /// Serialises START/MARK/STOP and the take monitor (and camera settings): one command at
    /// a time. Shared so START can hand its guard to the bookkeeping it finishes after
    /// answering.
    command_lock: Arc<Mutex<()>>,
}

reads_core!(TakeControl);

impl TakeControl {
    pub fn new(core: Arc<RigCore>, command_lock: Arc<Mutex<()>>) -> TakeControl {
        TakeControl { core, command_lock }
    }
}

impl TakeControl {
    /// START and STOP fall half a frame period between two grid instants (at or after `at`),
    /// so a camera locked to the grid never has a frame on the edge of a take: every locked
    /// camera's first and last frame are the same slot. Segment cuts follow from START.
    fn place_on_grid(&self, at: UnixNanos) -> UnixNanos {
        match self.fleet.grid() {
            Some(grid) => grid.midpoint_at_or_after(at),
            None => at,
        }
    }

    pub async fn start_take(self: &Arc<Self>, req: StartTake) -> Result<TakeView, TakeError> {
        let began = std::time::Instant::now();
        let name = TakeName::parse(req.name.trim())?;
        let guard = self.command_lock.clone().lock_owned().await;
        if let Some(current) = self.store.current_take()? {
            return Err(TakeError::TakeRunning(current.name));
        }
        if self.store.name_in_use(name.as_str())? {
            return Err(TakeError::NameUsed(name.as_str().to_owned()));
        }
        let nodes = self.fleet.nodes();
        // Right after a STOP the nodes record until its instant and then finish the take:
        // give them that moment instead of refusing a quick next START.
        let deadline = std::time::Instant::now() + BUSY_WAIT;
        while std::time::Instant::now() < deadline
            && (0..nodes.len())
                .any(|i| matches!(self.fleet.blocker(i, &self.config), Some(Blocker::Busy(_))))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut refusals = Vec::new();
        let mut overridden = Vec::new();
        for i in 0..nodes.len() {
            match self.fleet.blocker(i, &self.config) {
                None => {}
                Some(Blocker::Unreachable(m)) if !req.allow_partial => refusals.push(format!(
                    "{m}; retry when it answers, or allow a partial rig"
                )),
                Some(Blocker::Unreachable(_)) => {}
                Some(Blocker::Clock(m)) if !req.override_clock => {
                    refusals.push(format!("{m}; wait for the clock, or override"))
                }
                Some(Blocker::Clock(m)) => overridden.push(m),
                Some(Blocker::Phase(m)) if !req.override_clock => {
                    refusals.push(format!("{m}; wait until it shows `locked`, or override"))
                }
                Some(Blocker::Phase(m)) => overridden.push(m),
                Some(Blocker::Busy(m)) => {
                    refusals.push(format!(
                    "{m}; wait until it finishes, or abort it (`camrig abort-node`, or Abort in the web UI)"
                ))
                }
                Some(Blocker::CannotRecord(m)) => refusals.push(m),
            }
            match self
                .fleet
                .health_warning(i, &self.config, req.planned_seconds)
            {
                None => {}
                Some(m) if !req.override_health => {
                    refusals.push(format!("{m}; fix it, or override the health check"))
                }
                Some(m) => overridden.push(format!("health override: {m}")),
            }
        }
        if !refusals.is_empty() {
            self.metrics.starts_refused.inc();
            return Err(TakeError::NotReady(refusals));
        }
        // Cameras that cannot lock do not block START; the take records that they did not.
        for i in 0..nodes.len() {
            for w in self.fleet.phase_warnings(i) {
                tracing::warn!("{w}");
                overridden.push(format!("warning: {w}"));
            }
        }

        let command_id = new_command_id();
        let created = now_unix_ns();
        let start_at = self.place_on_grid(created + self.config.start_lead.as_nanos() as UnixNanos);
        let id = self.store.insert_take(&NewTake {
            name: name.as_str(),
            command_id: &command_id,
            created_ns: created,
            start_at_ns: start_at,
            allow_partial: req.allow_partial,
            override_clock: req.override_clock,
            override_note: (!overridden.is_empty()).then(|| overridden.join("; ")),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let clock = self.fleet.clock(i);
                    NewTakeNode {
                        address: n.config.address.clone(),
                        name: n.config.name.clone(),
                        offset_ns: clock.map(|c| c.offset_ns),
                        rtt_ns: clock.map(|c| c.rtt_ns),
                    }
                })
                .collect(),
        })?;
        self.changed();

        let request = StartRequest {
            take: name.clone(),
            start_at_ns: start_at,
            command_id: command_id.clone(),
        };
        let fanout = std::time::Instant::now();
        // Checks and the durable take record before the fan-out: the controller's own share
        // of the arm latency (`ci/rig-bench` reports both).
        let prepare_ms = fanout.duration_since(began).as_secs_f64() * 1e3;
        // Each node's own answer time, so the log names the node a slow fan-out waited for.
        let replies = join_all(nodes.iter().map(|n| async {
            let reply = n.client.start(&request).await;
            (reply, fanout.elapsed())
        }))
        .await;
        let fanout_ms = fanout.elapsed().as_secs_f64() * 1e3;
        self.metrics
            .start_fanout
            .observe(fanout.elapsed().as_secs_f64());
        let slowest = nodes
            .iter()
            .zip(&replies)
            .max_by_key(|(_, (_, took))| *took)
            .map(|(n, (_, took))| (n.config.address.as_str(), took.as_secs_f64() * 1e3));
        let (slowest_node, slowest_ms) = slowest.unwrap_or(("", 0.0));
        // When the first and the median node answered: a fan-out whose first answer comes
        // late was held up before any node could reply (sending, or CPU), one whose median
        // is early but slowest late waited for a few slow nodes.
        let mut answer_ms: Vec<f64> = replies
            .iter()
            .map(|(_, took)| took.as_secs_f64() * 1e3)
            .collect();
        answer_ms.sort_by(f64::total_cmp);
        let first_ms = answer_ms.first().copied().unwrap_or(0.0);
        let median_ms = answer_ms.get(answer_ms.len() / 2).copied().unwrap_or(0.0);
        let mut failures = Vec::new();
        let mut conflict = false;
        let mut armed = Vec::new();
        for (n, (reply, _)) in nodes.iter().zip(replies) {
            match reply {
                Ok(_) => armed.push(n),
                Err(e) => {
                    conflict |= e.is_conflict();
                    let error = e.to_string();
                    self.store.set_node_state(
                        id,
                        &n.config.address,
                        TakeNodeState::ArmFailed,
                        Some(&error),
                    )?;
                    failures.push(NodeFailure {
                        address: n.config.address.clone(),
                        error,
                    });
                }
            }
        }
        tracing::info!(take = %name, command_id, start_at, armed = armed.len(), failed = failures.len(), prepare_ms, fanout_ms, first_ms, median_ms, %slowest_node, slowest_ms, "start fanned out");

        if !failures.is_empty() && (!req.allow_partial || armed.is_empty()) {
            let abort = AbortRequest {
                command_id: format!("{command_id}-abort"),
            };
            let results = join_all(armed.iter().map(|n| n.client.abort(&abort))).await;
            for (n, r) in armed.iter().zip(results) {
                let (state, reason) = match r {
                    Ok(_) => (
                        TakeNodeState::Aborted,
                        "aborted because another node failed to arm".to_owned(),
                    ),
                    Err(e) => (TakeNodeState::Failed, format!("abort failed: {e}")),
                };
                self.store
                    .set_node_state(id, &n.config.address, state, Some(&reason))?;
            }
            self.store.set_take_state(id, TakeState::Aborted)?;
            self.changed();
            self.webhook.send(
                WebhookEvent::new(WebhookKind::TakeFailed, name.as_str())
                    .detail(format!("START failed: {}", describe(&failures))),
            );
            return Err(TakeError::ArmFailed { conflict, failures });
        }
        // Every node is armed: answer now and mark the take `recording` in the store right
        // after, still holding the command lock so no MARK or STOP runs before it. Nothing
        // can be lost in between: the take, its instant and every node as armed were made
        // durable before the first node was told (`insert_take` above), and a controller
        // that dies before this commit finds the take `starting` when it comes back, which
        // the take monitor turns into `recording` (checking every node) exactly as it does
        // after a crash during the fan-out. The commit waits for the disk, which the nodes
        // are busy with right after arming; it never delays the answer.
        let recorded = std::time::Instant::now();
        let mut take = self.store.take(id)?.expect("take just written");
        take.state = TakeState::Recording.to_owned();
        let rig = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            match rig.store.set_take_state(id, TakeState::Recording) {
                Ok(()) => rig.changed(),
                // Left `starting`: the take monitor's next turn records it.
                Err(e) => {
                    tracing::error!(take = id, error = %e, "cannot mark the take recording; the take monitor retries")
                }
            }
        });
        // After the fan-out: the controller's bookkeeping before it answers.
        let record_ms = recorded.elapsed().as_secs_f64() * 1e3;
        self.metrics.takes_started.inc();
        self.webhook
            .send(WebhookEvent::new(WebhookKind::TakeStarted, name.as_str()));
        let total_ms = began.elapsed().as_secs_f64() * 1e3;
        tracing::info!(take = %name, record_ms, total_ms, "start answered");
        Ok(self.take_view(take))
    }

    pub async fn mark_take(self: &Arc<Self>, req: MarkTake) -> Result<MarkerView, TakeError> {
        let note = req.note.trim().to_owned();
        let chars = note.chars().count();
        if chars > MAX_NOTE_CHARS {
            return Err(TakeError::NoteTooLong(chars));
        }
        // The click time, before anything that could queue behind another command.
        let at = now_unix_ns();
        let _guard = self.command_lock.lock().await;
        let take = self.store.current_take()?.ok_or(TakeError::NoTake)?;
        let request = MarkRequest {
            at_ns: at,
            note: note.clone(),
            command_id: new_command_id(),
        };
        let targets: Vec<_> = take
            .nodes
            .iter()
            .filter(|n| is_active(n.state))
            .filter_map(|n| self.fleet.by_address(&n.address))
            .collect();
        let replies = join_all(targets.iter().map(|n| n.client.mark(&request))).await;
        let nodes: Vec<MarkerNodeView> = targets
            .iter()
            .zip(replies)
            .map(|(n, r)| match r {
                Ok(reply) => MarkerNodeView {
                    address: n.config.address.clone(),
                    ok: true,
                    error: None,
                    frames: reply.marker_frames,
                },
                Err(e) => MarkerNodeView {
                    address: n.config.address.clone(),
                    ok: false,
                    error: Some(e.to_string()),
                    frames: Vec::new(),
                },
            })
            .collect();
        self.store.add_marker(take.id, at, &note, &nodes)?;
        self.changed();
        Ok(MarkerView {
            at_ns: at,
            note,
            nodes,
        })
    }

    /// STOP: every node still in the take gets the take's one stop instant. The take is
    /// `stopped` only when every such node took it (a node lost earlier keeps its reason and
    /// does not hold the take open); otherwise it stays open, the answer names each node
    /// that did not take it and why, and the recovery is STOP again or abort that node
    /// ([`Rig::abort_node`]). A STOP whose instant falls before the take's start instant
    /// cancels the take instead ([`Rig::cancel_take`]).
    pub async fn stop_take(self: &Arc<Self>) -> Result<TakeView, TakeError> {
        let _guard = self.command_lock.lock().await;
        let take = self.store.current_take()?.ok_or(TakeError::NoTake)?;
        // A STOP again (some node did not take the first) keeps the first instant: every
        // node's take ends at the same instant.
        let stop_at = match take.stop_at_ns {
            Some(at) => at,
            None => {
                let at = self
                    .place_on_grid(now_unix_ns() + self.config.stop_lead.as_nanos() as UnixNanos);
                self.store.set_stop(take.id, at)?;
                at
            }
        };
        if stop_at <= take.start_at_ns {
            return self.cancel_take(take).await;
        }
        let request = StopRequest {
            stop_at_ns: stop_at,
            // One id per take: a node that took a STOP whose answer was lost answers the
            // repeat as it did the first time.
            command_id: format!("{}-stop", take.command_id),
        };
        // Nodes we lost during the take get the STOP too: one that is back and still
        // recording must not record forever.
        let targets = self.armed_nodes(&take);
        let replies = join_all(targets.iter().map(|(_, n)| n.client.stop(&request))).await;
        let mut failures = Vec::new();
        let mut conflict = false;
        for ((node, slot), reply) in targets.iter().zip(replies) {
            let index = self
                .fleet
                .nodes()
                .iter()
                .position(|s| s.config.address == slot.config.address)
                .expect("slot belongs to the fleet");
            self.store.set_node_offset_stop(
                take.id,
                &node.address,
                self.fleet.clock(index).map(|c| c.offset_ns),
                self.fleet.clock(index).map(|c| c.rtt_ns),
            )?;
            match reply {
                Ok(_) => self.store.set_node_state(
                    take.id,
                    &node.address,
                    TakeNodeState::Stopped,
                    None,
                )?,
                // A node already lost keeps the reason it was lost for.
                Err(_) if node.state == TakeNodeState::Failed => {}
                Err(e) => {
                    // A node that refuses because it records nothing (it ended the take
                    // itself) holds nothing open: ask it what it is doing.
                    let idle = match slot.client.status().await {
                        Ok(s) => {
                            s.state == NodeState::Idle
                                || s.take.as_ref().map(TakeName::as_str) != Some(take.name.as_str())
                        }
                        Err(_) => false,
                    };
                    if idle && e.is_conflict() {
                        self.store.set_node_state(
                            take.id,
                            &node.address,
                            TakeNodeState::Failed,
                            Some(&format!("not recording the take when STOP came: {e}")),
                        )?;
                        continue;
                    }
                    conflict |= e.is_conflict();
                    self.not_taken(take.id, node, "STOP", &e, &mut failures)?;
                }
            }
        }
        self.changed();
        if !failures.is_empty() {
            tracing::warn!(
                take = take.name,
                stop_at,
                failed = failures.len(),
                "stop not taken by every node; the take stays open"
            );
            return Err(TakeError::StopIncomplete {
                take: take.name,
                conflict,
                failures,
            });
        }
        tracing::info!(take = take.name, stop_at, "stop fanned out");
        let event = WebhookEvent::new(WebhookKind::TakeStopped, &take.name);
        self.close_take(take.id, TakeState::Stopped, event)
    }

    /// The take's nodes that were ever armed, with their fleet slots: STOP and its cancel go
    /// to each.
    fn armed_nodes<'a>(&'a self, take: &'a TakeView) -> Vec<(&'a TakeNodeView, &'a NodeSlot)> {
        take.nodes
            .iter()
            .filter(|n| was_armed(n.state))
            .filter_map(|n| self.fleet.by_address(&n.address).map(|slot| (n, slot)))
            .collect()
    }

    /// A node that did not take STOP (or the cancel): still armed or recording as far as
    /// the controller knows, so its state stays and the reason says the command did not get
    /// through; it is one of the `failures` the answer names.
    fn not_taken(
        &self,
        take_id: i64,
        node: &TakeNodeView,
        what: &str,
        error: &crate::node_client::NodeError,
        failures: &mut Vec<NodeFailure>,
    ) -> Result<(), StoreError> {
        let reason = format!("{what} not taken: {error}");
        self.store
            .set_node_state(take_id, &node.address, node.state, Some(&reason))?;
        failures.push(NodeFailure {
            address: node.address.clone(),
            error: error.to_string(),
        });
        Ok(())
    }

    /// Every node took STOP (or the cancel): the take is `state` for good, the streams and
    /// the webhook are told, and the answer is the take as stored now.
    fn close_take(
        &self,
        take_id: i64,
        state: TakeState,
        event: WebhookEvent,
    ) -> Result<TakeView, TakeError> {
        self.store.set_take_state(take_id, state)?;
        self.changed();
        self.webhook.send(event);
        let take = self.store.take(take_id)?.expect("take just written");
        Ok(self.take_view(take))
    }

    /// STOP before the take's start instant: nothing can have been recorded yet, so every
    /// node is told to abort (the node removes the take's empty directory) and the take
    /// becomes `cancelled`, its name free again. A node that began recording after all (a
    /// repeated STOP that came late) keeps what it recorded and shows `stopped`.
    async fn cancel_take(self: &Arc<Self>, take: TakeView) -> Result<TakeView, TakeError> {
        let request = AbortRequest {
            command_id: format!("{}-cancel", take.command_id),
        };
        let targets = self.armed_nodes(&take);
        let replies = join_all(targets.iter().map(|(_, n)| n.client.abort(&request))).await;
        let mut failures = Vec::new();
        let mut conflict = false;
        let mut recorded = false;
        for ((node, _), reply) in targets.iter().zip(replies) {
            match reply {
                Ok(r) if r.state == NodeState::Recording => {
                    recorded = true;
                    self.store.set_node_state(
                        take.id,
                        &node.address,
                        TakeNodeState::Stopped,
                        Some("STOP came before the start instant but the node had begun recording; what it recorded is kept"),
                    )?
                }
                Ok(_) => self.store.set_node_state(
                    take.id,
                    &node.address,
                    TakeNodeState::Cancelled,
                    Some("cancelled: STOP came before the take's start instant; nothing was recorded"),
                )?,
                Err(_) if node.state == TakeNodeState::Failed => {}
                Err(e) => {
                    conflict |= e.is_conflict();
                    let what = "cancel (STOP before the start instant)";
                    self.not_taken(take.id, node, what, &e, &mut failures)?;
                }
            }
        }
        self.changed();
        if !failures.is_empty() {
            return Err(TakeError::StopIncomplete {
                take: take.name,
                conflict,
                failures,
            });
        }
        let state = if recorded {
            TakeState::Stopped
        } else {
            TakeState::Cancelled
        };
        tracing::info!(
            take = take.name,
            state = state.as_str(),
            "STOP before the start instant: take cancelled"
        );
        let event = WebhookEvent::new(WebhookKind::TakeStopped, &take.name).detail(match state {
            TakeState::Cancelled => {
                "cancelled: STOP came before its start instant, nothing was recorded"
            }
            _ => "STOP came before its start instant on some node",
        });
        self.close_take(take.id, state, event)
    }

    /// The recovery for a node that did not take STOP (or records a take the controller
    /// does not run): tells node `index` to abort whatever it records. What it recorded is
    /// kept on the node. If the node is part of the current take it shows `stopped`
    /// (`aborted` when it had not begun recording), and the take is closed once no node of
    /// it is armed or recording any more.
    pub async fn abort_node(self: &Arc<Self>, index: usize) -> Result<AbortNodeView, TakeError> {
        let _guard = self.command_lock.lock().await;
        let slot = self.fleet.node(index).ok_or_else(|| {
            TakeError::UnknownNode(format!(
                "no node {index}; nodes are numbered 0-{}",
                self.fleet.nodes().len().saturating_sub(1)
            ))
        })?;
        let address = slot.config.address.clone();
        let reply = slot
            .client
            .abort(&AbortRequest {
                command_id: new_command_id(),
            })
            .await
            .map_err(|e| TakeError::AbortFailed {
                conflict: e.is_conflict(),
                failures: vec![NodeFailure {
                    address: address.clone(),
                    error: e.to_string(),
                }],
            })?;
        tracing::warn!(node = address, take = ?reply.take, state = ?reply.state, "node aborted by the operator");
        let mut take_view = None;
        if let Some(take) = self.store.current_take()? {
            if let Some(node) = take
                .nodes
                .iter()
                .find(|n| n.address == address && was_armed(n.state))
            {
                let (state, reason) = match reply.state {
                    NodeState::Armed => (
                        TakeNodeState::Aborted,
                        "aborted by the operator before it began recording",
                    ),
                    NodeState::Recording => (
                        TakeNodeState::Stopped,
                        "aborted by the operator; what it recorded is kept",
                    ),
                    NodeState::Idle => (
                        TakeNodeState::Stopped,
                        "no longer recording when the operator aborted it",
                    ),
                };
                self.store
                    .set_node_state(take.id, &node.address, state, Some(reason))?;
                let take = self.store.take(take.id)?.expect("current take");
                if !take.nodes.iter().any(|n| is_active(n.state)) {
                    if take.stop_at_ns.is_none() {
                        self.store.set_stop(take.id, now_unix_ns())?;
                    }
                    self.store.set_take_state(take.id, TakeState::Stopped)?;
                    tracing::info!(
                        take = take.name,
                        "no node records the take any more: stopped"
                    );
                    self.webhook.send(
                        WebhookEvent::new(WebhookKind::TakeStopped, &take.name)
                            .node(&address)
                            .detail("no node records the take any more (the last was aborted)"),
                    );
                }
                take_view = self.store.take(take.id)?.map(|t| self.take_view(t));
            }
        }
        self.changed();
        Ok(AbortNodeView {
            address,
            node_state: reply.state,
            node_take: reply.take.map(|t| t.as_str().to_owned()),
            take: take_view,
        })
    }

    /// Compares the current take with what the nodes report: armed nodes that began
    /// recording become `recording`; a node that stopped answering, or that is no longer
    /// recording the take, becomes `failed` with the reason. Called from the event loop.
    pub async fn watch_current_take(self: &Arc<Self>) -> Result<(), StoreError> {
        // A command in flight owns the take; look again on the next turn.
        let Ok(_guard) = self.command_lock.try_lock() else {
            return Ok(());
        };
        let Some(take) = self.store.current_take()? else {
            return Ok(());
        };
        let now = now_unix_ns();
        let mut changed = false;
        if take.state == TakeState::Starting {
            // A controller that died during START's fan-out: the nodes that armed carry on
            // and the ones that did not are marked failed below.
            self.store.set_take_state(take.id, TakeState::Recording)?;
            changed = true;
        }
        for node in take.nodes.iter().filter(|n| was_armed(n.state)) {
            let Some(index) = self
                .fleet
                .nodes()
                .iter()
                .position(|s| s.config.address == node.address)
            else {
                if node.state != TakeNodeState::Failed {
                    self.store.set_node_state(
                        take.id,
                        &node.address,
                        TakeNodeState::Failed,
                        Some("node is no longer in the controller's configuration"),
                    )?;
                    changed = true;
                }
                continue;
            };
            let status = self.fleet.status(index);
            let ours = status.as_ref().is_some_and(|s| {
                s.take.as_ref().map(TakeName::as_str) == Some(take.name.as_str())
                    && s.state != NodeState::Idle
            });
            let new_state = match &status {
                // Recording our take: whatever we thought before (a link that dropped for a
                // few seconds looks like a lost node), it is recording.
                Some(s) if ours && s.state == NodeState::Recording => (node.state
                    != TakeNodeState::Recording)
                    .then_some((TakeNodeState::Recording, None)),
                Some(_) if ours => None,
                _ if node.state == TakeNodeState::Failed => None,
                // Just started: no node has had the chance to answer yet.
                None if !self.fleet.settled() => None,
                None => Some((
                    TakeNodeState::Failed,
                    Some(format!(
                        "node stopped answering during the take ({})",
                        self.fleet
                            .view(index, &self.config)
                            .error
                            .unwrap_or_else(|| "no answer".into())
                    )),
                )),
                Some(s) if now > take.start_at_ns + START_GRACE.as_nanos() as i64 => {
                    let why = s
                        .last_take
                        .as_ref()
                        .filter(|o| o.take.as_str() == take.name)
                        .and_then(|o| o.stop_reason)
                        .map(|r| format!("it ended the take itself ({r:?})"))
                        .or(s.problem.clone())
                        .unwrap_or_else(|| format!("it is {:?}", s.state).to_lowercase());
                    Some((
                        TakeNodeState::Failed,
                        Some(format!("node is no longer recording this take: {why}")),
                    ))
                }
                Some(_) => None,
            };
            if let Some((state, reason)) = new_state {
                if state == TakeNodeState::Failed {
                    tracing::warn!(
                        take = take.name,
                        node = node.address,
                        reason,
                        "node lost from take"
                    );
                    self.webhook.send(
                        WebhookEvent::new(WebhookKind::TakeFailed, &take.name)
                            .node(&node.address)
                            .detail(reason.clone().unwrap_or_default()),
                    );
                } else {
                    tracing::info!(
                        take = take.name,
                        node = node.address,
                        "node recording the take"
                    );
                }
                self.store
                    .set_node_state(take.id, &node.address, state, reason.as_deref())?;
                changed = true;
            }
        }
        if changed {
            self.changed();
        }
        Ok(())
    }
}

fn is_active(state: TakeNodeState) -> bool {
    matches!(state, TakeNodeState::Armed | TakeNodeState::Recording)
}

/// Armed at START: the node may hold a recording of the take, even if we lost it since.
fn was_armed(state: TakeNodeState) -> bool {
    is_active(state) || state == TakeNodeState::Failed
}
