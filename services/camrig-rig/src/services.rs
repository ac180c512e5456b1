//! camrig's own services on rig hosts: where their binaries are, and the configuration files
//! the harness writes for them (the keys of `node.example.toml` and `controller.example.toml`).

use std::net::{Ipv4Addr, SocketAddr};

use camrig_config::controller::{AccessEntry, ControllerFile, NodeEntry};
use camrig_config::node::{CameraSource, NodeConfig};
use camrig_protocol::naming::Codec;
use std::path::{Path, PathBuf};

use crate::error::{Result, RigError};

/// The controller's API token; every request of the operator's host carries it.
pub const API_TOKEN: &str = "virtual-rig-api-token-0123";

pub const NODE_BIN: &str = "camrig-node";
pub const CONTROLLER_BIN: &str = "camrig-controller";
pub const NODE_PORT: u16 = camrig_protocol::api::NODE_API_PORT;
pub const CONTROLLER_PORT: u16 = 8080;

/// Finds a workspace binary: `$CAMRIG_BIN_DIR` if set, else next to the running executable
/// (`target/<profile>/rig-bench`) or one level up from it (`target/<profile>/deps/it-*`).
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("CAMRIG_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_owned());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_owned());
            }
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(RigError::MissingBinary {
            name: name.to_owned(),
            looked_in: dirs,
        })
}

/// What a rig node records: small synthetic frames keep 50 nodes within two cores.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// `mjpeg` or `h264`.
    pub codec: String,
    pub segment_seconds: u32,
    /// The synthetic camera's grain (`synthetic.noise`): 0 = clean bars (tiny files).
    pub noise: u8,
    /// Phase lock on (`phase.lock`); off, the sensor models free-run.
    pub phase_lock: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            width: 160,
            height: 120,
            fps: 30,
            codec: "mjpeg".into(),
            segment_seconds: 2,
            noise: 0,
            phase_lock: true,
        }
    }
}

/// A node's `node.toml`.
pub fn node_config(ip: Ipv4Addr, data_dir: &Path, token: &str, s: &NodeSettings) -> Result<String> {
    let codec = match s.codec.as_str() {
        "mjpeg" => Codec::Mjpeg,
        "h264" => Codec::H264,
        other => {
            return Err(RigError::Config(format!(
                "node codec {other:?}: use \"mjpeg\" or \"h264\""
            )))
        }
    };
    let mut c = NodeConfig {
        listen: SocketAddr::from((ip, NODE_PORT)),
        data_dir: data_dir.to_owned(),
        token: token.to_owned(),
        auth: true,
        ..NodeConfig::default()
    };
    c.recording.codec = codec;
    c.recording.segment_seconds = s.segment_seconds;
    c.recording.min_free_mb = 64;
    c.recording.mjpeg_quality = 70;
    c.camera.source = CameraSource::Synthetic;
    c.camera.count = 1;
    c.camera.width = s.width;
    c.camera.height = s.height;
    c.camera.fps = f64::from(s.fps);
    c.synthetic.noise = s.noise;
    c.phase.lock = s.phase_lock;
    Ok(format!(
        "# written by the camrig virtual rig\n{}",
        c.to_toml()
    ))
}

/// One node as the controller's config lists it.
#[derive(Clone, Debug)]
pub struct ControllerNodeEntry {
    pub ip: Ipv4Addr,
    /// `root@<ip>:<recordings dir>`.
    pub rsync_source: String,
}

/// The controller's `controller.toml`.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    pub listen: Ipv4Addr,
    pub data_dir: PathBuf,
    pub downloads_dir: PathBuf,
    pub token: String,
    pub ssh_key: PathBuf,
    pub known_hosts: PathBuf,
    pub start_lead_ms: u32,
    pub download_parallelism: u32,
    pub nodes: Vec<ControllerNodeEntry>,
    /// Extra top-level `key = value` lines, for settings a scenario needs.
    pub extra: Vec<String>,
}

pub fn controller_config(c: &ControllerSettings) -> Result<String> {
    let file = ControllerFile {
        listen: format!("{}:{CONTROLLER_PORT}", c.listen),
        data_dir: c.data_dir.clone(),
        downloads_dir: Some(c.downloads_dir.clone()),
        token: c.token.clone(),
        ssh_key: c.ssh_key.clone(),
        known_hosts: c.known_hosts.clone(),
        ssh_user: "root".into(),
        start_lead_ms: u64::from(c.start_lead_ms),
        download_parallelism: c.download_parallelism as usize,
        // Every namespace shares the machine's one clock, and CI machines may run no NTP daemon.
        require_node_sync: false,
        // With one shared clock the probe measures only its own error, which scheduling on a
        // loaded two-core machine drives to tens of milliseconds with 50 nodes; it must not
        // block START.
        max_clock_offset_ms: 100.0,
        access: Some(AccessEntry {
            api_token: API_TOKEN.into(),
            ..AccessEntry::default()
        }),
        node: c
            .nodes
            .iter()
            .map(|n| NodeEntry {
                port: NODE_PORT,
                rsync_source: Some(n.rsync_source.clone()),
                ..NodeEntry::new(n.ip.to_string())
            })
            .collect(),
        ..ControllerFile::default()
    };
    // A scenario's extra settings are `key = value` lines over the same schema.
    let mut table = toml::Table::try_from(&file)
        .map_err(|e| RigError::Config(format!("controller config: {e}")))?;
    for line in &c.extra {
        let extra: toml::Table = line
            .parse()
            .map_err(|e| RigError::Config(format!("controller setting {line:?}: {e}")))?;
        table.extend(extra);
    }
    let checked: ControllerFile = table
        .clone()
        .try_into()
        .map_err(|e| RigError::Config(format!("controller setting: {e}")))?;
    Ok(format!(
        "# written by the camrig virtual rig\n{}",
        checked.to_toml()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_as_toml_with_the_example_keys() {
        let node: toml::Table = node_config(
            "10.77.0.10".parse().unwrap(),
            Path::new("/d"),
            "tok",
            &NodeSettings::default(),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(node["listen"].as_str(), Some("10.77.0.10:8081"));
        assert_eq!(node["camera"]["width"].as_integer(), Some(160));

        let c = ControllerSettings {
            listen: "10.77.0.1".parse().unwrap(),
            data_dir: "/c".into(),
            downloads_dir: "/c/video_downloads".into(),
            token: "tok".into(),
            ssh_key: "/k".into(),
            known_hosts: "/kh".into(),
            start_lead_ms: 500,
            download_parallelism: 4,
            nodes: vec![ControllerNodeEntry {
                ip: "10.77.0.10".parse().unwrap(),
                rsync_source: "root@10.77.0.10:/d/recordings".into(),
            }],
            extra: vec!["stop_lead_ms = 100".into()],
        };
        let t: toml::Table = controller_config(&c).unwrap().parse().unwrap();
        assert_eq!(t["listen"].as_str(), Some("10.77.0.1:8080"));
        assert_eq!(t["stop_lead_ms"].as_integer(), Some(100));
        let nodes = t["node"].as_array().unwrap();
        assert_eq!(
            nodes[0]["rsync_source"].as_str(),
            Some("root@10.77.0.10:/d/recordings")
        );
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let e = find_binary("no-such-camrig-binary")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cargo build --workspace --bins"), "{e}");
    }
}
