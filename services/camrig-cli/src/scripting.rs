//! What `camrig` prints for scripts: `--json` documents (one JSON document on stdout per
//! command, field names documented in the README and stable), the one-line download
//! summaries printed when stdout is not a terminal, `camrig record`'s start–wait–stop, and
//! the checks `camrig demo` makes for the tools it needs.
//!
//! `status --json` is the controller's `GET /api/rig` document, `takes --json` its
//! `GET /api/takes`, `start --json` and `stop --json` the take as the controller answered
//! it; `download --json` and `record --json` are the [`DownloadReport`] and
//! [`RecordReport`] below. A failed command prints `{"error": "...", "exit_code": n}`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use camrig_protocol::views::{DownloadProgress, StartTake, TakeView};

use crate::controller_client::{ClientError, ControllerClient};

/// `camrig download --json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DownloadReport {
    /// One entry per take and node downloaded by this run.
    pub downloads: Vec<NodeDownload>,
    /// How many of them failed (the exit code is 3 when any did).
    pub failed: usize,
    pub seconds: f64,
}

/// One node's part of one take, as the download ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeDownload {
    pub take: String,
    pub node: String,
    /// `verified` or `failed`.
    pub state: String,
    pub files: usize,
    pub files_verified: usize,
    pub files_failed: usize,
    pub bytes: u64,
    pub message: Option<String>,
}

/// `camrig record --json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordReport {
    pub started: TakeView,
    pub stopped: TakeView,
    /// True when Ctrl-C (or SIGTERM) ended the take before `--duration` (exit code 130).
    pub interrupted: bool,
    /// Seconds between the START answer and the STOP request.
    pub seconds: f64,
}

/// True when stdout is a terminal (progress bars) rather than a pipe or file (summaries).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Follows downloads without drawing anything until every job has ended.
pub async fn follow_downloads(
    client: &ControllerClient,
    keys: &[(String, String)],
) -> Result<Vec<DownloadProgress>, ClientError> {
    loop {
        let view = client.downloads().await?;
        let mine: Vec<DownloadProgress> = view
            .jobs
            .into_iter()
            .filter(|j| keys.contains(&(j.take.clone(), j.address.clone())))
            .collect();
        if mine.iter().all(|j| !j.is_active()) {
            return Ok(mine);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts downloads (one take, or every pending one) and waits for them, quietly.
pub async fn download_report(
    client: &ControllerClient,
    take: Option<&str>,
) -> Result<DownloadReport, ClientError> {
    let began = Instant::now();
    let started = client.download(take).await?;
    let keys: Vec<(String, String)> = started
        .jobs
        .iter()
        .map(|j| (j.take.clone(), j.address.clone()))
        .collect();
    let ended = if keys.is_empty() {
        Vec::new()
    } else {
        follow_downloads(client, &keys).await?
    };
    let downloads: Vec<NodeDownload> = ended
        .iter()
        .map(|j| NodeDownload {
            take: j.take.clone(),
            node: j.address.clone(),
            state: j.phase.to_string(),
            files: j.files_total,
            files_verified: j.files_verified,
            files_failed: j.files_failed,
            bytes: j.bytes_done,
            message: j.message.clone(),
        })
        .collect();
    Ok(DownloadReport {
        failed: downloads.iter().filter(|d| d.state != "verified").count(),
        downloads,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// One line per take: `take t1: verified, 12 files (12 verified), 45.1 MB, 2 node(s), 3.2 s`.
pub fn summary_lines(report: &DownloadReport) -> Vec<String> {
    let mut takes: Vec<&str> = report.downloads.iter().map(|d| d.take.as_str()).collect();
    takes.dedup();
    takes
        .iter()
        .map(|take| {
            let nodes: Vec<&NodeDownload> =
                report.downloads.iter().filter(|d| d.take == *take).collect();
            let failed: Vec<String> = nodes
                .iter()
                .filter(|d| d.state != "verified")
                .map(|d| {
                    format!(
                        "{}: {}",
                        d.node,
                        d.message.clone().unwrap_or_else(|| d.state.clone())
                    )
                })
                .collect();
            let files: usize = nodes.iter().map(|d| d.files).sum();
            let verified: usize = nodes.iter().map(|d| d.files_verified).sum();
            let bytes: u64 = nodes.iter().map(|d| d.bytes).sum();
            format!(
                "take {take}: {}, {files} files ({verified} verified), {bytes} bytes, {} node(s), {:.1} s{}",
                if failed.is_empty() { "verified" } else { "FAILED" },
                nodes.len(),
                report.seconds,
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", failed.join("; "))
                }
            )
        })
        .collect()
}

/// `30s`, `2m`, `1h`, `1500ms` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 2m, 1h or 1500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h (e.g. 30s)"
            ))
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `camrig record`: START, wait `duration` (or until Ctrl-C / SIGTERM), STOP. The take is
/// stopped cleanly either way; a START that fails leaves nothing to stop.
pub async fn record(
    client: &ControllerClient,
    req: StartTake,
    duration: Duration,
    quiet: bool,
) -> Result<RecordReport, ClientError> {
    // Handlers first: a Ctrl-C during START must still stop the take it started.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("install SIGINT handler");
    let started = client.start(&req).await?;
    let began = Instant::now();
    if !quiet {
        eprintln!(
            "recording take {} for {:.1} s (Ctrl-C stops it now)",
            started.name,
            duration.as_secs_f64()
        );
    }
    let interrupted = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = term.recv() => true,
        _ = int.recv() => true,
    };
    let seconds = began.elapsed().as_secs_f64();
    let stopped = client.stop().await?;
    Ok(RecordReport {
        started,
        stopped,
        interrupted,
        seconds,
    })
}

/// A tool `camrig demo` needs, missing from `PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingTool {
    pub tool: &'static str,
    pub needed_for: &'static str,
    pub debian_package: &'static str,
}

/// What `camrig demo` needs beyond camrig's own binaries, checked against `path` (the
/// `PATH` value).
pub fn missing_demo_tools(path: &str) -> Vec<MissingTool> {
    let wanted = [MissingTool {
        tool: "rsync",
        needed_for: "DOWNLOAD & SORT (the controller pulls every take with rsync)",
        debian_package: "rsync",
    }];
    wanted
        .into_iter()
        .filter(|t| {
            !std::env::split_paths(path).any(|dir| {
                let p = dir.join(t.tool);
                std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("12").unwrap(), Duration::from_secs(12));
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn a_path_without_rsync_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let missing = missing_demo_tools(dir.path().to_str().unwrap());
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].debian_package, "rsync");
        let bin = dir.path().join("rsync");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(missing_demo_tools(dir.path().to_str().unwrap()).is_empty());
    }

    #[test]
    fn one_summary_line_per_take() {
        let d = |take: &str, node: &str, state: &str| NodeDownload {
            take: take.into(),
            node: node.into(),
            state: state.into(),
            files: 3,
            files_verified: if state == "verified" { 3 } else { 1 },
            files_failed: 0,
            bytes: 1000,
            message: (state == "failed").then(|| "rsync exited 23".into()),
        };
        let report = DownloadReport {
            downloads: vec![
                d("a", "n1", "verified"),
                d("a", "n2", "verified"),
                d("b", "n1", "failed"),
            ],
            failed: 1,
            seconds: 2.0,
        };
        assert_eq!(
            summary_lines(&report),
            [
                "take a: verified, 6 files (6 verified), 2000 bytes, 2 node(s), 2.0 s",
                "take b: FAILED, 3 files (1 verified), 1000 bytes, 1 node(s), 2.0 s (n1: rsync exited 23)"
            ]
        );
    }
}
