//! `camrig export`: a sorted take → one video file per camera (`<take>_<node>[_camN].mkv`
//! or `.mp4`) that analysis tools open directly. All of a camera's segments are joined and
//! every frame keeps its true recorded time (from the `.bin` timestamps, through mkvmerge's
//! `--timestamps`), relative to one origin shared by every camera of the take, which the
//! container's tags carry as an absolute time (`DATE_RECORDED`, `CAMRIG_ORIGIN_NS`).
//!
//! `--trim common` cuts every camera to the slot range all cameras cover and fills each
//! dropped slot by repeating the previous frame, so every file has the same frame count and
//! frame i is the same grid slot in all of them; the filled slots are listed in
//! `<take>_export.json` beside the files. That needs new pictures, so a trimmed camera is
//! decoded and re-encoded (ffmpeg: libx264 for H.264, MJPEG for MJPEG) with frames chosen
//! here, one per slot; an untrimmed export copies the recorded stream unchanged.
//!
//! Real tools do the muxing: ffmpeg wraps the raw stream (mkvmerge cannot read raw MJPEG),
//! mkvmerge applies the timestamps, ffmpeg remuxes to MP4 when asked. Nothing of the take is
//! modified; an existing output file is never overwritten.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use camrig_protocol::grid::FrameGrid;
use camrig_protocol::naming::Codec;
use camrig_protocol::timestamps;
use camrig_protocol::UnixNanos;

use crate::sync_report::{self, camera_label};
use crate::take_dir::{self, Check, TakeDirError};

/// Container format of the exported files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Mkv,
    Mp4,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, ExportError> {
        match s {
            "mkv" => Ok(Format::Mkv),
            "mp4" => Ok(Format::Mp4),
            other => Err(ExportError::BadFormat(other.to_owned())),
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Mkv => "mkv",
            Format::Mp4 => "mp4",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    pub trim_common: bool,
    /// Default `<take dir>/export/`.
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown format {0:?}: use mkv or mp4")]
    BadFormat(String),
    #[error(transparent)]
    TakeDir(#[from] TakeDirError),
    #[error("{0} already exists; nothing is overwritten: move it away or pass another --out")]
    Exists(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} is not installed; install {package} (apt-get install {package})")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{tool} failed for {camera}: {message}")]
    Tool {
        tool: &'static str,
        camera: String,
        message: String,
    },
    #[error("{camera}: decoded {decoded} pictures but the timestamps list {expected}; the video does not match its timestamps")]
    PictureCount {
        camera: String,
        decoded: u64,
        expected: u64,
    },
    #[error("--trim common: the cameras share no common slot range")]
    NoCommonRange,
}

/// `<take>_export.json`: what was written, and which slots a trimmed export filled.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportSummary {
    pub take: String,
    pub format: String,
    pub trim_common: bool,
    /// The absolute time (Unix ns) that container time 0 stands for, in every file: the
    /// take's START instant, or half a period before the first common slot when trimmed.
    pub origin_ns: UnixNanos,
    pub common: Option<sync_report::Common>,
    pub cameras: Vec<ExportedCamera>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportedCamera {
    pub file: String,
    pub node: String,
    pub camera: String,
    pub frames: u64,
    /// Slots with no frame of this camera, filled by repeating the previous frame.
    pub filled: Vec<Filled>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filled {
    /// 0-based frame index in the exported file.
    pub output_frame: u64,
    pub slot: i64,
    /// The take frame index (per camera) shown again.
    pub repeats_frame_index: u64,
}

/// One camera to export.
struct CameraJob {
    name: String,
    node: String,
    label: String,
    codec: Codec,
    width: u32,
    height: u32,
    videos: Vec<PathBuf>,
    /// (slot, take frame index, timestamp) of every recorded frame.
    frames: Vec<(i64, u64, UnixNanos)>,
}

/// Exports a sorted take. `progress(done, total)` is called before each camera and at the end.
pub fn export(
    take_dir: &Path,
    opts: &Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<ExportSummary, ExportError> {
    for (tool, package) in [("ffmpeg", "ffmpeg"), ("mkvmerge", "mkvtoolnix")] {
        if !tool_exists(tool) {
            return Err(ExportError::ToolMissing { tool, package });
        }
    }
    let (take, nodes) = take_dir::read(take_dir, Check::Everything)?;
    let inputs: Vec<_> = nodes.iter().map(|n| n.input.clone()).collect();
    let (report, _) = sync_report::compute(&take, &inputs, None).map_err(TakeDirError::from)?;
    let grid = FrameGrid::new(report.fps).expect("the report checked the frame rate");

    let mut jobs = Vec::new();
    for n in &nodes {
        let m = &n.input.manifest;
        let two = m.cameras.len() > 1;
        for (cam, segs) in m.cameras.iter().zip(&n.input.timestamps) {
            let label = camera_label(cam.index);
            let mut frames = Vec::new();
            for (seg, ts) in cam.segments.iter().zip(segs) {
                for (i, &t) in ts.iter().enumerate() {
                    frames.push((grid.nearest_slot(t), seg.first_frame_index + i as u64, t));
                }
            }
            let suffix = if two {
                format!("_{label}")
            } else {
                String::new()
            };
            jobs.push(CameraJob {
                name: format!("{take}_{}{suffix}", m.node),
                node: m.node.clone(),
                label,
                codec: m.codec,
                width: cam.width,
                height: cam.height,
                videos: cam.segments.iter().map(|s| n.dir.join(&s.video)).collect(),
                frames,
            });
        }
    }

    let common = opts.trim_common.then_some(report.common);
    // Time 0 of every file: START, or for a trimmed export the half-period boundary before the
    // first common slot (no frame of that slot can be earlier, so no time is negative).
    let origin_ns = match common {
        Some(c) => {
            let first = c.first_slot.ok_or(ExportError::NoCommonRange)?;
            (grid.instant_ns(first - 1) + grid.instant_ns(first)) / 2
        }
        None => nodes
            .iter()
            .map(|n| n.input.manifest.start_at_ns)
            .min()
            .expect("at least one node"),
    };
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| take_dir.join("export"));
    std::fs::create_dir_all(&out_dir).map_err(|source| ExportError::Io {
        what: format!("cannot create {}", out_dir.display()),
        source,
    })?;
    let ext = opts.format.extension();
    let summary_path = out_dir.join(format!("{take}_export.json"));
    for path in jobs
        .iter()
        .map(|j| out_dir.join(format!("{}.{ext}", j.name)))
        .chain([summary_path.clone()])
    {
        if path.exists() {
            return Err(ExportError::Exists(path));
        }
    }
    let work = tempfile_dir(&out_dir)?;

    let total = jobs.len();
    let mut cameras = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        progress(i, total);
        let out = out_dir.join(format!("{}.{ext}", job.name));
        let exported = export_camera(job, &grid, common, origin_ns, opts.format, &work.0, &out)?;
        cameras.push(exported);
    }
    let summary = ExportSummary {
        take,
        format: ext.to_owned(),
        trim_common: opts.trim_common,
        origin_ns,
        common,
        cameras,
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    take_dir::write_atomic(&summary_path, &json)?;
    progress(total, total);
    Ok(summary)
}

/// A scratch directory inside the output directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir(out_dir: &Path) -> Result<Scratch, ExportError> {
    let dir = out_dir.join(format!(".export-work-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| ExportError::Io {
        what: format!("cannot create {}", dir.display()),
        source,
    })?;
    Ok(Scratch(dir))
}

fn export_camera(
    job: &CameraJob,
    grid: &FrameGrid,
    common: Option<sync_report::Common>,
    origin_ns: UnixNanos,
    format: Format,
    work: &Path,
    out: &Path,
) -> Result<ExportedCamera, ExportError> {
    let camera = format!("{} {}", job.node, job.label);
    let io = |what: String| move |source| ExportError::Io { what, source };
    // 1. The raw stream, every segment joined (each starts on a key frame / is whole JPEGs).
    let raw = work.join(format!("{}.raw", job.name));
    {
        let mut f =
            std::fs::File::create(&raw).map_err(io(format!("cannot create {}", raw.display())))?;
        for v in &job.videos {
            let mut src =
                std::fs::File::open(v).map_err(io(format!("cannot read {}", v.display())))?;
            std::io::copy(&mut src, &mut f).map_err(io(format!("cannot copy {}", v.display())))?;
        }
    }
    let demuxer = match job.codec {
        Codec::H264 => "h264",
        Codec::Mjpeg => "mjpeg",
    };
    let fps = format!("{}", grid.fps());
    let wrapped = work.join(format!("{}.wrapped.mkv", job.name));
    // 2. Picture sequence and their true times.
    let (times, filled): (Vec<UnixNanos>, Vec<Filled>) = match common {
        None => {
            run(
                "ffmpeg",
                &camera,
                ffmpeg_reading(demuxer, &fps, &raw)
                    .args(["-map", "0:v:0", "-c", "copy", "-f", "matroska"])
                    .arg(&wrapped),
            )?;
            (job.frames.iter().map(|f| f.2).collect(), vec![])
        }
        Some(c) => {
            let (first, last) = (
                c.first_slot.ok_or(ExportError::NoCommonRange)?,
                c.last_slot.ok_or(ExportError::NoCommonRange)?,
            );
            let plan = trim_plan(&job.frames, first, last, grid);
            reencode(job, &raw, demuxer, &fps, &plan.sources, &wrapped, &camera)?;
            (plan.times, plan.filled)
        }
    };
    // 3. True times, from the shared origin, in mkvmerge's timestamp v2 file.
    let tc = work.join(format!("{}.timestamps.txt", job.name));
    let mut text = String::from("# timestamp format v2\n");
    for &t in &times {
        text.push_str(&timestamps::timecode_line(origin_ns, t));
    }
    std::fs::write(&tc, text).map_err(io(format!("cannot write {}", tc.display())))?;
    let tags = work.join(format!("{}.tags.xml", job.name));
    std::fs::write(&tags, tags_xml(origin_ns))
        .map_err(io(format!("cannot write {}", tags.display())))?;
    let mkv = match format {
        Format::Mkv => out.with_extension("mkv.part"),
        Format::Mp4 => work.join(format!("{}.mkv", job.name)),
    };
    run(
        "mkvmerge",
        &camera,
        Command::new("mkvmerge")
            .args(["--quiet", "-o"])
            .arg(&mkv)
            .args(["--title", &job.name, "--global-tags"])
            .arg(&tags)
            .arg("--timestamps")
            .arg(format!("0:{}", tc.display()))
            .arg(&wrapped),
    )?;
    match format {
        Format::Mkv => {
            std::fs::rename(&mkv, out).map_err(io(format!("cannot rename to {}", out.display())))?
        }
        Format::Mp4 => {
            let part = out.with_extension("mp4.part");
            run(
                "ffmpeg",
                &camera,
                // -copyts: keep the shared origin (the MP4 muxer would otherwise move the
                // first frame to 0).
                Command::new("ffmpeg")
                    .args(["-nostdin", "-loglevel", "error", "-copyts", "-i"])
                    .arg(&mkv)
                    .args([
                        "-map",
                        "0:v:0",
                        "-c",
                        "copy",
                        "-movflags",
                        "use_metadata_tags",
                        "-video_track_timescale",
                        "90000",
                    ])
                    .args([
                        "-metadata",
                        &format!("creation_time={}", iso8601(origin_ns)),
                    ])
                    .args(["-metadata", &format!("camrig_origin_ns={origin_ns}")])
                    .args(["-f", "mp4"])
                    .arg(&part),
            )?;
            std::fs::rename(&part, out)
                .map_err(io(format!("cannot rename to {}", out.display())))?;
        }
    }
    Ok(ExportedCamera {
        file: out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        node: job.node.clone(),
        camera: job.label.clone(),
        frames: times.len() as u64,
        filled,
    })
}

/// A trimmed camera: which recorded frame (index into the camera's frames) each output
/// frame shows, its time, and the filled slots.
#[derive(Debug, PartialEq)]
pub struct TrimPlan {
    pub sources: Vec<usize>,
    pub times: Vec<UnixNanos>,
    pub filled: Vec<Filled>,
}

/// One output frame per slot `first..=last`: the camera's first frame in that slot, else the
/// previous frame again (its time advanced by whole periods). A slot before the camera's
/// first frame (never in the common range) would show the first frame.
pub fn trim_plan(
    frames: &[(i64, u64, UnixNanos)],
    first: i64,
    last: i64,
    grid: &FrameGrid,
) -> TrimPlan {
    let mut plan = TrimPlan {
        sources: vec![],
        times: vec![],
        filled: vec![],
    };
    let mut i = 0;
    let mut shown: Option<usize> = None;
    for slot in first..=last {
        while i < frames.len() && frames[i].0 < slot {
            shown = Some(i);
            i += 1;
        }
        let out = plan.sources.len() as u64;
        if i < frames.len() && frames[i].0 == slot {
            plan.sources.push(i);
            plan.times.push(frames[i].2);
            shown = Some(i);
            // Later frames in the same slot are skipped.
            while i < frames.len() && frames[i].0 == slot {
                i += 1;
            }
        } else {
            let s = shown.unwrap_or(0);
            let (src_slot, src_index, src_t) = frames[s];
            plan.sources.push(s);
            plan.times
                .push(src_t + grid.instant_ns(slot) - grid.instant_ns(src_slot));
            plan.filled.push(Filled {
                output_frame: out,
                slot,
                repeats_frame_index: src_index,
            });
        }
    }
    plan
}

/// Decodes the camera's stream and encodes exactly the planned pictures, in order.
fn reencode(
    job: &CameraJob,
    raw: &Path,
    demuxer: &str,
    fps: &str,
    sources: &[usize],
    out: &Path,
    camera: &str,
) -> Result<(), ExportError> {
    let frame_bytes = job.width as usize * job.height as usize * 3 / 2;
    let size = format!("{}x{}", job.width, job.height);
    let spawn_err = |source| ExportError::Io {
        what: "cannot start ffmpeg".into(),
        source,
    };
    let mut decoder = ffmpeg_reading(demuxer, fps, raw)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough"])
        .args(RAW_I420)
        .args(["-s", &size, "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let codec_args: &[&str] = match job.codec {
        Codec::H264 => &[
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-bf", "0",
        ],
        Codec::Mjpeg => &["-c:v", "mjpeg", "-q:v", "2"],
    };
    let mut encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error"])
        .args(RAW_I420)
        .args(["-s", &size, "-framerate", fps, "-i", "-"])
        .args(codec_args)
        .args(["-f", "matroska"])
        .arg(out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let mut input = decoder.stdout.take().expect("piped");
    let mut output = encoder.stdin.take().expect("piped");
    // Stderr drained on threads so neither process blocks on a full pipe.
    let drain = |mut r: std::process::ChildStderr| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let dec_err = drain(decoder.stderr.take().expect("piped"));
    let enc_err = drain(encoder.stderr.take().expect("piped"));
    let mut picture = vec![0u8; frame_bytes];
    let mut decoded: u64 = 0;
    let mut write_failed = None;
    let mut k = 0;
    'pictures: loop {
        match input.read_exact(&mut picture) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                write_failed = Some(e.to_string());
                break;
            }
        }
        let index = decoded as usize;
        decoded += 1;
        while k < sources.len() && sources[k] == index {
            if let Err(e) = output.write_all(&picture) {
                write_failed = Some(e.to_string());
                break 'pictures;
            }
            k += 1;
        }
    }
    drop(output);
    drop(input);
    let dec_status = decoder.wait().map_err(spawn_err)?;
    let enc_status = encoder.wait().map_err(spawn_err)?;
    let (dec_msg, enc_msg) = (
        dec_err.join().unwrap_or_default(),
        enc_err.join().unwrap_or_default(),
    );
    if !enc_status.success() || write_failed.is_some() {
        return Err(ExportError::Tool {
            tool: "ffmpeg",
            camera: camera.to_owned(),
            message: format!(
                "encoding failed: {} {}",
                enc_msg.trim(),
                write_failed.unwrap_or_default()
            ),
        });
    }
    if !dec_status.success() {
        return Err(ExportError::Tool {
            tool: "ffmpeg",
            camera: camera.to_owned(),
            message: format!("decoding failed: {}", dec_msg.trim()),
        });
    }
    if decoded != job.frames.len() as u64 || k != sources.len() {
        return Err(ExportError::PictureCount {
            camera: camera.to_owned(),
            decoded,
            expected: job.frames.len() as u64,
        });
    }
    Ok(())
}

fn run(tool: &'static str, camera: &str, cmd: &mut Command) -> Result<(), ExportError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ExportError::Io {
            what: format!("cannot start {tool}"),
            source,
        })?;
    // mkvmerge exits 1 for warnings, 2 for errors.
    let ok = out.status.success() || (tool == "mkvmerge" && out.status.code() == Some(1));
    if ok {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if message.is_empty() {
        message = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(ExportError::Tool {
        tool,
        camera: camera.to_owned(),
        message,
    })
}

fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

fn tags_xml(origin_ns: UnixNanos) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<Tags>\n  <Tag>\n    <Targets><TargetTypeValue>50</TargetTypeValue></Targets>\n    \
         <Simple><Name>DATE_RECORDED</Name><String>{}</String></Simple>\n    \
         <Simple><Name>CAMRIG_ORIGIN_NS</Name><String>{origin_ns}</String></Simple>\n  </Tag>\n</Tags>\n",
        iso8601(origin_ns)
    )
}

/// `2026-12-05T23:00:00.123456789Z`.
pub fn iso8601(ns: UnixNanos) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Raw I420 pictures through a pipe: what the trimmed export's decoder writes and its
/// encoder reads.
const RAW_I420: [&str; 4] = ["-f", "rawvideo", "-pix_fmt", "yuv420p"];

/// ffmpeg reading a camera's raw stream (`demuxer`: h264 or mjpeg) at the grid's rate, for
/// the caller to add what it makes of it.
fn ffmpeg_reading(demuxer: &str, fps: &str, raw: &Path) -> Command {
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            demuxer,
            "-framerate",
            fps,
            "-i",
        ])
        .arg(raw);
    ffmpeg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_plan_fills_drops_with_the_previous_frame_and_skips_extra_frames() {
        let g = FrameGrid::new(30.0).unwrap();
        let at = |slot: i64, off: i64| g.instant_ns(slot) + off;
        // Slots 9 (before the range), 10, 12 (11 dropped), 12 again (extra), 14 (13 dropped).
        let frames = vec![
            (9, 0, at(9, 100)),
            (10, 1, at(10, 100)),
            (12, 2, at(12, 200)),
            (12, 3, at(12, 9_000_000)),
            (14, 4, at(14, 300)),
        ];
        let p = trim_plan(&frames, 10, 14, &g);
        assert_eq!(p.sources, vec![1, 1, 2, 2, 4]);
        assert_eq!(
            p.times,
            vec![
                at(10, 100),
                at(11, 100),
                at(12, 200),
                at(13, 200),
                at(14, 300)
            ]
        );
        assert_eq!(
            p.filled,
            vec![
                Filled {
                    output_frame: 1,
                    slot: 11,
                    repeats_frame_index: 1
                },
                Filled {
                    output_frame: 3,
                    slot: 13,
                    repeats_frame_index: 2
                },
            ]
        );
    }

    #[test]
    fn iso8601_is_utc_with_nanoseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            iso8601(1_764_975_600_123_456_789),
            "2025-12-05T23:00:00.123456789Z"
        );
        assert_eq!(
            iso8601(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn formats_are_named() {
        assert_eq!(Format::parse("mp4").unwrap(), Format::Mp4);
        assert!(Format::parse("avi")
            .unwrap_err()
            .to_string()
            .contains("use mkv or mp4"));
    }
}
