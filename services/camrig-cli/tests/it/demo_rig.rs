//! The demo rig end to end: the browser records, marks, stops and downloads a take; the CLI
//! does the same; Ctrl-C's SIGTERM stops every process.

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

fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(camrig())
        .args(args)
        .env("CAMRIG_CONTROLLER", url)
        .output()
        .unwrap();
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

/// `camrig demo` puts its nodes on fixed addresses (127.0.0.2:8081, …): one demo at a time.
pub static ONE_DEMO_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_rig_driven_from_the_browser_and_the_cli() {
    let _one_demo = ONE_DEMO_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut demo = Command::new(camrig())
        .args(["demo", "--nodes", "2", "--port", &port.to_string(), "--dir"])
        .arg(dir.path())
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
    let mut demo = Guard(Some(demo));
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !output
        .iter()
        .any(|l: &String| l.contains("Press Ctrl-C to stop"))
    {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => output.push(line),
            Err(_) => assert!(
                Instant::now() < deadline,
                "demo did not come up:\n{}",
                output.join("\n")
            ),
        }
        if let Ok(Some(status)) = demo.0.as_mut().unwrap().try_wait() {
            panic!("camrig demo exited with {status}:\n{}", output.join("\n"));
        }
    }
    assert!(
        output.iter().any(|l| l.contains(&format!("{url}/"))),
        "{output:?}"
    );

    // Ready to START once the clocks are measured.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = cli(&url, &["status"]);
        assert!(ok, "{text}");
        if text.contains("ready to START") {
            assert!(
                text.contains("127.0.0.2") && text.contains("127.0.0.3"),
                "{text}"
            );
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
    client.goto(&format!("{url}/")).await.unwrap();
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

    client
        .find(Locator::Css("#take-name"))
        .await
        .unwrap()
        .send_keys("ui_take_01")
        .await
        .unwrap();
    wait_js(
        &client,
        "START enabled",
        "return !document.getElementById('btn-start').disabled",
        Duration::from_secs(10),
    )
    .await;
    client
        .find(Locator::Css("#btn-start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
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

    client
        .find(Locator::Css("#mark-note"))
        .await
        .unwrap()
        .send_keys("clap")
        .await
        .unwrap();
    client
        .find(Locator::Css("#btn-mark"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &client,
        "marker listed",
        "return document.getElementById('current-markers').textContent.includes('clap')",
        Duration::from_secs(10),
    )
    .await;
    wait_js(&client, "60 frames", "return [...document.querySelectorAll('#nodes tr .frames')].every(f => Number(f.textContent) >= 60)", Duration::from_secs(20)).await;
    client
        .find(Locator::Css("#btn-stop"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
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

    client
        .find(Locator::Css("#btn-download-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
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
    assert_eq!(
        overflow,
        json!(true),
        "the page must not scroll sideways on a phone"
    );
    std::fs::write(
        artifacts_dir().join("ui-phone.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

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
    client.close().await.unwrap();

    for ip in ["127.0.0.2", "127.0.0.3"] {
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
        text.contains("cli_take_01") && text.contains("127.0.0.2"),
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
    let (ok, text) = cli(&url, &["download"]);
    assert!(ok && text.contains("nothing to download"), "{text}");
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
    let mut child = demo.0.take().unwrap();
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
    for ip in ["127.0.0.2", "127.0.0.3"] {
        assert!(
            std::net::TcpStream::connect((ip, 8081)).is_err(),
            "node {ip} still running"
        );
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "controller still running"
    );
}
