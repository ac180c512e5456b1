//! The files an identity turns into, as a [`Plan`]: pure text, no I/O, so every rendering
//! is unit-tested. Paths are where the image's overlays expect them (`overlays/` in the
//! repository): everything derived from camrig.toml lives under /run and is rebuilt at every
//! boot, except the SSH host key, which must outlive reboots and lives on the data partition.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use camrig_config::controller::{AccessEntry, ControllerFile, NodeEntry as ControllerNode};
use camrig_config::node::NodeConfig;

use crate::identity::{Identity, Role};

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
pub const NODE_PORT: u16 = camrig_protocol::api::NODE_API_PORT;
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
            TOKEN_FILE,
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
            let settings = id.controller.as_ref();
            files.push(file(
                API_TOKEN_FILE,
                0o640,
                Some(SERVICE_USER),
                format!(
                    "{}\n",
                    settings
                        .and_then(|s| s.api_token.as_deref())
                        .unwrap_or_default()
                ),
            ));
            if let Some(hash) = settings.and_then(|s| s.password_hash.as_deref()) {
                files.push(file(
                    PASSWORD_HASH_FILE,
                    0o640,
                    Some(SERVICE_USER),
                    format!("{hash}\n"),
                ));
            }
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

fn with_header(body: &str) -> String {
    format!("# Written by camrig-identity from camrig.toml at boot.\n{body}")
}

/// Where the rig token is written for both services.
pub const TOKEN_FILE: &str = "/run/camrig/token";

/// The node's configuration as camrig-config's value: camrig.toml's `[node]` sections (each
/// already the node config's own type, omitted keys at the node's defaults) with the paths
/// and port of the image.
pub fn node_config(id: &Identity) -> NodeConfig {
    let settings = id.node.clone().unwrap_or_default();
    NodeConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], NODE_PORT)),
        data_dir: PathBuf::from("/var/lib/camrig"),
        name: settings.name,
        token: String::new(),
        token_file: TOKEN_FILE.into(),
        auth: true,
        standalone: settings.standalone,
        recording: settings.recording.unwrap_or_default(),
        camera: settings.camera.unwrap_or_default(),
        camera_settings: settings.camera_settings.unwrap_or_default(),
        synthetic: settings.synthetic.unwrap_or_default(),
        ..NodeConfig::default()
    }
}

/// The node's `node.toml` text (every key, as the node will run with it).
pub fn node_toml(id: &Identity) -> String {
    with_header(&node_config(id).to_toml())
}

/// The controller's API token and the operator password's hash, for the controller only.
pub const API_TOKEN_FILE: &str = "/run/camrig/api-token";
pub const PASSWORD_HASH_FILE: &str = "/run/camrig/operator-password";

/// The controller's configuration as camrig-config's value (`controller.toml` as written):
/// the image's paths, the secrets as files under /run/camrig, and the nodes of
/// `[[controller.nodes]]`.
pub fn controller_config(id: &Identity) -> ControllerFile {
    let settings = id.controller.clone();
    let defaults = ControllerFile::default();
    let nodes = settings
        .as_ref()
        .map(|s| s.nodes.clone())
        .unwrap_or_default();
    ControllerFile {
        listen: "0.0.0.0:8080".into(),
        data_dir: PathBuf::from("/var/lib/camrig-controller"),
        downloads_dir: Some(PathBuf::from("/var/lib/camrig-controller/video_downloads")),
        token_file: TOKEN_FILE.into(),
        ssh_key: PathBuf::from("/run/camrig/ssh/id_ed25519"),
        known_hosts: PathBuf::from("/run/camrig/ssh/known_hosts"),
        ssh_user: SERVICE_USER.into(),
        require_node_sync: settings.as_ref().is_none_or(|s| s.require_node_sync),
        max_clock_offset_ms: settings
            .as_ref()
            .and_then(|s| s.max_clock_offset_ms)
            .unwrap_or(defaults.max_clock_offset_ms),
        access: Some(AccessEntry {
            api_token_file: API_TOKEN_FILE.into(),
            password_hash_file: settings
                .as_ref()
                .and_then(|s| s.password_hash.as_ref())
                .map(|_| PASSWORD_HASH_FILE.to_owned())
                .unwrap_or_default(),
            // The card's host name and address: what a browser on the LAN sends as Host.
            hosts: vec![id.hostname.clone(), id.network.address.addr().to_string()],
            ..AccessEntry::default()
        }),
        node: nodes
            .iter()
            .map(|n| ControllerNode {
                port: n.port.unwrap_or(NODE_PORT),
                name: n.name.clone(),
                rsync_source: Some(format!(
                    "{SERVICE_USER}@{}:/var/lib/camrig/recordings",
                    n.address
                )),
                ..ControllerNode::new(n.address.to_string())
            })
            .collect(),
        ..defaults
    }
}

/// The controller's `controller.toml` text.
pub fn controller_toml(id: &Identity) -> String {
    with_header(&controller_config(id).to_toml())
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
    use crate::validate::parse;

    fn node() -> String {
        crate::test_identities::node(
            "gateway = \"10.0.2.2\"\ndns = [\"10.0.2.3\"]\n",
            "[node]\nname = \"left\"\n[node.camera]\nsource = \"synthetic\"\nwidth = 640\nheight = 360\n\
             [node.recording]\nsegment_seconds = 5\n",
        )
    }

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
        let plan = plan(&parse(&node()).unwrap());
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
    fn node_toml_is_the_node_config_schema_with_the_identitys_settings() {
        let text = node_toml(&parse(&node()).unwrap());
        // What the node reads: camrig-config's parser and validation accept it as it is.
        let config = NodeConfig::parse(&text, std::path::Path::new("node.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        config.validate().unwrap();
        assert_eq!(config.token_file, TOKEN_FILE);
        assert!(config.auth);
        assert_eq!(config.name, "left");
        assert_eq!(
            config.camera.source,
            camrig_config::node::CameraSource::Synthetic
        );
        assert_eq!((config.camera.width, config.camera.height), (640, 360));
        // Keys camrig.toml leaves out are the node's defaults.
        assert_eq!(config.camera.fps, NodeConfig::default().camera.fps);
        assert_eq!(config.recording.segment_seconds, 5);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/camrig"));
        assert_eq!(config.listen.port(), NODE_PORT);
        assert_eq!(config, node_config(&parse(&node()).unwrap()));
    }

    #[test]
    fn controller_plan_serves_time_and_lists_nodes() {
        let text = node()
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
               api_token = \"api-token-0123456789abcdef\"\n\
               password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\"\n\
               [[controller.nodes]]\naddress = \"10.0.2.15\"\nname = \"left\"\n";
        let plan = plan(&parse(&text).unwrap());
        assert_eq!(
            contents(&plan, API_TOKEN_FILE),
            "api-token-0123456789abcdef\n"
        );
        assert!(contents(&plan, PASSWORD_HASH_FILE).starts_with("$argon2id$"));
        let chrony = contents(&plan, "/run/camrig/chrony.conf");
        assert!(chrony.contains("local stratum 10\n"), "{chrony}");
        assert!(chrony.contains("allow 10.0.2.0/24\n"), "{chrony}");
        assert!(chrony.contains("server pool.example iburst\n"), "{chrony}");
        let written = contents(&plan, "/run/camrig/controller.toml");
        // camrig-config's schema reads it back as the value rendered (unknown keys would be
        // refused).
        let file: ControllerFile =
            toml::from_str(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(file, controller_config(&parse(&text).unwrap()));
        let config: toml::Value = toml::from_str(&written).unwrap();
        assert_eq!(config["require_node_sync"].as_bool(), Some(false));
        let access = &config["access"];
        assert_eq!(access["api_token_file"].as_str(), Some(API_TOKEN_FILE));
        assert_eq!(
            access["password_hash_file"].as_str(),
            Some(PASSWORD_HASH_FILE)
        );
        let hosts: Vec<&str> = access["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(hosts[1], "10.0.2.2");
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
        let text = node().replace("dns = [\"10.0.2.3\"]", "interface = \"end0\"");
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
