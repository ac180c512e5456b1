//! A rig of real processes for one test: `RigBuilder::new().nodes(2).start()` writes
//! configs under a temp dir, starts the nodes on 127.<run>.<test>.2, .3, … port 8081 and the
//! controller on .1 port 8080 (distinct addresses, so tests run in parallel threads), and
//! waits until the controller sees every node. Dropping the rig stops everything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use camrig_protocol::manifest::TakeManifest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

pub const TOKEN: &str = "it-token";
/// The controller's API token every test request carries (as the CLI does).
pub const API_TOKEN: &str = "it-api-token-0123456789";
pub const NODE_PORT: u16 = 8081;
const CONTROLLER_PORT: u16 = 8080;

/// A directory of the cargo target dir that holds the binaries (target/<profile>).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/it-<hash> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_owned()
}

pub fn node_binary() -> PathBuf {
    let p = bin_dir().join("camrig-node");
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --workspace --bins` before `cargo test`",
        p.display()
    );
    p
}

pub fn controller_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_camrig-controller"))
}

/// A unique 127.a.b.0/24 block per test rig: `a` from the process id (separate test runs),
/// `b` from a counter (parallel tests in this run).
fn next_block() -> (u8, u8) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let a = 100 + (std::process::id() % 100) as u8;
    let b = 10 + COUNTER.fetch_add(1, Ordering::SeqCst) as u8;
    (a, b)
}

pub struct RigBuilder {
    nodes: usize,
    /// Nodes listed in the controller's config but never started.
    phantom_nodes: usize,
    controller_lines: Vec<String>,
    segment_seconds: u32,
    via_ssh: bool,
    /// Extra TOML appended to one node's config: `(node index, text)`.
    node_lines: Vec<(usize, String)>,
    /// Extra `[phase]` lines of node `i`'s config (index, line).
    node_phase: Vec<(usize, String)>,
    codec: &'static str,
    /// `[synthetic]` lines per node index (injected faults).
    synthetic: Vec<(usize, String)>,
}

impl RigBuilder {
    pub fn new() -> RigBuilder {
        RigBuilder {
            nodes: 2,
            phantom_nodes: 0,
            controller_lines: vec![],
            segment_seconds: 2,
            via_ssh: false,
            node_lines: vec![],
            node_phase: vec![],
            codec: "h264",
            synthetic: vec![],
        }
    }
    /// A `[phase]` line in node `i`'s config (`lock = false`, `lock_frames = ...`).
    pub fn node_phase(mut self, i: usize, line: &str) -> Self {
        self.node_phase.push((i, line.to_owned()));
        self
    }
    /// The nodes' codec (`h264` or `mjpeg`).
    pub fn codec(mut self, codec: &'static str) -> Self {
        self.codec = codec;
        self
    }
    /// A `[synthetic]` line for node `i`, e.g. `drop_every = 7`.
    pub fn synthetic(mut self, i: usize, line: &str) -> Self {
        self.synthetic.push((i, line.to_owned()));
        self
    }
    /// Downloads go through a real sshd (one per rig, listening on every node's address)
    /// with a generated host key, client key and known_hosts.
    pub fn via_ssh(mut self) -> Self {
        self.via_ssh = true;
        self
    }
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    pub fn phantom_nodes(mut self, n: usize) -> Self {
        self.phantom_nodes = n;
        self
    }
    /// Appends TOML (e.g. a `[health]` table) to node `i`'s config.
    pub fn node_config(mut self, i: usize, text: &str) -> Self {
        self.node_lines.push((i, text.to_owned()));
        self
    }
    pub fn controller(mut self, line: &str) -> Self {
        self.controller_lines.push(line.to_owned());
        self
    }

    pub fn start(self) -> Rig {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = next_block();
        let ip = |host: usize| format!("127.{a}.{b}.{host}");
        let mut rig = Rig {
            dir: tmp.path().canonicalize().unwrap(),
            _tmp: tmp,
            controller_ip: ip(1),
            nodes: Vec::new(),
            controller: None,
            sshd: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for i in 0..self.nodes + self.phantom_nodes {
            let node_ip = ip(i + 2);
            let data_dir = rig.dir.join("nodes").join(&node_ip);
            std::fs::create_dir_all(data_dir.join("recordings")).unwrap();
            let config_path = data_dir.join("node.toml");
            let synthetic: String = self
                .synthetic
                .iter()
                .filter(|(n, _)| *n == i)
                .map(|(_, line)| format!("{line}\n"))
                .collect();
            std::fs::write(
                &config_path,
                format!(
                    "listen = \"{node_ip}:{NODE_PORT}\"\ndata_dir = \"{}\"\ntoken = \"{TOKEN}\"\n\
                     [recording]\ncodec = \"{}\"\nsegment_seconds = {}\nmin_free_mb = 1\nh264_bitrate_kbps = 300\n\
                     [camera]\nsource = \"synthetic\"\ncount = 1\nwidth = 160\nheight = 120\nfps = 30\n\
                     [synthetic]\n{synthetic}[phase]\n{}\n",
                    data_dir.display(),
                    self.codec,
                    self.segment_seconds,
                    self.node_phase
                        .iter()
                        .filter(|(n, _)| *n == i)
                        .map(|(_, l)| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                ) + &self
                    .node_lines
                    .iter()
                    .filter(|(n, _)| *n == i)
                    .map(|(_, t)| format!("{t}\n"))
                    .collect::<String>(),
            )
            .unwrap();
            rig.nodes.push(NodeProc {
                ip: node_ip,
                data_dir,
                config_path,
                child: None,
            });
        }
        let mut config = format!(
            "listen = \"{}:{CONTROLLER_PORT}\"\ndata_dir = \"{}\"\ndownloads_dir = \"{}\"\ntoken = \"{TOKEN}\"\n\
             require_node_sync = false\nstop_lead_ms = 200\n",
            rig.controller_ip,
            rig.dir.join("controller").display(),
            rig.downloads().display(),
        );
        for line in &self.controller_lines {
            config.push_str(line);
            config.push('\n');
        }
        let ssh_port = if self.via_ssh {
            let port = free_port(&rig.nodes[0].ip);
            let ips: Vec<String> = rig.nodes.iter().map(|n| n.ip.clone()).collect();
            rig.sshd = Some(Sshd::start(&rig.dir.join("ssh"), &ips, port));
            config.push_str(&format!(
                "ssh_key = \"{}\"\nknown_hosts = \"{}\"\n",
                rig.dir.join("ssh/id_ed25519").display(),
                rig.dir.join("ssh/known_hosts").display()
            ));
            Some(port)
        } else {
            None
        };
        config.push_str(&format!("[access]\napi_token = \"{API_TOKEN}\"\n"));
        for n in &rig.nodes {
            let recordings = n.data_dir.join("recordings");
            let source = match ssh_port {
                Some(_) => format!("{}@{}:{}", current_user(), n.ip, recordings.display()),
                None => recordings.display().to_string(),
            };
            config.push_str(&format!(
                "[[node]]\naddress = \"{}\"\nport = {NODE_PORT}\nrsync_source = \"{source}\"\n",
                n.ip
            ));
            if let Some(p) = ssh_port {
                config.push_str(&format!("ssh_port = {p}\n"));
            }
        }
        std::fs::write(rig.dir.join("controller.toml"), config).unwrap();
        for i in 0..self.nodes {
            rig.start_node(i);
        }
        rig.start_controller();
        let running = self.nodes;
        // Nodes whose config changes the phase lock are not waited for: the test is about them.
        let settled = |i: usize| self.node_phase.iter().any(|(n, _)| *n == i);
        rig.wait_for(
            "every started node reachable",
            Duration::from_secs(60),
            |rig| {
                let r = rig.get("/api/rig").1;
                let nodes = r["nodes"].as_array()?;
                // Reachable, clock measured, and every camera's frames locked to the grid
                // (the sensor model starts at a random phase; START waits for the lock).
                (nodes.iter().take(running).all(|n| n["reachable"] == true)
                    && nodes.iter().take(running).all(|n| !n["clock"].is_null())
                    && nodes.iter().take(running).enumerate().all(|(i, n)| {
                        settled(i)
                            || n["status"]["cameras"]
                                .as_array()
                                .is_some_and(|c| c.iter().all(|c| c["phase"]["state"] == "locked"))
                    }))
                .then_some(())
            },
        );
        rig
    }
}

pub struct NodeProc {
    pub ip: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub child: Option<Child>,
}

pub struct Rig {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub controller_ip: String,
    pub nodes: Vec<NodeProc>,
    pub controller: Option<Child>,
    pub sshd: Option<Sshd>,
    pub http: reqwest::blocking::Client,
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A free TCP port on `ip` (bound and released; the window for a clash is tiny).
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real OpenSSH server for the rig's downloads, with its own host key.
pub struct Sshd {
    pub dir: PathBuf,
    child: Child,
}

impl Sshd {
    fn start(dir: &Path, ips: &[String], port: u16) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host_key", "id_ed25519", "other_host_key"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "camrig-test", "-f"])
                .arg(dir.join(key)));
        }
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known: String = ips
            .iter()
            .map(|ip| format!("[{ip}]:{port} {} {}\n", host_pub[0], host_pub[1]))
            .collect();
        std::fs::write(dir.join("known_hosts"), known).unwrap();
        let mut config = format!(
            "HostKey {}\nAuthorizedKeysFile {}\nPidFile none\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            dir.join("host_key").display(),
            dir.join("authorized_keys").display()
        );
        for ip in ips {
            config.push_str(&format!("ListenAddress {ip}:{port}\n"));
        }
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let log = dir.join("../sshd.log");
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args(["-D", "-e", "-f"]).arg(dir.join("sshd_config"));
        let child = spawn_logged(cmd, &log);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ips[0].as_str(), port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            dir: dir.to_owned(),
            child,
        }
    }

    /// Replaces the provisioned host keys with another key: as if the node were re-flashed.
    pub fn break_known_hosts(&self) {
        let other = std::fs::read_to_string(self.dir.join("other_host_key.pub")).unwrap();
        let other: Vec<&str> = other.split_whitespace().take(2).collect();
        let text = std::fs::read_to_string(self.dir.join("known_hosts")).unwrap();
        let replaced: String = text
            .lines()
            .map(|l| {
                let host = l.split_whitespace().next().unwrap();
                format!("{host} {} {}\n", other[0], other[1])
            })
            .collect();
        std::fs::write(self.dir.join("known_hosts"), replaced).unwrap();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn terminate(child: &mut Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Rig {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{CONTROLLER_PORT}{path}", self.controller_ip)
    }

    pub fn downloads(&self) -> PathBuf {
        self.dir.join("video_downloads")
    }

    pub fn start_node(&mut self, i: usize) {
        let log = self.dir.join(format!("node-{}.log", self.nodes[i].ip));
        let mut cmd = Command::new(node_binary());
        cmd.arg("--config").arg(&self.nodes[i].config_path);
        self.nodes[i].child = Some(spawn_logged(cmd, &log));
    }

    pub fn start_controller(&mut self) {
        let mut cmd = Command::new(controller_binary());
        cmd.arg("--config").arg(self.dir.join("controller.toml"));
        self.controller = Some(spawn_logged(cmd, &self.dir.join("controller.log")));
        self.wait_for("the controller answering", Duration::from_secs(30), |rig| {
            rig.http
                .get(rig.url("/api/rig"))
                .bearer_auth(API_TOKEN)
                .send()
                .ok()
                .map(drop)
        });
    }

    /// SIGKILL: a crash, nothing closed cleanly.
    pub fn kill_controller(&mut self) {
        let mut c = self.controller.take().expect("controller running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn kill_node(&mut self, i: usize) {
        let mut c = self.nodes[i].child.take().expect("node running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(API_TOKEN)
            .send()
            .expect("controller answers");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send_json(self.http.post(self.url(path)), body)
    }

    pub fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send_json(self.http.put(self.url(path)), body)
    }

    /// Sends `body` as JSON with the API token; the status and the JSON answer.
    fn send_json(&self, request: reqwest::blocking::RequestBuilder, body: Value) -> (u16, Value) {
        let r = request
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .expect("controller answers");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The names of every take, newest first, as `GET /api/takes` lists them.
    pub fn take_names(&self) -> Vec<String> {
        let (_, takes) = self.get("/api/takes");
        takes
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(API_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("controller answers");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// GET on a node's own API (with the token).
    pub fn node_get(&self, i: usize, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("http://{}:{NODE_PORT}{path}", self.nodes[i].ip))
            .bearer_auth(TOKEN)
            .send()
            .expect("node answers");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn node_manifest(&self, i: usize, take: &str) -> TakeManifest {
        let (status, v) = self.node_get(i, &format!("/v1/takes/{take}/manifest"));
        assert_eq!(status, 200, "manifest of {take} on node {i}: {v}");
        serde_json::from_value(v).expect("manifest parses")
    }

    /// Polls `f` until it returns Some, failing with the logs after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Rig) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nrig: {}\n{}",
                    self.get("/api/rig").1,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                out.push_str(&format!("--- {} (tail)\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn start_take(&self, name: &str) -> Value {
        let (status, take) = self.post("/api/takes", json!({ "name": name }));
        assert_eq!(status, 201, "START {name}: {take}\n{}", self.logs());
        take
    }

    /// Waits until every listed node records the current take with at least `frames`.
    pub fn wait_recording(&self, nodes: &[usize], frames: u64) {
        self.wait_for("nodes recording", Duration::from_secs(30), |rig| {
            let r = rig.get("/api/rig").1;
            nodes
                .iter()
                .all(|&i| {
                    let s = &r["nodes"][i]["status"];
                    s["state"] == "recording"
                        && s["cameras"][0]["take_frames"].as_u64().unwrap_or(0) >= frames
                })
                .then_some(())
        })
    }

    pub fn take(&self, name: &str) -> Value {
        let (status, t) = self.get(&format!("/api/takes/{name}"));
        assert_eq!(status, 200, "GET take {name}: {t}");
        t
    }

    pub fn wait_download(&self, name: &str, want: &str) -> Value {
        self.wait_for(
            &format!("take {name} download {want}"),
            Duration::from_secs(90),
            |rig| {
                let t = rig.take(name);
                (t["download"] == want).then_some(t)
            },
        )
    }

    /// Every file in `<downloads>/<take>/<ip>/` is exactly the node's manifest plus the
    /// manifest itself, each with the manifest's size and sha256.
    pub fn assert_sorted_like_manifest(&self, take: &str, node: usize) {
        let manifest = self.node_manifest(node, take);
        let dir = self.downloads().join(take).join(&self.nodes[node].ip);
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let manifest_name = camrig_protocol::naming::TakeFiles::new(
            &manifest.take,
            &manifest.node,
            manifest.start_at_ns,
        )
        .manifest();
        let mut expected: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
        expected.push(manifest_name.clone());
        expected.sort();
        assert_eq!(on_disk, expected, "sorted files of {take} on node {node}");
        assert!(
            manifest.files.len() >= 4,
            "a take has video, timestamps and markers: {:?}",
            manifest.files
        );
        for f in &manifest.files {
            let path = dir.join(&f.name);
            let data = std::fs::read(&path).unwrap();
            assert_eq!(data.len() as u64, f.bytes, "{}", f.name);
            assert_eq!(
                camrig_fs::sha256_file(&path).unwrap().sha256,
                f.sha256,
                "{}",
                f.name
            );
        }
        let copy = TakeManifest::parse(&std::fs::read_to_string(dir.join(&manifest_name)).unwrap())
            .unwrap();
        assert_eq!(copy, manifest);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.controller.take() {
            terminate(&mut c);
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                terminate(&mut c);
            }
        }
    }
}
