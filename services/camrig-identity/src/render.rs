//! The files an identity turns into, as a [`Plan`]: pure text, no I/O, so every rendering
//! is unit-tested. Paths are where the image's overlays expect them (`overlays/` in the
//! repository): everything derived from camrig.toml lives under /run and is rebuilt at every
//! boot, except the SSH host key, which must outlive reboots and lives on the data partition.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::identity::{CameraSource, Codec, Identity, Role};

/// Where camrig.toml is read from on an image.
pub const IDENTITY_PATH: &str = "/boot/firmware/camrig.toml";
/// The image's role, written by image/build from the node or controller overlay.
pub const IMAGE_ROLE_PATH: &str = "/usr/lib/camrig/role";
/// Everything derived from camrig.toml except networkd's file and the host key.
pub const RUN_DIR: &str = "/run/camrig";
/// networkd reads /run/systemd/network before /usr/lib; /etc is read-only.
pub const NETWORK_FILE: &str = "/run/systemd/network/10-camrig.network";
/// The host key on the data partition; sshd_config.d/camrig.conf names it.
pub const HOST_KEY_PATH: &str = "/data/ssh/ssh_host_ed25519_key";
/// agetty shows /run/issue.d/*.issue above every console login prompt.
pub const ISSUE_PATH: &str = "/run/issue.d/50-camrig.issue";
/// The node's HTTP API port (node.example.toml).
pub const NODE_PORT: u16 = 8081;
/// The system user both services run as (their .deb packages create it).
pub const SERVICE_USER: &str = "camrig";

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub mode: u32,
    /// Owning user and group (same name); `None` is root.
    pub owner: Option<&'static str>,
    pub contents: String,
}

/// Where the SSH host key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey {
    /// From camrig.toml: written to [`HOST_KEY_PATH`] (replacing a different one).
    Provisioned { private: String, public: String },
    /// Kept if present on the data partition, else generated with ssh-keygen.
    GenerateIfMissing,
}

/// Everything `apply` does for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub hostname: String,
    pub files: Vec<PlannedFile>,
    pub host_key: HostKey,
}

fn file(path: &str, mode: u32, owner: Option<&'static str>, contents: String) -> PlannedFile {
    PlannedFile {
        path: PathBuf::from(path),
        mode,
        owner,
        contents,
    }
}

/// Renders the plan for a validated identity.
pub fn plan(id: &Identity) -> Plan {
    let mut files = vec![
        file(NETWORK_FILE, 0o644, None, networkd(id)),
        file("/run/camrig/resolv.conf", 0o644, None, resolv_conf(id)),
        file("/run/camrig/chrony.conf", 0o644, None, chrony(id)),
        file(
            "/run/camrig/token",
            0o640,
            Some(SERVICE_USER),
            format!("{}\n", id.rig.token),
        ),
        file(
            "/run/camrig/ssh/authorized_keys/root",
            0o644,
            None,
            lines(&id.ssh.authorized_keys),
        ),
        file(
            "/run/camrig/role",
            0o644,
            None,
            format!("{}\n", id.role.as_str()),
        ),
    ];
    match id.role {
        Role::Node => {
            files.push(file(
                "/run/camrig/node.toml",
                0o640,
                Some(SERVICE_USER),
                node_toml(id),
            ));
            // `restrict` turns off forwarding and ptys: the controller only runs rsync.
            let key = id.ssh.controller_key.as_deref().unwrap_or_default();
            files.push(file(
                "/run/camrig/ssh/authorized_keys/camrig",
                0o644,
                None,
                format!("restrict {}\n", key.trim()),
            ));
        }
        Role::Controller => {
            files.push(file(
                "/run/camrig/controller.toml",
                0o640,
                Some(SERVICE_USER),
                controller_toml(id),
            ));
            let key = id.ssh.private_key.as_deref().unwrap_or_default();
            files.push(file(
                "/run/camrig/ssh/id_ed25519",
                0o600,
                Some(SERVICE_USER),
                format!("{}\n", key.trim()),
            ));
            files.push(file(
                "/run/camrig/ssh/known_hosts",
                0o644,
                None,
                lines(&id.ssh.known_hosts),
            ));
        }
    }
    let host_key = match (&id.ssh.host_key, &id.ssh.host_key_public) {
        (Some(private), Some(public)) => HostKey::Provisioned {
            private: format!("{}\n", private.trim()),
            public: format!("{}\n", public.trim()),
        },
        _ => HostKey::GenerateIfMissing,
    };
    Plan {
        hostname: id.hostname.clone(),
        files,
        host_key,
    }
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{}\n", l.trim())).collect()
}

/// systemd-networkd: the static address; no DHCP, no IPv6 autoconfiguration, no link-local
/// addresses (a rig's LAN has exactly the addresses the site file gives).
pub fn networkd(id: &Identity) -> String {
    let net = &id.network;
    let mut s = String::from("# Written by camrig-identity from camrig.toml at boot.\n[Match]\n");
    if net.interface.is_empty() {
        s.push_str("Type=ether\nKind=!*\n");
    } else {
        let _ = writeln!(s, "Name={}", net.interface);
    }
    s.push_str("\n[Link]\nRequiredForOnline=yes\n\n[Network]\n");
    let _ = writeln!(s, "Address={}", net.address);
    if let Some(gw) = net.gateway {
        let _ = writeln!(s, "Gateway={gw}");
    }
    for dns in &net.dns {
        let _ = writeln!(s, "DNS={dns}");
    }
    s.push_str("DHCP=no\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n");
    s
}

/// /etc/resolv.conf is a link to this file on the image.
pub fn resolv_conf(id: &Identity) -> String {
    let mut s = String::from("# Written by camrig-identity from camrig.toml at boot.\n");
    for dns in &id.network.dns {
        let _ = writeln!(s, "nameserver {dns}");
    }
    s
}

/// chrony, included by the image's /etc/chrony/chrony.conf. The controller is the rig's
/// master clock; a node follows the controller and nothing else, stepping only in its first
/// updates (a step during a take would tear the timeline; slewing handles drift later).
pub fn chrony(id: &Identity) -> String {
    let mut s = String::from("# Written by camrig-identity from camrig.toml at boot.\n");
    match id.role {
        Role::Controller => {
            let _ = writeln!(s, "local stratum 10");
            let _ = writeln!(s, "allow {}", id.rig.subnet);
            for server in &id.time.upstream {
                let _ = writeln!(s, "server {server} iburst");
            }
            s.push_str("makestep 1 3\n");
        }
        Role::Node => {
            let _ = writeln!(
                s,
                "server {} iburst minpoll 0 maxpoll 4 prefer",
                id.rig.controller
            );
            s.push_str("makestep 0.5 3\n");
        }
    }
    s
}

#[derive(Serialize)]
struct NodeToml<'a> {
    listen: String,
    data_dir: &'a str,
    name: &'a str,
    token_file: &'a str,
    auth: bool,
    standalone: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<NodeRecording>,
    #[serde(skip_serializing_if = "Option::is_none")]
    camera: Option<NodeCamera>,
    #[serde(skip_serializing_if = "Option::is_none")]
    synthetic: Option<NodeSynthetic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    camera_settings: Option<camrig_protocol::camera_settings::CameraSettings>,
}

#[derive(Serialize)]
struct NodeRecording {
    #[serde(skip_serializing_if = "Option::is_none")]
    codec: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    standalone_codec: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    h264_bitrate_kbps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mjpeg_quality: Option<u8>,
}

#[derive(Serialize)]
struct NodeCamera {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fps: Option<u32>,
}

#[derive(Serialize)]
struct NodeSynthetic {
    #[serde(skip_serializing_if = "Option::is_none")]
    drift_ppm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_every: Option<u64>,
}

fn codec(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "h264",
        Codec::Mjpeg => "mjpeg",
    }
}

fn with_header(body: &str) -> String {
    format!("# Written by camrig-identity from camrig.toml at boot.\n{body}")
}

/// The node's configuration (keys of services/camrig-node/node.example.toml).
pub fn node_toml(id: &Identity) -> String {
    let settings = id.node.clone().unwrap_or_default();
    let out = NodeToml {
        listen: format!("0.0.0.0:{NODE_PORT}"),
        data_dir: "/var/lib/camrig",
        name: &settings.name,
        token_file: "/run/camrig/token",
        auth: true,
        standalone: settings.standalone,
        recording: settings.recording.map(|r| NodeRecording {
            codec: r.codec.map(codec),
            standalone_codec: r.standalone_codec.map(codec),
            segment_seconds: r.segment_seconds,
            min_free_mb: r.min_free_mb,
            h264_bitrate_kbps: r.h264_bitrate_kbps,
            mjpeg_quality: r.mjpeg_quality,
        }),
        camera: settings.camera.map(|c| NodeCamera {
            source: c.source.map(|s| match s {
                CameraSource::Libcamera => "libcamera",
                CameraSource::Synthetic => "synthetic",
            }),
            count: c.count,
            width: c.width,
            height: c.height,
            fps: c.fps,
        }),
        synthetic: settings.synthetic.map(|s| NodeSynthetic {
            drift_ppm: s.drift_ppm,
            jitter_us: s.jitter_us,
            drop_every: s.drop_every,
        }),
        camera_settings: settings.camera_settings,
    };
    with_header(&toml::to_string(&out).expect("node config serialises"))
}

#[derive(Serialize)]
struct ControllerToml<'a> {
    listen: &'a str,
    data_dir: &'a str,
    downloads_dir: &'a str,
    token_file: &'a str,
    ssh_key: &'a str,
    known_hosts: &'a str,
    ssh_user: &'a str,
    require_node_sync: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_clock_offset_ms: Option<f64>,
    node: Vec<ControllerNode>,
}

#[derive(Serialize)]
struct ControllerNode {
    address: String,
    port: u16,
    name: String,
    rsync_source: String,
}

/// The controller's configuration (keys of services/camrig-controller/controller.example.toml).
pub fn controller_toml(id: &Identity) -> String {
    let settings = id.controller.clone();
    let nodes = settings
        .as_ref()
        .map(|s| s.nodes.clone())
        .unwrap_or_default();
    let out = ControllerToml {
        listen: "0.0.0.0:8080",
        data_dir: "/var/lib/camrig-controller",
        downloads_dir: "/var/lib/camrig-controller/video_downloads",
        token_file: "/run/camrig/token",
        ssh_key: "/run/camrig/ssh/id_ed25519",
        known_hosts: "/run/camrig/ssh/known_hosts",
        ssh_user: SERVICE_USER,
        require_node_sync: settings.as_ref().is_none_or(|s| s.require_node_sync),
        max_clock_offset_ms: settings.as_ref().and_then(|s| s.max_clock_offset_ms),
        node: nodes
            .iter()
            .map(|n| ControllerNode {
                address: n.address.to_string(),
                port: n.port.unwrap_or(NODE_PORT),
                name: n.name.clone(),
                rsync_source: format!("{SERVICE_USER}@{}:/var/lib/camrig/recordings", n.address),
            })
            .collect(),
    };
    with_header(&toml::to_string(&out).expect("controller config serialises"))
}

/// The console and login-prompt text for a card whose identity could not be applied.
pub fn error_banner(reason: &str) -> String {
    let rule = "=".repeat(72);
    format!(
        "{rule}\ncamrig: this card has no usable identity; camrig services are NOT started\n\n\
         {reason}\n\nFix camrig.toml on the boot partition (FAT, {IDENTITY_PATH} on the device),\n\
         check it with `camrig-identity check camrig.toml`, then reboot.\n\
         Details: systemctl status camrig-identity\n{rule}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::parse;

    const NODE: &str = r#"
format = 1
role = "node"
hostname = "n1"
[network]
address = "10.0.2.15/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]
[rig]
subnet = "10.0.2.0/24"
controller = "10.0.2.2"
token = "0123456789abcdef0123"
[ssh]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc admin@laptop"]
controller_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller"
[node]
name = "left"
[node.camera]
source = "synthetic"
width = 640
height = 360
[node.recording]
segment_seconds = 5
"#;

    fn contents(plan: &Plan, path: &str) -> String {
        plan.files
            .iter()
            .find(|f| f.path == std::path::Path::new(path))
            .unwrap_or_else(|| panic!("{path} not in plan"))
            .contents
            .clone()
    }

    #[test]
    fn node_plan_has_network_time_config_and_keys() {
        let plan = plan(&parse(NODE).unwrap());
        assert_eq!(plan.hostname, "n1");
        let net = contents(&plan, NETWORK_FILE);
        assert!(net.contains("Address=10.0.2.15/24\n"), "{net}");
        assert!(net.contains("Gateway=10.0.2.2\n"), "{net}");
        assert!(net.contains("DNS=10.0.2.3\n"), "{net}");
        assert!(net.contains("Type=ether\n"), "{net}");
        let chrony = contents(&plan, "/run/camrig/chrony.conf");
        assert!(chrony.contains("server 10.0.2.2 iburst"), "{chrony}");
        assert!(!chrony.contains("allow"), "{chrony}");
        assert_eq!(
            contents(&plan, "/run/camrig/ssh/authorized_keys/camrig"),
            "restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller\n"
        );
        assert_eq!(
            contents(&plan, "/run/camrig/token"),
            "0123456789abcdef0123\n"
        );
        assert_eq!(plan.host_key, HostKey::GenerateIfMissing);
        assert_eq!(
            contents(&plan, "/run/camrig/resolv.conf").lines().last(),
            Some("nameserver 10.0.2.3")
        );
    }

    #[test]
    fn node_toml_carries_camera_settings_and_token_file() {
        let text = node_toml(&parse(NODE).unwrap());
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["token_file"].as_str(), Some("/run/camrig/token"));
        assert_eq!(value["name"].as_str(), Some("left"));
        assert_eq!(value["camera"]["source"].as_str(), Some("synthetic"));
        assert_eq!(value["camera"]["width"].as_integer(), Some(640));
        assert!(value["camera"].get("fps").is_none());
        assert_eq!(value["recording"]["segment_seconds"].as_integer(), Some(5));
        assert_eq!(value["data_dir"].as_str(), Some("/var/lib/camrig"));
    }

    #[test]
    fn controller_plan_serves_time_and_lists_nodes() {
        let text = NODE
            .replace("role = \"node\"", "role = \"controller\"")
            .replace("address = \"10.0.2.15/24\"", "address = \"10.0.2.2/24\"")
            .replace("gateway = \"10.0.2.2\"", "")
            .replace(
                "controller_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller\"",
                "private_key = \"-----BEGIN OPENSSH PRIVATE KEY-----\\nabc\\n-----END OPENSSH PRIVATE KEY-----\"\n\
                 known_hosts = [\"10.0.2.15 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIxyz\"]",
            );
        let text = text[..text.find("[node]").unwrap()].to_owned()
            + "[time]\nupstream = [\"pool.example\"]\n[controller]\nrequire_node_sync = false\n\
               [[controller.nodes]]\naddress = \"10.0.2.15\"\nname = \"left\"\n";
        let plan = plan(&parse(&text).unwrap());
        let chrony = contents(&plan, "/run/camrig/chrony.conf");
        assert!(chrony.contains("local stratum 10\n"), "{chrony}");
        assert!(chrony.contains("allow 10.0.2.0/24\n"), "{chrony}");
        assert!(chrony.contains("server pool.example iburst\n"), "{chrony}");
        let config: toml::Value =
            toml::from_str(&contents(&plan, "/run/camrig/controller.toml")).unwrap();
        assert_eq!(config["require_node_sync"].as_bool(), Some(false));
        assert_eq!(
            config["ssh_key"].as_str(),
            Some("/run/camrig/ssh/id_ed25519")
        );
        let node = &config["node"][0];
        assert_eq!(node["address"].as_str(), Some("10.0.2.15"));
        assert_eq!(node["port"].as_integer(), Some(8081));
        assert_eq!(
            node["rsync_source"].as_str(),
            Some("camrig@10.0.2.15:/var/lib/camrig/recordings")
        );
        assert_eq!(
            contents(&plan, "/run/camrig/ssh/known_hosts"),
            "10.0.2.15 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIxyz\n"
        );
        let key = plan
            .files
            .iter()
            .find(|f| f.path.ends_with("id_ed25519"))
            .unwrap();
        assert_eq!((key.mode, key.owner), (0o600, Some(SERVICE_USER)));
    }

    #[test]
    fn named_interface_is_matched_by_name() {
        let text = NODE.replace("dns = [\"10.0.2.3\"]", "interface = \"end0\"");
        let net = networkd(&parse(&text).unwrap());
        assert!(net.contains("Name=end0\n"), "{net}");
        assert!(!net.contains("DNS="), "{net}");
    }

    #[test]
    fn error_banner_says_what_to_do() {
        let banner = error_banner("camrig.toml: missing");
        assert!(banner.contains("NOT started"));
        assert!(banner.contains("camrig-identity check"));
        assert!(banner.contains("camrig.toml: missing"));
    }
}
