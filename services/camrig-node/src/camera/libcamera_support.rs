//! The parts of the libcamera backend that need no libcamera: choosing cameras from the
//! config, mapping sensor timestamps to wall clock, widening 32-bit sequence numbers, and
//! converting the pixel formats cameras deliver into the node's I420 frames. Pure, so they are
//! unit-tested on every PC; [`crate::camera::libcamera_backend`] (cargo feature `libcamera`) uses them.

use camrig_protocol::UnixNanos;

/// One camera as libcamera lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedCamera {
    /// libcamera's id, e.g. `/base/soc/i2c0mux/i2c@1/imx477@1a` or `platform/vimc.0 Sensor B`.
    pub id: String,
    /// The sensor model property, e.g. `imx477`, `Sensor B`.
    pub model: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error("no camera found: libcamera lists none")]
    NoCamera,
    #[error("camera.count = {wanted} but libcamera lists only {found}: {list}")]
    TooFew {
        wanted: usize,
        found: usize,
        list: String,
    },
    #[error("camera.select entry \"{0}\" matches no camera (by index, libcamera id or model); cameras: {1}")]
    NoMatch(String, String),
    #[error("camera.select entries \"{0}\" and \"{1}\" pick the same camera")]
    Twice(String, String),
    #[error("camera.select entry \"{0}\": this board's device tree has no CSI port {1} (no i2c_csi_dsi symbol for it under /proc/device-tree/__symbols__); name a port the board has")]
    NoPort(String, u8),
    #[error("camera.select entry \"{0}\": no camera on CSI port {1}; check the ribbon and the card's camrig-cameras.txt; cameras: {2}")]
    NothingOnPort(String, u8, String),
    #[error("camera.select entry \"{entry}\": the camera on CSI port {port} is a {found}; fix the site file's camera wiring or swap the cameras")]
    OtherModel {
        entry: String,
        port: u8,
        found: String,
    },
}

/// `0: Sensor B (platform/vimc.0 Sensor B), 1: ...` for messages.
pub fn describe(cameras: &[ListedCamera]) -> String {
    cameras
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}: {} ({})", c.model, c.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the cameras to open: `select` entries in order (each a 0-based index, an exact
/// libcamera id, a sensor model such as `imx477`, case-insensitive, or a model on a CSI port,
/// `imx477:port0`; a model matches the first camera of that model not already picked, so two
/// identical sensors can be chosen with the same word twice), or else the first `count`
/// cameras. Returns indexes into `cameras`.
///
/// libcamera lists cameras in the kernel's enumeration order, which changes between boots, so
/// two identical sensors are told apart only by port: `:port<N>` entries read the device
/// tree ([`CsiPorts::read`] of `/`), whose symbols name each connector's I2C bus.
pub fn select(
    cameras: &[ListedCamera],
    select: &[String],
    count: usize,
) -> Result<Vec<usize>, SelectError> {
    let ports = if select.iter().any(|s| port_entry(s).is_some()) {
        CsiPorts::read(std::path::Path::new("/"))
    } else {
        CsiPorts::default()
    };
    select_with_ports(cameras, select, count, &ports)
}

/// [`select`] with the CSI ports given (pure).
pub fn select_with_ports(
    cameras: &[ListedCamera],
    select: &[String],
    count: usize,
    ports: &CsiPorts,
) -> Result<Vec<usize>, SelectError> {
    if cameras.is_empty() {
        return Err(SelectError::NoCamera);
    }
    if select.is_empty() {
        if cameras.len() < count {
            return Err(SelectError::TooFew {
                wanted: count,
                found: cameras.len(),
                list: describe(cameras),
            });
        }
        return Ok((0..count).collect());
    }
    let mut picked: Vec<(usize, &String)> = Vec::new();
    for want in select {
        let taken = |i: usize| picked.iter().any(|(p, _)| *p == i);
        let by_index = want.parse::<usize>().ok().filter(|&i| i < cameras.len());
        let by_id = cameras.iter().position(|c| &c.id == want);
        let i = match (by_index.or(by_id), port_entry(want)) {
            (Some(i), _) => i,
            (None, Some((model, port))) => {
                let Some(bus) = ports.bus(port) else {
                    return Err(SelectError::NoPort(want.clone(), port));
                };
                let prefix = format!("/base{}/", bus.trim_end_matches('/'));
                let Some(i) = cameras.iter().position(|c| c.id.starts_with(&prefix)) else {
                    return Err(SelectError::NothingOnPort(
                        want.clone(),
                        port,
                        describe(cameras),
                    ));
                };
                if !cameras[i].model.eq_ignore_ascii_case(model) {
                    return Err(SelectError::OtherModel {
                        entry: want.clone(),
                        port,
                        found: cameras[i].model.clone(),
                    });
                }
                i
            }
            (None, None) => {
                let of_model = |i: usize| cameras[i].model.eq_ignore_ascii_case(want);
                // The first camera of that model not picked yet; if all are, the first
                // (which then reports the double pick).
                let by_model = (0..cameras.len())
                    .find(|&i| of_model(i) && !taken(i))
                    .or_else(|| (0..cameras.len()).find(|&i| of_model(i)));
                let Some(i) = by_model else {
                    return Err(SelectError::NoMatch(want.clone(), describe(cameras)));
                };
                i
            }
        };
        if let Some((_, first)) = picked.iter().find(|(p, _)| *p == i) {
            return Err(SelectError::Twice((*first).clone(), want.clone()));
        }
        picked.push((i, want));
    }
    Ok(picked.into_iter().map(|(i, _)| i).collect())
}

/// `imx477:port0` → (`imx477`, 0).
fn port_entry(entry: &str) -> Option<(&str, u8)> {
    let (model, port) = entry.rsplit_once(":port")?;
    let port = port.parse().ok()?;
    (!model.is_empty()).then_some((model, port))
}

/// Where each CSI connector's camera appears in the device tree: the I2C bus the firmware's
/// camera overlays put the sensor under, from the device tree's symbols. Port 0 is
/// `i2c_csi_dsi0` (an overlay's `cam0` parameter), port 1 is `i2c_csi_dsi` (the overlays'
/// default connector: CAM1 on a Pi 5 or Compute Module, the only one on a Pi 3, 4 or Zero).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsiPorts {
    /// Device-tree paths of the buses, e.g. `/axi/pcie@1000120000/rp1/i2c@88000`.
    pub buses: [Option<String>; 2],
}

impl CsiPorts {
    /// The symbols under `root` (`/` on a Pi): `proc/device-tree/__symbols__/…`. A symbol
    /// missing (not a Pi, or no such connector) is a port that does not exist.
    pub fn read(root: &std::path::Path) -> CsiPorts {
        let symbol = |name: &str| {
            std::fs::read(root.join("proc/device-tree/__symbols__").join(name))
                .ok()
                .map(|raw| {
                    String::from_utf8_lossy(&raw)
                        .trim_end_matches('\0')
                        .to_owned()
                })
                .filter(|path| path.starts_with('/'))
        };
        CsiPorts {
            buses: [symbol("i2c_csi_dsi0"), symbol("i2c_csi_dsi")],
        }
    }

    /// The bus of `port`, when the board has it.
    pub fn bus(&self, port: u8) -> Option<&str> {
        self.buses.get(usize::from(port))?.as_deref()
    }
}

/// The unit of libcamera's `FrameWallClock` control: microseconds before libcamera 0.5.2,
/// nanoseconds from 0.5.2 on (the control's definition changed; the value did not say so).
pub fn frame_wall_clock_ns(value: i64, libcamera_version: (u32, u32, u32)) -> UnixNanos {
    if libcamera_version >= (0, 5, 2) {
        value
    } else {
        value.saturating_mul(1_000)
    }
}

/// The start of a frame's exposure, the instant phase lock locks: libcamera's
/// SensorTimestamp (and FrameWallClock, the same instant on the wall clock) mark the start of
/// readout, and exposure began `exposure_us` earlier. Correcting for it lines up cameras with
/// different exposure times.
pub fn exposure_start_ns(readout_start_ns: UnixNanos, exposure_us: Option<i32>) -> UnixNanos {
    readout_start_ns - i64::from(exposure_us.unwrap_or(0).max(0)) * 1_000
}

/// Requests libcamera would have completed before a request requeued now: its frame-duration
/// request lands at most this many frames after the frame the loop just saw (every buffer of
/// the camera queued ahead of it), so the loop counts them all as in flight.
pub fn control_latency_frames(buffers: u32) -> u32 {
    buffers.clamp(1, 8)
}

/// What the camera's `FrameDurationLimits` control (µs, as its ControlInfo gives the range)
/// lets the phase lock do: durations in whole µs between the range's ends, from a start at
/// `period_us`. `None` when the range is missing or empty (the camera cannot be locked).
pub fn frame_control(
    min_us: Option<i64>,
    max_us: Option<i64>,
    period_us: i64,
    buffers: u32,
) -> Option<crate::camera::phase_lock::FrameControl> {
    let (min_us, max_us) = (min_us?, max_us?);
    if min_us <= 0 || max_us < min_us {
        return None;
    }
    Some(crate::camera::phase_lock::FrameControl {
        min_ns: min_us as f64 * 1e3,
        max_ns: max_us as f64 * 1e3,
        quantum_ns: 1e3,
        latency_frames: control_latency_frames(buffers),
        initial_ns: period_us as f64 * 1e3,
    })
}

/// The `FrameDurationLimits` value (min = max, µs) that asks the camera for one frame of
/// `duration_ns` (the loop's request, already whole µs).
pub fn frame_duration_limits_us(duration_ns: f64) -> [i64; 2] {
    let us = (duration_ns / 1e3).round() as i64;
    [us, us]
}

/// `0.4.0`, `0.5.2+rpt20250903`, `v0.5.1` → (major, minor, patch).
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let s = s.trim().trim_start_matches('v');
    let core = s.split(['+', '-', '~']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// A paired reading of the sensor's clock (CLOCK_MONOTONIC, which is what libcamera's
/// SensorTimestamp is on Linux camera drivers) and CLOCK_REALTIME: the monotonic clock is
/// read on both sides of the wall clock and the midpoint taken, so the offset is good to
/// the reading's own duration (well under a microsecond).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockPair {
    pub monotonic_ns: i64,
    pub realtime_ns: i64,
}

impl ClockPair {
    pub fn now() -> ClockPair {
        let a = clock_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        let r = clock_ns(nix::time::ClockId::CLOCK_REALTIME);
        let b = clock_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        ClockPair {
            monotonic_ns: a + (b - a) / 2,
            realtime_ns: r,
        }
    }

    /// The wall-clock instant of a sensor timestamp.
    pub fn to_wall(&self, sensor_ns: i64) -> UnixNanos {
        sensor_ns - self.monotonic_ns + self.realtime_ns
    }
}

fn clock_ns(id: nix::time::ClockId) -> i64 {
    let t = nix::time::clock_gettime(id).expect("clock_gettime of a standard clock");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

/// Widens libcamera's 32-bit frame sequence numbers into a 64-bit count that survives
/// wrap-around, so the node's gap detection (a gap is a dropped frame) stays right.
#[derive(Debug, Default)]
pub struct SequenceWidener {
    last: Option<u32>,
    high: u64,
}

impl SequenceWidener {
    pub fn widen(&mut self, seq: u32) -> u64 {
        if let Some(last) = self.last {
            if seq < last && last - seq > u32::MAX / 2 {
                self.high += 1 << 32;
            }
        }
        self.last = Some(seq);
        self.high | u64::from(seq)
    }
}

/// The frame layouts the backend can turn into I420.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Planar 4:2:0, Y then U then V (libcamera `YUV420`).
    Yuv420,
    /// Y plane then interleaved UV (libcamera `NV12`).
    Nv12,
    /// Packed 4:2:2 Y0 U Y1 V (libcamera `YUYV`, USB cameras).
    Yuyv,
    /// Packed 24-bit, bytes B G R in memory (libcamera/DRM `RGB888`).
    Rgb888,
    /// Packed 24-bit, bytes R G B in memory (libcamera/DRM `BGR888`; vimc's).
    Bgr888,
}

impl Layout {
    /// By libcamera pixel format name.
    pub fn from_name(name: &str) -> Option<Layout> {
        Some(match name {
            "YUV420" => Layout::Yuv420,
            "NV12" => Layout::Nv12,
            "YUYV" => Layout::Yuyv,
            "RGB888" => Layout::Rgb888,
            "BGR888" => Layout::Bgr888,
            _ => return None,
        })
    }

    /// Preference when the config names none: formats that need no conversion first.
    pub const PREFERRED: [&'static str; 5] = ["YUV420", "NV12", "YUYV", "BGR888", "RGB888"];
}

/// Converts one frame (its planes as the camera laid them out, `stride` bytes per line of
/// the first plane) into tightly packed I420 of `width`×`height` (both even), appending to
/// `out`. Colour conversion uses BT.601 limited range, what the encoders signal.
pub fn to_i420(
    layout: Layout,
    planes: &[&[u8]],
    stride: usize,
    width: usize,
    height: usize,
    out: &mut Vec<u8>,
) {
    let (cw, ch) = (width / 2, height / 2);
    out.clear();
    out.reserve(width * height + 2 * cw * ch);
    let row = |p: &[u8], start: usize, len: usize| -> Vec<u8> {
        p.get(start..start + len)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| vec![0; len])
    };
    match layout {
        Layout::Yuv420 => {
            // One buffer (single plane) or three planes: either way Y, U, V in order.
            let (y, u, v, cs) = if planes.len() >= 3 {
                (planes[0], planes[1], planes[2], stride / 2)
            } else {
                let p = planes[0];
                let u_off = stride * height;
                let v_off = u_off + (stride / 2) * ch;
                (
                    p,
                    &p[u_off.min(p.len())..],
                    &p[v_off.min(p.len())..],
                    stride / 2,
                )
            };
            for r in 0..height {
                out.extend(row(y, r * stride, width));
            }
            for plane in [u, v] {
                for r in 0..ch {
                    out.extend(row(plane, r * cs, cw));
                }
            }
        }
        Layout::Nv12 => {
            let y = planes[0];
            let uv = if planes.len() >= 2 {
                planes[1]
            } else {
                &y[(stride * height).min(y.len())..]
            };
            for r in 0..height {
                out.extend(row(y, r * stride, width));
            }
            for offset in [0, 1] {
                for r in 0..ch {
                    let line = row(uv, r * stride, cw * 2);
                    out.extend(line.iter().skip(offset).step_by(2));
                }
            }
        }
        Layout::Yuyv => {
            let p = planes[0];
            let mut u: Vec<u8> = Vec::with_capacity(cw * ch);
            let mut v: Vec<u8> = Vec::with_capacity(cw * ch);
            for r in 0..height {
                let line = row(p, r * stride, width * 2);
                out.extend(line.iter().step_by(2));
                if r % 2 == 0 {
                    u.extend(line.iter().skip(1).step_by(4));
                    v.extend(line.iter().skip(3).step_by(4));
                }
            }
            out.extend(u);
            out.extend(v);
        }
        Layout::Rgb888 | Layout::Bgr888 => {
            let p = planes[0];
            let (ri, bi) = if layout == Layout::Bgr888 {
                (0, 2)
            } else {
                (2, 0)
            };
            let px = |x: usize, y: usize| -> (i32, i32, i32) {
                let o = y * stride + x * 3;
                match p.get(o..o + 3) {
                    Some(c) => (c[ri] as i32, c[1] as i32, c[bi] as i32),
                    None => (0, 0, 0),
                }
            };
            for y in 0..height {
                for x in 0..width {
                    let (r, g, b) = px(x, y);
                    out.push((((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8);
                }
            }
            let mut v_plane = Vec::with_capacity(cw * ch);
            for y in 0..ch {
                for x in 0..cw {
                    // The 2x2 block's average colour.
                    let mut s = (0, 0, 0);
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (r, g, b) = px(2 * x + dx, 2 * y + dy);
                        s = (s.0 + r, s.1 + g, s.2 + b);
                    }
                    let (r, g, b) = (s.0 / 4, s.1 / 4, s.2 / 4);
                    out.push((((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8);
                    v_plane.push((((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8);
                }
            }
            out.extend(v_plane);
        }
    }
}

/// The I420 planes of a camera buffer that already is tightly packed I420 (`YUV420` with
/// lines exactly `width` bytes, as one buffer or three planes), borrowed in place; None when
/// the buffer needs converting (another format, padded lines, or too short).
pub fn i420_in_place<'a>(
    layout: Layout,
    planes: &[&'a [u8]],
    stride: usize,
    width: usize,
    height: usize,
) -> Option<(&'a [u8], &'a [u8], &'a [u8])> {
    if layout != Layout::Yuv420 || stride != width {
        return None;
    }
    let (y_len, c_len) = (width * height, (width / 2) * (height / 2));
    if planes.len() >= 3 {
        let (y, u, v) = (planes[0], planes[1], planes[2]);
        return (y.len() >= y_len && u.len() >= c_len && v.len() >= c_len)
            .then(|| (&y[..y_len], &u[..c_len], &v[..c_len]));
    }
    let p = *planes.first()?;
    if p.len() < y_len + 2 * c_len {
        return None;
    }
    Some((
        &p[..y_len],
        &p[y_len..y_len + c_len],
        &p[y_len + c_len..y_len + 2 * c_len],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams() -> Vec<ListedCamera> {
        vec![
            ListedCamera {
                id: "/base/soc/i2c0mux/i2c@1/imx477@1a".into(),
                model: "imx477".into(),
            },
            ListedCamera {
                id: "/base/soc/i2c0mux/i2c@0/imx219@10".into(),
                model: "imx219".into(),
            },
        ]
    }

    #[test]
    fn cameras_are_picked_by_index_id_or_model() {
        let c = cams();
        assert_eq!(select(&c, &[], 1), Ok(vec![0]));
        assert_eq!(select(&c, &[], 2), Ok(vec![0, 1]));
        assert_eq!(select(&c, &["1".into()], 1), Ok(vec![1]));
        assert_eq!(
            select(&c, &["IMX219".into(), "imx477".into()], 2),
            Ok(vec![1, 0])
        );
        assert_eq!(
            select(&c, &["/base/soc/i2c0mux/i2c@1/imx477@1a".into()], 1),
            Ok(vec![0])
        );
    }

    #[test]
    fn two_identical_sensors_by_the_same_model_word() {
        let mut c = cams();
        c[1].model = "imx477".into();
        assert_eq!(
            select(&c, &["imx477".into(), "imx477".into()], 2),
            Ok(vec![0, 1])
        );
    }

    /// A Pi 5's two connectors, as its device tree's symbols name their buses.
    fn pi5() -> (Vec<ListedCamera>, CsiPorts) {
        // libcamera lists them in the kernel's order of the boot: here CAM1 first.
        let cameras = vec![
            ListedCamera {
                id: "/base/axi/pcie@1000120000/rp1/i2c@80000/imx477@1a".into(),
                model: "imx477".into(),
            },
            ListedCamera {
                id: "/base/axi/pcie@1000120000/rp1/i2c@88000/imx477@1a".into(),
                model: "imx477".into(),
            },
        ];
        let ports = CsiPorts {
            buses: [
                Some("/axi/pcie@1000120000/rp1/i2c@88000".into()),
                Some("/axi/pcie@1000120000/rp1/i2c@80000".into()),
            ],
        };
        (cameras, ports)
    }

    #[test]
    fn identical_sensors_are_picked_by_port_whatever_libcameras_order() {
        let (mut cameras, ports) = pi5();
        let select = ["imx477:port0".to_owned(), "imx477:port1".to_owned()];
        assert_eq!(
            select_with_ports(&cameras, &select, 2, &ports),
            Ok(vec![1, 0])
        );
        cameras.reverse();
        assert_eq!(
            select_with_ports(&cameras, &select, 2, &ports),
            Ok(vec![0, 1])
        );
    }

    #[test]
    fn a_port_without_its_camera_or_with_another_model_is_named() {
        let (mut cameras, ports) = pi5();
        let select = ["imx219:port0".to_owned()];
        assert_eq!(
            select_with_ports(&cameras, &select, 1, &ports),
            Err(SelectError::OtherModel {
                entry: "imx219:port0".into(),
                port: 0,
                found: "imx477".into()
            })
        );
        cameras.truncate(1);
        let e = select_with_ports(&cameras, &["imx477:port0".into()], 1, &ports)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no camera on CSI port 0") && e.contains("i2c@80000"),
            "{e}"
        );
        let e = select_with_ports(&cameras, &["imx477:port1".into()], 1, &CsiPorts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CSI port 1"), "{e}");
    }

    #[test]
    fn csi_ports_come_from_the_device_trees_symbols() {
        let root = tempfile::tempdir().unwrap();
        let symbols = root.path().join("proc/device-tree/__symbols__");
        std::fs::create_dir_all(&symbols).unwrap();
        // Device-tree strings end in NUL.
        std::fs::write(
            symbols.join("i2c_csi_dsi0"),
            b"/axi/pcie@1000120000/rp1/i2c@88000\0",
        )
        .unwrap();
        std::fs::write(
            symbols.join("i2c_csi_dsi"),
            b"/axi/pcie@1000120000/rp1/i2c@80000\0",
        )
        .unwrap();
        assert_eq!(CsiPorts::read(root.path()), pi5().1);
        // A Pi 4: one connector, the default one.
        std::fs::remove_file(symbols.join("i2c_csi_dsi0")).unwrap();
        let ports = CsiPorts::read(root.path());
        assert_eq!(ports.bus(0), None);
        assert!(ports.bus(1).is_some());
        assert_eq!(ports.bus(2), None);
        assert_eq!(port_entry("imx708_wide:port1"), Some(("imx708_wide", 1)));
        assert_eq!(port_entry("imx477"), None);
        assert_eq!(port_entry(":port0"), None);
    }

    #[test]
    fn selection_problems_name_the_cameras_there_are() {
        let c = cams();
        assert_eq!(select(&[], &[], 1), Err(SelectError::NoCamera));
        let e = select(&c, &["imx708".into()], 1).unwrap_err().to_string();
        assert!(e.contains("imx708") && e.contains("0: imx477"), "{e}");
        let e = select(&c[..1], &[], 2).unwrap_err().to_string();
        assert!(
            e.contains("camera.count = 2") && e.contains("only 1"),
            "{e}"
        );
        assert_eq!(
            select(&c, &["0".into(), "imx477".into()], 2),
            Err(SelectError::Twice("0".into(), "imx477".into()))
        );
    }

    #[test]
    fn frame_wall_clock_unit_changed_in_0_5_2() {
        // Before 0.5.2 the control is in µs, from 0.5.2 on in ns: one instant either way.
        let ns = 1_700_000_000_000_000_000;
        for (value, version) in [
            (ns / 1000, (0, 4, 0)),
            (ns / 1000, (0, 5, 1)),
            (ns, (0, 5, 2)),
            (ns, (0, 7, 0)),
        ] {
            assert_eq!(frame_wall_clock_ns(value, version), ns, "{version:?}");
        }
    }

    #[test]
    fn exposure_start_is_readout_start_minus_the_exposure() {
        assert_eq!(exposure_start_ns(1_000_000_000, Some(10_000)), 990_000_000);
        assert_eq!(exposure_start_ns(1_000_000_000, None), 1_000_000_000);
        assert_eq!(exposure_start_ns(1_000_000_000, Some(-5)), 1_000_000_000);
    }

    #[test]
    fn frame_duration_limits_drive_the_phase_lock() {
        use crate::camera::phase_lock::{FrameControl, LockSettings, PhaseLock};
        use camrig_protocol::grid::FrameGrid;
        use camrig_protocol::phase::LockState;
        // imx219 1640x1232 on a Pi: 41.85 fps at most, very long frames allowed.
        let c: FrameControl = frame_control(Some(23_894), Some(869_434_000), 33_333, 6).unwrap();
        assert_eq!(c.latency_frames, 6);
        assert_eq!(
            (c.min_ns, c.quantum_ns, c.initial_ns),
            (23_894_000.0, 1e3, 33_333_000.0)
        );
        assert!(frame_control(None, Some(1), 33_333, 6).is_none());
        assert!(frame_control(Some(5), Some(4), 33_333, 6).is_none());
        let grid = FrameGrid::new(30.0).unwrap();
        let mut lock = PhaseLock::new("cam1", grid, c, LockSettings::default());
        assert_eq!(lock.state(), LockState::Locking);
        let r = lock.on_frame(0, 1_800_000_000_005_000_000).unwrap();
        assert_eq!(r.sequence, 6);
        let [min, max] = frame_duration_limits_us(r.duration_ns);
        assert_eq!(min, max, "min = max: the camera runs exactly that frame");
        assert_eq!(r.duration_ns % 1e3, 0.0, "whole µs");
        assert!(min < 33_333, "a late frame is shortened: {min}");
        // A mode at its maximum rate has nothing to shorten: unavailable, with the reason.
        let full = frame_control(Some(33_333), Some(869_434_000), 33_333, 6).unwrap();
        let lock = PhaseLock::new("cam1", grid, full, LockSettings::default());
        assert_eq!(lock.state(), LockState::Unavailable);
    }

    #[test]
    fn versions_parse_with_distribution_suffixes() {
        assert_eq!(parse_version("0.4.0"), Some((0, 4, 0)));
        assert_eq!(parse_version("v0.5.2+rpt20250903"), Some((0, 5, 2)));
        assert_eq!(parse_version("0.5"), Some((0, 5, 0)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn sensor_time_maps_through_the_paired_reading() {
        let p = ClockPair {
            monotonic_ns: 5_000_000_000,
            realtime_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(p.to_wall(4_990_000_000), 1_699_999_999_990_000_000);
        let now = ClockPair::now();
        assert!(now.realtime_ns > 1_600_000_000_000_000_000);
    }

    #[test]
    fn sequences_widen_across_wrap_around() {
        let mut w = SequenceWidener::default();
        assert_eq!(w.widen(u32::MAX - 1), u64::from(u32::MAX - 1));
        assert_eq!(w.widen(u32::MAX), u64::from(u32::MAX));
        assert_eq!(w.widen(1), (1u64 << 32) + 1, "one frame lost at the wrap");
    }

    #[test]
    fn grey_rgb_becomes_mid_grey_i420() {
        // 2x2 of (128,128,128) with a stride of 8 bytes (2 bytes padding).
        let mut p = vec![128u8; 16];
        p[6] = 0;
        p[7] = 0;
        p[14] = 0;
        p[15] = 0;
        let mut out = Vec::new();
        to_i420(Layout::Bgr888, &[&p], 8, 2, 2, &mut out);
        assert_eq!(out.len(), 6);
        assert!(
            out[..4].iter().all(|&y| (125..=127).contains(&y)),
            "{out:?}"
        );
        assert_eq!(&out[4..], &[128, 128]);
    }

    #[test]
    fn red_and_blue_are_not_swapped() {
        // BGR888 (libcamera) is R, G, B in memory: pure red.
        let p = [255u8, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0];
        let mut out = Vec::new();
        to_i420(Layout::Bgr888, &[&p], 6, 2, 2, &mut out);
        assert!(out[5] > 200, "V (red difference) high: {out:?}");
        to_i420(Layout::Rgb888, &[&p], 6, 2, 2, &mut out);
        assert!(out[4] > 200, "U (blue difference) high: {out:?}");
    }

    #[test]
    fn planar_and_semi_planar_yuv_unpack_with_stride() {
        // 2x2, stride 4: Y rows [1,2,_,_] [3,4,_,_]; U at 8 (stride 2): [5,_]; V at 10: [6,_].
        let p = [1, 2, 0, 0, 3, 4, 0, 0, 5, 0, 6, 0];
        let mut out = Vec::new();
        to_i420(Layout::Yuv420, &[&p], 4, 2, 2, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
        let nv12 = [1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0, 0];
        to_i420(Layout::Nv12, &[&nv12], 4, 2, 2, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
        let yuyv = [1, 5, 2, 6, 3, 7, 4, 8];
        to_i420(Layout::Yuyv, &[&yuyv], 4, 2, 2, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn tight_yuv420_is_read_in_place_and_anything_else_is_converted() {
        // 4x2: Y 8 bytes, U 2, V 2.
        let buf: Vec<u8> = (0..12).collect();
        let (y, u, v) = i420_in_place(Layout::Yuv420, &[&buf], 4, 4, 2).unwrap();
        assert_eq!((y, u, v), (&buf[..8], &buf[8..10], &buf[10..12]));
        let (y, u, v) = i420_in_place(
            Layout::Yuv420,
            &[&buf[..8], &buf[8..10], &buf[10..]],
            4,
            4,
            2,
        )
        .unwrap();
        assert_eq!((y.len(), u, v), (8, &buf[8..10], &buf[10..12]));
        // Padded lines, other formats and short buffers are not I420 as they are.
        assert_eq!(i420_in_place(Layout::Yuv420, &[&buf], 6, 4, 2), None);
        assert_eq!(i420_in_place(Layout::Nv12, &[&buf], 4, 4, 2), None);
        assert_eq!(i420_in_place(Layout::Yuv420, &[&buf[..11]], 4, 4, 2), None);
        assert_eq!(i420_in_place(Layout::Yuv420, &[], 4, 4, 2), None);
    }
}
