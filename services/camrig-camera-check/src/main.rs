//! `camrig-camera-check encode`: finds a V4L2 memory-to-memory encoder by capability, feeds it
//! N frames through the node's own encoder code (`camrig_node::encode::v4l2`), asking for a key
//! frame at the start of every segment of `--segment` frames, writes the encoded stream to a
//! file and prints a JSON summary (device, pictures, key frames, bytes, how the pictures reached
//! the encoder). The camera test decodes the file back with the kernel's decoder (vicodec) and
//! compares the frame count; on a Pi 4 it checks the H.264 block.
//!
//! Sources: `--source pattern` (default) renders the node's test pattern and copies it in as
//! I420; `--source libcamera` (built with the `libcamera` feature) runs the node's recording
//! pipeline with the encoder device forced to the one found for `--codec`: the node's libcamera
//! backend lends each camera buffer into a bounded queue (no copy), and the node's
//! `V4l2FrameEncoder` imports its dma-buf (`imported`, `copies: 0`; `pixel_paths` are the
//! counts a take's manifest carries), the buffer going back to the camera only after the
//! device released it. If the device refuses the import the pictures are copied instead and
//! `input` says why. (vicodec encodes only FWHT, which the node does not record as a codec of
//! its own: this tool is how its import path is proven with the kernel's codec.)

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use camrig_node::camera::test_pattern::TestPattern;
use camrig_node::encode::v4l2::{self, EncoderDevice, V4l2Encoder, V4l2Settings};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The node's test pattern, rendered in memory.
    Pattern,
    /// The first libcamera camera, through the node's libcamera backend.
    Libcamera,
}

#[derive(Subcommand)]
enum Command {
    /// Encode frames on the first encoder for the codec.
    Encode {
        /// fwht (vicodec), h264 or mjpeg.
        #[arg(long, default_value = "fwht")]
        codec: String,
        #[arg(long, value_enum, default_value = "pattern")]
        source: Source,
        /// libcamera: the camera (index, libcamera id or model; default the first).
        #[arg(long)]
        camera: Option<String>,
        /// libcamera: pixel format name (default: the first the node reads).
        #[arg(long, default_value = "")]
        pixel_format: String,
        #[arg(long, default_value_t = 30)]
        frames: u32,
        /// A key frame is asked for every this many frames (a segment start).
        #[arg(long, default_value_t = 10)]
        segment: u32,
        #[arg(long, default_value_t = 320)]
        width: u32,
        #[arg(long, default_value_t = 240)]
        height: u32,
        #[arg(long)]
        out: PathBuf,
    },
}

/// What came out of the run, for the JSON summary.
#[derive(Default)]
struct Tally {
    pictures: u32,
    keys: u32,
    bytes: usize,
    /// Pictures the encoder read from the camera's dma-buf in place.
    imported: u32,
    /// Pictures copied (as I420) into the encoder's buffers.
    copies: u32,
    /// Time from having the picture to having it encoded (conversion and copy included).
    encoding: Duration,
    timestamps: Vec<i64>,
    sequences: Vec<u64>,
    /// libcamera: how every picture reached the encoder (the node's take manifest counts).
    paths: Option<camrig_protocol::manifest::PixelPathCounts>,
    /// libcamera: frames lost because the queue to the encoder was full.
    queue_drops: u64,
}

fn main() -> anyhow::Result<()> {
    let Command::Encode {
        codec,
        source,
        camera,
        pixel_format,
        frames,
        segment,
        width,
        height,
        out,
    } = Args::parse().command;
    let coded: &[u32] = match codec.as_str() {
        "fwht" => &[v4l2::sys::PIX_FMT_FWHT],
        "h264" => &[v4l2::sys::PIX_FMT_H264],
        "mjpeg" => &[v4l2::sys::PIX_FMT_MJPEG, v4l2::sys::PIX_FMT_JPEG],
        other => bail!("--codec {other}: use fwht, h264 or mjpeg"),
    };
    let device = v4l2::find_encoder(coded)
        .with_context(|| format!("no V4L2 memory-to-memory encoder for {codec} under /dev"))?;
    let mut file =
        std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
    let key_at = |i: u32| segment > 0 && i.is_multiple_of(segment);
    let mut tally = Tally::default();
    let (camera_json, input, key_frames) = match source {
        Source::Pattern => {
            let mut enc = V4l2Encoder::open(device.clone(), settings(width, height))?;
            let mut pattern = TestPattern::new(width, height, 0, "v4l2-check");
            let mut buf = Vec::new();
            for i in 0..frames {
                let picture = pattern.render(u64::from(i), i64::from(i) * 33_333_333);
                buf.clear();
                let began = Instant::now();
                let key = enc.encode_i420(
                    camrig_node::camera::split_i420(&picture, width as usize, height as usize),
                    width,
                    height,
                    key_at(i),
                    &mut buf,
                )?;
                tally.encoding += began.elapsed();
                tally.copies += 1;
                tally.add(&buf, key);
                file.write_all(&buf)?;
            }
            (
                serde_json::Value::Null,
                enc.input().describe(),
                format!("{:?}", enc.key_frames()),
            )
        }
        Source::Libcamera => camera::encode(
            &device,
            camera,
            pixel_format,
            (width, height),
            frames,
            &key_at,
            &mut file,
            &mut tally,
        )?,
    };
    file.sync_all()?;
    let increasing = tally.timestamps.windows(2).all(|w| w[0] < w[1]);
    println!(
        "{}",
        serde_json::json!({
            "device": device.path,
            "card": device.card,
            "driver": device.driver,
            "format": v4l2::fourcc_name(device.coded),
            "key_frames_by": key_frames,
            "source": format!("{source:?}").to_lowercase(),
            "camera": camera_json,
            "input": input,
            "imported": tally.pictures > 0 && tally.imported == tally.pictures,
            "imported_pictures": tally.imported,
            "copies": tally.copies,
            "pixel_paths": tally.paths,
            "queue_drops": tally.queue_drops,
            "pictures": tally.pictures,
            "key_pictures": tally.keys,
            "bytes": tally.bytes,
            "first_sequence": tally.sequences.first(),
            "last_sequence": tally.sequences.last(),
            "timestamps_increasing": increasing,
            "encode_ms_total": tally.encoding.as_secs_f64() * 1e3,
            "encode_ms_per_picture": tally.encoding.as_secs_f64() * 1e3 / f64::from(tally.pictures.max(1)),
        })
    );
    Ok(())
}

impl Tally {
    fn add(&mut self, encoded: &[u8], key: bool) {
        self.pictures += 1;
        self.keys += u32::from(key);
        self.bytes += encoded.len();
    }
}

fn settings(width: u32, height: u32) -> V4l2Settings {
    V4l2Settings {
        width,
        height,
        fps: 30.0,
        bitrate_kbps: 2000,
        jpeg_quality: 85,
    }
}

#[cfg(not(feature = "libcamera"))]
mod camera {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        _device: &EncoderDevice,
        _camera: Option<String>,
        _pixel_format: String,
        _size: (u32, u32),
        _frames: u32,
        _key_at: &dyn Fn(u32) -> bool,
        _file: &mut std::fs::File,
        _tally: &mut Tally,
    ) -> anyhow::Result<(serde_json::Value, String, String)> {
        bail!(
            "--source libcamera: this camrig-camera-check was built without the libcamera feature"
        )
    }
}

#[cfg(feature = "libcamera")]
mod camera {
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    use camrig_node::camera::libcamera_backend;
    use camrig_node::camera::{CaptureBackend, Frame, FramePixels};
    use camrig_node::config::{CameraConfig, CameraSource};
    use camrig_node::encode::v4l2::V4l2FrameEncoder;
    use camrig_node::encode::{EncoderSettings, FrameEncoder, HardwareEncoder};
    use camrig_node::take::QUEUE_FRAMES;
    use camrig_protocol::manifest::PixelPathCounts;
    use camrig_protocol::naming::Codec;

    /// How long one camera picture may take (vimc under emulation manages about one a second).
    const PICTURE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The node's recording pipeline with the encoder device forced: the node's libcamera
    /// backend lends its buffers into a bounded queue offered to without waiting (as
    /// `TakeHandle::offer` does), and the node's `V4l2FrameEncoder` (what a take's writer
    /// calls on a Pi 4) encodes `frames` of them, importing each camera buffer's dma-buf when
    /// the device takes it. Returns the camera's description, the input path and the key
    /// frame mode; `tally` gets the pixel paths.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        device: &EncoderDevice,
        camera: Option<String>,
        pixel_format: String,
        (width, height): (u32, u32),
        frames: u32,
        key_at: &dyn Fn(u32) -> bool,
        file: &mut std::fs::File,
        tally: &mut Tally,
    ) -> anyhow::Result<(serde_json::Value, String, String)> {
        let config = CameraConfig {
            source: CameraSource::Libcamera,
            count: 1,
            width,
            height,
            select: camera.into_iter().collect(),
            pixel_format,
            ..CameraConfig::default()
        };
        // The check tool measures the encoder path; the phase lock runs as on a node.
        let mut backend =
            libcamera_backend::open(&config, &camrig_node::config::PhaseConfig::default())?;
        let info = backend.cameras()[0].clone();
        let (tx, rx) = mpsc::sync_channel::<Frame>(QUEUE_FRAMES);
        let dropped = Arc::new(Mutex::new(0u64));
        let sink_dropped = dropped.clone();
        let tx = Mutex::new(Some(tx));
        backend.start(Arc::new(move |frame: Frame| {
            let guard = tx.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = guard.as_ref() {
                if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(frame) {
                    *sink_dropped.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            }
        }))?;
        // The settings carry rate and quality; the coded format is the device's (FWHT on
        // vicodec, H.264 or JPEG on a Pi 4).
        let mut enc = V4l2FrameEncoder::new(
            device.clone(),
            EncoderSettings {
                codec: Codec::H264,
                mjpeg_quality: 85,
                h264_bitrate_kbps: 2000,
                fps: config.fps,
                hardware: HardwareEncoder::V4l2,
            },
        );
        let mut paths = PixelPathCounts::default();
        let mut layout = None;
        let mut buf = Vec::new();
        let mut result = Ok(());
        while tally.pictures < frames {
            let frame = match rx.recv_timeout(PICTURE_TIMEOUT) {
                Ok(f) => f,
                Err(_) => {
                    result = Err(anyhow::anyhow!(
                        "no picture from the camera within {} s ({} of {frames} so far)",
                        PICTURE_TIMEOUT.as_secs(),
                        tally.pictures
                    ));
                    break;
                }
            };
            if let FramePixels::Camera(b) = &frame.pixels {
                layout.get_or_insert((b.layout, b.stride));
            }
            let began = Instant::now();
            buf.clear();
            let key = key_at(tally.pictures);
            match enc.encode(&frame, key, &mut buf) {
                Ok(path) => path.count(&frame, &mut paths),
                Err(e) => {
                    result = Err(anyhow::anyhow!("encoding failed: {e}"));
                    break;
                }
            }
            tally.encoding += began.elapsed();
            // vicodec marks every FWHT picture a key frame; what matters is that asked-for
            // ones are (the node's encoder errs otherwise).
            tally.add(&buf, key);
            tally.timestamps.push(frame.timestamp_ns);
            tally.sequences.push(frame.sequence);
            // The camera buffer goes back here, after the device released it.
            drop(frame);
            file.write_all(&buf).context("write the stream")?;
        }
        // Frames still queued give their buffers back as the queue goes; then the camera stops
        // (waiting for any still lent).
        drop(rx);
        backend.stop();
        result?;
        tally.imported = paths.imported as u32;
        tally.copies = paths.copied as u32;
        tally.paths = Some(paths);
        tally.queue_drops = *dropped.lock().unwrap_or_else(|e| e.into_inner());
        let input = enc
            .encoder()
            .map(|e| e.input().describe())
            .unwrap_or_default();
        let key_frames = enc
            .encoder()
            .map(|e| format!("{:?}", e.key_frames()))
            .unwrap_or_default();
        let (camera_format, v4l2_format, stride) = layout
            .map(|(l, stride)| {
                (
                    format!("{l:?}"),
                    v4l2::fourcc_name(v4l2::layout_fourcc(l)),
                    stride,
                )
            })
            .unwrap_or_default();
        Ok((
            serde_json::json!({
                "model": info.model,
                "mode": info.mode(),
                "layout": camera_format,
                "v4l2_format": v4l2_format,
                "stride": stride,
            }),
            input,
            key_frames,
        ))
    }
}
