//! Rig-wide camera settings: `GET`/`PUT /api/camera-settings`, LOCK (freeze the automatic
//! algorithms where a reference camera, or each camera, stands) and UNLOCK (back to auto).
//!
//! A change is checked whole before anything moves: never during a take, every target node
//! must answer, and every camera's value is checked against the limits that camera reports
//! (a refusal names the node, the camera and the range). Then it goes out to the nodes in
//! parallel with one command id, like START, under the same command lock (so no START
//! races it); the answer says which nodes applied it and which did not.

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
    #[error("camera settings were not applied on {} node(s): {}", .failures.len(), describe(.failures))]
    ApplyFailed {
        conflict: bool,
        failures: Vec<NodeFailure>,
    },
    #[error(transparent)]
    Store(#[from] crate::take_store::StoreError),
}

fn describe(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.address, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rig's settings as this controller last applied them.
#[derive(Default)]
pub struct RigSettings {
    settings: Option<CameraSettings>,
    locked: bool,
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
        let nodes: Vec<NodeSettingsView> = targets
            .iter()
            .zip(read)
            .map(|(&i, r)| {
                let config = &self.fleet.nodes()[i].config;
                let (error, cameras) = match r {
                    Ok(s) => (None, s.cameras),
                    Err(e) => (Some(e.to_string()), Vec::new()),
                };
                NodeSettingsView {
                    address: config.address.clone(),
                    name: config.name.clone(),
                    error,
                    cameras,
                }
            })
            .collect();
        let remembered = self.rig_settings.lock().unwrap_or_else(|e| e.into_inner());
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
            nodes,
        }
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
    ) -> Result<Vec<Result<NodeCameraSettings, NodeError>>, SettingsError> {
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
        let command_id = new_command_id();
        let replies = join_all(targets.iter().zip(per_node).map(|(&i, cameras)| {
            let req = ApplySettingsRequest {
                command_id: command_id.clone(),
                cameras,
            };
            async move { nodes[i].client.apply_camera_settings(&req).await }
        }))
        .await;
        let mut failures = Vec::new();
        let mut conflict = false;
        for (&i, r) in targets.iter().zip(&replies) {
            if let Err(e) = r {
                conflict |= e.is_conflict();
                failures.push(NodeFailure {
                    address: nodes[i].config.address.clone(),
                    error: e.to_string(),
                });
            }
        }
        if !failures.is_empty() {
            tracing::warn!(failures = %describe(&failures), "camera settings not applied everywhere");
            return Err(SettingsError::ApplyFailed { conflict, failures });
        }
        Ok(replies)
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
        {
            let mut r = self.rig_settings.lock().unwrap_or_else(|e| e.into_inner());
            r.settings = Some(settings);
            r.locked = false;
        }
        tracing::info!(settings = %serde_json::to_string(&settings).unwrap_or_default(), nodes = targets.len(), "camera settings applied");
        self.changed();
        Ok(self.view(&targets, replies))
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
        {
            let mut r = self.rig_settings.lock().unwrap_or_else(|e| e.into_inner());
            r.settings = Some(rig_settings);
            r.locked = true;
        }
        tracing::info!(reference = ?req.reference, "camera settings locked");
        self.changed();
        Ok(self.view(&targets, replies))
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
        {
            let mut r = self.rig_settings.lock().unwrap_or_else(|e| e.into_inner());
            r.settings = rig_settings;
            r.locked = false;
        }
        tracing::info!("camera settings unlocked");
        self.changed();
        Ok(self.view(&targets, replies))
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
