//! The take's markers file (`<take>_<node>_<stamp>_markers.txt`): a header comment saying
//! how to read it, then one line per MARK, in the order the marks were made.
//!
//! ```text
//! (columns are separated by one TAB)
//! # camrig markers v1: take t1, node 10_0_0_5, start_at_ns 1761228130500000000
//! # at_ns<TAB>cam1=frame_index/segment/frame_ns[<TAB>cam2=...]<TAB>note (JSON string)
//! 1761228131000000000 cam1=15/0/1761228131000123456 "clap"
//! ```
//! A camera whose frame for the mark has not been recorded (yet) shows `cam1=-`.

use camrig_protocol::manifest::Marker;
use camrig_protocol::UnixNanos;

pub const HEADER_VERSION: &str = "# camrig markers v1";

/// The whole markers file for a take's marks.
pub fn render(take: &str, node: &str, start_at: UnixNanos, markers: &[Marker]) -> String {
    let mut out = format!(
        "{HEADER_VERSION}: take {take}, node {node}, start_at_ns {start_at}\n\
         # at_ns<TAB>camN=frame_index/segment/frame_ns for each camera<TAB>note (JSON string); camN=- when the take has no such frame\n"
    );
    for m in markers {
        out.push_str(&m.at_ns.to_string());
        for f in &m.frames {
            match (f.frame_index, f.segment, f.frame_ns) {
                (Some(i), Some(s), Some(ns)) => {
                    out.push_str(&format!("\tcam{}={i}/{s}/{ns}", f.camera + 1))
                }
                _ => out.push_str(&format!("\tcam{}=-", f.camera + 1)),
            }
        }
        out.push('\t');
        out.push_str(&serde_json::to_string(&m.note).expect("a string serialises"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use camrig_protocol::manifest::MarkerFrame;

    #[test]
    fn one_line_per_mark_with_each_cameras_frame() {
        let m = Marker {
            at_ns: 1_000,
            note: "clap \"1\"".into(),
            frames: vec![
                MarkerFrame {
                    camera: 0,
                    frame_index: Some(15),
                    frame_ns: Some(1_010),
                    segment: Some(0),
                },
                MarkerFrame {
                    camera: 1,
                    frame_index: None,
                    frame_ns: None,
                    segment: None,
                },
            ],
        };
        let text = render("t1", "n", 500, &[m]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("# camrig markers v1: take t1, node n, start_at_ns 500"));
        assert_eq!(lines[2], "1000\tcam1=15/0/1010\tcam2=-\t\"clap \\\"1\\\"\"");
    }
}
