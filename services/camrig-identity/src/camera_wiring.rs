//! Which CSI camera sits on which port of a node (`[[node.camera_wiring]]` in camrig.toml),
//! the sensors camrig knows ([`SENSORS`], the one list), and what the wiring becomes on the
//! card: the firmware's overlay lines in [`BOOT_CONFIG_FILE`], which the image's `config.txt`
//! includes.
//!
//! The Raspberry Pi firmware reads `config.txt` before Linux runs, so these lines cannot be
//! written at boot: provisioning writes [`boot_config`] next to camrig.toml whenever it writes
//! a card's identity, replacing the previous wiring. Without wiring the file carries no
//! setting and the firmware auto-detects the official cameras (`camera_auto_detect=1`, the
//! image's default); with wiring it turns auto-detection off and names every sensor and port.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The include file on the boot partition; the image's `config.txt` ends with
/// `include camrig-cameras.txt` (image/boot/config-extra.txt).
pub const BOOT_CONFIG_FILE: &str = "camrig-cameras.txt";

/// One camera of a node: the sensor, and the CSI connector it is plugged into.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPort {
    /// A name from [`SENSORS`], as libcamera reports the model (`imx477`, `imx708_wide`).
    pub sensor: String,
    /// The connector: 0 is `CAM0`/`CAM/DISP 0` (overlay parameter `cam0`), 1 is `CAM1`, the
    /// firmware's default connector and the only one on a Pi 3, 4 or Zero. Absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u8>,
}

impl CameraPort {
    /// The connector this camera is on (1, the firmware's default, when not given).
    pub fn connector(&self) -> u8 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// The connector an overlay without the `cam0` parameter drives.
pub const DEFAULT_PORT: u8 = 1;

/// A camera sensor camrig knows how to wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sensor {
    /// The name in the site file and camrig.toml: libcamera's model property, which is also
    /// what the node's `camera.select` matches.
    pub name: &'static str,
    /// The device-tree overlay (`dtoverlay=<overlay>`) that makes the kernel probe it.
    pub overlay: &'static str,
    /// Found by `camera_auto_detect=1` when it is the only camera on a board's default port.
    pub auto_detected: bool,
    /// What it is, for messages and docs.
    pub camera: &'static str,
}

/// Every sensor camrig can wire. A sensor not listed here is refused with this list, so a
/// typo never reaches the firmware (which would skip an unknown overlay and boot without
/// the camera).
pub const SENSORS: &[Sensor] = &[
    Sensor {
        name: "ov5647",
        overlay: "ov5647",
        auto_detected: true,
        camera: "Camera Module 1",
    },
    Sensor {
        name: "imx219",
        overlay: "imx219",
        auto_detected: true,
        camera: "Camera Module 2",
    },
    Sensor {
        name: "imx477",
        overlay: "imx477",
        auto_detected: true,
        camera: "HQ Camera",
    },
    Sensor {
        name: "imx708",
        overlay: "imx708",
        auto_detected: true,
        camera: "Camera Module 3",
    },
    Sensor {
        name: "imx708_wide",
        overlay: "imx708",
        auto_detected: true,
        camera: "Camera Module 3 Wide",
    },
    Sensor {
        name: "imx708_noir",
        overlay: "imx708",
        auto_detected: true,
        camera: "Camera Module 3 NoIR",
    },
    Sensor {
        name: "imx708_wide_noir",
        overlay: "imx708",
        auto_detected: true,
        camera: "Camera Module 3 Wide NoIR",
    },
    Sensor {
        name: "imx296",
        overlay: "imx296",
        auto_detected: true,
        camera: "Global Shutter Camera",
    },
    Sensor {
        name: "imx378",
        overlay: "imx378",
        auto_detected: false,
        camera: "IMX378 module",
    },
    Sensor {
        name: "imx519",
        overlay: "imx519",
        auto_detected: false,
        camera: "Arducam 16MP (IMX519)",
    },
    Sensor {
        name: "ov9281",
        overlay: "ov9281",
        auto_detected: false,
        camera: "OV9281 global shutter module",
    },
];

/// The sensor of that name (exact, lowercase as libcamera reports it).
pub fn sensor(name: &str) -> Option<&'static Sensor> {
    SENSORS.iter().find(|s| s.name == name)
}

/// The known sensor names, for messages: `ov5647, imx219, …`.
pub fn sensor_names() -> String {
    SENSORS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The wiring in camera order: the node's `cam1` is the lowest port (port 0 when both are
/// used), `cam2` the next.
pub fn in_camera_order(wiring: &[CameraPort]) -> Vec<&CameraPort> {
    let mut ordered: Vec<&CameraPort> = wiring.iter().collect();
    ordered.sort_by_key(|c| c.connector());
    ordered
}

/// What the node's `camera.select` must list for this wiring: each camera as its model on its
/// port (`imx477:port0`), in camera order. libcamera lists cameras in the kernel's order of
/// the boot, so the node finds each by its port in the device tree, and refuses a camera of
/// another model there.
pub fn camera_select(wiring: &[CameraPort]) -> Vec<String> {
    in_camera_order(wiring)
        .into_iter()
        .map(|c| format!("{}:port{}", c.sensor, c.connector()))
        .collect()
}

/// The text of [`BOOT_CONFIG_FILE`] for the card of `hostname` (for the comment): overlay
/// lines for a node with wiring, only comments otherwise (the firmware's auto-detection stays
/// on). [`crate::Identity::camera_wiring`] gives a card's wiring.
pub fn boot_config(hostname: &str, wiring: &[CameraPort]) -> String {
    let mut s = format!(
        "# {BOOT_CONFIG_FILE}: camera wiring of {}, written by `camrig provision` from\n\
         # camrig.toml's [[node.camera_wiring]] and replaced whenever the card's identity is\n\
         # written. config.txt includes it; edit the site file, not this file.\n",
        hostname
    );
    if wiring.is_empty() {
        s.push_str(
            "# No wiring given: the firmware auto-detects the official cameras \
             (camera_auto_detect=1).\n",
        );
        return s;
    }
    s.push_str("[all]\ncamera_auto_detect=0\n");
    for (i, camera) in in_camera_order(wiring).into_iter().enumerate() {
        // Checked by validation; an unknown name would have been refused before this.
        let overlay = sensor(&camera.sensor).map_or(camera.sensor.as_str(), |s| s.overlay);
        // Port 1 is the overlays' default connector; they have a `cam0` parameter and no
        // `cam1` one, and the firmware drops an overlay whose parameter it does not know.
        let param = if camera.connector() == 0 { ",cam0" } else { "" };
        let _ = writeln!(
            s,
            "# cam{}: {} on port {}",
            i + 1,
            camera.sensor,
            camera.connector()
        );
        let _ = writeln!(s, "dtoverlay={overlay}{param}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(sensor: &str, port: Option<u8>) -> CameraPort {
        CameraPort {
            sensor: sensor.into(),
            port,
        }
    }

    #[test]
    fn every_sensor_is_listed_once_with_a_lowercase_name() {
        for (i, s) in SENSORS.iter().enumerate() {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(!s.overlay.is_empty());
            assert_eq!(sensor(s.name), Some(&SENSORS[i]), "{} twice", s.name);
        }
        for name in ["imx219", "imx477", "imx708", "imx296", "ov5647"] {
            assert!(sensor(name).is_some(), "{name}");
        }
        assert_eq!(sensor("imx708_wide").unwrap().overlay, "imx708");
        assert!(sensor("IMX477").is_none());
    }

    #[test]
    fn camera_order_is_port_order_with_the_default_port_last() {
        let wiring = [port("imx219", Some(1)), port("imx477", Some(0))];
        assert_eq!(camera_select(&wiring), ["imx477:port0", "imx219:port1"]);
        let wiring = [port("imx219", None), port("imx477", Some(0))];
        assert_eq!(camera_select(&wiring), ["imx477:port0", "imx219:port1"]);
    }
}
