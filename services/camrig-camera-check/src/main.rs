//! `camrig-camera-check encode`: finds a V4L2 memory-to-memory encoder by capability, feeds it
//! N frames of the node's test pattern through the node's own encoder code
//! (`camrig_node::v4l2_encoder`), asking for a key frame at the start of every segment of
//! `--segment` frames, writes the encoded stream to a file and prints a JSON summary (device,
//! pictures, key frames, bytes). The camera test decodes the file back with the kernel's
//! decoder (vicodec) and compares the frame count; on a Pi 4 it checks the H.264 block.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use camrig_node::test_pattern::TestPattern;
use camrig_node::v4l2_encoder::{self, V4l2Encoder, V4l2Settings};
use camrig_node::v4l2_sys;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode test-pattern frames on the first encoder for the codec.
    Encode {
        /// fwht (vicodec), h264 or mjpeg.
        #[arg(long, default_value = "fwht")]
        codec: String,
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

fn main() -> anyhow::Result<()> {
    let Command::Encode {
        codec,
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
    let device = v4l2_encoder::find_encoder(coded)
        .with_context(|| format!("no V4L2 memory-to-memory encoder for {codec} under /dev"))?;
    let mut enc = V4l2Encoder::open(
        device.clone(),
        V4l2Settings {
            width,
            height,
            fps: 30.0,
            bitrate_kbps: 2000,
            jpeg_quality: 85,
        },
    )?;
    let mut pattern = TestPattern::new(width, height, 0, "v4l2-check");
    let mut file =
        std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
    let (mut keys, mut bytes, mut sizes) = (0u32, 0usize, Vec::new());
    let mut buf = Vec::new();
    // Time spent in the encoder only (the pattern is rendered outside the clock).
    let mut encoding = std::time::Duration::ZERO;
    for i in 0..frames {
        let picture = pattern.render(u64::from(i), i64::from(i) * 33_333_333);
        let y_len = (width * height) as usize;
        let (y, rest) = picture.split_at(y_len);
        let (u, v) = rest.split_at(y_len / 4);
        buf.clear();
        let began = std::time::Instant::now();
        let key = enc.encode_i420(
            (y, u, v),
            width,
            height,
            segment > 0 && i % segment == 0,
            &mut buf,
        )?;
        encoding += began.elapsed();
        keys += u32::from(key);
        bytes += buf.len();
        sizes.push(buf.len());
        file.write_all(&buf)?;
    }
    file.sync_all()?;
    println!(
        "{}",
        serde_json::json!({
            "device": device.path,
            "card": device.card,
            "driver": device.driver,
            "format": v4l2_encoder::fourcc_name(device.coded),
            "key_frames_by": format!("{:?}", enc.key_frames()),
            "pictures": sizes.len(),
            "key_pictures": keys,
            "bytes": bytes,
            "encode_ms_total": encoding.as_secs_f64() * 1e3,
            "encode_ms_per_picture": encoding.as_secs_f64() * 1e3 / f64::from(frames.max(1)),
        })
    );
    Ok(())
}
