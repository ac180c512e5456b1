//! `camrig-camera-check encode`: finds a V4L2 memory-to-memory encoder by capability, feeds it
//! N frames through the node's own encoder code (`camrig_node::v4l2_encoder`), asking for a key
//! frame at the start of every segment of `--segment` frames, writes the encoded stream to a
//! file and prints a JSON summary (device, pictures, key frames, bytes, how the pictures reached
//! the encoder). The camera test decodes the file back with the kernel's decoder (vicodec) and
//! compares the frame count; on a Pi 4 it checks the H.264 block.
//!
//! Sources: `--source pattern` (default) renders the node's test pattern and copies it in as
//! I420; `--source libcamera` (built with the `libcamera` feature) captures from the first
//! camera through the node's libcamera backend code, and with `--import dmabuf` hands each
//! camera buffer's dma-buf to the encoder as it is (`imported`, `copies: 0`), recycling the
//! camera's request only after the encoder released the buffer; if the device refuses the
//! import the pictures are copied instead and `input` says why. `--import copy` converts the
//! camera's pictures to I420 and copies them, today's node path, for comparison.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use camrig_node::test_pattern::TestPattern;
use camrig_node::v4l2_encoder::{self, EncoderDevice, V4l2Encoder, V4l2Settings};
use camrig_node::v4l2_sys;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Import {
    /// Pictures are I420 copied into the encoder's own buffers.
    Copy,
    /// Camera buffers are imported by dma-buf (falls back to copy if refused, and says so).
    Dmabuf,
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
        #[arg(long, value_enum, default_value = "copy")]
        import: Import,
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
}

fn main() -> anyhow::Result<()> {
    let Command::Encode {
        codec,
        source,
        import,
        camera,
        pixel_format,
        frames,
        segment,
        width,
        height,
        out,
    } = Args::parse().command;
    let coded: &[u32] = match codec.as_str() {
        "fwht" => &[v4l2_sys::PIX_FMT_FWHT],
        "h264" => &[v4l2_sys::PIX_FMT_H264],
        "mjpeg" => &[v4l2_sys::PIX_FMT_MJPEG, v4l2_sys::PIX_FMT_JPEG],
        other => bail!("--codec {other}: use fwht, h264 or mjpeg"),
    };
    if source == Source::Pattern && import == Import::Dmabuf {
        bail!("--import dmabuf needs --source libcamera (the test pattern is not in a dma-buf)");
    }
    let device = v4l2_encoder::find_encoder(coded)
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
                    i420_planes(&picture, width, height),
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
            import,
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
            "format": v4l2_encoder::fourcc_name(device.coded),
            "key_frames_by": key_frames,
            "source": format!("{source:?}").to_lowercase(),
            "camera": camera_json,
            "input": input,
            "imported": tally.pictures > 0 && tally.imported == tally.pictures,
            "imported_pictures": tally.imported,
            "copies": tally.copies,
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

/// The Y, U and V planes of a tightly packed I420 picture.
fn i420_planes(picture: &[u8], width: u32, height: u32) -> (&[u8], &[u8], &[u8]) {
    let y_len = (width * height) as usize;
    let (y, rest) = picture.split_at(y_len.min(picture.len()));
    let (u, v) = rest.split_at((y_len / 4).min(rest.len()));
    (y, u, v)
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
        _import: Import,
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
    use camrig_node::config::{CameraConfig, CameraSource};
    use camrig_node::libcamera_camera;
    use camrig_node::v4l2_encoder::{InputPath, V4l2Error};

    /// How long one camera picture may take (vimc under emulation manages about one a second).
    const PICTURE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Captures `frames` pictures from the camera and encodes each as it arrives, importing
    /// its dma-buf or copying it; returns the camera's description and the input path.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        device: &EncoderDevice,
        camera: Option<String>,
        pixel_format: String,
        (width, height): (u32, u32),
        frames: u32,
        import: Import,
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
        let mut enc: Option<V4l2Encoder> = None;
        let (mut buf, mut i420) = (Vec::new(), Vec::new());
        let mut layout = None;
        let info =
            libcamera_camera::borrow_frames(&config, frames as usize, PICTURE_TIMEOUT, |f| {
                let began = Instant::now();
                if enc.is_none() {
                    let s = settings(f.width, f.height);
                    let opened = match import {
                        Import::Dmabuf => {
                            V4l2Encoder::open_import(device.clone(), s, f.raw_layout())
                        }
                        Import::Copy => V4l2Encoder::open(device.clone(), s),
                    };
                    enc = Some(opened.map_err(|e| e.to_string())?);
                    layout = Some((f.layout, f.raw_layout()));
                }
                let enc = enc.as_mut().expect("opened above");
                let key = key_at(tally.pictures);
                buf.clear();
                let mut imported = None;
                if *enc.input() == InputPath::DmaBufImport {
                    match enc.encode_dmabuf(&f.planes, key, &mut buf) {
                        Ok(k) => imported = Some(k),
                        Err(V4l2Error::ImportRefused { reason, .. }) => {
                            buf.clear();
                            enc.fall_back_to_copy(reason).map_err(|e| e.to_string())?;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let is_key = match imported {
                    Some(k) => {
                        tally.imported += 1;
                        k
                    }
                    None => {
                        f.to_i420(&mut i420);
                        tally.copies += 1;
                        enc.encode_i420(
                            i420_planes(&i420, f.width, f.height),
                            f.width,
                            f.height,
                            key,
                            &mut buf,
                        )
                        .map_err(|e| e.to_string())?
                    }
                };
                tally.encoding += began.elapsed();
                tally.add(&buf, is_key);
                tally.timestamps.push(f.timestamp_ns);
                tally.sequences.push(f.sequence);
                file.write_all(&buf)
                    .map_err(|e| format!("write the stream: {e}"))
            })?;
        let input = enc
            .as_ref()
            .map(|e| e.input().describe())
            .unwrap_or_default();
        let key_frames = enc
            .as_ref()
            .map(|e| format!("{:?}", e.key_frames()))
            .unwrap_or_default();
        let (camera_format, v4l2_format, stride) = layout
            .map(|(l, r)| {
                (
                    format!("{l:?}"),
                    v4l2_encoder::fourcc_name(r.fourcc),
                    r.stride,
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
