//! `camrig demo`: a whole rig on this machine. One `camrig-controller` and N
//! `camrig-node --synthetic 1` processes, the nodes on loopback addresses 127.0.0.2,
//! 127.0.0.3, … (so downloads sort into per-IP folders as on a real rig), configs, data,
//! logs and `video_downloads` under one directory. Downloads go through rsync with a
//! local-path source. Ctrl-C or SIGTERM stops every process with SIGTERM and waits.
//!
//! Credentials are made fresh for every demo, as provisioning makes them for a rig: the rig
//! token the controller sends to the nodes (`rig-token`), the controller's API token
//! (`controller-token`, what the CLI reads through `CAMRIG_TOKEN_FILE`) and an operator
//! password (its Argon2 hash in `operator-password`), every file 0600; the password and a
//! one-click login link (the API token in the URL's fragment, which never reaches a server
//! log) are printed once.
//!
//! Addresses: a node's default address (or the controller's default port) that is taken,
//! by a second demo or a test run, is replaced by the next free one, and the demo says
//! which it chose. Supervision, as systemd's `Restart=on-failure`: a process that dies
//! once the rig is up is restarted (a node recovers its interrupted take, the controller
//! its take history) and reported; the rest keeps running. One that keeps dying
//! ([`RESTART_BURST`] times within [`RESTART_INTERVAL`]) ends the demo.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use camrig_config::controller::{AccessEntry, ControllerFile, NodeEntry};
use camrig_config::node::{CameraSource, NodeConfig};
use camrig_protocol::naming::Codec;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::controller_client::ControllerClient;

/// Port every demo node's API listens on (each on its own loopback address).
pub const NODE_PORT: u16 = 8081;
/// How long the rig may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long processes get to close their files after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The controller's default web UI port.
pub const DEFAULT_PORT: u16 = 8080;
/// A process restarted this many times within [`RESTART_INTERVAL`] is given up on
/// (systemd's `StartLimitBurst=` / `StartLimitIntervalSec=`).
pub const RESTART_BURST: usize = 5;
pub const RESTART_INTERVAL: Duration = Duration::from_secs(30);
/// Wait before a restart (systemd's `RestartSec=`).
const RESTART_DELAY: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub nodes: usize,
    /// The web UI's port; `None`: [`DEFAULT_PORT`], or a free one when that is taken.
    pub port: Option<u16>,
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} not found next to {1} or on PATH; build the workspace first: cargo build --release (or cargo build --workspace --bins)")]
    MissingBinary(&'static str, String),
    #[error("--nodes must be 1-200, not {0}")]
    BadNodeCount(usize),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited during start-up ({status}); its log {log}:\n{tail}")]
    DiedEarly {
        what: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("the rig did not come up within {0} s: {1}")]
    Timeout(u64, String),
    #[error("port {0} on 127.0.0.1 is taken; choose another with --port, or leave --port out and the demo picks a free one")]
    PortTaken(u16),
    #[error("no free loopback address for node {0} (tried 127.0.0.2 to 127.0.255.254)")]
    NoFreeAddress(usize),
    #[error("{what} keeps dying ({restarts} restarts within {} s), giving up; its log {log}:\n{tail}", RESTART_INTERVAL.as_secs())]
    KeepsDying {
        what: String,
        restarts: usize,
        log: String,
        tail: String,
    },
}

/// The default loopback address of demo node `i` (0-based): 127.0.0.2, 127.0.0.3, …
pub fn node_ip(i: usize) -> Ipv4Addr {
    let n = i as u32 + 2;
    Ipv4Addr::new(127, 0, (n / 256) as u8, (n % 256) as u8)
}

/// Whether `ip:port` can be listened on now.
fn is_free(ip: Ipv4Addr, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok()
}

/// A claim on a node address for this demo's lifetime: an exclusive `flock` on
/// `<tmp>/camrig-demo-addresses/<ip>.lock`. Two demos starting at the same moment both see
/// a port free before either node listens; the lock makes the second pick another.
pub struct AddressClaim {
    _lock: nix::fcntl::Flock<fs::File>,
}

fn claim_address(ip: Ipv4Addr) -> Option<AddressClaim> {
    let dir = std::env::temp_dir().join("camrig-demo-addresses");
    fs::create_dir_all(&dir).ok()?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{ip}.lock")))
        .ok()?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()?;
    // Claimed, and nothing else (a demo of an older camrig, a test) listens there.
    is_free(ip, NODE_PORT).then_some(AddressClaim { _lock: lock })
}

/// The nodes' addresses: node `i`'s default ([`node_ip`]) when it is free, else the next
/// free one after the addresses already chosen, so a second demo (or a test run) beside
/// this one gets its own. Each comes with its claim, held while the demo runs.
pub fn choose_node_ips(nodes: usize) -> Result<Vec<(Ipv4Addr, AddressClaim)>, DemoError> {
    let mut chosen: Vec<(Ipv4Addr, AddressClaim)> = Vec::with_capacity(nodes);
    let mut next = 0usize;
    for i in 0..nodes {
        next = next.max(i);
        loop {
            // 127.0.0.2 … 127.0.255.254: skip .0 and .255 of each /24.
            if next >= 65_533 {
                return Err(DemoError::NoFreeAddress(i));
            }
            let ip = node_ip(next);
            next += 1;
            let last = ip.octets()[3];
            if last == 0 || last == 255 || chosen.iter().any(|(c, _)| *c == ip) {
                continue;
            }
            if let Some(claim) = claim_address(ip) {
                chosen.push((ip, claim));
                break;
            }
        }
    }
    Ok(chosen)
}

/// The web UI's port: the one asked for (an error when taken), else [`DEFAULT_PORT`] or,
/// when that is taken, a free one.
pub fn choose_port(asked: Option<u16>) -> Result<u16, DemoError> {
    let lo = Ipv4Addr::LOCALHOST;
    match asked {
        Some(p) if is_free(lo, p) => Ok(p),
        Some(p) => Err(DemoError::PortTaken(p)),
        None if is_free(lo, DEFAULT_PORT) => Ok(DEFAULT_PORT),
        None => std::net::TcpListener::bind((lo, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|source| DemoError::Io {
                path: PathBuf::from("127.0.0.1:0"),
                source,
            }),
    }
}

/// Finds a sibling binary of the running `camrig` (the cargo target dir, or /usr/bin),
/// else one on PATH.
pub fn find_binary(name: &'static str) -> Result<PathBuf, DemoError> {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join(name));
        // Test binaries live in target/<profile>/deps.
        if dir.ends_with("deps") {
            if let Some(up) = dir.parent() {
                candidates.push(up.join(name));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| DemoError::MissingBinary(name, exe.display().to_string()))
}

/// Writes a file only its owner can read (the demo's secrets and the configs naming them).
fn write_private(path: &Path, contents: &str) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(io_err(path))
}

/// The demo's operator password: 12 random lowercase letters and digits.
fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    random_token()
        .as_bytes()
        .chunks(2)
        .take(12)
        .map(|pair| {
            let byte =
                u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("0"), 16).unwrap_or(0);
            ALPHABET[usize::from(byte) % ALPHABET.len()] as char
        })
        .collect()
}

/// A 128-bit random token, hex.
fn random_token() -> String {
    use std::io::Read;
    let mut buf = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return buf.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
        }
    }
    format!(
        "demo{:x}{:x}",
        std::process::id(),
        camrig_protocol::now_unix_ns()
    )
}

/// Fills `out` from the start of a hex string.
fn hex_into(hex: &str, out: &mut [u8]) {
    for (o, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *o = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .unwrap_or(0);
    }
}

/// The node config the demo writes: one small synthetic camera so a laptop runs several.
pub fn node_config(ip: Ipv4Addr, data_dir: &Path, token_file: &Path) -> String {
    let mut c = NodeConfig {
        listen: SocketAddr::from((ip, NODE_PORT)),
        data_dir: data_dir.to_owned(),
        token_file: token_file.to_string_lossy().into_owned(),
        ..NodeConfig::default()
    };
    c.recording.codec = Codec::H264;
    c.recording.segment_seconds = 10;
    c.recording.min_free_mb = 256;
    c.recording.h264_bitrate_kbps = 1500;
    c.camera.source = CameraSource::Synthetic;
    c.camera.count = 1;
    c.camera.width = 640;
    c.camera.height = 360;
    c.camera.fps = 30.0;
    format!(
        "# camrig demo node {ip} (written by camrig demo)\n{}",
        c.to_toml()
    )
}

/// The rig token the controller sends to the nodes.
pub const RIG_TOKEN_FILE: &str = "rig-token";
/// The controller's API token (the CLI: `CAMRIG_TOKEN_FILE=<demo dir>/controller-token`).
pub const CONTROLLER_TOKEN_FILE: &str = "controller-token";
/// The operator password's Argon2 hash.
pub const PASSWORD_HASH_FILE: &str = "operator-password";

/// The controller config the demo writes; the secrets are files in `dir`.
pub fn controller_config(dir: &Path, port: u16, ips: &[Ipv4Addr]) -> String {
    let file = ControllerFile {
        listen: format!("127.0.0.1:{port}"),
        data_dir: dir.join("controller"),
        downloads_dir: Some(dir.join("video_downloads")),
        token_file: dir.join(RIG_TOKEN_FILE).to_string_lossy().into_owned(),
        // Every demo process shares this machine's clock, which may run without NTP.
        require_node_sync: false,
        access: Some(AccessEntry {
            api_token_file: dir
                .join(CONTROLLER_TOKEN_FILE)
                .to_string_lossy()
                .into_owned(),
            password_hash_file: dir.join(PASSWORD_HASH_FILE).to_string_lossy().into_owned(),
            ..AccessEntry::default()
        }),
        node: ips
            .iter()
            .map(|ip| {
                let recordings = dir.join("nodes").join(ip.to_string()).join("recordings");
                NodeEntry {
                    port: NODE_PORT,
                    rsync_source: Some(recordings.to_string_lossy().into_owned()),
                    ..NodeEntry::new(ip.to_string())
                }
            })
            .collect(),
        ..ControllerFile::default()
    };
    format!(
        "# camrig demo controller (written by camrig demo)\n{}",
        file.to_toml()
    )
}

/// One supervised process: how to start it again, and its restarts.
struct Supervised {
    what: String,
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    log: PathBuf,
    child: Child,
    restarts: Vec<Instant>,
}

/// What the supervisor did about a process that died.
#[derive(Clone, Debug)]
pub struct Restarted {
    pub what: String,
    pub status: String,
    pub pid: u32,
}

/// A running demo rig; dropping it stops every process.
pub struct DemoRig {
    pub dir: PathBuf,
    pub url: String,
    /// The controller's API token (also in `<dir>/controller-token`).
    pub token: String,
    /// The operator password (only its hash is on disk).
    pub password: String,
    /// The nodes' addresses, in order.
    pub node_ips: Vec<Ipv4Addr>,
    /// The defaults that were taken, as (default, chosen instead) lines to show.
    pub substitutions: Vec<String>,
    children: Vec<Supervised>,
    /// The node addresses, claimed until the demo is dropped.
    _claims: Vec<AddressClaim>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DemoRig {
    /// Writes the configs and starts the processes (it does not wait for them).
    pub fn launch(opts: &DemoOptions) -> Result<DemoRig, DemoError> {
        if opts.nodes == 0 || opts.nodes > 200 {
            return Err(DemoError::BadNodeCount(opts.nodes));
        }
        let node_bin = find_binary("camrig-node")?;
        let controller_bin = find_binary("camrig-controller")?;
        let dir = match &opts.dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!(
                "camrig-demo-{}",
                camrig_protocol::naming::stamp(camrig_protocol::now_unix_ns())
            )),
        };
        fs::create_dir_all(dir.join("logs")).map_err(io_err(&dir))?;
        let dir = dir.canonicalize().map_err(io_err(&dir))?;
        let rig_token = dir.join(RIG_TOKEN_FILE);
        write_private(&rig_token, &format!("{}\n", random_token()))?;
        let api_token = format!("{}{}", random_token(), random_token());
        write_private(&dir.join(CONTROLLER_TOKEN_FILE), &format!("{api_token}\n"))?;
        let password = random_password();
        let salt: [u8; 16] = {
            let mut s = [0u8; 16];
            hex_into(&random_token(), &mut s);
            s
        };
        let hash = camrig_protocol::operator_password::hash(&password, &salt)
            .expect("a 12-character password is accepted");
        write_private(&dir.join(PASSWORD_HASH_FILE), &format!("{hash}\n"))?;
        let port = choose_port(opts.port)?;
        let (node_ips, claims): (Vec<Ipv4Addr>, Vec<AddressClaim>) =
            choose_node_ips(opts.nodes)?.into_iter().unzip();
        let mut substitutions = Vec::new();
        if opts.port.is_none() && port != DEFAULT_PORT {
            substitutions.push(format!(
                "port {DEFAULT_PORT} is taken: the web UI uses {port}"
            ));
        }
        for (i, ip) in node_ips.iter().enumerate() {
            if *ip != node_ip(i) {
                substitutions.push(format!(
                    "{}:{NODE_PORT} is taken: node {} uses {ip}:{NODE_PORT}",
                    node_ip(i),
                    i + 1
                ));
            }
        }
        let mut rig = DemoRig {
            url: format!("http://127.0.0.1:{port}/"),
            dir: dir.clone(),
            token: api_token,
            password,
            node_ips: node_ips.clone(),
            substitutions,
            children: Vec::new(),
            _claims: claims,
        };
        for ip in &node_ips {
            let node_dir = dir.join("nodes").join(ip.to_string());
            fs::create_dir_all(node_dir.join("recordings")).map_err(io_err(&node_dir))?;
            let config = node_dir.join("node.toml");
            write_private(&config, &node_config(*ip, &node_dir, &rig_token))?;
            rig.spawn(
                &format!("node {ip}"),
                &node_bin,
                vec![
                    "--config".into(),
                    config.into_os_string(),
                    "--synthetic".into(),
                    "1".into(),
                ],
                &dir.join("logs").join(format!("node-{ip}.log")),
            )?;
        }
        let config = dir.join("controller.toml");
        write_private(&config, &controller_config(&dir, port, &node_ips))?;
        rig.spawn(
            "controller",
            &controller_bin,
            vec!["--config".into(), config.into_os_string()],
            &dir.join("logs").join("controller.log"),
        )?;
        Ok(rig)
    }

    /// Starts a process with its output appended to `log` (a restart keeps the earlier
    /// lines).
    fn start_process(
        what: &str,
        program: &Path,
        args: &[std::ffi::OsString],
        log: &Path,
    ) -> Result<Child, DemoError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err(log))?;
        let err = file.try_clone().map_err(io_err(log))?;
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .spawn()
            .map_err(|source| DemoError::Spawn {
                what: what.to_owned(),
                source,
            })
    }

    fn spawn(
        &mut self,
        what: &str,
        program: &Path,
        args: Vec<std::ffi::OsString>,
        log: &Path,
    ) -> Result<(), DemoError> {
        let child = Self::start_process(what, program, &args, log)?;
        self.children.push(Supervised {
            what: what.to_owned(),
            program: program.to_owned(),
            args,
            log: log.to_owned(),
            child,
            restarts: Vec::new(),
        });
        Ok(())
    }

    /// The one-click login link: the API token rides in the fragment, which the browser
    /// keeps to itself; the login page posts it and gets a session cookie.
    pub fn login_link(&self) -> String {
        format!("{}login#token={}", self.url, self.token)
    }

    /// Process ids by name (`controller`, `node 127.0.0.2`, …).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|c| (c.what.clone(), c.child.id()))
            .collect()
    }

    /// Once the rig is up: restarts every process that has exited, as systemd's
    /// `Restart=on-failure` would, and says what it did. A process that keeps dying is an
    /// error that ends the demo.
    pub async fn supervise(&mut self) -> Result<Vec<Restarted>, DemoError> {
        let mut done = Vec::new();
        for c in &mut self.children {
            let Ok(Some(status)) = c.child.try_wait() else {
                continue;
            };
            let now = Instant::now();
            c.restarts
                .retain(|t| now.duration_since(*t) < RESTART_INTERVAL);
            if c.restarts.len() >= RESTART_BURST {
                return Err(DemoError::KeepsDying {
                    what: c.what.clone(),
                    restarts: c.restarts.len(),
                    log: c.log.display().to_string(),
                    tail: log_tail(&c.log),
                });
            }
            tokio::time::sleep(RESTART_DELAY).await;
            c.child = Self::start_process(&c.what, &c.program, &c.args, &c.log)?;
            c.restarts.push(Instant::now());
            done.push(Restarted {
                what: c.what.clone(),
                status: status.to_string(),
                pid: c.child.id(),
            });
        }
        Ok(done)
    }

    /// The first process that has exited, as an error with its log's tail (during
    /// start-up, where a death is a configuration problem, not something to restart).
    pub fn check_alive(&mut self) -> Result<(), DemoError> {
        for c in &mut self.children {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(DemoError::DiedEarly {
                    what: c.what.clone(),
                    status: status.to_string(),
                    log: c.log.display().to_string(),
                    tail: log_tail(&c.log),
                });
            }
        }
        Ok(())
    }

    /// Waits until the controller answers and sees every node.
    pub async fn wait_ready(&mut self) -> Result<(), DemoError> {
        let client = ControllerClient::new(self.url.trim_end_matches('/'), Some(&self.token));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last;
        loop {
            self.check_alive()?;
            match client.rig().await {
                Ok(rig) if rig.nodes.iter().all(|n| n.reachable) => return Ok(()),
                Ok(rig) => {
                    last = format!(
                        "{} of {} nodes reachable",
                        rig.nodes.iter().filter(|n| n.reachable).count(),
                        rig.nodes.len()
                    )
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(DemoError::Timeout(STARTUP_TIMEOUT.as_secs(), last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to every process (controller first), then waits; SIGKILL after a timeout.
    pub fn stop(&mut self) {
        for c in self.children.iter().rev() {
            let _ = kill(Pid::from_raw(c.child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for Supervised { what, child, .. } in self.children.iter_mut().rev() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            eprintln!("{what} exited with {status}");
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        eprintln!(
                            "{what} did not stop within {} s; killing it",
                            STOP_TIMEOUT.as_secs()
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.children.clear();
    }
}

/// The last 15 lines of a log.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Drop for DemoRig {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `camrig demo`: runs until Ctrl-C / SIGTERM or until a process dies.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    // Install the handlers before any child exists so an early Ctrl-C is not lost.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("install SIGINT handler");
    // Say now what is missing, not when DOWNLOAD & SORT fails in the browser.
    let path = std::env::var("PATH").unwrap_or_default();
    for t in crate::scripting::missing_demo_tools(&path) {
        eprintln!(
            "camrig demo: {} is not installed; {} needs it. Install it first: sudo apt-get install {}",
            t.tool, t.needed_for, t.debian_package
        );
    }
    let mut rig = DemoRig::launch(&opts)?;
    println!(
        "starting a demo rig: controller + {} synthetic node(s) in {}",
        opts.nodes,
        rig.dir.display()
    );
    tokio::select! {
        r = rig.wait_ready() => r?,
        _ = term.recv() => { rig.stop(); return Ok(()) }
        _ = int.recv() => { rig.stop(); return Ok(()) }
    }
    println!("camrig demo is running.");
    for line in &rig.substitutions {
        println!("  note:       {line}");
    }
    println!("  web UI:     {}", rig.url);
    println!("  log in:     {}", rig.login_link());
    println!(
        "  password:   {} (shown once; change it in the web UI or with camrig password)",
        rig.password
    );
    let pids = rig.pids();
    for (i, ip) in rig.node_ips.iter().enumerate() {
        let pid = pids
            .iter()
            .find(|(what, _)| *what == format!("node {ip}"))
            .map(|(_, pid)| *pid)
            .unwrap_or_default();
        println!("  node {}:     {ip}:{NODE_PORT} (pid {pid})", i + 1);
    }
    if let Some((_, pid)) = pids.iter().find(|(what, _)| what == "controller") {
        println!("  controller: pid {pid}");
    }
    println!(
        "  downloads:  {}",
        rig.dir.join("video_downloads").display()
    );
    println!("  logs:       {}", rig.dir.join("logs").display());
    println!(
        "  CLI:        CAMRIG_CONTROLLER={} CAMRIG_TOKEN_FILE={} camrig status",
        rig.url.trim_end_matches('/'),
        rig.dir.join(CONTROLLER_TOKEN_FILE).display()
    );
    println!("Press Ctrl-C to stop.");
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = ticker.tick() => match rig.supervise().await {
                Ok(restarted) => {
                    for r in restarted {
                        let recovery = if r.what == "controller" {
                            "it picks up its take history and any running take"
                        } else {
                            "it recovers an interrupted take; the controller shows it lost from that take"
                        };
                        println!("{} exited ({}); restarted it as pid {} ({recovery})", r.what, r.status, r.pid);
                    }
                }
                Err(e) => break Err(e),
            },
        }
    };
    println!("stopping the demo rig…");
    rig.stop();
    println!(
        "stopped; recordings and downloads stay in {}",
        rig.dir.display()
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_consecutive_loopback_addresses() {
        assert_eq!(node_ip(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(node_ip(1), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(node_ip(254), Ipv4Addr::new(127, 0, 1, 0));
    }

    #[test]
    fn generated_controller_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("d \"x\"");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(RIG_TOKEN_FILE), "rig-token-0123456789\n").unwrap();
        fs::write(dir.join(CONTROLLER_TOKEN_FILE), "api-token-0123456789\n").unwrap();
        let hash = camrig_protocol::operator_password::hash("demo password", &[3; 16]).unwrap();
        fs::write(dir.join(PASSWORD_HASH_FILE), hash).unwrap();
        let path = dir.join("controller.toml");
        fs::write(
            &path,
            controller_config(&dir, 8080, &[node_ip(0), node_ip(1)]),
        )
        .unwrap();
        let c = camrig_config::controller::Config::load(&path).unwrap();
        assert_eq!(c.token, "rig-token-0123456789");
        assert_eq!(c.access.api_token, "api-token-0123456789");
        assert!(c.access.password_hash.is_some());
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].address, "127.0.0.3");
        assert!(!c.require_node_sync);
        assert_eq!(
            c.nodes[0].rsync_source,
            camrig_config::controller::RsyncSource::Local(dir.join("nodes/127.0.0.2/recordings"))
        );
        assert_eq!(c.downloads_dir, dir.join("video_downloads"));
    }
}
