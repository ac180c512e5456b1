//! File naming on the node (DESIGN.md decision 3).
//!
//! ```text
//! <take>_<node>[_camN]_<YYYYMMDD_HHMMSS>_<NNNNNN>.h264|.mjpeg   one file per segment
//! <take>_<node>[_camN]_<YYYYMMDD_HHMMSS>_<NNNNNN>_timestamps.bin   int64 LE wall-clock ns per frame
//! <take>_<node>[_camN]_<YYYYMMDD_HHMMSS>_<NNNNNN>_timestamps.txt   # timecode format v2
//! <take>_<node>_<YYYYMMDD_HHMMSS>_markers.txt                        one per take
//! <take>_<node>_<YYYYMMDD_HHMMSS>_manifest.json                      one per take
//! ```
//!
//! `<YYYYMMDD_HHMMSS>` is the take's scheduled start instant in UTC, so every node of a rig
//! names the same take with the same stamp. `_camN` appears only on a node with two cameras.

use std::net::IpAddr;

use crate::take_name::TakeName;
use crate::UnixNanos;

/// Video encodings a segment can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 Annex-B elementary stream; every segment starts with SPS/PPS and an IDR frame.
    H264,
    /// Concatenated JPEG images, one per frame.
    Mjpeg,
}

impl Codec {
    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Mjpeg => "mjpeg",
        }
    }

    pub fn parse(s: &str) -> Option<Codec> {
        match s {
            "h264" => Some(Codec::H264),
            "mjpeg" => Some(Codec::Mjpeg),
            _ => None,
        }
    }
}

/// The `<node>` part of file names: the configured name, else the node's IP with dots
/// (or colons, for IPv6) as underscores.
pub fn node_label(configured: Option<&str>, ip: IpAddr) -> String {
    match configured {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => ip.to_string().replace(['.', ':'], "_"),
    }
}

/// `YYYYMMDD_HHMMSS` of a wall-clock instant, in UTC.
pub fn stamp(at: UnixNanos) -> String {
    let dt = chrono::DateTime::from_timestamp(at.div_euclid(1_000_000_000), 0)
        .expect("instant within chrono's range");
    dt.format("%Y%m%d_%H%M%S").to_string()
}

/// Camera label in file names: `None` for a single-camera node, `Some(1|2)` otherwise.
pub fn camera_label(camera_index: usize, camera_count: usize) -> Option<String> {
    (camera_count > 1).then(|| format!("cam{}", camera_index + 1))
}

/// The names of one take's files on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeFiles {
    take: TakeName,
    node: String,
    stamp: String,
}

impl TakeFiles {
    pub fn new(take: &TakeName, node: &str, start_at: UnixNanos) -> TakeFiles {
        TakeFiles {
            take: take.clone(),
            node: node.to_owned(),
            stamp: stamp(start_at),
        }
    }

    fn prefix(&self, camera: Option<&str>) -> String {
        match camera {
            Some(cam) => format!("{}_{}_{}_{}", self.take, self.node, cam, self.stamp),
            None => format!("{}_{}_{}", self.take, self.node, self.stamp),
        }
    }

    /// Stem shared by a segment's video and timestamp files.
    pub fn segment_stem(&self, camera: Option<&str>, segment: u32) -> String {
        format!("{}_{:06}", self.prefix(camera), segment)
    }

    pub fn segment_video(&self, camera: Option<&str>, segment: u32, codec: Codec) -> String {
        format!(
            "{}.{}",
            self.segment_stem(camera, segment),
            codec.extension()
        )
    }

    pub fn segment_timestamps_bin(&self, camera: Option<&str>, segment: u32) -> String {
        format!("{}_timestamps.bin", self.segment_stem(camera, segment))
    }

    pub fn segment_timestamps_txt(&self, camera: Option<&str>, segment: u32) -> String {
        format!("{}_timestamps.txt", self.segment_stem(camera, segment))
    }

    /// Per-frame values the camera applied (exposure, gain, …), one CSV row per frame.
    pub fn segment_metadata_csv(&self, camera: Option<&str>, segment: u32) -> String {
        format!("{}_metadata.csv", self.segment_stem(camera, segment))
    }

    pub fn markers(&self) -> String {
        format!("{}_markers.txt", self.prefix(None))
    }

    pub fn manifest(&self) -> String {
        format!("{}_manifest.json", self.prefix(None))
    }
}

/// Standalone recorder layout: `recordings/YYYYMMDD_HHMMSS/cameraN.mjpeg` and
/// `cameraN_timestamps.bin`, N counting from 1 (the original dual-camera recorder's names).
pub fn standalone_video(camera_index: usize, codec: Codec) -> String {
    format!("camera{}.{}", camera_index + 1, codec.extension())
}

pub fn standalone_timestamps(camera_index: usize) -> String {
    format!("camera{}_timestamps.bin", camera_index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-10-23 14:02:10.5 UTC
    const T: UnixNanos = 1_761_228_130_500_000_000;

    #[test]
    fn names_match_the_rigs_classic_layout() {
        let take = TakeName::parse("test_001_windy").unwrap();
        let node = node_label(None, "192.168.1.101".parse().unwrap());
        let files = TakeFiles::new(&take, &node, T);
        assert_eq!(
            files.segment_video(None, 0, Codec::H264),
            "test_001_windy_192_168_1_101_20251023_140210_000000.h264"
        );
        assert_eq!(
            files.segment_video(None, 1, Codec::H264),
            "test_001_windy_192_168_1_101_20251023_140210_000001.h264"
        );
        assert_eq!(
            files.markers(),
            "test_001_windy_192_168_1_101_20251023_140210_markers.txt"
        );
        assert_eq!(
            files.manifest(),
            "test_001_windy_192_168_1_101_20251023_140210_manifest.json"
        );
    }

    #[test]
    fn two_camera_nodes_add_the_camera_after_the_node() {
        let take = TakeName::parse("t").unwrap();
        let files = TakeFiles::new(&take, "left", T);
        let cam = camera_label(1, 2);
        assert_eq!(cam.as_deref(), Some("cam2"));
        assert_eq!(camera_label(0, 1), None);
        assert_eq!(
            files.segment_video(cam.as_deref(), 3, Codec::Mjpeg),
            "t_left_cam2_20251023_140210_000003.mjpeg"
        );
        assert_eq!(
            files.segment_timestamps_bin(cam.as_deref(), 3),
            "t_left_cam2_20251023_140210_000003_timestamps.bin"
        );
        assert_eq!(
            files.segment_timestamps_txt(cam.as_deref(), 3),
            "t_left_cam2_20251023_140210_000003_timestamps.txt"
        );
    }

    #[test]
    fn node_label_prefers_a_configured_name() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(node_label(Some("north"), ip), "north");
        assert_eq!(node_label(Some(""), ip), "10_0_0_7");
        assert_eq!(node_label(None, "::1".parse().unwrap()), "__1");
    }

    #[test]
    fn standalone_names_are_the_dual_camera_recorders() {
        assert_eq!(standalone_video(0, Codec::Mjpeg), "camera1.mjpeg");
        assert_eq!(standalone_timestamps(1), "camera2_timestamps.bin");
        assert_eq!(stamp(T), "20251023_140210");
    }
}
