//! The controller commands of `camrig` and how their answers are printed.

use std::collections::HashMap;
use std::time::Duration;

use camrig_protocol::views::{
    ChangePassword, DeleteFromNodes, DownloadPhase, NodeDeletionState, NodeDownload, RigView,
    StartTake, TakeDownload, TakeNodeView, TakeView,
};
use camrig_protocol::UnixNanos;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::controller_client::{ClientError, ControllerClient};

pub async fn status(client: &ControllerClient) -> Result<(), ClientError> {
    let rig = client.rig().await?;
    print!("{}", format_rig(&rig));
    Ok(())
}

/// The rig as a terminal table.
pub fn format_rig(rig: &RigView) -> String {
    let mut out = format!("rig: {}", rig.state);
    if let Some(t) = &rig.current_take {
        out.push_str(&format!(" (take {})", t.name));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<18} {:<12} {:<20} {:>8} {:>6} {:>6} {:>10} {:>12}\n",
        "NODE", "STATE", "TAKE", "FRAMES", "FPS", "DROPS", "DISK FREE", "CLOCK"
    ));
    for n in &rig.nodes {
        let (state, take, frames, fps, drops, disk) = match (&n.status, n.reachable) {
            (Some(s), true) => (
                format!("{:?}", s.state).to_lowercase(),
                s.take
                    .as_ref()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or("-".into()),
                s.cameras
                    .iter()
                    .map(|c| {
                        if s.take.is_some() {
                            c.take_frames
                        } else {
                            c.frames
                        }
                    })
                    .sum::<u64>()
                    .to_string(),
                s.cameras
                    .iter()
                    .map(|c| format!("{:.1}", c.fps))
                    .collect::<Vec<_>>()
                    .join("/"),
                s.cameras.iter().map(|c| c.drops).sum::<u64>().to_string(),
                human_bytes(s.disk_free_bytes),
            ),
            _ => (
                "unreachable".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        let clock = n
            .clock
            .map(|c| format!("{:+.3} ms", c.offset_ns as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<18} {:<12} {:<20} {:>8} {:>6} {:>6} {:>10} {:>12}\n",
            n.address, state, take, frames, fps, drops, disk, clock
        ));
    }
    if rig.current_take.is_none() {
        if rig.start_ready {
            out.push_str("ready to START\n");
        } else {
            for b in &rig.start_blockers {
                out.push_str(&format!("START blocked: {b}\n"));
            }
        }
    }
    if !rig.require_node_sync {
        out.push_str("note: node clock sync is not required on this rig (single-host demo)\n");
    }
    out
}

pub async fn start(
    client: &ControllerClient,
    name: &str,
    allow_partial: bool,
    override_clock: bool,
) -> Result<(), ClientError> {
    let take = client
        .start(&StartTake {
            name: name.to_owned(),
            allow_partial,
            override_clock,
            ..StartTake::default()
        })
        .await?;
    println!(
        "take {} starts at {}",
        take.name,
        format_instant(take.start_at_ns)
    );
    print_take_nodes(&take);
    Ok(())
}

pub async fn mark(client: &ControllerClient, note: &str) -> Result<(), ClientError> {
    let m = client.mark(note).await?;
    println!("marker at {} {:?}", format_instant(m.at_ns), m.note);
    for n in &m.nodes {
        match &n.error {
            None => println!("  {:<18} ok", n.address),
            Some(e) => println!("  {:<18} FAILED: {e}", n.address),
        }
    }
    Ok(())
}

/// STOP. An error when any node of the take did not stop: the controller keeps the take
/// open and names the node (the message carries the recovery), or a node was lost during
/// the take (it did not take the STOP either; if it still records, `camrig abort-node`).
pub async fn stop(client: &ControllerClient) -> Result<(), ClientError> {
    let take = client.stop().await?;
    if take.state == camrig_protocol::views::TakeState::Cancelled {
        println!(
            "take {} cancelled: STOP came before its start instant, nothing was recorded",
            take.name
        );
    } else {
        println!(
            "take {} stops at {}",
            take.name,
            take.stop_at_ns.map(format_instant).unwrap_or_default()
        );
    }
    print_take_nodes(&take);
    let failed: Vec<&str> = take
        .nodes
        .iter()
        .filter(|n| n.state == camrig_protocol::views::TakeNodeState::Failed)
        .map(|n| n.address.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(ClientError::Refused {
            status: 200,
            message: format!(
                "{} node(s) did not stop: {} (lost during the take, see above); if one still records when it is back, abort it: camrig abort-node <address>",
                failed.len(),
                failed.join(", ")
            ),
        });
    }
    Ok(())
}

/// VERIFY: prints what no longer matches; returns how many files failed.
pub async fn verify(client: &ControllerClient, take: &str) -> Result<usize, ClientError> {
    let v = client.verify(take).await?;
    if v.ok {
        println!(
            "take {take}: all {} sorted files still match their manifests",
            v.files_checked
        );
    } else {
        println!(
            "take {take}: {} of {} sorted files no longer verified:",
            v.failed.len(),
            v.files_checked
        );
        for f in &v.failed {
            println!("  {:<18} {}: {}", f.address, f.name, f.reason);
        }
        println!("run `camrig download {take}` to fetch them again");
    }
    Ok(v.failed.len())
}

/// Aborts whatever node `node` (its address or 0-based index) records.
pub async fn abort_node(client: &ControllerClient, node: &str) -> Result<(), ClientError> {
    let rig = client.rig().await?;
    let index = match node.parse::<usize>() {
        Ok(i) if i < rig.nodes.len() => i,
        _ => rig
            .nodes
            .iter()
            .position(|n| n.address == node || (!n.name.is_empty() && n.name == node))
            .ok_or_else(|| ClientError::Refused {
                status: 404,
                message: format!(
                    "no node {node:?}; the rig's nodes are {}",
                    rig.nodes
                        .iter()
                        .map(|n| n.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
    };
    let reply = client.abort_node(index).await?;
    match &reply.node_take {
        Some(t) => println!(
            "node {} aborted take {t} (it was {}); what it recorded is kept on the node",
            reply.address,
            format!("{:?}", reply.node_state).to_lowercase()
        ),
        None => println!("node {} was not recording; nothing to abort", reply.address),
    }
    if let Some(take) = &reply.take {
        println!("take {}: {}", take.name, take.state);
        print_take_nodes(take);
    }
    Ok(())
}

fn print_take_nodes(take: &TakeView) {
    for n in &take.nodes {
        match &n.reason {
            None => println!("  {:<18} {}", n.address, n.state),
            Some(r) => println!("  {:<18} {}: {r}", n.address, n.state),
        }
    }
}

pub async fn takes(client: &ControllerClient) -> Result<(), ClientError> {
    let takes = client.takes().await?;
    if takes.is_empty() {
        println!("no takes yet");
    }
    for t in &takes {
        let duration = t
            .stop_at_ns
            .map(|s| format!("{:.1} s", (s - t.start_at_ns) as f64 / 1e9))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<10} {:<24} {:>9}  download: {}  sync: {}{}",
            t.name,
            t.state,
            format_instant(t.start_at_ns),
            duration,
            t.download,
            match (&t.sync_verdict, &t.sync_error) {
                (Some(v), _) => v.clone(),
                (None, Some(e)) => format!("no report ({e})"),
                (None, None) => "-".into(),
            },
            if t.markers.is_empty() {
                String::new()
            } else {
                format!("  markers: {}", t.markers.len())
            }
        );
        for n in &t.nodes {
            let verified = n.files_verified();
            println!(
                "  {:<18} {:<10} files {}/{} verified{}{}",
                n.address,
                n.state,
                verified,
                n.files.len(),
                match n.node_deletion {
                    NodeDeletionState::Deleted => ", deleted from the node".to_owned(),
                    NodeDeletionState::None => String::new(),
                    other => format!(", delete from node {other}"),
                },
                n.reason
                    .as_ref()
                    .or(n.download_reason.as_ref())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Starts downloads and follows them with a progress bar per node until all end.
/// Returns the number of failed node downloads.
pub async fn download(client: &ControllerClient, take: Option<&str>) -> Result<usize, ClientError> {
    let started = client.download(take).await?;
    if started.jobs.is_empty() {
        match take {
            Some(t) => println!("take {t} is already downloaded and verified"),
            None => println!("nothing to download: every stopped take is verified"),
        }
        return Ok(0);
    }
    let keys: Vec<(String, String)> = started
        .jobs
        .iter()
        .map(|j| (j.take.clone(), j.address.clone()))
        .collect();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:<32} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let bars: HashMap<(String, String), ProgressBar> = keys
        .iter()
        .map(|k| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(format!("{} {}", k.0, k.1));
            (k.clone(), bar)
        })
        .collect();
    let mut failed = 0;
    loop {
        let view = client.downloads().await?;
        let mut active = 0;
        for job in view
            .jobs
            .iter()
            .filter(|j| keys.contains(&(j.take.clone(), j.address.clone())))
        {
            let bar = &bars[&(job.take.clone(), job.address.clone())];
            bar.set_length(job.bytes_total);
            bar.set_position(job.bytes_done.min(job.bytes_total));
            let msg = match job.phase {
                DownloadPhase::Verifying => {
                    format!("verifying {}/{}", job.files_verified, job.files_total)
                }
                DownloadPhase::Verified => format!("verified {} files", job.files_verified),
                DownloadPhase::Failed => {
                    format!("FAILED: {}", job.message.clone().unwrap_or_default())
                }
                other => other.as_str().replace('_', " "),
            };
            bar.set_message(msg);
            if job.is_active() {
                active += 1;
            } else if !bar.is_finished() {
                if job.phase == DownloadPhase::Failed {
                    failed += 1;
                    bar.abandon();
                } else {
                    bar.finish();
                }
            }
        }
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(failed)
}

fn format_instant(ns: UnixNanos) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm), so the CLI needs no date crate for one timestamp format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// DELETE FROM NODES: shows what will be deleted, asks (unless `yes`), then asks the
/// controller, which checks its verified copies again before any node deletes anything.
pub async fn delete_from_nodes(
    client: &ControllerClient,
    take: &str,
    nodes: &[String],
    yes: bool,
) -> Result<(), ClientError> {
    let t = client.take(take).await?;
    let targets: Vec<&TakeNodeView> = t
        .nodes
        .iter()
        .filter(|n| nodes.is_empty() || nodes.contains(&n.address))
        .filter(|n| !n.files.is_empty() || n.download != NodeDownload::None)
        .collect();
    if t.download != TakeDownload::Verified && nodes.is_empty() {
        return Err(ClientError::Refused {
            status: 409,
            message: format!(
                "take {} is not verified on the controller (download: {}); download and verify first (camrig download {}); nothing was deleted",
                t.name, t.download, t.name
            ),
        });
    }
    println!("take {}: the nodes' recordings will be removed for good; the verified copies on the controller stay", t.name);
    for n in &targets {
        let verified = n.files_verified();
        println!(
            "  {:<18} download {:<9} files {}/{} verified{}",
            n.address,
            n.download,
            verified,
            n.files.len(),
            if n.node_deletion == NodeDeletionState::Deleted {
                "  (already deleted from the node)"
            } else {
                ""
            }
        );
    }
    if !yes {
        let question = format!("Delete take {} from these nodes? [y/N] ", t.name);
        if !confirm(&question).await {
            return Err(ClientError::Refused {
                status: 0,
                message: "nothing deleted: not confirmed (answer y, or pass --yes)".into(),
            });
        }
    }
    let done = client
        .delete_from_nodes(
            &t.name,
            &DeleteFromNodes {
                nodes: nodes.to_vec(),
            },
        )
        .await?;
    for n in &done.nodes {
        match n.node_deletion {
            NodeDeletionState::Deleted => println!(
                "  {:<18} deleted from the node at {}",
                n.address,
                n.node_deleted_ns.map(format_instant).unwrap_or_default()
            ),
            NodeDeletionState::None => {}
            other => println!(
                "  {:<18} {other}{}",
                n.address,
                n.node_deletion_reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// Asks a yes/no question on the terminal; anything but y/yes (or no input) is no.
/// `camrig password`: the new operator password, typed twice (not echoed on a terminal;
/// piped in, e.g. by a script, two lines). The API token authorises the change.
pub async fn password(client: &ControllerClient) -> Result<(), ClientError> {
    let (first, second) = tokio::task::spawn_blocking(|| {
        let a = read_secret_line("new operator password: ");
        let b = read_secret_line("the same again: ");
        (a, b)
    })
    .await
    .unwrap_or_default();
    let refused = |message: &str| ClientError::Refused {
        status: 0,
        message: message.into(),
    };
    if first.is_empty() {
        return Err(refused("no password given; nothing changed"));
    }
    if first != second {
        return Err(refused("the two passwords differ; nothing changed"));
    }
    let done = client
        .change_password(&ChangePassword {
            current: None,
            new: first,
        })
        .await?;
    println!("{}", done.message);
    Ok(())
}

/// One line from stdin without its newline; echo is off while a terminal types it.
fn read_secret_line(prompt: &str) -> String {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let _ = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    line.trim_end_matches(['\n', '\r']).to_owned()
}

async fn confirm(question: &str) -> bool {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(_) => matches!(line.trim().to_lowercase().as_str(), "y" | "yes"),
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// `camrig sync-report TAKE`: the verdict and the numbers behind it.
pub async fn sync_report(client: &ControllerClient, take: &str) -> Result<(), ClientError> {
    let r = client.sync_report(take).await?;
    println!(
        "{}: {}  (skew p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; bound {}; tolerance {:.1} µs)",
        r.take,
        r.verdict.as_str().to_uppercase(),
        r.skew_us.p50,
        r.skew_us.p99,
        r.skew_us.max,
        r.skew_bound_us
            .map_or_else(|| "unknown".to_owned(), |b| format!("{b:.1} µs")),
        r.tolerance_us
    );
    for c in &r.cameras {
        println!(
            "  {:<18} {:<5} {:>7} frames  {:>4} drops  grid deviation p99 {:.1} µs",
            c.node,
            c.camera,
            c.frames,
            c.drops.len(),
            c.grid_deviation_us.p99
        );
    }
    println!("  common slots {} frames", r.common.frames);
    for reason in &r.reasons {
        println!("  fail: {reason}");
    }
    Ok(())
}

/// `camrig export`: runs here, with ffmpeg and mkvmerge.
pub fn export(
    take_dir: &std::path::Path,
    format: &str,
    trim_common: bool,
    out: Option<std::path::PathBuf>,
) -> Result<(), camrig_sorted_takes::export::ExportError> {
    use camrig_sorted_takes::export;
    let opts = export::Options {
        format: export::Format::parse(format)?,
        trim_common,
        out_dir: out,
    };
    let summary = export::export(take_dir, &opts, |done, total| {
        if done < total {
            eprintln!("exporting camera {}/{total}", done + 1);
        }
    })?;
    for c in &summary.cameras {
        println!(
            "{}  {} frames{}",
            c.file,
            c.frames,
            if c.filled.is_empty() {
                String::new()
            } else {
                format!(", {} filled", c.filled.len())
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_utc() {
        assert_eq!(format_instant(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            format_instant(1_761_228_130_500_000_000),
            "2025-10-23 14:02:10.500 UTC"
        );
        assert_eq!(
            format_instant(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000 UTC"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(32_000_000_000), "32.0 GB");
    }
}

/// What `camrig camera-settings set` asks for; `None` leaves a setting on automatic (a PUT
/// replaces the rig's settings whole).
#[derive(Debug, Default)]
pub struct SettingsArgs {
    pub exposure_us: Option<String>,
    pub analogue_gain: Option<String>,
    pub awb: Option<String>,
    pub focus: Option<String>,
    pub noise_reduction: Option<String>,
    pub frame_rate: Option<String>,
}

/// `auto` or a number, as the API takes it.
fn auto_or_number(flag: &str, v: &str) -> Result<serde_json::Value, ClientError> {
    if v == "auto" {
        return Ok(serde_json::json!("auto"));
    }
    v.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .and_then(|n| {
            if n.fract() == 0.0 && n >= 0.0 {
                Some(serde_json::json!(n as u64))
            } else {
                serde_json::Number::from_f64(n).map(serde_json::Value::Number)
            }
        })
        .ok_or_else(|| ClientError::Refused {
            status: 0,
            message: format!("--{flag} {v:?}: give a number or auto"),
        })
}

impl SettingsArgs {
    /// The JSON body of `PUT /api/camera-settings`.
    pub fn body(&self) -> Result<serde_json::Value, ClientError> {
        let mut body = serde_json::Map::new();
        for (key, flag, v) in [
            ("exposure_us", "exposure-us", &self.exposure_us),
            ("analogue_gain", "gain", &self.analogue_gain),
            ("focus", "focus", &self.focus),
            ("frame_rate", "frame-rate", &self.frame_rate),
        ] {
            if let Some(v) = v {
                body.insert(key.into(), auto_or_number(flag, v)?);
            }
        }
        if let Some(awb) = &self.awb {
            // "R,B" is fixed colour gains; anything else a mode name (or auto).
            let value = match awb.split_once(',') {
                Some((r, b)) => match (r.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                    (Ok(red), Ok(blue)) => serde_json::json!({ "red": red, "blue": blue }),
                    _ => {
                        return Err(ClientError::Refused {
                            status: 0,
                            message: format!(
                            "--awb {awb:?}: colour gains are two numbers, red,blue (e.g. 1.8,1.5)"
                        ),
                        })
                    }
                },
                None => serde_json::json!(awb),
            };
            body.insert("awb".into(), value);
        }
        if let Some(nr) = &self.noise_reduction {
            body.insert("noise_reduction".into(), serde_json::json!(nr));
        }
        Ok(serde_json::Value::Object(body))
    }
}

pub async fn camera_settings_show(client: &ControllerClient) -> Result<(), ClientError> {
    print!(
        "{}",
        format_camera_settings(&client.camera_settings().await?)
    );
    Ok(())
}

pub async fn camera_settings_set(
    client: &ControllerClient,
    args: &SettingsArgs,
    nodes: &[String],
) -> Result<(), ClientError> {
    let view = client.put_camera_settings(&args.body()?, nodes).await?;
    print!("{}", format_camera_settings(&view));
    Ok(())
}

/// LOCK: `reference` is `NODE:CAMERA` (e.g. 192.168.1.101:0); none locks each camera to its
/// own values.
pub async fn camera_settings_lock(
    client: &ControllerClient,
    reference: Option<&str>,
) -> Result<(), ClientError> {
    let body = match reference {
        None => serde_json::json!({}),
        Some(r) => {
            let (node, camera) = r
                .rsplit_once(':')
                .and_then(|(n, c)| Some((n, c.parse::<usize>().ok()?)))
                .ok_or_else(|| ClientError::Refused {
                    status: 0,
                    message: format!(
                        "--reference {r:?}: give NODE:CAMERA, e.g. 192.168.1.101:0 (cameras count from 0)"
                    ),
                })?;
            serde_json::json!({ "reference": { "node": node, "camera": camera } })
        }
    };
    let view = client.camera_settings_action("lock", &body).await?;
    print!("{}", format_camera_settings(&view));
    Ok(())
}

pub async fn camera_settings_unlock(client: &ControllerClient) -> Result<(), ClientError> {
    let view = client
        .camera_settings_action("unlock", &serde_json::json!({}))
        .await?;
    print!("{}", format_camera_settings(&view));
    Ok(())
}

/// The rig's camera settings and every camera's, asked and applied, as a terminal table.
pub fn format_camera_settings(v: &serde_json::Value) -> String {
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => format!(
            "{}/{}",
            o.get("red").map(|x| x.to_string()).unwrap_or_default(),
            o.get("blue").map(|x| x.to_string()).unwrap_or_default()
        ),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        other => other.to_string(),
    };
    let mut out = format!(
        "rig: exposure_us {}, analogue_gain {}, awb {}, focus {}, noise_reduction {}, frame_rate {}{}\n",
        show(&v["exposure_us"]),
        show(&v["analogue_gain"]),
        show(&v["awb"]),
        show(&v["focus"]),
        show(&v["noise_reduction"]),
        show(&v["frame_rate"]),
        if v["locked"] == true { " (locked)" } else { "" }
    );
    out.push_str(&format!(
        "{:<18} {:<14} {:>10} {:>10} {:>6} {:>7} {:>12} {:>12}\n",
        "NODE", "CAMERA", "EXPOSURE", "APPLIED", "GAIN", "APPLIED", "AWB", "APPLIED"
    ));
    for n in v["nodes"].as_array().into_iter().flatten() {
        let address = n["address"].as_str().unwrap_or("?");
        if let Some(e) = n["error"].as_str() {
            out.push_str(&format!("{address:<18} {e}\n"));
            continue;
        }
        for c in n["cameras"].as_array().into_iter().flatten() {
            let s = &c["settings"];
            let a = &c["applied"];
            out.push_str(&format!(
                "{:<18} {:<14} {:>10} {:>10} {:>6} {:>7} {:>12} {:>12}\n",
                address,
                format!("{} {}", c["index"], c["model"].as_str().unwrap_or("")),
                show(&s["exposure_us"]),
                show(&a["exposure_us"]),
                show(&s["analogue_gain"]),
                show(&a["analogue_gain"]),
                show(&s["awb"]),
                show(&a["colour_gains"]),
            ));
        }
    }
    let mismatched: Vec<&str> = v["mismatched"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    if !mismatched.is_empty() {
        out.push_str(&format!(
            "not using the settings last applied (restarted?): {}; run camera-settings set (or lock) again\n",
            mismatched.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn set_flags_become_the_api_body() {
        let args = SettingsArgs {
            exposure_us: Some("8000".into()),
            analogue_gain: Some("auto".into()),
            awb: Some("1.8,1.5".into()),
            ..Default::default()
        };
        assert_eq!(
            args.body().unwrap(),
            serde_json::json!({ "exposure_us": 8000, "analogue_gain": "auto", "awb": { "red": 1.8, "blue": 1.5 } })
        );
        let mode = SettingsArgs {
            awb: Some("daylight".into()),
            analogue_gain: Some("2.5".into()),
            ..Default::default()
        };
        assert_eq!(
            mode.body().unwrap(),
            serde_json::json!({ "analogue_gain": 2.5, "awb": "daylight" })
        );
        let bad = SettingsArgs {
            exposure_us: Some("long".into()),
            ..Default::default()
        };
        assert!(bad
            .body()
            .unwrap_err()
            .to_string()
            .contains("--exposure-us"));
    }
}
