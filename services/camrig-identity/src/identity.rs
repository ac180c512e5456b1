//! The `camrig.toml` format (version 1): the serde model. [`crate::parse`] reads it (in
//! [`crate::validate`]).
//!
//! Parsing is strict: unknown keys, wrong types and malformed addresses are refused with the
//! line, and [`crate::validate`] then checks the fields against each other. There are no
//! defaults for anything that identifies the device; optional keys are the ones a rig can do
//! without (gateway, DNS, camera settings the node has its own defaults for).
//! `camrig.example.toml` in this crate is the annotated reference.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;

pub use camrig_config::node::{CameraConfig, CameraSource, RecordingConfig, SyntheticConfig};
pub use camrig_protocol::naming::Codec;

use crate::camera_wiring::CameraPort;
use crate::cidr::{Ipv4Cidr, Ipv4Interface};

/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What the device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Node,
    Controller,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Controller => "controller",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "node" => Ok(Role::Node),
            "controller" => Ok(Role::Controller),
            other => Err(format!(
                "unknown role '{other}'; expected \"node\" or \"controller\""
            )),
        }
    }
}

/// One card's identity, as written in `camrig.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub format: u32,
    pub role: Role,
    pub hostname: String,
    pub network: Network,
    pub rig: Rig,
    pub ssh: Ssh,
    #[serde(default)]
    pub time: Time,
    /// Node settings; only with `role = "node"`.
    pub node: Option<NodeSettings>,
    /// Controller settings; only with `role = "controller"`.
    pub controller: Option<ControllerSettings>,
}

impl Identity {
    /// The node's camera wiring (`[[node.camera_wiring]]`); empty for a controller or a node
    /// without wiring.
    pub fn camera_wiring(&self) -> &[CameraPort] {
        self.node
            .as_ref()
            .map(|n| n.camera_wiring.as_slice())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub address: Ipv4Interface,
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Interface name to configure; empty means every Ethernet port.
    #[serde(default)]
    pub interface: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rig {
    pub subnet: Ipv4Cidr,
    pub controller: Ipv4Addr,
    pub token: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Public keys that may log in as root.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// This device's host key (OpenSSH private key), with its public line.
    pub host_key: Option<String>,
    pub host_key_public: Option<String>,
    /// Node: the controller's public key, allowed to log in as `camrig` for rsync.
    pub controller_key: Option<String>,
    /// Controller: its private key for rsync to the nodes.
    pub private_key: Option<String>,
    /// Controller: the nodes' host keys, one known_hosts line each.
    #[serde(default)]
    pub known_hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Time {
    /// Controller: upstream NTP servers; empty means free-running local stratum 10.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// `[node]`: what the node records. Its sections are the node config's own
/// (`camrig_config::node`): a key added there is a key here, with the node's default when
/// omitted and the node's validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub standalone: bool,
    pub camera: Option<CameraConfig>,
    pub recording: Option<RecordingConfig>,
    pub synthetic: Option<SyntheticConfig>,
    /// The cameras' settings at start-up (the node config's `[camera_settings]`, one type
    /// from node config to site file: `camrig_protocol::camera_settings::CameraSettings`).
    pub camera_settings: Option<camrig_protocol::camera_settings::CameraSettings>,
    /// Which CSI sensor is on which port ([`crate::camera_wiring`]); empty: auto-detected.
    #[serde(default)]
    pub camera_wiring: Vec<CameraPort>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    /// The controller's API token (web UI one-click login, CLI, scripts); required.
    #[serde(default)]
    pub api_token: Option<String>,
    /// The operator password's Argon2 hash (PHC string); without it only the token logs in.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default = "default_true")]
    pub require_node_sync: bool,
    pub max_clock_offset_ms: Option<f64>,
    #[serde(default)]
    pub nodes: Vec<NodeEntry>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub address: Ipv4Addr,
    #[serde(default)]
    pub name: String,
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{line_column, parse, IdentityError};

    pub(crate) const NODE: &str = r#"
format = 1
role = "node"
hostname = "camrig-node-101"

[network]
address = "192.168.1.101/24"
gateway = "192.168.1.1"

[rig]
subnet = "192.168.1.0/24"
controller = "192.168.1.10"
token = "0123456789abcdef0123"

[ssh]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc admin@laptop"]
controller_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller"

[node.camera]
source = "synthetic"
count = 2
"#;

    #[test]
    fn node_identity_parses() {
        let id = parse(NODE).unwrap();
        assert_eq!(id.role, Role::Node);
        assert_eq!(id.network.address.addr(), Ipv4Addr::new(192, 168, 1, 101));
        assert_eq!(id.rig.controller, Ipv4Addr::new(192, 168, 1, 10));
        let camera = id.node.unwrap().camera.unwrap();
        assert_eq!(camera.source, CameraSource::Synthetic);
        assert_eq!(camera.count, 2);
        // Keys not given are the node's defaults.
        assert_eq!(camera.width, CameraConfig::default().width);
    }

    #[test]
    fn the_annotated_example_is_valid() {
        let id = parse(include_str!("../camrig.example.toml")).unwrap();
        assert_eq!(id.hostname, "camrig-node-101");
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let text = NODE.replace("gateway =", "gatway =");
        match parse(&text).unwrap_err() {
            IdentityError::Syntax { line, message, .. } => {
                assert_eq!(line, 8);
                assert!(message.contains("unknown field `gatway`"), "{message}");
            }
            other => panic!("expected a syntax error, got {other}"),
        }
    }

    #[test]
    fn bad_address_is_refused_with_an_example() {
        let text = NODE.replace("192.168.1.101/24", "192.168.1.101");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("line 7"), "{err}");
        assert!(err.contains("192.168.1.101/24"), "{err}");
    }

    #[test]
    fn missing_section_is_named() {
        let text = NODE.replace("[rig]", "[rigg]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("rigg") || err.contains("rig"), "{err}");
    }

    #[test]
    fn role_parses_from_the_image_role_file() {
        assert_eq!("node\n".parse::<Role>().unwrap(), Role::Node);
        assert!("camera".parse::<Role>().is_err());
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
