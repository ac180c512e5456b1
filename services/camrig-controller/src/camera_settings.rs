//! Rig-wide camera settings: `GET`/`PUT /api/camera-settings`, LOCK (freeze the automatic
//! algorithms where a reference camera, or each camera, stands) and UNLOCK (back to auto).
//!
//! A change is checked whole before anything moves: never during a take, every target node
//! must answer, and every camera's value is checked against the limits that camera reports
//! (a refusal names the node, the camera and the range). Then it goes out to the nodes in
//! parallel with one command id, like START, under the same command lock (so no START
//! races it). A change is all or nothing: when a node fails after the check, the nodes that
//! applied it are set back to their previous settings and the answer (an error) says which
//! node failed, which were set back and which could not be.
//!
//! What this controller last applied to each node is kept in the take store
//! ([`crate::take_store::Store::camera_settings`]), so it survives a controller restart;
//! `GET` compares every node with it (`matches`), so a node that restarted with its config's
//! defaults shows as not matching (`mismatched`) until the settings are applied again.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use camrig_protocol::camera_settings::{
    ApplySettingsRequest, AutoOr, Awb, CameraSettings, CameraSettingsState, NodeCameraSettings,
};
use std::sync::Arc;

use futures_util::future::join_all;

use crate::node_client::new_command_id;
use crate::node_client::NodeError;
use crate::rig_core::{reads_core, RigCore};
use crate::views::NodeFailure;

/// A camera of the rig: the node's address and the camera's 0-based index on it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraRef {
    pub node: String,
    pub camera: usize,
}

/// `POST /api/camera-settings/lock`: with a reference, every camera gets its exposure, gain
/// and colour gains; without one (`{}`), each camera keeps its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    #[serde(default)]
    pub reference: Option<CameraRef>,
}

/// One node in `GET /api/camera-settings`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeSettingsView {
    pub address: String,
    pub name: String,
    /// Why the node's settings could not be read; `cameras` is empty then.
    pub error: Option<String>,
    /// Whether the node's cameras use what this controller last applied to them; `None`
    /// when it applied nothing to this node yet or the node did not answer. `false` after
    /// the node restarted with its config's defaults, for one: apply the settings again.
    pub matches: Option<bool>,
    pub cameras: Vec<CameraSettingsState>,
}

/// `GET /api/camera-settings` (and the answer to every change): the rig's settings at the
/// top level (`exposure_us`, `analogue_gain`, `awb`, …: the last applied through this
/// controller, else what the first node's first camera uses) and every node's cameras.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RigSettingsView {
    #[serde(flatten)]
    pub settings: CameraSettings,
    /// Whether the last change was a LOCK still in force.
    pub locked: bool,
    /// Nodes whose cameras do not use what this controller last applied to them
    /// (`matches: false`): apply the settings (or LOCK) again before the next take.
    pub mismatched: Vec<String>,
    pub nodes: Vec<NodeSettingsView>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("camera settings do not change during a take: take {0:?} is recording; stop it first")]
    TakeRunning(String),
    #[error("{0}")]
    BadRequest(String),
    /// A camera cannot take a value; nothing was applied anywhere.
    #[error("{}", .0.join("; "))]
    Unsupported(Vec<String>),
    /// The settings could not be read from a node; nothing was applied anywhere.
    #[error("camera settings not changed: {}", describe(.0))]
    NodesUnreadable(Vec<NodeFailure>),
    /// The reference camera has no values to copy yet.
    #[error("{0}")]
    NoReference(String),
    /// A node failed after the check: `rolled_back` nodes were set back to their previous
    /// settings, `stuck` ones could not be (they keep the new ones).
    #[error("{}", apply_failed(.failures, .rolled_back, .stuck))]
    ApplyFailed {
        conflict: bool,
        failures: Vec<NodeFailure>,
        rolled_back: Vec<String>,
        stuck: Vec<NodeFailure>,
    },
    #[error(transparent)]
    Store(#[from] crate::take_store::StoreError),
    /// Applied on every node, but not saved for a controller restart.
    #[error("camera settings applied on every node but not saved in the take database ({0}); they will not survive a controller restart")]
    NotSaved(crate::take_store::StoreError),
}

fn apply_failed(failures: &[NodeFailure], rolled_back: &[String], stuck: &[NodeFailure]) -> String {
    let mut m = format!(
        "camera settings not applied: {} node(s) failed: {}",
        failures.len(),
        describe(failures)
    );
    if !rolled_back.is_empty() {
        m += &format!(
            "; set back to their previous settings: {}",
            rolled_back.join(", ")
        );
    }
    if stuck.is_empty() {
        m += "; the rig's settings are as before";
    } else {
        m += &format!(
            "; could NOT be set back, so these nodes now use the new settings: {}",
            describe(stuck)
        );
    }
    m + " (GET /api/camera-settings shows every node's settings)"
}

fn describe(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.address, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rig's settings as this controller last applied them, saved in the take store as
/// JSON.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RigSettings {
    #[serde(default)]
    settings: Option<CameraSettings>,
    #[serde(default)]
    locked: bool,
    /// Each node's cameras' settings as last applied to it, by address.
    #[serde(default)]
    nodes: BTreeMap<String, Vec<CameraSettings>>,
    /// Read from the store yet (on first use).
    #[serde(skip)]
    loaded: bool,
}

fn camera_name(address: &str, c: &CameraSettingsState) -> String {
    format!("node {address} camera {} ({})", c.index, c.model)
}

/// Rig-wide camera settings: what this controller last applied, LOCK and UNLOCK, under the
/// command lock it shares with take control.
pub struct CameraSettingsControl {
    core: Arc<RigCore>,
    /// One command at a time (shared with START/MARK/STOP).
    command_lock: Arc<tokio::sync::Mutex<()>>,
    /// The camera settings this controller last applied to the rig.
    rig_settings: std::sync::Mutex<RigSettings>,
}

reads_core!(CameraSettingsControl);

impl CameraSettingsControl {
    pub fn new(
        core: Arc<RigCore>,
        command_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> CameraSettingsControl {
        CameraSettingsControl {
            core,
            command_lock,
            rig_settings: Default::default(),
        }
    }

    /// Every node's camera settings, read now (unreachable nodes carry their error).
    async fn read_settings(&self, targets: &[usize]) -> Vec<Result<NodeCameraSettings, NodeError>> {
        let nodes = self.fleet.nodes();
        join_all(
            targets
                .iter()
                .map(|&i| async move { nodes[i].client.camera_settings().await }),
        )
        .await
    }

    pub async fn camera_settings_view(&self) -> RigSettingsView {
        let all: Vec<usize> = (0..self.fleet.nodes().len()).collect();
        let read = self.read_settings(&all).await;
        self.view(&all, read)
    }

    fn view(
        &self,
        targets: &[usize],
        read: Vec<Result<NodeCameraSettings, NodeError>>,
    ) -> RigSettingsView {
        let remembered = self.remembered();
        let nodes: Vec<NodeSettingsView> = targets
            .iter()
            .zip(read)
            .map(|(&i, r)| {
                let config = &self.fleet.nodes()[i].config;
                let (error, cameras) = match r {
                    Ok(s) => (None, s.cameras),
                    Err(e) => (Some(e.to_string()), Vec::new()),
                };
                let matches = match (&error, remembered.nodes.get(&config.address)) {
                    (None, Some(want)) => Some(
                        cameras.len() == want.len()
                            && cameras.iter().zip(want).all(|(c, w)| c.settings == *w),
                    ),
                    _ => None,
                };
                NodeSettingsView {
                    address: config.address.clone(),
                    name: config.name.clone(),
                    error,
                    matches,
                    cameras,
                }
            })
            .collect();
        let mismatched = nodes
            .iter()
            .filter(|n| n.matches == Some(false))
            .map(|n| n.address.clone())
            .collect();
        let settings = remembered
            .settings
            .or_else(|| {
                nodes
                    .iter()
                    .find_map(|n| n.cameras.first().map(|c| c.settings))
            })
            .unwrap_or_default();
        RigSettingsView {
            settings,
            locked: remembered.locked,
            mismatched,
            nodes,
        }
    }

    /// What this controller last applied, read from the take store on first use.
    fn remembered(&self) -> MutexGuard<'_, RigSettings> {
        let mut r = self.rig_settings.lock().unwrap_or_else(|e| e.into_inner());
        if !r.loaded {
            match self.store.camera_settings() {
                Ok(Some(json)) => match serde_json::from_str::<RigSettings>(&json) {
                    Ok(saved) => *r = saved,
                    Err(e) => {
                        tracing::error!(error = %e, "saved camera settings unreadable; starting from none")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the saved camera settings"),
            }
            r.loaded = true;
        }
        r
    }

    /// Records a change every target node applied (`replies`: what each now uses) and saves
    /// it in the take store.
    fn remember(
        &self,
        targets: &[usize],
        replies: &[NodeCameraSettings],
        settings: Option<CameraSettings>,
        locked: bool,
    ) -> Result<(), SettingsError> {
        let mut r = self.remembered();
        for (&i, reply) in targets.iter().zip(replies) {
            r.nodes.insert(
                self.fleet.nodes()[i].config.address.clone(),
                reply.cameras.iter().map(|c| c.settings).collect(),
            );
        }
        r.settings = settings;
        r.locked = locked;
        let json = serde_json::to_string(&*r).expect("settings serialise");
        self.store
            .set_camera_settings(&json)
            .map_err(SettingsError::NotSaved)
    }

    /// Node indices named by `addresses` (all when empty).
    fn targets(&self, addresses: &[String]) -> Result<Vec<usize>, SettingsError> {
        let nodes = self.fleet.nodes();
        if addresses.is_empty() {
            return Ok((0..nodes.len()).collect());
        }
        addresses
            .iter()
            .map(|a| {
                nodes
                    .iter()
                    .position(|n| &n.config.address == a)
                    .ok_or_else(|| {
                        SettingsError::BadRequest(format!(
                            "no node {a:?} in this rig; nodes: {}",
                            nodes
                                .iter()
                                .map(|n| n.config.address.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect()
    }

    /// Reads the targets' settings; every one must answer.
    async fn read_all(&self, targets: &[usize]) -> Result<Vec<NodeCameraSettings>, SettingsError> {
        let read = self.read_settings(targets).await;
        let mut failures = Vec::new();
        let mut ok = Vec::new();
        for (&i, r) in targets.iter().zip(read) {
            match r {
                Ok(s) => ok.push(s),
                Err(e) => failures.push(NodeFailure {
                    address: self.fleet.nodes()[i].config.address.clone(),
                    error: e.to_string(),
                }),
            }
        }
        if !failures.is_empty() {
            return Err(SettingsError::NodesUnreadable(failures));
        }
        Ok(ok)
    }

    /// Checks every camera's new settings, then applies them on every target node at once.
    async fn apply(
        &self,
        targets: &[usize],
        per_node: Vec<Vec<CameraSettings>>,
        current: &[NodeCameraSettings],
    ) -> Result<Vec<NodeCameraSettings>, SettingsError> {
        let nodes = self.fleet.nodes();
        let mut refusals = Vec::new();
        for ((&i, settings), state) in targets.iter().zip(&per_node).zip(current) {
            let address = &nodes[i].config.address;
            for (c, s) in state.cameras.iter().zip(settings) {
                if let Err(e) = c
                    .limits
                    .check(s, c.configured_fps, &camera_name(address, c))
                {
                    refusals.push(e.to_string());
                }
            }
        }
        if !refusals.is_empty() {
            return Err(SettingsError::Unsupported(refusals));
        }
        let replies = self.send(targets, per_node).await;
        // A new frame rate reopens a node's cameras (their phase lock starts over): START's
        // checks must see that now, not at the next poll.
        join_all(targets.iter().map(|&i| self.fleet.refresh_status(i))).await;
        let mut failures = Vec::new();
        let mut conflict = false;
        let mut applied = Vec::new();
        for (k, (&i, r)) in targets.iter().zip(&replies).enumerate() {
            match r {
                Ok(_) => applied.push(k),
                Err(e) => {
                    conflict |= e.is_conflict();
                    failures.push(NodeFailure {
                        address: nodes[i].config.address.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        if failures.is_empty() {
            return Ok(replies.into_iter().flatten().collect());
        }
        // All or nothing: the nodes that applied it go back to what they had.
        let back: Vec<usize> = applied.iter().map(|&k| targets[k]).collect();
        let previous = applied
            .iter()
            .map(|&k| current[k].cameras.iter().map(|c| c.settings).collect())
            .collect();
        let mut rolled_back = Vec::new();
        let mut stuck = Vec::new();
        for (&i, r) in back.iter().zip(self.send(&back, previous).await) {
            let address = nodes[i].config.address.clone();
            match r {
                Ok(_) => rolled_back.push(address),
                Err(e) => stuck.push(NodeFailure {
                    address,
                    error: e.to_string(),
                }),
            }
        }
        join_all(back.iter().map(|&i| self.fleet.refresh_status(i))).await;
        let e = SettingsError::ApplyFailed {
            conflict,
            failures,
            rolled_back,
            stuck,
        };
        tracing::warn!(error = %e, "camera settings not applied everywhere");
        Err(e)
    }

    /// Sends each target node its cameras' settings, all at once with one command id.
    async fn send(
        &self,
        targets: &[usize],
        per_node: Vec<Vec<CameraSettings>>,
    ) -> Vec<Result<NodeCameraSettings, NodeError>> {
        let nodes = self.fleet.nodes();
        let command_id = new_command_id();
        join_all(targets.iter().zip(per_node).map(|(&i, cameras)| {
            let req = ApplySettingsRequest {
                command_id: command_id.clone(),
                cameras,
            };
            async move { nodes[i].client.apply_camera_settings(&req).await }
        }))
        .await
    }

    /// Refuses while a take is armed or recording.
    fn no_take(&self) -> Result<(), SettingsError> {
        match self.store.current_take()? {
            Some(t) => Err(SettingsError::TakeRunning(t.name)),
            None => Ok(()),
        }
    }

    /// `PUT /api/camera-settings`: the same settings on every camera of `nodes` (all when
    /// empty).
    pub async fn put_camera_settings(
        &self,
        settings: CameraSettings,
        nodes: &[String],
    ) -> Result<RigSettingsView, SettingsError> {
        let _one_command = self.command_lock.lock().await;
        self.no_take()?;
        let targets = self.targets(nodes)?;
        let current = self.read_all(&targets).await?;
        let per_node = current
            .iter()
            .map(|n| vec![settings; n.cameras.len()])
            .collect();
        let replies = self.apply(&targets, per_node, &current).await?;
        self.remember(&targets, &replies, Some(settings), false)?;
        tracing::info!(settings = %serde_json::to_string(&settings).unwrap_or_default(), nodes = targets.len(), "camera settings applied");
        self.changed();
        Ok(self.view(&targets, replies.into_iter().map(Ok).collect()))
    }

    /// `POST /api/camera-settings/lock`.
    pub async fn lock_camera_settings(
        &self,
        req: LockRequest,
    ) -> Result<RigSettingsView, SettingsError> {
        let _one_command = self.command_lock.lock().await;
        self.no_take()?;
        let targets = self.targets(&[])?;
        let current = self.read_all(&targets).await?;
        let nodes = self.fleet.nodes();
        let reference = match &req.reference {
            None => None,
            Some(r) => {
                let pos = targets
                    .iter()
                    .position(|&i| nodes[i].config.address == r.node)
                    .ok_or_else(|| {
                        SettingsError::BadRequest(format!(
                            "reference node {:?} is not in this rig",
                            r.node
                        ))
                    })?;
                let cameras = &current[pos].cameras;
                let c = cameras.get(r.camera).ok_or_else(|| {
                    SettingsError::BadRequest(format!(
                        "node {} has {} camera(s), numbered from 0; no camera {}",
                        r.node,
                        cameras.len(),
                        r.camera
                    ))
                })?;
                Some((r.node.clone(), c.clone()))
            }
        };
        let mut per_node = Vec::new();
        for (&i, state) in targets.iter().zip(&current) {
            let address = &nodes[i].config.address;
            let mut settings = Vec::new();
            for c in &state.cameras {
                let (source_name, source) = match &reference {
                    Some((node, r)) => (camera_name(node, r), r),
                    None => (camera_name(address, c), c),
                };
                settings.push(locked(c, source, &source_name)?);
            }
            per_node.push(settings);
        }
        let rig_settings = match &reference {
            Some((_, r)) => locked(r, r, "")?,
            None => per_node
                .iter()
                .find_map(|n| n.first().copied())
                .unwrap_or_default(),
        };
        let replies = self.apply(&targets, per_node, &current).await?;
        self.remember(&targets, &replies, Some(rig_settings), true)?;
        tracing::info!(reference = ?req.reference, "camera settings locked");
        self.changed();
        Ok(self.view(&targets, replies.into_iter().map(Ok).collect()))
    }

    /// `POST /api/camera-settings/unlock`: exposure, gain, white balance and focus back to
    /// auto on every camera; noise reduction and frame rate stay as they are.
    pub async fn unlock_camera_settings(&self) -> Result<RigSettingsView, SettingsError> {
        let _one_command = self.command_lock.lock().await;
        self.no_take()?;
        let targets = self.targets(&[])?;
        let current = self.read_all(&targets).await?;
        let per_node: Vec<Vec<CameraSettings>> = current
            .iter()
            .map(|n| n.cameras.iter().map(|c| unlocked(c.settings)).collect())
            .collect();
        let rig_settings = per_node.iter().find_map(|n| n.first().copied());
        let replies = self.apply(&targets, per_node, &current).await?;
        self.remember(&targets, &replies, rig_settings, false)?;
        tracing::info!("camera settings unlocked");
        self.changed();
        Ok(self.view(&targets, replies.into_iter().map(Ok).collect()))
    }
}

/// `camera`'s settings with exposure, gain and colour gains fixed at what `source` applied
/// to its latest frame, and focus at its lens position where both report one.
fn locked(
    camera: &CameraSettingsState,
    source: &CameraSettingsState,
    source_name: &str,
) -> Result<CameraSettings, SettingsError> {
    let applied = source.applied.ok_or_else(|| {
        SettingsError::NoReference(format!(
            "{source_name} has delivered no frame yet: nothing to lock to; try again in a moment"
        ))
    })?;
    let mut s = camera.settings;
    if let Some(e) = applied.exposure_us {
        s.exposure_us = AutoOr::Fixed(e);
    }
    if let Some(g) = applied.analogue_gain {
        s.analogue_gain = AutoOr::Fixed(g);
    }
    if let Some([red, blue]) = applied.colour_gains {
        s.awb = Awb::Gains { red, blue };
    }
    if camera.limits.lens_position.is_some() {
        let own = camera.applied.and_then(|a| a.lens_position);
        if let Some(p) = applied.lens_position.or(own) {
            s.focus = AutoOr::Fixed(p);
        }
    }
    Ok(s)
}

fn unlocked(mut s: CameraSettings) -> CameraSettings {
    s.exposure_us = AutoOr::Auto;
    s.analogue_gain = AutoOr::Auto;
    s.awb = Awb::Auto;
    s.focus = AutoOr::Auto;
    s
}
