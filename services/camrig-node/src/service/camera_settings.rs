//! The node's camera settings: what each camera was asked to use (the config's
//! `[camera_settings]` at start-up, then `PUT /v1/camera-settings`), checked against what
//! the camera reports it supports before anything is applied, and the answer of
//! `GET /v1/camera-settings` (settings, limits, the values applied to the latest frame).
//!
//! A request is first [`NodeSettings::plan`]ned (checked whole, with the frame rate it asks
//! for), then [`NodeSettings::set`] on the cameras. A new frame rate is not a control a
//! running camera takes: the node reopens its cameras at that rate (and their phase lock on
//! that grid) between the two steps and hands the new backend's controls over with
//! [`NodeSettings::reopened`]. The node refuses a change while a take is armed or recording;
//! that rule and the reopening live in [`crate::node`], which owns the take state and the
//! backend.

use std::sync::{Arc, Mutex};

use camrig_protocol::camera_settings::{
    AppliedControls, CameraSettings, CameraSettingsState, NodeCameraSettings, SettingsError,
};

use crate::camera::{CameraControls, CameraInfo};

/// Every opened camera's settings and the backend's controls to apply them.
pub struct NodeSettings {
    controls: Mutex<Arc<dyn CameraControls>>,
    cameras: Vec<CameraInfo>,
    /// The config's rate (`camera.fps`): what `frame_rate: "auto"` keeps.
    configured_fps: f64,
    label: String,
    current: Mutex<Vec<CameraSettings>>,
}

/// Settings checked for every camera, and the one rate the node's cameras run at with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub settings: Vec<CameraSettings>,
    pub fps: f64,
}

impl NodeSettings {
    pub fn new(
        controls: Arc<dyn CameraControls>,
        cameras: Vec<CameraInfo>,
        configured_fps: f64,
        label: &str,
    ) -> Self {
        let n = cameras.len();
        NodeSettings {
            controls: Mutex::new(controls),
            cameras,
            configured_fps,
            label: label.to_owned(),
            current: Mutex::new(vec![CameraSettings::default(); n]),
        }
    }

    fn controls(&self) -> Arc<dyn CameraControls> {
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// Checks every camera's settings against what it supports; nothing is applied.
    pub fn plan(&self, requested: &[CameraSettings]) -> Result<Plan, ApplyError> {
        let settings = self.expand(requested).map_err(ApplyError::Invalid)?;
        let controls = self.controls();
        for (i, s) in settings.iter().enumerate() {
            controls
                .limits(i)
                .check(s, self.configured_fps, &self.camera_name(i))
                .map_err(ApplyError::Unsupported)?;
        }
        let rate = |s: &CameraSettings| s.frame_rate.fixed().unwrap_or(self.configured_fps);
        let fps = settings.first().map(rate).unwrap_or(self.configured_fps);
        if let Some(i) = settings.iter().position(|s| (rate(s) - fps).abs() > 1e-9) {
            return Err(ApplyError::Invalid(format!(
                "{}: frame_rate {} differs from camera 0's {fps}: a node's cameras run at one rate",
                self.camera_name(i),
                rate(&settings[i])
            )));
        }
        Ok(Plan { settings, fps })
    }

    /// Applies a [`Plan`] to the cameras (opened at its rate).
    pub fn set(&self, plan: &Plan) -> Result<(), ApplyError> {
        let controls = self.controls();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in plan.settings.iter().enumerate() {
            controls
                .apply(i, s)
                .map_err(|e| ApplyError::Backend(format!("{}: {e}", self.camera_name(i))))?;
            current[i] = *s;
        }
        Ok(())
    }

    /// The cameras were reopened: their controls are the new backend's.
    pub fn reopened(&self, controls: Arc<dyn CameraControls>) {
        *self.controls.lock().unwrap_or_else(|e| e.into_inner()) = controls;
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
        let controls = self.controls();
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
                    limits: controls.limits(index),
                    configured_fps: self.configured_fps,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The request itself is malformed (wrong number of entries, two rates on one node).
    #[error("{0}")]
    Invalid(String),
    /// A camera cannot take a value: which camera, which value, what it allows.
    #[error(transparent)]
    Unsupported(SettingsError),
    /// The camera refused what its limits allowed, or could not be reopened at a new rate.
    #[error("{0}")]
    Backend(String),
}

#[cfg(test)]
mod tests {
    use camrig_protocol::camera_settings::AutoOr;

    use super::*;
    use crate::camera::synthetic::SyntheticBackend;
    use crate::camera::CaptureBackend;
    use crate::config::{CameraConfig, PhaseConfig, SyntheticConfig};

    /// Two synthetic cameras at 30 fps whose sensors reach 50 fps.
    fn two_cameras() -> NodeSettings {
        let camera = CameraConfig {
            count: 2,
            fps: 30.0,
            ..Default::default()
        };
        let synthetic = SyntheticConfig {
            max_fps: 50.0,
            ..Default::default()
        };
        let b = SyntheticBackend::new(&camera, &PhaseConfig::default(), &synthetic);
        NodeSettings::new(b.controls(), b.cameras().to_vec(), camera.fps, "10.0.0.2")
    }

    fn at(fps: AutoOr<f64>) -> CameraSettings {
        CameraSettings {
            frame_rate: fps,
            ..Default::default()
        }
    }

    #[test]
    fn a_plan_carries_the_rate_the_cameras_run_at() {
        let s = two_cameras();
        assert_eq!(s.plan(&[at(AutoOr::Auto)]).unwrap().fps, 30.0);
        let plan = s.plan(&[at(AutoOr::Fixed(48.0))]).unwrap();
        assert_eq!((plan.fps, plan.settings.len()), (48.0, 2));
    }

    #[test]
    fn a_rate_above_the_sensors_maximum_names_the_camera_and_range() {
        let e = two_cameras()
            .plan(&[at(AutoOr::Fixed(60.0))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 10.0.0.2 camera 0 (synthetic)") && e.contains("1-50 fps"),
            "{e}"
        );
    }

    #[test]
    fn one_node_runs_its_cameras_at_one_rate() {
        let e = two_cameras()
            .plan(&[at(AutoOr::Fixed(25.0)), at(AutoOr::Auto)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("camera 1") && e.contains("one rate"), "{e}");
    }
}
