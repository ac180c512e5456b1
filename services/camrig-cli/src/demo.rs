//! `camrig demo`: a whole rig on this machine. One `camrig-controller` and N
//! `camrig-node --synthetic 1` processes, the nodes on loopback addresses 127.0.0.2,
//! 127.0.0.3, … (so downloads sort into per-IP folders as on a real rig), configs, data,
//! logs and `video_downloads` under one directory. Downloads go through rsync with a
//! local-path source. Ctrl-C or SIGTERM stops every process with SIGTERM and waits.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::controller_client::ControllerClient;

/// Port every demo node's API listens on (each on its own loopback address).
pub const NODE_PORT: u16 = 8081;
/// How long the rig may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long processes get to close their files after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub nodes: usize,
    pub port: u16,
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
}

/// The loopback address of demo node `i` (0-based): 127.0.0.2, 127.0.0.3, …
pub fn node_ip(i: usize) -> Ipv4Addr {
    let n = i as u32 + 2;
    Ipv4Addr::new(127, 0, (n / 256) as u8, (n % 256) as u8)
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

/// A 128-bit random rig token, hex.
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

/// TOML string literal (basic string with escapes).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The node config the demo writes: one small synthetic camera so a laptop runs several.
pub fn node_config(ip: Ipv4Addr, data_dir: &Path, token: &str) -> String {
    format!(
        "# camrig demo node {ip} (written by camrig demo)\n\
         listen = \"{ip}:{NODE_PORT}\"\n\
         data_dir = {}\n\
         token = {}\n\n\
         [recording]\n\
         codec = \"h264\"\n\
         segment_seconds = 10\n\
         min_free_mb = 256\n\
         h264_bitrate_kbps = 1500\n\n\
         [camera]\n\
         source = \"synthetic\"\n\
         count = 1\n\
         width = 640\n\
         height = 360\n\
         fps = 30\n",
        toml_str(&data_dir.to_string_lossy()),
        toml_str(token)
    )
}

/// The controller config the demo writes.
pub fn controller_config(dir: &Path, port: u16, token: &str, nodes: usize) -> String {
    let mut out = format!(
        "# camrig demo controller (written by camrig demo)\n\
         listen = \"127.0.0.1:{port}\"\n\
         data_dir = {}\n\
         downloads_dir = {}\n\
         token = {}\n\
         # Every demo process shares this machine's clock, which may run without NTP.\n\
         require_node_sync = false\n",
        toml_str(&dir.join("controller").to_string_lossy()),
        toml_str(&dir.join("video_downloads").to_string_lossy()),
        toml_str(token)
    );
    for i in 0..nodes {
        let ip = node_ip(i);
        let recordings = dir.join("nodes").join(ip.to_string()).join("recordings");
        let _ = write!(
            out,
            "\n[[node]]\naddress = \"{ip}\"\nport = {NODE_PORT}\nrsync_source = {}\n",
            toml_str(&recordings.to_string_lossy())
        );
    }
    out
}

/// A running demo rig; dropping it stops every process.
pub struct DemoRig {
    pub dir: PathBuf,
    pub url: String,
    children: Vec<(String, Child, PathBuf)>,
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
        let token = random_token();
        let mut rig = DemoRig {
            url: format!("http://127.0.0.1:{}/", opts.port),
            dir: dir.clone(),
            children: Vec::new(),
        };
        for i in 0..opts.nodes {
            let ip = node_ip(i);
            let node_dir = dir.join("nodes").join(ip.to_string());
            fs::create_dir_all(node_dir.join("recordings")).map_err(io_err(&node_dir))?;
            let config = node_dir.join("node.toml");
            fs::write(&config, node_config(ip, &node_dir, &token)).map_err(io_err(&config))?;
            let mut cmd = Command::new(&node_bin);
            cmd.arg("--config").arg(&config).args(["--synthetic", "1"]);
            rig.spawn(
                &format!("node {ip}"),
                cmd,
                &dir.join("logs").join(format!("node-{ip}.log")),
            )?;
        }
        let config = dir.join("controller.toml");
        fs::write(
            &config,
            controller_config(&dir, opts.port, &token, opts.nodes),
        )
        .map_err(io_err(&config))?;
        let mut cmd = Command::new(&controller_bin);
        cmd.arg("--config").arg(&config);
        rig.spawn("controller", cmd, &dir.join("logs").join("controller.log"))?;
        Ok(rig)
    }

    fn spawn(&mut self, what: &str, mut cmd: Command, log: &Path) -> Result<(), DemoError> {
        let file = fs::File::create(log).map_err(io_err(log))?;
        let err = file.try_clone().map_err(io_err(log))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .spawn()
            .map_err(|source| DemoError::Spawn {
                what: what.to_owned(),
                source,
            })?;
        self.children.push((what.to_owned(), child, log.to_owned()));
        Ok(())
    }

    /// The first process that has exited, as an error with its log's tail.
    pub fn check_alive(&mut self) -> Result<(), DemoError> {
        for (what, child, log) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(&*log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                return Err(DemoError::DiedEarly {
                    what: what.clone(),
                    status: status.to_string(),
                    log: log.display().to_string(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
        }
        Ok(())
    }

    /// Waits until the controller answers and sees every node.
    pub async fn wait_ready(&mut self) -> Result<(), DemoError> {
        let client = ControllerClient::new(self.url.trim_end_matches('/'));
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
        for (_, child, _) in self.children.iter().rev() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (what, child, _) in self.children.iter_mut().rev() {
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
    println!("  web UI:     {}", rig.url);
    for i in 0..opts.nodes {
        println!("  node {}:  {}:{NODE_PORT}", i + 1, node_ip(i));
    }
    println!(
        "  downloads:  {}",
        rig.dir.join("video_downloads").display()
    );
    println!("  logs:       {}", rig.dir.join("logs").display());
    println!(
        "  CLI:        CAMRIG_CONTROLLER={} camrig status",
        rig.url.trim_end_matches('/')
    );
    println!("Press Ctrl-C to stop.");
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let result = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = rig.check_alive() { break Err(e) }
            }
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
        let text = controller_config(Path::new("/tmp/d \"x\""), 8080, "tok", 2);
        let c = camrig_controller::config::Config::parse(&text, Path::new("demo")).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].address, "127.0.0.3");
        assert!(!c.require_node_sync);
        assert_eq!(
            c.nodes[0].rsync_source,
            camrig_controller::config::RsyncSource::Local(
                "/tmp/d \"x\"/nodes/127.0.0.2/recordings".into()
            )
        );
        assert_eq!(c.downloads_dir, Path::new("/tmp/d \"x\"/video_downloads"));
    }
}
