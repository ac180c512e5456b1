//! Checks a finished take on disk against its manifest: every listed file's sha256 and
//! size, every segment decodes with ffprobe and has as many pictures as timestamps.

use std::path::Path;

use camrig_protocol::manifest::TakeManifest;

use crate::harness::{ffprobe_frames, read_timestamps, sha256_hex};

pub fn take_on_disk(dir: &Path, m: &TakeManifest) {
    if m.state != camrig_protocol::manifest::ManifestState::Recording {
        // A finished take holds exactly its listed files and the manifest: no temp or
        // reserve file left behind, nothing unlisted.
        for name in crate::harness::tree(dir) {
            assert!(
                name.ends_with("_manifest.json") || m.file(&name).is_some(),
                "{name} is in the take directory but not in the manifest"
            );
        }
    }
    for f in &m.files {
        let p = dir.join(&f.name);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), f.bytes, "{}", f.name);
        assert_eq!(sha256_hex(&p), f.sha256, "sha256 of {}", f.name);
    }
    for cam in &m.cameras {
        let mut total = 0;
        for seg in &cam.segments {
            for name in [&seg.video, &seg.timestamps_bin, &seg.timestamps_txt] {
                assert!(m.file(name).is_some(), "{name} listed in files");
            }
            let ts = read_timestamps(&dir.join(&seg.timestamps_bin));
            assert_eq!(ts.len() as u64, seg.frames, "{}", seg.video);
            assert_eq!(seg.first_frame_index, total);
            total += seg.frames;
            let decoded = ffprobe_frames(&dir.join(&seg.video));
            assert_eq!(
                decoded, seg.frames,
                "ffprobe frames vs timestamps in {}",
                seg.video
            );
            let txt = std::fs::read_to_string(dir.join(&seg.timestamps_txt)).unwrap();
            let tc = camrig_protocol::timestamps::parse_timecode_v2(&txt).unwrap();
            assert_eq!(tc.len(), ts.len());
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps increase");
        }
        if m.state != camrig_protocol::manifest::ManifestState::Recording {
            // While recording, `frames` also counts the open segment, not listed yet.
            assert_eq!(total, cam.frames);
        }
    }
}
