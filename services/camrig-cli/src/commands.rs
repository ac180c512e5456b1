//! The controller commands of `camrig` and how their answers are printed.

use std::collections::HashMap;
use std::time::Duration;

use camrig_protocol::views::{
    DeleteFromNodes, DownloadPhase, FileState, NodeDeletionState, NodeDownload, RigView, StartTake,
    TakeDownload, TakeNodeView, TakeView,
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

pub async fn stop(client: &ControllerClient) -> Result<(), ClientError> {
    let take = client.stop().await?;
    println!(
        "take {} stops at {}",
        take.name,
        take.stop_at_ns.map(format_instant).unwrap_or_default()
    );
    print_take_nodes(&take);
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
            "{:<24} {:<10} {:<24} {:>9}  download: {}{}",
            t.name,
            t.state,
            format_instant(t.start_at_ns),
            duration,
            t.download,
            if t.markers.is_empty() {
                String::new()
            } else {
                format!("  markers: {}", t.markers.len())
            }
        );
        for n in &t.nodes {
            let verified = n
                .files
                .iter()
                .filter(|f| f.state == FileState::Verified)
                .count();
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
        let verified = n
            .files
            .iter()
            .filter(|f| f.state == FileState::Verified)
            .count();
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
