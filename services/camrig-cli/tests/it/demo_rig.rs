//! The demo rig end to end: the browser logs in, records, marks, stops and downloads a take;
//! the CLI does the same with the demo's API token; Ctrl-C's SIGTERM stops every process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

pub fn camrig() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_camrig"))
}

/// target/<profile>, where cargo put camrig-node and camrig-controller.
fn bin_dir() -> PathBuf {
    camrig().parent().unwrap().to_owned()
}

/// `$CARGO_TARGET_DIR/artifacts` (or `target/artifacts` next to the binaries).
fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir().parent().unwrap().to_owned())
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills (SIGKILL) a child still running when the test fails halfway.
pub struct Guard(pub Option<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `camrig ARGS` with the demo's token file (`token_file` `None`: no credentials at all).
fn cli_as(url: &str, token_file: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(camrig());
    cmd.args(args)
        .env("CAMRIG_CONTROLLER", url)
        .env_remove("CAMRIG_TOKEN")
        .env_remove("CAMRIG_TOKEN_FILE")
        .stdin(Stdio::null());
    if let Some(f) = token_file {
        cmd.env("CAMRIG_TOKEN_FILE", f);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

async fn wait_js(client: &Client, what: &str, script: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = js(client, script).await;
        if !v.is_null() && v != json!(false) {
            return v;
        }
        if Instant::now() > deadline {
            let errors = js(client, "return document.getElementById('errors').innerText").await;
            let png = client.screenshot().await.unwrap_or_default();
            let _ = std::fs::write(artifacts_dir().join("ui-failure.png"), png);
            panic!("timed out waiting for {what}; page errors: {errors}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_chromedriver(port: u16) -> Guard {
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian: chromium-driver; ci/install-deps installs it)");
    let guard = Guard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    guard
}

async fn browser(driver_port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1400",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("chromedriver session")
}

/// A running `camrig demo`, with what it printed: its web UI's URL, its nodes' addresses
/// (it picks free ones, so tests never assume 127.0.0.2) and process ids.
pub struct Demo {
    guard: Guard,
    rx: mpsc::Receiver<String>,
    pub output: Vec<String>,
    pub url: String,
    pub ips: Vec<String>,
    pub node_pids: Vec<u32>,
    pub controller_pid: u32,
    /// `<dir>/controller-token`, for `CAMRIG_TOKEN_FILE`.
    pub token_file: PathBuf,
    /// The printed one-click login link (`<url>/login#token=<API token>`).
    pub login_link: String,
    /// The printed operator password.
    pub password: String,
}

impl Demo {
    pub fn start(nodes: usize, dir: &Path) -> Demo {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut demo = Command::new(camrig())
            .args([
                "demo",
                "--nodes",
                &nodes.to_string(),
                "--port",
                &port.to_string(),
                "--dir",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = demo.stdout.take().unwrap();
        let stderr = demo.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| {
                    let _ = tx.send(l);
                })
        });
        std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| {
                    let _ = tx2.send(l);
                })
        });
        let mut demo = Demo {
            guard: Guard(Some(demo)),
            rx,
            output: Vec::new(),
            url,
            ips: Vec::new(),
            node_pids: Vec::new(),
            controller_pid: 0,
            token_file: dir.join("controller-token"),
            login_link: String::new(),
            password: String::new(),
        };
        demo.wait_line("Press Ctrl-C to stop", Duration::from_secs(90));
        assert!(
            demo.output
                .iter()
                .any(|l| l.contains(&format!("{}/", demo.url))),
            "{:?}",
            demo.output
        );
        // "  node 1:     127.0.0.2:8081 (pid 1234)"
        for line in &demo.output {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("node ") {
                if let Some((_, addr)) = rest
                    .split_once(':')
                    .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                {
                    let mut words = addr.split_whitespace();
                    let ip_port = words.next().unwrap();
                    let pid = words.next().unwrap().trim_start_matches("(pid");
                    let pid = words.next().unwrap_or(pid).trim_end_matches(')');
                    demo.ips.push(ip_port.split(':').next().unwrap().to_owned());
                    demo.node_pids.push(pid.parse().unwrap());
                }
            }
            if let Some(pid) = t.strip_prefix("controller: pid ") {
                demo.controller_pid = pid.parse().unwrap();
            }
        }
        assert_eq!(demo.ips.len(), nodes, "{:?}", demo.output);
        assert!(demo.controller_pid > 0, "{:?}", demo.output);
        // The demo's credentials: fresh, private files, printed once.
        let token = std::fs::read_to_string(&demo.token_file)
            .unwrap()
            .trim()
            .to_owned();
        let node_toml = format!("nodes/{}/node.toml", demo.ips[0]);
        for secret in [
            "controller-token",
            "rig-token",
            "operator-password",
            "controller.toml",
            node_toml.as_str(),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
        demo.login_link = format!("{}/login#token={token}", demo.url);
        assert!(
            demo.output.iter().any(|l| l.contains(&demo.login_link)),
            "{:?}",
            demo.output
        );
        demo.password = demo
            .output
            .iter()
            .find_map(|l| l.trim().strip_prefix("password:"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no password line: {:?}", demo.output))
            .to_owned();
        demo
    }

    /// Waits for a line containing `what`, failing when the demo exits first.
    fn wait_line(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.output.iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => self.output.push(line),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "no {what:?} from the demo:\n{}",
                    self.output.join("\n")
                ),
            }
            if let Ok(Some(status)) = self.guard.0.as_mut().unwrap().try_wait() {
                while let Ok(line) = self.rx.recv_timeout(Duration::from_millis(200)) {
                    self.output.push(line);
                }
                panic!(
                    "camrig demo exited with {status}:\n{}",
                    self.output.join("\n")
                );
            }
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.guard.0.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// SIGINT (Ctrl-C) and wait: it must exit 0 with every process stopped.
    fn interrupt(mut self) {
        let mut child = self.guard.0.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{status}");
        for ip in &self.ips {
            assert!(
                std::net::TcpStream::connect((ip.as_str(), 8081)).is_err(),
                "node {ip} still running"
            );
        }
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "controller still running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_rig_driven_from_the_browser_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(2, dir.path());
    let url = demo.url.clone();
    let ips = demo.ips.clone();
    // The demo's credentials (checked in `Demo::start`: fresh, private files, printed once).
    let token_file = demo.token_file.clone();
    let login_link = demo.login_link.clone();
    let password = demo.password.clone();
    let node_config =
        std::fs::read_to_string(dir.path().join("nodes").join(&ips[0]).join("node.toml")).unwrap();
    assert!(
        !node_config.contains("token = ") || node_config.contains("token_file = "),
        "{node_config}"
    );
    let cli = |url: &str, args: &[&str]| cli_as(url, Some(&token_file), args);
    // Without the token the controller answers nothing.
    let (ok, text) = cli_as(&url, None, &["status"]);
    assert!(!ok && text.contains("log in first"), "{text}");

    // Ready to START once the clocks are measured.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = cli(&url, &["status"]);
        assert!(ok, "{text}");
        if text.contains("ready to START") {
            assert!(text.contains(&ips[0]) && text.contains(&ips[1]), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "rig never ready:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // ---- the browser ----
    let driver_port = free_port();
    let _driver = start_chromedriver(driver_port);
    let profile = tempfile::tempdir().unwrap();
    let client = browser(driver_port, profile.path()).await;
    // Not logged in: the page sends the browser to the login form; a wrong password is said so.
    client.goto(&format!("{url}/")).await.unwrap();
    wait_js(
        &client,
        "the login page",
        "return location.pathname === '/login' && !!document.getElementById('login-password')",
        Duration::from_secs(10),
    )
    .await;
    type_in(&client, "#login-password", "not the password").await;
    click(&client, "#btn-login").await;
    wait_js(&client, "wrong password shown", "const e = document.querySelector('#errors .error'); return e && e.textContent.includes('wrong password') ? e.textContent : null", Duration::from_secs(10)).await;
    let field = client.find(Locator::Css("#login-password")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(&password).await.unwrap();
    click(&client, "#btn-login").await;
    wait_js(
        &client,
        "the rig's page after logging in",
        "return location.pathname === '/' && !!document.getElementById('btn-start')",
        Duration::from_secs(10),
    )
    .await;
    // The session cookie is not readable by scripts (HttpOnly).
    assert_eq!(js(&client, "return document.cookie").await, json!(""));
    wait_js(&client, "two node rows with live frame counts",
        "const r = [...document.querySelectorAll('#nodes tr')]; return r.length === 2 && r.every(t => /^\\d+$/.test(t.querySelector('.frames').textContent)) ? r.map(t => t.dataset.address) : null",
        Duration::from_secs(30)).await;
    let frames_before: u64 = js(
        &client,
        "return Number(document.querySelector('#nodes tr .frames').textContent)",
    )
    .await
    .as_u64()
    .unwrap();
    wait_js(&client, "frame counts moving",
        &format!("return Number(document.querySelector('#nodes tr .frames').textContent) > {frames_before}"),
        Duration::from_secs(10)).await;

    // Camera settings panel: 5 ms on every camera, shown as asked and as applied.
    wait_js(
        &client,
        "a camera-settings row per node",
        "return document.querySelectorAll('#settings-cameras tr[data-node]').length === 2",
        Duration::from_secs(10),
    )
    .await;
    let exposure = client.find(Locator::Css("#set-exposure")).await.unwrap();
    exposure.clear().await.unwrap();
    exposure.send_keys("5000").await.unwrap();
    click(&client, "#btn-settings-apply").await;
    wait_js(&client, "5000 µs asked and applied on both cameras",
        "return [...document.querySelectorAll('#settings-cameras tr[data-node] .exposure')].every(c => c.textContent.startsWith('5000') && c.textContent.includes('→ 5000'))",
        Duration::from_secs(10)).await;
    let (ok, text) = cli(&url, &["camera-settings", "show"]);
    assert!(
        ok && text.contains("EXPOSURE") && text.contains("5000"),
        "{text}"
    );
    let (ok, text) = cli(&url, &["camera-settings", "set", "--gain", "99"]);
    assert!(!ok && text.contains("1-16"), "{text}");
    // A frame rate from the page, on the first node only (the nodes field), then auto again.
    let first = js(
        &client,
        "return document.querySelector('#settings-cameras tr[data-node]').dataset.node",
    )
    .await;
    let first = first.as_str().unwrap().to_owned();
    for (fps, nodes, want) in [
        ("25", first.as_str(), "['25', 'auto (30)']"),
        ("auto", "", "['auto (30)', 'auto (30)']"),
    ] {
        for (field, value) in [("#set-fps", fps), ("#set-nodes", nodes)] {
            let input = client.find(Locator::Css(field)).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(value).await.unwrap();
        }
        client
            .find(Locator::Css("#btn-settings-apply"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(
            &client,
            &format!("frame rates {want} in the panel"),
            &format!(
                "return JSON.stringify([...document.querySelectorAll('#settings-cameras tr[data-node] .fps')].map(c => c.textContent)) === JSON.stringify({want})"
            ),
            Duration::from_secs(15),
        )
        .await;
    }
    // LOCK to each camera's own values from the page, then back to auto.
    click(&client, "#btn-settings-lock").await;
    wait_js(
        &client,
        "locked",
        "return document.getElementById('settings-locked').textContent === '(locked)'",
        Duration::from_secs(10),
    )
    .await;
    let (ok, text) = cli(&url, &["camera-settings", "unlock"]);
    assert!(ok && text.contains("exposure_us auto"), "{text}");

    type_in(&client, "#take-name", "ui_take_01").await;
    // The node table shows each camera's phase lock; the synthetic sensors start at random
    // phases and the controller refuses START until they are locked.
    wait_js(&client, "every camera phase-locked in the node table",
        "const r = [...document.querySelectorAll('#nodes tr')]; return r.length > 0 && r.every(t => { const p = [...t.querySelectorAll('.phase')]; return p.length > 0 && p.every(e => e.textContent === 'locked'); })",
        Duration::from_secs(20)).await;
    wait_js(
        &client,
        "START enabled",
        "return !document.getElementById('btn-start').disabled",
        Duration::from_secs(10),
    )
    .await;
    click(&client, "#btn-start").await;
    wait_js(
        &client,
        "rig recording",
        "return document.getElementById('rig-state').textContent === 'recording'",
        Duration::from_secs(20),
    )
    .await;
    wait_js(&client, "take frames counting on both nodes",
        "const r = [...document.querySelectorAll('#nodes tr')]; return r.every(t => t.querySelector('.state').textContent === 'recording' && Number(t.querySelector('.frames').textContent) >= 30)",
        Duration::from_secs(20)).await;
    wait_js(&client, "a preview image", "const i = document.querySelector('.preview img'); return i && i.complete && i.naturalWidth > 0", Duration::from_secs(20)).await;

    type_in(&client, "#mark-note", "clap").await;
    click(&client, "#btn-mark").await;
    wait_js(
        &client,
        "marker listed",
        "return document.getElementById('current-markers').textContent.includes('clap')",
        Duration::from_secs(10),
    )
    .await;
    wait_js(&client, "60 frames", "return [...document.querySelectorAll('#nodes tr .frames')].every(f => Number(f.textContent) >= 60)", Duration::from_secs(20)).await;
    click(&client, "#btn-stop").await;
    wait_js(
        &client,
        "rig idle",
        "return document.getElementById('rig-state').textContent === 'idle'",
        Duration::from_secs(20),
    )
    .await;
    wait_js(
        &client,
        "take listed",
        "return !!document.querySelector('li.take[data-take=\"ui_take_01\"]')",
        Duration::from_secs(10),
    )
    .await;

    click(&client, "#btn-download-all").await;
    wait_js(&client, "verified download",
        "const t = document.querySelector('li.take[data-take=\"ui_take_01\"] .download-state'); return t && t.textContent === 'verified'",
        Duration::from_secs(90)).await;
    let progress = js(&client, "return [...document.querySelectorAll('li.take[data-take=\"ui_take_01\"] .progress-text')].map(p => p.textContent)").await;
    assert!(
        progress
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_str().unwrap().contains("files verified")),
        "{progress}"
    );
    // Open the first node's file list so the screenshot shows per-file verification.
    js(&client, "document.querySelector('li.take details.files').open = true; window.scrollTo(0, 0); return true").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts_dir().join("ui.png"), &png).unwrap();
    // A phone-sized view too: the layout must still fit.
    client.set_window_size(390, 1400).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth <= window.innerWidth + 1",
    )
    .await;
    let wide = js(
        &client,
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ')",
    )
    .await;
    assert_eq!(
        overflow,
        json!(true),
        "the page must not scroll sideways on a phone: {wide}"
    );
    std::fs::write(
        artifacts_dir().join("ui-phone.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // The sync verdict shows on the take; its page draws every camera's timing as a chart
    // with the numbers beside it, and EXPORT runs on the controller with progress.
    client.set_window_size(1280, 1400).await.unwrap();
    wait_js(&client, "sync verdict",
        "const v = document.querySelector('li.take[data-take=\"ui_take_01\"] .sync-verdict'); return !!v && /^sync (pass|fail)$/.test(v.textContent)",
        Duration::from_secs(60)).await;
    js(&client, "document.querySelector('li.take[data-take=\"ui_take_01\"] .sync-verdict').click(); return true").await;
    wait_js(&client, "timing charts",
        "return !document.getElementById('take-page').classList.contains('hidden') && document.querySelectorAll('#tp-cameras .tp-camera svg path.trace').length === 2 && [...document.querySelectorAll('#tp-cameras path.trace')].every(p => p.getAttribute('d').split('L').length > 30)",
        Duration::from_secs(20)).await;
    let numbers = js(
        &client,
        "return [...document.querySelectorAll('#tp-cameras .tp-numbers')].map(d => d.textContent)",
    )
    .await;
    assert!(
        numbers.as_array().unwrap().iter().all(|n| {
            let n = n.as_str().unwrap();
            n.contains("frames") && n.contains("drops") && n.contains("grid dev. p50")
        }),
        "{numbers}"
    );
    let summary = js(
        &client,
        "return document.getElementById('tp-summary').textContent",
    )
    .await;
    assert!(summary.as_str().unwrap().contains("skew p50"), "{summary}");
    js(&client, "window.scrollTo(0, 0); return true").await;
    click(&client, "#btn-export").await;
    wait_js(&client, "export done",
        "const s = document.getElementById('tp-export-state'); return !!s && s.textContent === 'export done'",
        Duration::from_secs(120)).await;
    std::fs::write(
        artifacts_dir().join("ui-take-timing.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    let exported: Vec<String> =
        std::fs::read_dir(dir.path().join("video_downloads/ui_take_01/export"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    for ip in &ips {
        let ip = ip.replace('.', "_");
        assert!(
            exported.contains(&format!("ui_take_01_{ip}.mkv")),
            "{exported:?}"
        );
    }
    assert!(
        exported.contains(&"ui_take_01_export.json".to_owned()),
        "{exported:?}"
    );
    js(&client, "location.hash = ''; return true").await;

    // DELETE FROM NODES: enabled for the verified take, asks first naming it, then the page
    // shows every node's copy deleted.
    let enabled = js(&client, "const b = document.querySelector('li.take[data-take=\"ui_take_01\"] button[data-delete]'); return !!b && !b.disabled").await;
    assert_eq!(enabled, json!(true));
    js(&client, "window.asked = []; window.confirm = (m) => { window.asked.push(m); return true; }; document.querySelector('li.take[data-take=\"ui_take_01\"] button[data-delete]').click(); return true").await;
    wait_js(&client, "take deleted from both nodes",
        "return document.querySelectorAll('li.take[data-take=\"ui_take_01\"] .node-deletion').length === 2 && !!document.querySelector('.notice') && document.querySelector('li.take[data-take=\"ui_take_01\"] button[data-delete]').disabled",
        Duration::from_secs(60)).await;
    let asked = js(&client, "return window.asked").await;
    assert!(asked[0].as_str().unwrap().contains("ui_take_01"), "{asked}");
    js(
        &client,
        "document.querySelector('li.take[data-take=\"ui_take_01\"]').scrollIntoView(); return true",
    )
    .await;
    std::fs::write(
        artifacts_dir().join("ui-deleted-from-nodes.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // Change the password from the page, log out, and come back with the one-click link.
    click(&client, "details.account summary").await;
    type_in(&client, "#password-current", &password).await;
    type_in(&client, "#password-new", "a new demo password").await;
    click(&client, "#btn-password").await;
    wait_js(&client, "password changed", "const n = document.querySelector('.notice'); return n && n.textContent.includes('password changed') ? true : null", Duration::from_secs(10)).await;
    click(&client, "#btn-logout").await;
    wait_js(
        &client,
        "logged out",
        "return location.pathname === '/login'",
        Duration::from_secs(10),
    )
    .await;
    client.goto(&format!("{url}/")).await.unwrap();
    wait_js(
        &client,
        "still logged out",
        "return location.pathname === '/login'",
        Duration::from_secs(10),
    )
    .await;
    // (From another page: a fragment change alone would not load the login page again.)
    client.goto("about:blank").await.unwrap();
    client.goto(&login_link).await.unwrap();
    wait_js(
        &client,
        "in again by the one-click link",
        "return location.pathname === '/' && document.querySelectorAll('#nodes tr').length === 2",
        Duration::from_secs(15),
    )
    .await;
    client.close().await.unwrap();

    for ip in &ips {
        let sorted = dir.path().join("video_downloads/ui_take_01").join(ip);
        let names: Vec<String> = std::fs::read_dir(&sorted)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let node_label = ip.replace('.', "_");
        assert!(
            names.iter().any(
                |n| n.starts_with(&format!("ui_take_01_{node_label}_")) && n.ends_with(".h264")
            ),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.ends_with("_manifest.json")),
            "{names:?}"
        );
    }

    // ---- the CLI ----
    let (ok, text) = cli(&url, &["start", "cli_take_01"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("cli_take_01") && text.contains(&ips[0]),
        "{text}"
    );
    let (ok, text) = cli(&url, &["start", "bad/name"]);
    assert!(!ok && text.contains("1-64 characters"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    let (ok, text) = cli(&url, &["mark", "from the terminal"]);
    assert!(ok && text.contains("ok"), "{text}");
    let (ok, text) = cli(&url, &["stop"]);
    assert!(ok && text.contains("stops at"), "{text}");
    let (ok, text) = cli(&url, &["stop"]);
    assert!(!ok && text.contains("no take is recording"), "{text}");
    let (ok, text) = cli(&url, &["download", "cli_take_01"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&url, &["takes"]);
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("cli_take_01"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("download: verified"), "{text}");
    // The verdict is made as soon as the take is verified.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = cli(&url, &["takes"]);
        let line = text
            .lines()
            .find(|l| l.starts_with("cli_take_01"))
            .unwrap_or_default()
            .to_owned();
        if line.contains("sync: pass") || line.contains("sync: fail") {
            break;
        }
        assert!(Instant::now() < deadline, "no verdict: {text}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, text) = cli(&url, &["sync-report", "cli_take_01"]);
    assert!(
        ok && text.contains("skew p50") && text.contains("frames"),
        "{text}"
    );
    // camrig export runs here, on the sorted copy, with the tools installed.
    let take_dir = dir.path().join("video_downloads/cli_take_01");
    let out = dir.path().join("cli-export");
    let (ok, text) = cli(
        &url,
        &[
            "export",
            take_dir.to_str().unwrap(),
            "--format",
            "mp4",
            "--trim",
            "common",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert!(
        out.join(format!("cli_take_01_{}.mp4", ips[0].replace('.', "_")))
            .is_file()
            && out.join("cli_take_01_export.json").is_file(),
        "{text}"
    );
    let (ok, text) = cli(
        &url,
        &["export", take_dir.to_str().unwrap(), "--format", "avi"],
    );
    assert!(!ok && text.contains("use mkv or mp4"), "{text}");
    let (ok, text) = cli(&url, &["download"]);
    assert!(ok && text.contains("nothing to download"), "{text}");
    // VERIFY: a sorted copy deleted by mistake turns the take back to not verified, and
    // DOWNLOAD fetches it again.
    let (ok, text) = cli(&url, &["verify", "cli_take_01"]);
    assert!(ok && text.contains("still match"), "{text}");
    let sorted = dir.path().join("video_downloads/cli_take_01").join(&ips[0]);
    let lost = std::fs::read_dir(&sorted)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "h264"))
        .unwrap();
    std::fs::remove_file(&lost).unwrap();
    let (ok, text) = cli(&url, &["verify", "cli_take_01"]);
    assert!(
        !ok && text.contains("no longer verified") && text.contains("missing"),
        "{text}"
    );
    let (ok, text) = cli(&url, &["download", "cli_take_01"]);
    assert!(ok, "{text}");
    assert!(lost.exists(), "fetched again");
    let (ok, text) = cli(&url, &["verify", "cli_take_01"]);
    assert!(ok && text.contains("still match"), "{text}");
    // Deleting from the nodes asks first; no answer (stdin closed) deletes nothing.
    let (ok, text) = cli(&url, &["delete-from-nodes", "cli_take_01"]);
    assert!(
        !ok && text.contains("Delete take cli_take_01") && text.contains("nothing deleted"),
        "{text}"
    );
    let (ok, text) = cli(&url, &["delete-from-nodes", "cli_take_01", "--yes"]);
    assert!(
        ok && text.matches("deleted from the node at").count() == 2,
        "{text}"
    );
    let (ok, text) = cli(&url, &["takes"]);
    assert!(ok && text.contains("deleted from the node"), "{text}");
    let (ok, text) = cli("http://127.0.0.1:1", &["status"]);
    assert!(
        !ok && text.contains("cannot reach the controller"),
        "{text}"
    );

    // ---- Ctrl-C: SIGTERM stops everything cleanly ----
    demo.interrupt();
}

/// What the demo promises beside the UI: a second demo (or a test run) beside a running one
/// gets free addresses and says so; `camrig start x; camrig stop` cancels the take and
/// strands no node; a node or the controller killed during a take is restarted and
/// reported while the rest keeps running; `camrig stop` exits non-zero when a node of the
/// take did not stop.
#[test]
fn demo_supervises_and_picks_free_addresses() {
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = Demo::start(2, dir_a.path());
    let dir_b = tempfile::tempdir().unwrap();
    let mut b = Demo::start(1, dir_b.path());
    // 127.0.0.2:8081 is held by demo a (or another demo on this machine): b picked another
    // address and said which.
    assert!(!a.ips.contains(&b.ips[0]), "{:?} vs {:?}", a.ips, b.ips);
    assert_ne!(b.ips[0], "127.0.0.2");
    assert!(
        b.output
            .iter()
            .any(|l| l.contains("127.0.0.2:8081 is taken") && l.contains(&b.ips[0])),
        "{:?}",
        b.output
    );
    let url = a.url.clone();
    let a_token = a.token_file.clone();
    let b_token = b.token_file.clone();
    let cli = |url: &str, args: &[&str]| cli_as(url, Some(&a_token), args);
    let wait_ready = |url: &str, token_file: &Path| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, text) = cli_as(url, Some(token_file), &["status"]);
            if ok && text.contains("ready to START") {
                return;
            }
            assert!(Instant::now() < deadline, "rig never ready:\n{text}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    wait_ready(&url, &a_token);
    wait_ready(&b.url, &b_token);

    // `camrig start x; camrig stop`: the STOP comes before the start instant.
    let (ok, text) = cli(&url, &["start", "quick_01"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&url, &["stop"]);
    assert!(ok && text.contains("cancelled"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    let (ok, text) = cli(&url, &["status"]);
    assert!(ok && !text.contains("recording"), "no node records: {text}");

    // A node killed during a take is restarted; the rest keeps recording.
    let (ok, text) = cli(&url, &["start", "sup_01"]);
    assert!(ok, "{text}");
    std::thread::sleep(Duration::from_secs(2));
    kill(Pid::from_raw(a.node_pids[1] as i32), Signal::SIGKILL).unwrap();
    let line = a.wait_line(
        &format!("node {} exited", a.ips[1]),
        Duration::from_secs(10),
    );
    assert!(line.contains("restarted it as pid"), "{line}");
    assert!(a.running(), "the demo keeps running");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = cli(&url, &["status"]);
        let node_line = text.lines().find(|l| l.contains(&a.ips[1])).unwrap_or("");
        if ok && !node_line.contains("unreachable") && !node_line.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "node never came back:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The controller killed mid-take comes back with the take still running.
    kill(Pid::from_raw(a.controller_pid as i32), Signal::SIGKILL).unwrap();
    let line = a.wait_line("controller exited", Duration::from_secs(10));
    assert!(line.contains("restarted it as pid"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = cli(&url, &["status"]);
        if ok && text.contains("sup_01") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller never came back:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The killed node lost its part of the take: STOP says so and exits non-zero.
    let (ok, text) = cli(&url, &["stop"]);
    assert!(
        !ok && text.contains("did not stop") && text.contains(&a.ips[1]),
        "{text}"
    );
    assert!(a.running() && b.running());
    b.interrupt();
    a.interrupt();
}

/// Clicks the element `css` finds.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into the element `css` finds.
async fn type_in(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}
