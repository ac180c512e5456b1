//! A real `camrig-node` process with its own data directory, config and port, driven over
//! real HTTP. Reads like the scenario: `Node::builder().cameras(2).codec("h264").start()`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camrig_protocol::api::NodeStatus;
use camrig_protocol::manifest::TakeManifest;
use serde_json::{json, Value};

pub const TOKEN: &str = "test-token";

pub struct Builder {
    data_dir: Option<PathBuf>,
    cameras: usize,
    extra: Vec<String>,
    recording: Vec<String>,
    synthetic: Vec<String>,
    source: &'static str,
    env: Vec<(String, String)>,
    width: u32,
    height: u32,
}

impl Builder {
    pub fn cameras(mut self, n: usize) -> Self {
        self.cameras = n;
        self
    }
    pub fn codec(mut self, c: &str) -> Self {
        self.recording.push(format!("codec = \"{c}\""));
        self
    }
    pub fn recording(mut self, line: &str) -> Self {
        self.recording.push(line.to_owned());
        self
    }
    pub fn synthetic(mut self, line: &str) -> Self {
        self.synthetic.push(line.to_owned());
        self
    }
    pub fn top(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }
    pub fn size(mut self, w: u32, h: u32) -> Self {
        self.width = w;
        self.height = h;
        self
    }
    pub fn libcamera(mut self) -> Self {
        self.source = "libcamera";
        self
    }
    pub fn data_dir(mut self, d: &Path) -> Self {
        self.data_dir = Some(d.to_owned());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn start(self) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nname = \"testnode\"\ntoken = \"{TOKEN}\"\n{}\n\
             [recording]\nsegment_seconds = 60\nmin_free_mb = 1\nmjpeg_quality = 60\nh264_bitrate_kbps = 600\n{}\n\
             [camera]\nsource = \"{}\"\ncount = {}\nwidth = {}\nheight = {}\nfps = 30\n\
             [synthetic]\n{}\n",
            data_dir.display(),
            self.extra.join("\n"),
            self.recording.join("\n"),
            self.source,
            self.cameras,
            self.width,
            self.height,
            self.synthetic.join("\n"),
        );
        // Later keys of the same table would be duplicates: TOML refuses them, so the
        // defaults above are only those the builder never overrides.
        let config = dedupe_recording(&config);
        let config_path = tmp.path().join("node.toml");
        std::fs::write(&config_path, config).unwrap();
        Node::spawn(tmp, config_path, data_dir, self.env)
    }
}

/// Drops the harness default of a `[recording]` key the test set itself.
fn dedupe_recording(config: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut seen_keys = Vec::new();
    for line in config.lines().rev() {
        if let Some((k, _)) = line.split_once(" = ") {
            let key = k.trim().to_owned();
            if seen_keys.contains(&key)
                && [
                    "segment_seconds",
                    "min_free_mb",
                    "mjpeg_quality",
                    "h264_bitrate_kbps",
                ]
                .contains(&key.as_str())
            {
                continue;
            }
            seen_keys.push(key);
        }
        out.push(line.to_owned());
    }
    out.reverse();
    out.join("\n")
}

pub struct Node {
    pub _tmp: tempfile::TempDir,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub base: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::blocking::Client,
    env: Vec<(String, String)>,
}

impl Node {
    pub fn builder() -> Builder {
        Builder {
            data_dir: None,
            cameras: 1,
            extra: vec![],
            recording: vec![],
            synthetic: vec![],
            source: "synthetic",
            env: vec![],
            width: 160,
            height: 120,
        }
    }

    fn spawn(
        tmp: tempfile::TempDir,
        config_path: PathBuf,
        data_dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Node {
        let mut node = Node {
            _tmp: tmp,
            config_path,
            data_dir,
            child: None,
            base: String::new(),
            logs: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            env,
        };
        node.restart();
        node
    }

    /// Starts (again) the process on the same config and data directory.
    pub fn restart(&mut self) {
        let bin = env!("CARGO_BIN_EXE_camrig-node");
        let mut cmd = if self.env.iter().any(|(k, _)| k == "WATCHDOG_USEC") {
            // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's.
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
                .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn camrig-node");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                logs.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "camrig-node did not start serving; log:\n{}",
                    self.log_text()
                )
            });
        self.base = format!("http://{addr}");
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn recordings(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    /// `DELETE` with a JSON body and the given bearer token.
    pub fn delete_as(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    pub fn status(&self) -> NodeStatus {
        self.get("/v1/status").json().unwrap()
    }

    /// START at `lead` from now; returns start_at_ns.
    pub fn start_take(&self, take: &str, lead: Duration) -> i64 {
        let start_at = now_ns() + lead.as_nanos() as i64;
        let (code, body) = self.post(
            "/v1/takes/start",
            json!({"take": take, "start_at_ns": start_at, "command_id": format!("start-{take}")}),
        );
        assert_eq!(code, 200, "{body}");
        start_at
    }

    pub fn stop_take(&self, take: &str, stop_at: i64) {
        let (code, body) = self.post(
            "/v1/takes/stop",
            json!({"stop_at_ns": stop_at, "command_id": format!("stop-{take}")}),
        );
        assert_eq!(code, 200, "{body}");
    }

    /// Polls status until `pred` holds.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&NodeStatus) -> bool,
    ) -> NodeStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {s:?}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_idle(&self, timeout: Duration) -> NodeStatus {
        self.wait_status("idle", timeout, |s| {
            s.state == camrig_protocol::api::NodeState::Idle
        })
    }

    pub fn manifest(&self, take: &str) -> TakeManifest {
        let r = self.get(&format!("/v1/takes/{take}/manifest"));
        assert_eq!(r.status().as_u16(), 200);
        TakeManifest::parse(&r.text().unwrap()).unwrap()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "camrig-node did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn now_ns() -> i64 {
    camrig_protocol::now_unix_ns()
}

/// Frames ffprobe decodes in a raw stream file.
pub fn ffprobe_frames(path: &Path) -> u64 {
    if std::fs::metadata(path).unwrap().len() == 0 {
        // A segment a crash left right after creating it: no frames, nothing to decode.
        return 0;
    }
    let format = if path.extension().unwrap() == "h264" {
        "h264"
    } else {
        "mjpeg"
    };
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-f",
            format,
            "-count_frames",
            "-select_streams",
            "v:0",
        ])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (Debian's ffmpeg package) is installed");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe said {text:?} for {}", path.display()))
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn read_timestamps(path: &Path) -> Vec<i64> {
    camrig_protocol::timestamps::parse_bin(&std::fs::read(path).unwrap()).unwrap()
}

/// Every name under a directory, recursively, relative to it (the node's spare take directory
/// left out).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                // The next take's directory, which the node makes ahead of START, is no take.
                if e.file_name() == camrig_node::take::SPARE {
                    continue;
                }
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
