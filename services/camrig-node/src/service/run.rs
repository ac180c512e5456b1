//! The composition root: the one place that chooses the backends for the config (the camera
//! backend in [`open_cameras`], the encoder in [`new_encoder`]), builds the [`Node`], starts
//! its status loop, the watchdog and the `/v1` API, and shuts it all down. [`run`] is what the
//! binary calls.

use std::future::Future;
use std::path::PathBuf;

use camrig_protocol::manifest::StopReason;
use camrig_protocol::naming::Codec;
use tokio::net::TcpListener;

use super::http_api;
use super::node::{Node, OpenedCameras};
use crate::camera::{synthetic, CaptureBackend, CaptureError};
use crate::config::{CameraSource, NodeConfig};
use crate::encode::software::{MjpegEncoder, SoftH264Encoder};
use crate::encode::v4l2::{coded_formats, find_encoder, V4l2Error, V4l2FrameEncoder};
use crate::encode::{EncodeError, EncoderSettings, FrameEncoder, HardwareEncoder, WithTiming};
use crate::take::{deletion, recovery};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create the recordings directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the cameras: {0}")]
    Capture(#[from] CaptureError),
    #[error("cannot start the standalone recording: {0}")]
    Standalone(std::io::Error),
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
}

/// Opens the cameras the config asks for. Never falls back to the synthetic camera: a node
/// records the test pattern only when configured to.
pub fn open_cameras(config: &NodeConfig) -> Result<Box<dyn CaptureBackend>, CaptureError> {
    match config.camera.source {
        CameraSource::Synthetic => Ok(Box::new(synthetic::SyntheticBackend::new(
            &config.camera,
            &config.phase,
            &config.synthetic,
        ))),
        #[cfg(feature = "libcamera")]
        CameraSource::Libcamera => Ok(Box::new(crate::camera::libcamera_backend::open(
            &config.camera,
            &config.phase,
        )?)),
        #[cfg(not(feature = "libcamera"))]
        CameraSource::Libcamera => Err(CaptureError::LibcameraNotBuilt),
    }
}

/// A take's encoder for `settings` (a [`crate::encode::NewEncoder`]): the V4L2 device for the
/// codec when `recording.encoder` allows it and the machine has one, else software.
pub fn new_encoder(settings: EncoderSettings) -> Result<Box<dyn FrameEncoder>, EncodeError> {
    if settings.hardware != HardwareEncoder::Software {
        match find_encoder(coded_formats(settings.codec)) {
            Some(device) => {
                let v4l2 = V4l2FrameEncoder::new(device, settings);
                return Ok(match settings.codec {
                    Codec::H264 => Box::new(WithTiming::new(v4l2, settings.fps)),
                    Codec::Mjpeg => Box::new(v4l2),
                });
            }
            None if settings.hardware == HardwareEncoder::V4l2 => {
                return Err(V4l2Error::NoDevice(format!("{:?}", settings.codec)).into())
            }
            None => {}
        }
    }
    Ok(match settings.codec {
        Codec::Mjpeg => Box::new(MjpegEncoder {
            quality: settings.mjpeg_quality,
            scratch: Vec::new(),
        }),
        Codec::H264 => Box::new(WithTiming::new(
            SoftH264Encoder::new(settings)?,
            settings.fps,
        )),
    })
}

/// Runs the node until `shutdown` completes, then closes every file and returns.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.validate()?;
    let token = config.resolve_token()?;
    let recordings = config.recordings_dir();
    std::fs::create_dir_all(&recordings).map_err(|source| NodeError::DataDir {
        path: recordings.clone(),
        source,
    })?;
    deletion::finish_interrupted(&recordings);
    let recovered = recovery::recover_all(&recordings);

    let (backend, camera_problem) = match open_cameras(&config) {
        Ok(b) => (Some(b), None),
        Err(e) => {
            tracing::error!("{e}");
            (None, Some(e.to_string()))
        }
    };
    let opened = OpenedCameras {
        backend,
        problem: camera_problem,
        open: open_cameras,
    };
    let node = Node::new(config, token, opened, recovered, new_encoder);
    node.attach_cameras()?;
    if node.config.standalone && node.camera_count() > 0 {
        node.start_standalone().map_err(NodeError::Standalone)?;
    }
    node.prepare_spare_take_dir();

    let status_task = tokio::spawn(node.clone().status_loop());
    let watchdog_task = tokio::spawn(camrig_systemd::watchdog::run(node.progress()));
    let app = http_api::router(node.clone());
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        node = %node.label,
        cameras = node.camera_count(),
        "camrig-node serving"
    );
    camrig_systemd::notify::ready();

    let closing = node.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            camrig_systemd::notify::stopping();
            let reason = if closing.config.standalone {
                StopReason::Requested
            } else {
                StopReason::Shutdown
            };
            closing.stop_everything(reason).await;
        })
        .await;
    status_task.abort();
    watchdog_task.abort();
    node.release_frames();
    if let Some(mut b) = node.detach_cameras() {
        tokio::task::spawn_blocking(move || b.stop()).await.ok();
    }
    tracing::info!("camrig-node stopped");
    served.map_err(NodeError::Serve)
}
