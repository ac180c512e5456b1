//! The node's camera settings: what each camera was asked to use (the config's
//! `[camera_settings]` at start-up, then `PUT /v1/camera-settings`), checked against what
//! the camera reports it supports before anything is applied, and the answer of
//! `GET /v1/camera-settings` (settings, limits, the values applied to the latest frame).
//! The node refuses a change while a take is armed or recording; that rule lives in
//! [`crate::node`], which owns the take state.

use std::sync::{Arc, Mutex};

use camrig_protocol::camera_settings::{
    AppliedControls, CameraSettings, CameraSettingsState, NodeCameraSettings, SettingsError,
};

use crate::camera::{CameraControls, CameraInfo};

/// Every opened camera's settings and the backend's controls to apply them.
pub struct NodeSettings {
    controls: Arc<dyn CameraControls>,
    cameras: Vec<CameraInfo>,
    label: String,
    current: Mutex<Vec<CameraSettings>>,
}

impl NodeSettings {
    pub fn new(controls: Arc<dyn CameraControls>, cameras: Vec<CameraInfo>, label: &str) -> Self {
        let n = cameras.len();
        NodeSettings {
            controls,
            cameras,
            label: label.to_owned(),
            current: Mutex::new(vec![CameraSettings::default(); n]),
        }
    }

    /// `node <label> camera <index> (<model>)`: how errors name a camera.
    fn camera_name(&self, index: usize) -> String {
        format!(
            "node {} camera {index} ({})",
            self.label, self.cameras[index].model
        )
    }

    /// One entry per camera, or one for all: the settings each camera gets.
    fn expand(&self, requested: &[CameraSettings]) -> Result<Vec<CameraSettings>, String> {
        let n = self.cameras.len();
        match requested.len() {
            1 => Ok(vec![requested[0]; n]),
            k if k == n => Ok(requested.to_vec()),
            k => Err(format!(
                "{k} camera settings given; this node has {n} camera(s): give one for all or one per camera"
            )),
        }
    }

    /// Checks every camera's settings, then applies them all; nothing is applied when one
    /// camera cannot take its value.
    pub fn apply(&self, requested: &[CameraSettings]) -> Result<(), ApplyError> {
        let settings = self.expand(requested).map_err(ApplyError::Invalid)?;
        for (i, (s, info)) in settings.iter().zip(&self.cameras).enumerate() {
            self.controls
                .limits(i)
                .check(s, info.fps, &self.camera_name(i))
                .map_err(ApplyError::Unsupported)?;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in settings.iter().enumerate() {
            self.controls
                .apply(i, s)
                .map_err(|e| ApplyError::Backend(format!("{}: {e}", self.camera_name(i))))?;
            current[i] = *s;
        }
        Ok(())
    }

    pub fn current(&self) -> Vec<CameraSettings> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `GET /v1/camera-settings`; `applied(i)` is what camera i applied to its latest frame.
    pub fn view(&self, applied: impl Fn(usize) -> Option<AppliedControls>) -> NodeCameraSettings {
        let current = self.current();
        NodeCameraSettings {
            cameras: self
                .cameras
                .iter()
                .enumerate()
                .map(|(index, info)| CameraSettingsState {
                    index,
                    model: info.model.clone(),
                    settings: current[index],
                    applied: applied(index),
                    limits: self.controls.limits(index),
                    configured_fps: info.fps,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The request itself is malformed (wrong number of entries).
    #[error("{0}")]
    Invalid(String),
    /// A camera cannot take a value: which camera, which value, what it allows.
    #[error(transparent)]
    Unsupported(SettingsError),
    /// The camera refused what its limits allowed.
    #[error("{0}")]
    Backend(String),
}
