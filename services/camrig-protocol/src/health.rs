//! A node's host health as it reports it (`GET /v1/status` → `health`): CPU temperature,
//! the Raspberry Pi firmware's under-voltage and throttling flags, free memory, and how long
//! the node could record with the disk space it has. What the node cannot read is `None`
//! (unknown), never a reassuring default: a board without the firmware's flags is not
//! "not throttled", it is "we cannot tell".

use serde::{Deserialize, Serialize};

/// `NodeStatus::health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// CPU temperature from the kernel's thermal zone, °C; `None` when there is none.
    pub cpu_temp_c: Option<f64>,
    /// The firmware's flags; `None` when the board does not expose them (anything but a
    /// Raspberry Pi, or a Pi kernel without the firmware's sysfs node or `rpi_volt` hwmon).
    pub throttling: Option<Throttling>,
    /// `MemAvailable` from `/proc/meminfo`, bytes.
    pub mem_available_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    /// Bytes per second a take writes on this node (all cameras): the last take's measured
    /// rate, else the configured bitrate's estimate.
    pub take_bytes_per_second: u64,
    /// Whether `take_bytes_per_second` was measured (`true`) or estimated from the config.
    pub take_rate_measured: bool,
    /// Seconds of recording the free space above the floor holds at that rate.
    pub recordable_seconds: u64,
}

/// The Raspberry Pi firmware's `get_throttled` bits (each now and since boot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    pub under_voltage_now: bool,
    pub under_voltage_since_boot: bool,
    pub freq_capped_now: bool,
    pub freq_capped_since_boot: bool,
    pub throttled_now: bool,
    pub throttled_since_boot: bool,
    pub soft_temp_limit_now: bool,
    pub soft_temp_limit_since_boot: bool,
    /// Where the flags came from: `get_throttled` (every bit) or `rpi_volt` (the hwmon
    /// under-voltage alarm only; the other flags are then false as far as it can tell).
    pub source: String,
}

impl Throttling {
    /// Decodes the firmware's `get_throttled` word (bits 0–3 now, 16–19 since boot).
    pub fn from_get_throttled(word: u32) -> Throttling {
        let bit = |n: u32| word & (1 << n) != 0;
        Throttling {
            under_voltage_now: bit(0),
            freq_capped_now: bit(1),
            throttled_now: bit(2),
            soft_temp_limit_now: bit(3),
            under_voltage_since_boot: bit(16),
            freq_capped_since_boot: bit(17),
            throttled_since_boot: bit(18),
            soft_temp_limit_since_boot: bit(19),
            source: "get_throttled".into(),
        }
    }

    /// Throttled, frequency-capped or at the soft temperature limit right now.
    pub fn slowed_now(&self) -> bool {
        self.throttled_now || self.freq_capped_now || self.soft_temp_limit_now
    }

    /// The flags that are set, as words (`under-voltage now`, `throttled since boot`, ...).
    pub fn describe(&self) -> Vec<&'static str> {
        [
            (self.under_voltage_now, "under-voltage now"),
            (self.throttled_now, "throttled now"),
            (self.freq_capped_now, "frequency capped now"),
            (self.soft_temp_limit_now, "soft temperature limit now"),
            (self.under_voltage_since_boot, "under-voltage since boot"),
            (self.throttled_since_boot, "throttled since boot"),
            (self.freq_capped_since_boot, "frequency capped since boot"),
            (
                self.soft_temp_limit_since_boot,
                "soft temperature limit since boot",
            ),
        ]
        .into_iter()
        .filter_map(|(set, word)| set.then_some(word))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_throttled_bits_as_the_firmware_documents_them() {
        let t = Throttling::from_get_throttled(0x50005);
        assert!(t.under_voltage_now && t.throttled_now && !t.freq_capped_now);
        assert!(t.under_voltage_since_boot && t.throttled_since_boot);
        assert!(!t.soft_temp_limit_since_boot);
        assert_eq!(
            t.describe(),
            [
                "under-voltage now",
                "throttled now",
                "under-voltage since boot",
                "throttled since boot"
            ]
        );
        assert!(Throttling::from_get_throttled(0).describe().is_empty());
    }
}
