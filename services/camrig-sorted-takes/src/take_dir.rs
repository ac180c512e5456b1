//! A sorted take directory on disk (`video_downloads/<take>/<node address>/…`): reading it
//! back, every file checked against its node's manifest first, and writing the sync report
//! beside the node folders (`<take>_sync_report.json`, `<take>_frames.csv`). The report's
//! arithmetic is [`crate::sync_report`]; the export reads through here too. A missing, short
//! or altered file is an error naming it, never a report computed from a damaged copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use camrig_protocol::camera_settings::AppliedRange;
use camrig_protocol::manifest::{SegmentRecord, TakeManifest};
use camrig_protocol::timestamps;

use crate::sync_report::{self, NodeInput, Probe, ReportError, SyncReport};

/// A node folder of a sorted take.
#[derive(Clone, Debug)]
pub struct SortedNode {
    pub dir: PathBuf,
    pub input: NodeInput,
}

#[derive(Debug, thiserror::Error)]
pub enum TakeDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a sorted take directory: it has no node folder with a *_manifest.json (point at video_downloads/<take>)")]
    NoNodes(PathBuf),
    #[error("{dir} has {count} manifests; a node folder holds exactly one take's manifest")]
    ManyManifests { dir: PathBuf, count: usize },
    #[error("{path}: {message}; download the take again")]
    BadManifest { path: PathBuf, message: String },
    #[error("{path} is missing (the manifest lists it); download the take again")]
    Missing { path: PathBuf },
    #[error("{path} is {found} bytes, the manifest says {expected}; the copy is damaged: download the take again")]
    Size {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "{path} does not match its manifest sha256; the copy is damaged: download the take again"
    )]
    Hash { path: PathBuf },
    #[error("{path}: {message}; download the take again")]
    Timestamps { path: PathBuf, message: String },
    #[error("{path}: {message}; download the take again")]
    Metadata { path: PathBuf, message: String },
    #[error("{dir}: manifests disagree on the take name ({a} vs {b})")]
    MixedTakes { dir: PathBuf, a: String, b: String },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// How much of each file is checked against the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every file's size; sha256 of the timestamp files (what a report reads).
    Timestamps,
    /// Every file's size and sha256 (what an export reads).
    Everything,
}

/// Reads every node folder of a sorted take.
pub fn read(dir: &Path, check: Check) -> Result<(String, Vec<SortedNode>), TakeDirError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TakeDirError::Io { path, source }
    };
    let mut folders: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "export" {
            continue;
        }
        if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            folders.push(entry.path());
        }
    }
    folders.sort();
    let mut nodes = Vec::new();
    let mut take: Option<String> = None;
    for folder in folders {
        let mut manifests = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let entry = entry.map_err(io(&folder))?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with("_manifest.json")
            {
                manifests.push(entry.path());
            }
        }
        match manifests.len() {
            0 => continue,
            1 => {}
            count => return Err(TakeDirError::ManyManifests { dir: folder, count }),
        }
        let path = &manifests[0];
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let manifest = TakeManifest::parse(&text).map_err(|e| TakeDirError::BadManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let name = manifest.take.as_str().to_owned();
        match &take {
            Some(t) if *t != name => {
                return Err(TakeDirError::MixedTakes {
                    dir: dir.to_owned(),
                    a: t.clone(),
                    b: name,
                })
            }
            _ => take = Some(name),
        }
        check_files(&folder, &manifest, check)?;
        let mut timestamps = Vec::with_capacity(manifest.cameras.len());
        let mut applied = Vec::with_capacity(manifest.cameras.len());
        for cam in &manifest.cameras {
            applied.push(applied_range(&folder, &cam.segments)?);
            let mut segs = Vec::with_capacity(cam.segments.len());
            for seg in &cam.segments {
                let p = folder.join(&seg.timestamps_bin);
                let bytes = std::fs::read(&p).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => TakeDirError::Missing { path: p.clone() },
                    _ => TakeDirError::Io {
                        path: p.clone(),
                        source,
                    },
                })?;
                segs.push(
                    timestamps::parse_bin(&bytes).map_err(|e| TakeDirError::Timestamps {
                        path: p.clone(),
                        message: e.to_string(),
                    })?,
                );
            }
            timestamps.push(segs);
        }
        let address = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        nodes.push(SortedNode {
            dir: folder,
            input: NodeInput {
                address,
                manifest,
                timestamps,
                applied,
                probe_start: None,
                probe_stop: None,
            },
        });
    }
    match take {
        Some(t) => Ok((t, nodes)),
        None => Err(TakeDirError::NoNodes(dir.to_owned())),
    }
}

/// The range of what a camera applied, from its segments' `_metadata.csv` (`None` when
/// none has one: takes from before per-frame metadata).
fn applied_range(
    folder: &Path,
    segments: &[SegmentRecord],
) -> Result<Option<AppliedRange>, TakeDirError> {
    let mut range = None::<AppliedRange>;
    for csv in segments.iter().filter_map(|s| s.metadata_csv.as_ref()) {
        let p = folder.join(csv);
        let text = std::fs::read_to_string(&p).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => TakeDirError::Missing { path: p.clone() },
            _ => TakeDirError::Io {
                path: p.clone(),
                source,
            },
        })?;
        range
            .get_or_insert_with(AppliedRange::default)
            .add_csv(&text)
            .map_err(|message| TakeDirError::Metadata {
                path: p.clone(),
                message,
            })?;
    }
    Ok(range)
}

fn check_files(folder: &Path, m: &TakeManifest, check: Check) -> Result<(), TakeDirError> {
    for f in &m.files {
        let path = folder.join(&f.name);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TakeDirError::Missing { path })
            }
            Err(source) => return Err(TakeDirError::Io { path, source }),
        };
        if meta.len() != f.bytes {
            return Err(TakeDirError::Size {
                path,
                expected: f.bytes,
                found: meta.len(),
            });
        }
        if check == Check::Everything || f.name.ends_with(".bin") {
            let hash = camrig_fs::sha256_file(&path)
                .map(|h| h.sha256)
                .map_err(|source| TakeDirError::Io {
                    path: path.clone(),
                    source,
                })?;
            if hash != f.sha256 {
                return Err(TakeDirError::Hash { path });
            }
        }
    }
    // A segment's timestamp file the manifest does not list is not trusted either.
    for cam in &m.cameras {
        for seg in &cam.segments {
            if m.file(&seg.timestamps_bin).is_none() {
                return Err(TakeDirError::BadManifest {
                    path: folder.to_owned(),
                    message: format!("the manifest does not list {}", seg.timestamps_bin),
                });
            }
        }
    }
    Ok(())
}

/// The report file's name.
pub fn report_path(dir: &Path, take: &str) -> PathBuf {
    dir.join(format!("{take}_sync_report.json"))
}

/// The frames table's name.
pub fn frames_path(dir: &Path, take: &str) -> PathBuf {
    dir.join(format!("{take}_frames.csv"))
}

/// Reads the take, computes its report with the controller's probes (by node address) and
/// writes both files (each atomically: a temporary file renamed into place).
pub fn make_report(
    dir: &Path,
    probes: &HashMap<String, (Option<Probe>, Option<Probe>)>,
    tolerance_ns: Option<i64>,
) -> Result<SyncReport, TakeDirError> {
    let (take, nodes) = read(dir, Check::Timestamps)?;
    let inputs: Vec<NodeInput> = nodes
        .into_iter()
        .map(|n| {
            let mut input = n.input;
            if let Some(&(start, stop)) = probes.get(&input.address) {
                input.probe_start = start;
                input.probe_stop = stop;
            }
            input
        })
        .collect();
    let (report, rows) = sync_report::compute(&take, &inputs, tolerance_ns)?;
    let mut csv = String::with_capacity(rows.len() * 64);
    csv.push_str(sync_report::FRAMES_CSV_HEADER);
    for r in &rows {
        csv.push_str(&r.csv_line());
    }
    write_atomic(&frames_path(dir, &take), csv.as_bytes())?;
    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    write_atomic(&report_path(dir, &take), &json)?;
    Ok(report)
}

/// Reads a report written earlier.
pub fn read_report(dir: &Path, take: &str) -> Result<SyncReport, TakeDirError> {
    let path = report_path(dir, take);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TakeDirError::Missing { path: path.clone() },
        _ => TakeDirError::Io {
            path: path.clone(),
            source,
        },
    })?;
    serde_json::from_str(&text).map_err(|e| TakeDirError::BadManifest {
        path,
        message: format!("not a sync report: {e}"),
    })
}

/// Writes a report file with [`camrig_fs::write_atomic`], naming it in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TakeDirError> {
    camrig_fs::write_atomic(path, bytes).map_err(|source| TakeDirError::Io {
        path: path.to_owned(),
        source,
    })
}
