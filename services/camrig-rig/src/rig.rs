//! A whole rig on one machine: controller, operator and node hosts on the switch, sshd on every
//! node, keys and known_hosts provisioned, and (when asked) the real `camrig-node` and
//! `camrig-controller` processes with generated configs. Dropping the rig stops everything
//! and deletes every namespace and scratch file, also when a test panics.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use camrig_protocol::manifest::TakeManifest;
use nix::sys::signal::Signal;

use crate::error::{Result, RigError};
use crate::http_client::{HttpClient, Reply};
use crate::link_shaping::Shaping;
use crate::netns::{self, command_in};
use crate::network::{HostId, Network};
use crate::process::{Process, Supervised};
use crate::services::{self, ControllerNodeEntry, ControllerSettings, NodeSettings};
use crate::ssh::{self, KeyPair, SshServer};
use crate::wait;

pub const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const OPERATOR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Node `i` is at `10.77.0.(10 + i)`.
pub const FIRST_NODE_HOST: u8 = 10;
pub const MAX_NODES: usize = 240;
pub const RIG_TOKEN: &str = "virtual-rig-token";
pub use crate::services::API_TOKEN;

/// How to build a rig.
#[derive(Clone, Debug)]
pub struct RigBuilder {
    nodes: usize,
    node_services: bool,
    controller_service: bool,
    node: NodeSettings,
    start_lead_ms: u32,
    download_parallelism: u32,
    controller_extra: Vec<String>,
}

impl Default for RigBuilder {
    fn default() -> Self {
        RigBuilder {
            nodes: 1,
            node_services: true,
            controller_service: true,
            node: NodeSettings::default(),
            start_lead_ms: 500,
            download_parallelism: 4,
            controller_extra: Vec::new(),
        }
    }
}

impl RigBuilder {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Only the network, sshd and keys: no camrig processes (for testing the harness itself).
    pub fn network_only(mut self) -> Self {
        self.node_services = false;
        self.controller_service = false;
        self
    }

    /// Nodes run, the controller does not (a test drives the nodes itself).
    pub fn without_controller(mut self) -> Self {
        self.controller_service = false;
        self
    }

    pub fn node_settings(mut self, s: NodeSettings) -> Self {
        self.node = s;
        self
    }

    pub fn start_lead_ms(mut self, ms: u32) -> Self {
        self.start_lead_ms = ms;
        self
    }

    pub fn download_parallelism(mut self, n: u32) -> Self {
        self.download_parallelism = n;
        self
    }

    /// An extra top-level line for the controller's config.
    pub fn controller_setting(mut self, line: &str) -> Self {
        self.controller_extra.push(line.to_owned());
        self
    }

    pub fn build(self) -> Result<Rig> {
        Rig::build(self)
    }
}

/// A scratch directory removed on drop, except after a panic (its logs explain the failure;
/// the next run removes it as a leftover).
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("camrig-rig: kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One node host.
#[derive(Debug)]
pub struct RigNode {
    pub ip: Ipv4Addr,
    pub host: HostId,
    pub dir: PathBuf,
    /// The node's `data_dir`; its takes are under `recordings/`.
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub sshd: SshServer,
    /// The `camrig-node` service, supervised as systemd would.
    pub service: Option<Supervised>,
}

impl RigNode {
    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, services::NODE_PORT)
    }

    /// The `<node>` label in file names (IP with underscores).
    pub fn label(&self) -> String {
        self.ip.to_string().replace('.', "_")
    }

    pub fn service(&self) -> &Supervised {
        self.service.as_ref().expect("this rig runs no camrig-node")
    }
}

/// A running virtual rig. Fields drop in order: clients, services, network, scratch.
pub struct Rig {
    operator: HttpClient,
    controller: Option<Process>,
    nodes: Vec<RigNode>,
    network: Network,
    scratch: Scratch,
    pub controller_host: HostId,
    pub operator_host: HostId,
    pub client_key: KeyPair,
    pub known_hosts: PathBuf,
    pub controller_dir: PathBuf,
    pub downloads_dir: PathBuf,
    controller_config: PathBuf,
    controller_settings: ControllerSettings,
    controller_bin: Option<PathBuf>,
}

impl Rig {
    pub fn builder() -> RigBuilder {
        RigBuilder::default()
    }

    fn build(b: RigBuilder) -> Result<Rig> {
        netns::require_root()?;
        if b.nodes > MAX_NODES {
            return Err(RigError::Invalid(format!(
                "a rig holds at most {MAX_NODES} nodes"
            )));
        }
        let root = netns::scratch_root();
        netns::remove_leftovers(&root);
        let stem = netns::unique_stem();
        let scratch = Scratch(root.join(&stem));
        std::fs::create_dir_all(&scratch.0).map_err(RigError::io("creating the scratch dir"))?;
        let node_bin = if b.node_services {
            Some(services::find_binary(services::NODE_BIN)?)
        } else {
            None
        };
        let controller_bin = if b.controller_service {
            Some(services::find_binary(services::CONTROLLER_BIN)?)
        } else {
            None
        };

        let mut network = Network::new(&stem)?;
        let controller_host = network.add_host("ctl", CONTROLLER_IP)?;
        let operator_host = network.add_host("op", OPERATOR_IP)?;

        let controller_dir = scratch.0.join("controller");
        std::fs::create_dir_all(&controller_dir).map_err(RigError::io("creating dirs"))?;
        let client_key =
            KeyPair::generate(&controller_dir.join("id_ed25519"), "camrig-controller")?;

        let mut nodes = Vec::with_capacity(b.nodes);
        for i in 0..b.nodes {
            let ip = Ipv4Addr::new(10, 77, 0, FIRST_NODE_HOST + i as u8);
            let host = network.add_host(&format!("n{i}"), ip)?;
            let dir = scratch.0.join(format!("node{i}"));
            let data_dir = dir.join("data");
            std::fs::create_dir_all(data_dir.join("recordings"))
                .map_err(RigError::io("creating a node's data dir"))?;
            let sshd = SshServer::start(
                network.host(host).netns(),
                &dir.join("ssh"),
                ip,
                &client_key,
            )?;
            nodes.push(RigNode {
                ip,
                host,
                config: dir.join("node.toml"),
                dir,
                data_dir,
                sshd,
                service: None,
            });
        }
        let known_hosts = controller_dir.join("known_hosts");
        let entries: Vec<_> = nodes
            .iter()
            .map(|n| (n.ip, n.sshd.host_key.public_key()))
            .collect();
        std::fs::write(&known_hosts, ssh::known_hosts(&entries))
            .map_err(RigError::io("writing known_hosts"))?;

        let operator = HttpClient::new(network.host(operator_host).netns())?;
        let downloads_dir = controller_dir.join("video_downloads");
        let mut rig = Rig {
            operator,
            controller: None,
            nodes,
            network,
            scratch,
            controller_host,
            operator_host,
            client_key,
            known_hosts,
            controller_config: controller_dir.join("controller.toml"),
            downloads_dir,
            controller_dir,
            controller_settings: ControllerSettings {
                listen: CONTROLLER_IP,
                data_dir: PathBuf::new(),
                downloads_dir: PathBuf::new(),
                token: RIG_TOKEN.into(),
                ssh_key: PathBuf::new(),
                known_hosts: PathBuf::new(),
                start_lead_ms: b.start_lead_ms,
                download_parallelism: b.download_parallelism,
                nodes: Vec::new(),
                extra: b.controller_extra.clone(),
            },
            controller_bin,
        };

        if let Some(bin) = node_bin {
            for i in 0..rig.nodes.len() {
                rig.start_node(i, &bin, &b.node)?;
            }
            for i in 0..rig.nodes.len() {
                rig.wait_node_ready(i, wait::SERVICE_START)?;
            }
        }
        let settings = ControllerSettings {
            listen: CONTROLLER_IP,
            data_dir: rig.controller_dir.join("data"),
            downloads_dir: rig.downloads_dir.clone(),
            token: RIG_TOKEN.into(),
            ssh_key: rig.client_key.private.clone(),
            known_hosts: rig.known_hosts.clone(),
            start_lead_ms: b.start_lead_ms,
            download_parallelism: b.download_parallelism,
            nodes: rig
                .nodes
                .iter()
                .map(|n| ControllerNodeEntry {
                    ip: n.ip,
                    rsync_source: format!("root@{}:{}", n.ip, n.recordings().display()),
                })
                .collect(),
            extra: b.controller_extra.clone(),
        };
        rig.controller_settings = settings;
        rig.write_controller_config()?;
        if rig.controller_bin.is_some() {
            rig.start_controller()?;
        }
        Ok(rig)
    }

    fn write_controller_config(&self) -> Result<()> {
        std::fs::write(
            &self.controller_config,
            services::controller_config(&self.controller_settings)?,
        )
        .map_err(RigError::io("writing controller.toml"))
    }

    /// The controller's current settings (as written to its config).
    pub fn controller_settings(&self) -> &ControllerSettings {
        &self.controller_settings
    }

    /// Gives the nodes' synthetic picture rendering (threads `synthetic-draw*`) the lowest
    /// CPU priority (nice 19), so it only uses CPU nothing else wants. On a real rig each
    /// camera renders on its own Pi; here every node shares the machine's cores with the
    /// controller, and grainy 720p pictures rendered for idle cameras would compete with
    /// what a download's speed really depends on (ssh, rsync, hashing). Returns how many
    /// threads it found. Shutter threads (real-time) and everything else keep their priority.
    pub fn lower_camera_rendering_priority(&self) -> Result<usize> {
        let mut lowered = 0;
        for pid in self.nodes.iter().filter_map(|n| n.service.as_ref()?.pid()) {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.starts_with("synthetic-draw") {
                    let tid = task.file_name().to_string_lossy().into_owned();
                    netns::run("renice", &["-n", "19", "-p", &tid])?;
                    lowered += 1;
                }
            }
        }
        Ok(lowered)
    }

    /// Waits until the controller's ssh master connection to every node is up (one control
    /// socket per node, `<ip>-<digest>`, bound once the host key was checked and the login
    /// done). Right after a controller start the masters are still connecting, and a
    /// download waits for its node's handshake first.
    pub fn wait_ssh_masters_up(&self, timeout: Duration) -> Result<()> {
        let dir = self.controller_settings.data_dir.join("ssh-control");
        wait::until("the controller's ssh masters to be up", timeout, || {
            let names: Vec<String> = std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            self.nodes
                .iter()
                .all(|n| names.iter().any(|f| f.starts_with(&format!("{}-", n.ip))))
                .then_some(())
        })
    }

    /// Stops the controller (SIGTERM), lets `edit` change its settings, and starts it again.
    pub fn restart_controller(&mut self, edit: impl FnOnce(&mut ControllerSettings)) -> Result<()> {
        self.stop_controller();
        edit(&mut self.controller_settings);
        self.write_controller_config()?;
        self.start_controller()
    }

    /// Stops the controller (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_controller(&mut self) {
        if let Some(mut p) = self.controller.take() {
            p.stop();
        }
    }

    fn start_node(&mut self, i: usize, bin: &Path, s: &NodeSettings) -> Result<()> {
        let node = &mut self.nodes[i];
        std::fs::write(
            &node.config,
            services::node_config(node.ip, &node.data_dir, RIG_TOKEN, s)?,
        )
        .map_err(RigError::io("writing node.toml"))?;
        let ns = self.network.host(node.host).netns().name().to_owned();
        let (bin, config) = (bin.to_owned(), node.config.clone());
        node.service = Some(Supervised::start(
            move || {
                let mut c = command_in(&ns, &bin);
                c.arg("--config").arg(&config).args(["--synthetic", "1"]);
                c.env("RUST_LOG", "info");
                c
            },
            node.dir.join("camrig-node.log"),
        )?);
        Ok(())
    }

    /// Starts the controller with the current settings and waits until its API answers.
    pub fn start_controller(&mut self) -> Result<()> {
        let bin = self
            .controller_bin
            .clone()
            .ok_or_else(|| RigError::Invalid("this rig runs no camrig-controller".into()))?;
        let ns = self.network.host(self.controller_host).netns();
        let mut c: Command = ns.command(&bin);
        c.arg("--config").arg(&self.controller_config);
        c.env("RUST_LOG", "info");
        self.controller = Some(Process::spawn(
            c,
            self.controller_dir.join("camrig-controller.log"),
        )?);
        wait::until(
            "the controller to answer GET /api/rig",
            wait::SERVICE_START,
            || self.api_get("/api/rig").ok().filter(Reply::is_success),
        )?;
        Ok(())
    }

    /// Waits until the node's API answers an authorised status request.
    pub fn wait_node_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        wait::until(
            &format!("node {} to answer /v1/status", self.nodes[i].ip),
            timeout,
            || {
                self.node_get(i, "/v1/status")
                    .ok()
                    .filter(Reply::is_success)
            },
        )
        .map(drop)
    }

    pub fn nodes(&self) -> &[RigNode] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &RigNode {
        &self.nodes[i]
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn scratch_dir(&self) -> &Path {
        &self.scratch.0
    }

    /// The HTTP client on the operator's host (a laptop on the rig's LAN).
    pub fn operator(&self) -> &HttpClient {
        &self.operator
    }

    pub fn controller_url(&self, path: &str) -> String {
        format!("http://{CONTROLLER_IP}:{}{path}", services::CONTROLLER_PORT)
    }

    pub fn api_get(&self, path: &str) -> Result<Reply> {
        self.operator
            .get(&self.controller_url(path), Some(API_TOKEN))
    }

    pub fn api_post(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        self.operator
            .post(&self.controller_url(path), Some(API_TOKEN), body)
    }

    pub fn node_get(&self, i: usize, path: &str) -> Result<Reply> {
        self.operator
            .get(&self.nodes[i].api_url(path), Some(RIG_TOKEN))
    }

    pub fn node_post(&self, i: usize, path: &str, body: &serde_json::Value) -> Result<Reply> {
        self.operator
            .post(&self.nodes[i].api_url(path), Some(RIG_TOKEN), body)
    }

    pub fn shape_node(&self, i: usize, s: &Shaping) -> Result<()> {
        self.network.shape(self.nodes[i].host, s)
    }

    pub fn shape_controller(&self, s: &Shaping) -> Result<()> {
        self.network.shape(self.controller_host, s)
    }

    pub fn cut_node(&self, i: usize) -> Result<()> {
        self.network.cut(self.nodes[i].host)
    }

    pub fn restore_node(&self, i: usize) -> Result<()> {
        self.network.restore(self.nodes[i].host)
    }

    /// Crashes the node's service (SIGKILL); its supervisor restarts it.
    pub fn kill_node(&self, i: usize) {
        self.nodes[i].service().signal(Signal::SIGKILL);
    }

    /// The node's manifest of `take`, read from its recordings directory.
    pub fn manifest(&self, i: usize, take: &str) -> Result<TakeManifest> {
        let dir = self.nodes[i].recordings().join(take);
        let entries =
            std::fs::read_dir(&dir).map_err(RigError::io(format!("listing {}", dir.display())))?;
        let path = entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("_manifest.json"))
            .ok_or_else(|| RigError::Invalid(format!("no manifest in {}", dir.display())))?;
        let text = std::fs::read_to_string(&path).map_err(RigError::io("reading a manifest"))?;
        TakeManifest::parse(&text)
            .map_err(|e| RigError::Invalid(format!("{}: {e}", path.display())))
    }

    /// The ssh options the controller's downloads use.
    pub fn ssh_options(&self) -> Vec<String> {
        ssh::client_options(&self.client_key.private, &self.known_hosts)
    }

    /// Runs `ssh root@<node> <remote command>` from the controller's host.
    pub fn ssh_from_controller(&self, i: usize, remote: &str) -> Result<String> {
        let mut args: Vec<String> = self.ssh_options();
        args.push(format!("root@{}", self.nodes[i].ip));
        args.push(remote.to_owned());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.network
            .host(self.controller_host)
            .netns()
            .exec("ssh", &argv)
    }

    /// Pulls `remote` from a node into `local` with rsync over ssh, from the controller's host.
    pub fn rsync_from_node(&self, i: usize, remote: &Path, local: &Path) -> Result<String> {
        let e = format!("ssh {}", self.ssh_options().join(" "));
        let src = format!("root@{}:{}", self.nodes[i].ip, remote.display());
        let dst = local.display().to_string();
        self.network
            .host(self.controller_host)
            .netns()
            .exec("rsync", &["-a", "--partial", "-e", &e, &src, &dst])
    }

    /// The controller's log lines containing `needle`, oldest first (the log survives
    /// controller restarts).
    pub fn controller_log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.controller_dir.join("camrig-controller.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// The last lines of every service log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut logs: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|n| n.dir.join("camrig-node.log"))
            .collect();
        logs.extend(self.nodes.iter().map(|n| n.sshd.process.log.clone()));
        logs.push(self.controller_dir.join("camrig-controller.log"));
        let mut out = String::new();
        for log in logs {
            if let Ok(text) = std::fs::read_to_string(&log) {
                let all: Vec<&str> = text.lines().collect();
                let tail = &all[all.len().saturating_sub(lines)..];
                out.push_str(&format!("--- {} ---\n{}\n", log.display(), tail.join("\n")));
            }
        }
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(30));
        }
    }
}
