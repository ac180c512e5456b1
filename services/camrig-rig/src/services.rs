//! camrig's own services on rig hosts: where their binaries are, and the configuration files
//! the harness writes for them (the keys of `node.example.toml` and `controller.example.toml`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Result, RigError};

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
pub fn node_config(ip: Ipv4Addr, data_dir: &Path, token: &str, s: &NodeSettings) -> String {
    format!(
        r#"# written by the camrig virtual rig
listen = "{ip}:{NODE_PORT}"
data_dir = "{data}"
token = "{token}"
auth = true

[recording]
codec = "{codec}"
segment_seconds = {seg}
min_free_mb = 64
mjpeg_quality = 70

[camera]
source = "synthetic"
count = 1
width = {w}
height = {h}
fps = {fps}

[phase]
lock = {lock}

[synthetic]
noise = {noise}
"#,
        data = data_dir.display(),
        codec = s.codec,
        seg = s.segment_seconds,
        w = s.width,
        h = s.height,
        fps = s.fps,
        noise = s.noise,
        lock = s.phase_lock,
    )
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

pub fn controller_config(c: &ControllerSettings) -> String {
    let mut out = format!(
        r#"# written by the camrig virtual rig
listen = "{listen}:{CONTROLLER_PORT}"
data_dir = "{data}"
downloads_dir = "{downloads}"
token = "{token}"
ssh_key = "{key}"
known_hosts = "{kh}"
ssh_user = "root"
start_lead_ms = {lead}
download_parallelism = {par}
# Every namespace shares the machine's one clock, and CI machines may run no NTP daemon.
require_node_sync = false
# With one shared clock the probe measures only its own error, which scheduling on a loaded
# two-core machine drives to tens of milliseconds with 50 nodes; it must not block START.
max_clock_offset_ms = 100.0
"#,
        listen = c.listen,
        data = c.data_dir.display(),
        downloads = c.downloads_dir.display(),
        token = c.token,
        key = c.ssh_key.display(),
        kh = c.known_hosts.display(),
        lead = c.start_lead_ms,
        par = c.download_parallelism,
    );
    for line in &c.extra {
        out.push_str(line);
        out.push('\n');
    }
    for n in &c.nodes {
        out.push_str(&format!(
            "\n[[node]]\naddress = \"{}\"\nport = {NODE_PORT}\nrsync_source = \"{}\"\n",
            n.ip, n.rsync_source
        ));
    }
    out
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
        let t: toml::Table = controller_config(&c).parse().unwrap();
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
