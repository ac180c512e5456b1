//! The host-health seam: CPU temperature, the Raspberry Pi firmware's under-voltage and
//! throttling flags, and free memory, read from sysfs and procfs under one root directory
//! (`health.sysfs_root`, `/` on a Pi). Tests and demos point the root at a directory laid out
//! like `/sys` and `/proc` to make a hot or throttled node; nothing else in the node reads
//! these files.
//!
//! - temperature: `sys/class/thermal/thermal_zone*/temp` (millidegrees), the zone whose
//!   `type` names the CPU (`cpu-thermal` on a Pi, `x86_pkg_temp` on a PC), else the first;
//! - firmware flags: `get_throttled` of the firmware's platform device
//!   (`sys/devices/platform/soc/soc:firmware/get_throttled`, hex), else the under-voltage
//!   alarm of the `rpi_volt` hwmon (`sys/class/hwmon/hwmon*/in0_lcrit_alarm`); neither
//!   present → unknown;
//! - memory: `proc/meminfo` (`MemAvailable`, `MemTotal`).

use std::path::{Path, PathBuf};

use camrig_protocol::health::Throttling;

/// Host readings at one instant; `None` is "cannot tell", never "fine".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostHealth {
    pub cpu_temp_c: Option<f64>,
    pub throttling: Option<Throttling>,
    pub mem_available_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
}

/// Reads [`HostHealth`] under a root directory.
#[derive(Clone, Debug)]
pub struct HealthProbe {
    root: PathBuf,
}

impl HealthProbe {
    pub fn new(root: impl Into<PathBuf>) -> HealthProbe {
        HealthProbe { root: root.into() }
    }

    pub fn read(&self) -> HostHealth {
        let (mem_available_bytes, mem_total_bytes) = self.memory();
        HostHealth {
            cpu_temp_c: self.cpu_temp_c(),
            throttling: self.throttling(),
            mem_available_bytes,
            mem_total_bytes,
        }
    }

    pub fn cpu_temp_c(&self) -> Option<f64> {
        let zones = sorted_entries(&self.root.join("sys/class/thermal"), "thermal_zone");
        let is_cpu = |zone: &Path| {
            read_trimmed(&zone.join("type")).is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("cpu") || t.contains("pkg") || t.contains("soc")
            })
        };
        let zone = zones.iter().find(|z| is_cpu(z)).or_else(|| zones.first())?;
        let milli: i64 = read_trimmed(&zone.join("temp"))?.parse().ok()?;
        Some(milli as f64 / 1000.0)
    }

    pub fn throttling(&self) -> Option<Throttling> {
        if let Some(word) = self.get_throttled() {
            return Some(Throttling::from_get_throttled(word));
        }
        for hwmon in sorted_entries(&self.root.join("sys/class/hwmon"), "hwmon") {
            if read_trimmed(&hwmon.join("name")).as_deref() != Some("rpi_volt") {
                continue;
            }
            let alarm = read_trimmed(&hwmon.join("in0_lcrit_alarm"))?;
            return Some(Throttling {
                under_voltage_now: alarm == "1",
                source: "rpi_volt".into(),
                ..Throttling::default()
            });
        }
        None
    }

    /// The firmware's `get_throttled` word, from the platform device whose name ends in
    /// `firmware` (`soc:firmware` on a Pi 4; other SoCs name the bus differently).
    fn get_throttled(&self) -> Option<u32> {
        let platform = self.root.join("sys/devices/platform");
        let mut candidates = vec![platform.join("soc/soc:firmware/get_throttled")];
        for bus in sorted_entries(&platform, "") {
            for dev in sorted_entries(&bus, "") {
                if dev.to_string_lossy().ends_with("firmware") {
                    candidates.push(dev.join("get_throttled"));
                }
            }
        }
        candidates.into_iter().find_map(|p| {
            let text = read_trimmed(&p)?;
            u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()
        })
    }

    fn memory(&self) -> (Option<u64>, Option<u64>) {
        let Some(text) = read_trimmed(&self.root.join("proc/meminfo")) else {
            return (None, None);
        };
        (
            meminfo_bytes(&text, "MemAvailable"),
            meminfo_bytes(&text, "MemTotal"),
        )
    }
}

/// `MemAvailable:    123456 kB` → bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Entries of `dir` whose name starts with `prefix`, in name order (`hwmon2` before
/// `hwmon10` is not needed: the first matching one is as good as any).
fn sorted_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn an_empty_root_is_unknown_not_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HealthProbe::new(dir.path()).read(), HostHealth::default());
    }

    #[test]
    fn a_hot_throttled_pi() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        write(r, "sys/class/thermal/thermal_zone0/temp", "84312\n");
        write(
            r,
            "sys/devices/platform/soc/soc:firmware/get_throttled",
            "50005\n",
        );
        write(
            r,
            "proc/meminfo",
            "MemTotal:        3884324 kB\nMemFree:  1 kB\nMemAvailable:    3000000 kB\n",
        );
        let h = HealthProbe::new(r).read();
        assert_eq!(h.cpu_temp_c, Some(84.312));
        let t = h.throttling.unwrap();
        assert!(t.under_voltage_now && t.throttled_now && t.throttled_since_boot);
        assert_eq!(t.source, "get_throttled");
        assert_eq!(h.mem_available_bytes, Some(3_000_000 * 1024));
        assert_eq!(h.mem_total_bytes, Some(3_884_324 * 1024));
    }

    #[test]
    fn the_cpu_zone_wins_and_rpi_volt_gives_under_voltage() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "sys/class/thermal/thermal_zone0/type", "acpitz");
        write(r, "sys/class/thermal/thermal_zone0/temp", "27800");
        write(r, "sys/class/thermal/thermal_zone1/type", "x86_pkg_temp");
        write(r, "sys/class/thermal/thermal_zone1/temp", "55000");
        write(r, "sys/class/hwmon/hwmon0/name", "cpu_thermal");
        write(r, "sys/class/hwmon/hwmon1/name", "rpi_volt");
        write(r, "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "1");
        let h = HealthProbe::new(r).read();
        assert_eq!(h.cpu_temp_c, Some(55.0));
        let t = h.throttling.unwrap();
        assert!(t.under_voltage_now && !t.throttled_now);
        assert_eq!(t.source, "rpi_volt");
    }
}
