//! Crash recovery at start-up: a take whose manifest still says `recording` was cut short
//! by a crash or power cut. Its closed segments are already listed; the segment that was
//! open is kept with its timestamps trimmed to the frames that reached the disk whole, every
//! file is hashed again, and the manifest is finalised as `recovered` / `crashed`.
//! Nothing recorded is deleted.

use std::collections::BTreeMap;
use std::path::Path;

use camrig_protocol::manifest::{ManifestState, SegmentRecord, StopReason, TakeManifest};
use camrig_protocol::naming::{self, TakeFiles};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::timestamps;

use crate::take::access_units;
use crate::take::listing::{take_dirs, TakeDir};
use crate::take::segment_writer::file_entry;
use camrig_fs::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest: {0}")]
    Manifest(#[from] camrig_protocol::manifest::ManifestError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Finalises every interrupted take under `recordings`; returns the recovered take names.
pub fn recover_all(recordings: &Path) -> Vec<TakeName> {
    let mut recovered = Vec::new();
    // Hidden entries (tombstones, takes being deleted) are never takes to finalise.
    let Ok(takes) = take_dirs(recordings) else {
        return recovered;
    };
    for TakeDir {
        dir,
        manifest: path,
        text,
    } in takes
    {
        let Ok(manifest) = TakeManifest::parse(&text) else {
            continue;
        };
        if manifest.state != ManifestState::Recording {
            continue;
        }
        match recover_take(&dir, &path, manifest) {
            Ok(take) => {
                tracing::warn!(take = %take, "interrupted take recovered");
                recovered.push(take);
            }
            Err(err) => tracing::error!(dir = %dir.display(), error = %err, "cannot recover take"),
        }
    }
    recovered.sort();
    recovered
}

fn recover_take(
    dir: &Path,
    manifest_path: &Path,
    mut m: TakeManifest,
) -> Result<TakeName, RecoveryError> {
    let files = TakeFiles::new(&m.take, &m.node, m.start_at_ns);
    let n = m.cameras.len();
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for cam in 0..n {
        let label = naming::camera_label(cam, n);
        let label = label.as_deref();
        // Segments on disk that the manifest does not list were open at the crash.
        let listed: Vec<u32> = m.cameras[cam].segments.iter().map(|s| s.index).collect();
        let mut open: BTreeMap<u32, String> = BTreeMap::new();
        for name in &names {
            if let Some(k) = segment_index(&files, label, m.codec, name) {
                if !listed.contains(&k) {
                    open.insert(k, name.clone());
                }
            }
        }
        for (k, video_name) in open {
            let first_index = m.cameras[cam].segments.iter().map(|s| s.frames).sum();
            let (record, entries) =
                recover_segment(dir, &files, label, &m, k, video_name, first_index)?;
            m.cameras[cam].segments.push(record);
            m.files.extend(entries);
        }
        // The running counters may have moved past what reached the disk: recount.
        let camera = &mut m.cameras[cam];
        camera.frames = camera.segments.iter().map(|s| s.frames).sum();
        camera.first_frame_ns = camera.segments.iter().find_map(|s| s.first_frame_ns);
        camera.last_frame_ns = camera.segments.iter().rev().find_map(|s| s.last_frame_ns);
    }
    let markers = files.markers();
    let markers_path = dir.join(&markers);
    // START writes the markers file without syncing it (it holds no marker yet): a crash can
    // leave it empty. Its content is in the manifest, so it is rendered again; a file with
    // content is the last atomically written one and is kept as it is.
    if std::fs::metadata(&markers_path).is_ok_and(|md| md.len() == 0) {
        let text =
            crate::take::markers::render(m.take.as_str(), &m.node, m.start_at_ns, &m.markers);
        write_atomic(&markers_path, text.as_bytes()).map_err(io(&markers_path))?;
    }
    if markers_path.exists() {
        m.files.retain(|f| f.name != markers);
        m.files.push(file_entry(&markers_path).map_err(io(dir))?);
    }
    // The space the dead node held back for its final manifest is not recorded data.
    let _ = std::fs::remove_file(dir.join(crate::take::recorder::RESERVE_FILE));
    m.state = ManifestState::Recovered;
    m.stop_reason = Some(StopReason::Crashed);
    let json = serde_json::to_vec_pretty(&m).expect("manifest serialises");
    write_atomic(manifest_path, &json).map_err(io(manifest_path))?;
    Ok(m.take)
}

/// `Some(k)` if `name` is segment k's video file of this camera.
fn segment_index(
    files: &TakeFiles,
    camera: Option<&str>,
    codec: naming::Codec,
    name: &str,
) -> Option<u32> {
    let stem0 = files.segment_stem(camera, 0);
    let prefix = &stem0[..stem0.len() - 6];
    let digits = name
        .strip_prefix(prefix)?
        .strip_suffix(&format!(".{}", codec.extension()))?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

fn recover_segment(
    dir: &Path,
    files: &TakeFiles,
    camera: Option<&str>,
    m: &TakeManifest,
    k: u32,
    video_name: String,
    first_frame_index: u64,
) -> Result<(SegmentRecord, Vec<camrig_protocol::manifest::FileEntry>), RecoveryError> {
    let video_path = dir.join(&video_name);
    let video = std::fs::read(&video_path).map_err(io(&video_path))?;
    let whole_frames = access_units::frame_ends(m.codec, &video).len();
    let bin_name = files.segment_timestamps_bin(camera, k);
    let bin_path = dir.join(&bin_name);
    let mut bin = std::fs::read(&bin_path).unwrap_or_default();
    // Timestamps are written before their picture, so there may be one too many (and a
    // torn last record after a power cut): keep exactly one per whole picture.
    let stamps = bin.len() / 8;
    let frames = stamps.min(whole_frames);
    if frames < stamps || !bin.len().is_multiple_of(8) {
        bin.truncate(frames * 8);
        write_atomic(&bin_path, &bin).map_err(io(&bin_path))?;
    }
    let ts = timestamps::parse_bin(&bin).expect("whole records");
    let txt_name = files.segment_timestamps_txt(camera, k);
    let txt_path = dir.join(&txt_name);
    write_atomic(&txt_path, timestamps::timecode_v2(&ts).as_bytes()).map_err(io(&txt_path))?;
    if whole_frames > frames {
        tracing::warn!(video = %video_name, whole_frames, frames, "pictures without a timestamp at the end of a recovered segment");
    }
    let mut entries = vec![
        file_entry(&video_path).map_err(io(&video_path))?,
        file_entry(&bin_path).map_err(io(&bin_path))?,
        file_entry(&txt_path).map_err(io(&txt_path))?,
    ];
    // The metadata rows, like the timestamps, are written before their picture: keep the
    // header and one whole row per kept frame (takes recorded before it have none).
    let csv_name = files.segment_metadata_csv(camera, k);
    let csv_path = dir.join(&csv_name);
    let metadata_csv = match std::fs::read_to_string(&csv_path) {
        Ok(text) => {
            let kept: String = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .take(frames + 1)
                .collect();
            if kept != text {
                write_atomic(&csv_path, kept.as_bytes()).map_err(io(&csv_path))?;
            }
            entries.push(file_entry(&csv_path).map_err(io(&csv_path))?);
            Some(csv_name)
        }
        Err(_) => None,
    };
    Ok((
        SegmentRecord {
            index: k,
            video: video_name,
            timestamps_bin: bin_name,
            timestamps_txt: txt_name,
            metadata_csv,
            frames: frames as u64,
            first_frame_index,
            first_frame_ns: ts.first().copied(),
            last_frame_ns: ts.last().copied(),
            closed_cleanly: false,
        },
        entries,
    ))
}
