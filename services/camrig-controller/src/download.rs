//! Download & sort: pull a stopped take from each node with rsync (bounded parallelism,
//! resumable), check every file against the node's manifest sha256, and sort the verified
//! files into `<downloads>/<take>/<node address>/` under the node's own file names.
//!
//! Transfers land in `<downloads>/.staging/<take>/<node>/` first; only a verified file is
//! linked into its sorted place, and an existing sorted file with different content is
//! never replaced. A file that fails verification is discarded from staging (the node still
//! has it) and fetched again next time. Nothing on the node is changed.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use camrig_protocol::manifest::{FileEntry, ManifestState, TakeManifest};
use camrig_protocol::naming::TakeFiles;
use camrig_protocol::take_name::TakeName;
use camrig_sorted_takes::layout::sorted_dir;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::download_verifier::{Verified, Verifier};
use crate::rig_core::{reads_core, RigCore};
use crate::rsync::{self, SshSetup};
use crate::sorting::verify_manifest_and_sort;
use crate::ssh_master::SshMasters;
use crate::take_error::TakeError;
use crate::take_reports::TakeReports;
use crate::take_store::node_has_recording;
use crate::views::{
    DownloadPhase, DownloadProgress, DownloadsView, FileState, NodeDownload, TakeDownload,
    TakeState,
};
use crate::webhook::{WebhookEvent, WebhookKind};

/// How long a download waits for a node to finalise a just-stopped take's manifest.
const MANIFEST_WAIT: Duration = Duration::from_secs(30);
/// A just-stopped take is final on the node within a frame or two of its STOP instant: ask
/// again soon, then back off.
const MANIFEST_POLL_FIRST: Duration = Duration::from_millis(20);
const MANIFEST_POLL_MAX: Duration = Duration::from_millis(300);
/// The longest a download waits for its node's ssh master to finish connecting.
const MASTER_WAIT: Duration = Duration::from_secs(3);
/// How often transfer progress is measured and published.
const PROGRESS_PERIOD: Duration = Duration::from_millis(500);

/// DOWNLOAD & SORT: one job per take and node (progress in [`RigCore::downloads`]), over
/// the ssh masters it keeps, and the take's sync report once every copy is verified.
pub struct Downloader {
    core: Arc<RigCore>,
    /// One OpenSSH master connection per node ([`crate::ssh_master::keep`] keeps them up).
    pub ssh_masters: SshMasters,
    reports: Arc<TakeReports>,
}

reads_core!(Downloader);

impl Downloader {
    pub fn new(core: Arc<RigCore>, reports: Arc<TakeReports>) -> Downloader {
        Downloader {
            ssh_masters: SshMasters::new(&core.config.nodes),
            core,
            reports,
        }
    }
}

impl Downloader {
    /// Starts downloading one take from every node that recorded it and is not yet
    /// verified. Returns the jobs (new or already running).
    pub fn download_take(self: &Arc<Self>, name: &str) -> Result<Vec<DownloadProgress>, TakeError> {
        let name = TakeName::parse(name)?;
        let take = self
            .store
            .take_by_name(name.as_str())?
            .ok_or_else(|| TakeError::UnknownTake(name.as_str().to_owned()))?;
        if take.state != TakeState::Stopped {
            return Err(TakeError::StillRecording(take.name));
        }
        let mut jobs = Vec::new();
        for node in take.nodes.iter().filter(|n| node_has_recording(n)) {
            if node.download == NodeDownload::Verified {
                continue;
            }
            let (progress, new) = self.downloads.register(take.id, &take.name, &node.address);
            if new {
                let rig = self.clone();
                let address = node.address.clone();
                let take_name = name.clone();
                let id = take.id;
                tokio::spawn(async move { rig.download_node(id, take_name, address).await });
            }
            jobs.push(progress);
        }
        self.changed();
        Ok(jobs)
    }

    /// Starts downloading every stopped take that is not verified everywhere.
    pub fn download_pending(self: &Arc<Self>) -> Result<DownloadsView, TakeError> {
        let mut jobs = Vec::new();
        let mut pending = Vec::new();
        for take in self.store.list_takes()? {
            if take.state == TakeState::Stopped
                && take.download != TakeDownload::Verified
                && take.nodes.iter().any(node_has_recording)
            {
                pending.push(take.name.clone());
                jobs.extend(self.download_take(&take.name)?);
            }
        }
        Ok(DownloadsView {
            jobs,
            pending_takes: pending,
        })
    }

    pub fn downloads_view(&self) -> Result<DownloadsView, TakeError> {
        let pending_takes = self
            .store
            .list_takes()?
            .into_iter()
            .filter(|t| {
                t.state == TakeState::Stopped
                    && t.download != TakeDownload::Verified
                    && t.nodes.iter().any(node_has_recording)
            })
            .map(|t| t.name)
            .collect();
        Ok(DownloadsView {
            jobs: self.downloads.all(),
            pending_takes,
        })
    }

    async fn download_node(self: Arc<Self>, take_id: i64, take: TakeName, address: String) {
        let result = self.download_node_inner(take_id, &take, &address).await;
        let (state, phase, reason) = match &result {
            Ok(()) => (NodeDownload::Verified, DownloadPhase::Verified, None),
            Err(reason) => (
                NodeDownload::Failed,
                DownloadPhase::Failed,
                Some(reason.as_str()),
            ),
        };
        if let Err(e) = self.store.set_download(take_id, &address, state, reason) {
            tracing::error!(error = %e, "cannot record download result");
        }
        let progress = self.downloads.progress(take_id, &address);
        let label = crate::metrics::NodeLabel::new(&address);
        let bytes = progress.as_ref().map_or(0, |p| p.bytes_done);
        self.metrics
            .download_bytes
            .get_or_create(&label)
            .inc_by(bytes);
        let event = match &result {
            Ok(()) => {
                tracing::info!(take = %take, node = address, "download verified and sorted");
                let mut e = WebhookEvent::new(WebhookKind::TakeDownloaded, take.as_str())
                    .node(&address)
                    .detail("every file verified against the node's manifest and sorted");
                e.files = progress.as_ref().map(|p| p.files_verified);
                e.bytes = Some(bytes);
                e
            }
            Err(reason) => {
                tracing::warn!(take = %take, node = address, reason, "download failed");
                self.metrics.download_failures.get_or_create(&label).inc();
                WebhookEvent::new(WebhookKind::TakeFailed, take.as_str())
                    .node(&address)
                    .detail(format!("download failed: {reason}"))
            }
        };
        self.webhook.send(event);
        self.downloads.update(take_id, &address, |p| {
            p.phase = phase;
            p.message = reason.map(str::to_owned);
        });
        self.changed();
        if result.is_ok() {
            self.reports.report_if_verified(take.as_str()).await;
        }
    }

    async fn download_node_inner(
        &self,
        take_id: i64,
        take: &TakeName,
        address: &str,
    ) -> Result<(), String> {
        let mut timings = Timings::new();
        let _permit = self
            .downloads
            .limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "controller is shutting down".to_owned())?;
        let store_err = |e: crate::take_store::StoreError| e.to_string();
        // The store learns of the download together with its files, in the commit that
        // overlaps rsync's start below: a commit here (serialised with every other node's
        // through the store, on the runtime's few threads) delayed each node's manifest
        // request and rsync by tens of ms on a busy controller. A crash before that commit
        // has touched nothing: the node keeps its previous download state and reason.
        self.downloads.update(take_id, address, |p| {
            p.phase = DownloadPhase::WaitingForNode
        });
        self.changed();
        let slot = self
            .fleet
            .by_address(address)
            .ok_or_else(|| format!("node {address} is no longer configured"))?;

        timings.permitted = Some(Instant::now());
        let manifest = self.wait_for_manifest(slot, take).await?;
        timings.manifest = Some(Instant::now());
        let manifest_name = TakeFiles::new(take, &manifest.node, manifest.start_at_ns).manifest();

        let sorted = sorted_dir(&self.config.downloads_dir, take.as_str(), address);
        let staging = self
            .config
            .downloads_dir
            .join(".staging")
            .join(take.as_str())
            .join(address);
        for dir in [&sorted, &staging] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }

        let known = self
            .store
            .take(take_id)
            .map_err(store_err)?
            .and_then(|t| t.nodes.into_iter().find(|n| n.address == address))
            .map(|n| n.files)
            .unwrap_or_default();
        let already: Vec<&str> = known
            .iter()
            .filter(|f| f.state == FileState::Verified && sorted.join(&f.name).exists())
            .map(|f| f.name.as_str())
            .collect();
        let bytes_total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
        let bytes_already: u64 = manifest
            .files
            .iter()
            .filter(|f| already.contains(&f.name.as_str()))
            .map(|f| f.bytes)
            .sum();
        let pending: Vec<FileEntry> = manifest
            .files
            .iter()
            .filter(|f| !already.contains(&f.name.as_str()))
            .cloned()
            .collect();
        let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
        let verifier = Verifier::start(staging.clone(), sorted.clone(), pending, results_tx)
            .map_err(|e| format!("cannot watch {}: {e}", staging.display()))?;
        // A master that is connecting right now is faster to wait for than a second
        // handshake racing it for the CPU.
        self.ssh_masters.settled(address, MASTER_WAIT).await;
        timings.via_master =
            crate::ssh_master::control_path(&self.config, &slot.config).is_some_and(|p| p.exists());
        timings.transfer_started = Some(Instant::now());
        // rsync starts its session on the node while the store records the files (one
        // synchronous commit, where there were two; parallel downloads queue for the
        // store): the verifier's results wait in their channel until the rows they update
        // exist, so the bookkeeping overlaps rsync's start instead of delaying it.
        let job = RsyncJob {
            take_id,
            take,
            address,
            staging: &staging,
            sorted: &sorted,
            bytes_already,
        };
        let child = self.spawn_rsync(&job)?;
        self.store
            .begin_transfer(take_id, address, &manifest.files, FileState::Transferring)
            .map_err(store_err)?;
        self.downloads.update(take_id, address, |p| {
            p.phase = DownloadPhase::Transferring;
            p.bytes_total = bytes_total;
            p.bytes_done = bytes_already;
            p.files_total = manifest.files.len() + 1;
            p.files_verified = 0;
            p.files_failed = 0;
        });
        self.changed();
        let mut failed = 0usize;
        for name in &already {
            self.record_check(take_id, address, name, &Ok(()), &mut failed)
                .map_err(store_err)?;
        }
        let transfer = self.run_rsync(job, child, &mut results, &mut failed).await;
        timings.transfer_ended = Some(Instant::now());
        if transfer.is_ok() {
            self.downloads
                .update(take_id, address, |p| p.phase = DownloadPhase::Verifying);
            self.changed();
        }
        let verifier = verifier.finish(transfer.is_ok());
        while let Some(v) = results.recv().await {
            self.record_check(take_id, address, &v.name, &v.outcome, &mut failed)
                .map_err(store_err)?;
        }
        let stats = tokio::task::spawn_blocking(move || verifier.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        timings.first_data = stats.first_data;
        timings.checking = stats.checking;
        if let Err(reason) = transfer {
            let _ =
                self.store
                    .set_unverified_files(take_id, address, FileState::Failed, Some(&reason));
            return Err(reason);
        }

        // The manifest itself: the copy must say exactly what the node's API said.
        let (staged, dest, expected) = (
            staging.join(&manifest_name),
            sorted.join(&manifest_name),
            manifest.clone(),
        );
        let manifest_result = tokio::task::spawn_blocking(move || {
            verify_manifest_and_sort(&staged, &dest, &expected)
        })
        .await
        .unwrap_or_else(|e| Err(format!("verification task failed: {e}")));
        match manifest_result {
            Ok(entry) => {
                self.store
                    .set_file_verified(take_id, address, &entry)
                    .map_err(store_err)?;
                self.downloads
                    .update(take_id, address, |p| p.files_verified += 1);
                self.metrics
                    .download_files_verified
                    .get_or_create(&crate::metrics::NodeLabel::new(address))
                    .inc();
            }
            Err(reason) => {
                failed += 1;
                tracing::warn!(take = %take, node = address, reason, "manifest copy not verified");
                self.downloads.update(take_id, address, |p| {
                    p.files_failed += 1;
                    p.message = Some(reason.clone());
                });
            }
        }
        // Leave no empty staging directories behind (a failed file's leftovers stay).
        let _ = std::fs::remove_dir(staging.join(rsync::PARTIAL_DIR));
        let _ = std::fs::remove_dir(&staging);
        let _ = std::fs::remove_dir(staging.parent().expect("staging has a parent"));
        if failed > 0 {
            return Err(format!(
                "{failed} of {} files failed verification; download again to retry them",
                manifest.files.len() + 1
            ));
        }
        self.downloads
            .update(take_id, address, |p| p.bytes_done = p.bytes_total);
        timings.log(take, address, bytes_total - bytes_already);
        Ok(())
    }

    /// Records one file's verification in the take store and the job's progress.
    fn record_check(
        &self,
        take_id: i64,
        address: &str,
        name: &str,
        outcome: &Result<(), String>,
        failed: &mut usize,
    ) -> Result<(), crate::take_store::StoreError> {
        let (state, reason) = match outcome {
            Ok(()) => (FileState::Verified, None),
            Err(r) => (FileState::Failed, Some(r.as_str())),
        };
        if outcome.is_err() {
            *failed += 1;
        }
        self.store
            .set_file_state(take_id, address, name, state, reason)?;
        if outcome.is_ok() {
            self.metrics
                .download_files_verified
                .get_or_create(&crate::metrics::NodeLabel::new(address))
                .inc();
        }
        self.downloads.update(take_id, address, |p| {
            if outcome.is_ok() {
                p.files_verified += 1;
            } else {
                p.files_failed += 1;
            }
        });
        self.changed();
        Ok(())
    }

    /// The node's manifest once the take is final on the node (a just-stopped take is
    /// finalised a moment after its STOP instant).
    async fn wait_for_manifest(
        &self,
        slot: &crate::fleet::NodeSlot,
        take: &TakeName,
    ) -> Result<TakeManifest, String> {
        let deadline = Instant::now() + MANIFEST_WAIT;
        let mut pause = MANIFEST_POLL_FIRST;
        loop {
            match slot.client.manifest(take).await {
                Ok(m) if m.state != ManifestState::Recording => return Ok(m),
                Ok(_) if Instant::now() < deadline => {}
                Ok(_) => {
                    return Err(format!(
                        "node {} still has take {take} recording after {} s",
                        slot.config.address,
                        MANIFEST_WAIT.as_secs()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "cannot fetch the take manifest from node {}: {e}",
                        slot.config.address
                    ))
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MANIFEST_POLL_MAX);
        }
    }

    /// Starts rsync for one node (killed when the returned child is dropped).
    fn spawn_rsync(&self, job: &RsyncJob<'_>) -> Result<tokio::process::Child, String> {
        let RsyncJob {
            take,
            address,
            staging,
            sorted,
            ..
        } = *job;
        let slot = self
            .fleet
            .by_address(address)
            .ok_or_else(|| format!("node {address} is no longer configured"))?;
        let control = crate::ssh_master::control_path(&self.config, &slot.config);
        let args = rsync::argv(
            &slot.config.rsync_source,
            take,
            staging,
            sorted,
            &SshSetup {
                key: &self.config.ssh_key,
                known_hosts: &self.config.known_hosts,
                control_path: control.as_deref(),
            },
        );
        tracing::info!(take = %take, node = address, ?args, "rsync");
        tokio::process::Command::new("rsync")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run rsync (is it installed?): {e}"))
    }

    /// Waits for one node's rsync, recording the verifier's results as they come.
    async fn run_rsync(
        &self,
        job: RsyncJob<'_>,
        mut child: tokio::process::Child,
        results: &mut UnboundedReceiver<Verified>,
        failed: &mut usize,
    ) -> Result<(), String> {
        let RsyncJob {
            take_id,
            address,
            staging,
            bytes_already,
            ..
        } = job;
        let mut stderr = child.stderr.take().expect("stderr piped");
        let stderr_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        let mut ticker = tokio::time::interval(PROGRESS_PERIOD);
        // Bytes verified and moved out of staging into their sorted place during this run.
        let mut sorted_bytes = 0u64;
        let mut results_open = true;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                v = results.recv(), if results_open => match v {
                    Some(v) => {
                        if v.outcome.is_ok() {
                            sorted_bytes += v.bytes;
                        }
                        if let Err(e) = self.record_check(take_id, address, &v.name, &v.outcome, failed) {
                            // rsync is killed on drop; the verifier stops with it.
                            return Err(e.to_string());
                        }
                    }
                    None => results_open = false,
                },
                _ = ticker.tick() => {
                    let done = bytes_already + sorted_bytes + staged_bytes(staging);
                    self.downloads.update(take_id, address, |p| {
                        p.bytes_done = done.min(p.bytes_total.max(done));
                    });
                    self.changed();
                }
            }
        }
        .map_err(|e| format!("rsync did not run: {e}"))?;
        let stderr = stderr_task.await.unwrap_or_default();
        if status.success() {
            self.downloads.update(take_id, address, |p| {
                p.bytes_done = bytes_already + sorted_bytes + staged_bytes(staging)
            });
            Ok(())
        } else {
            let node = self
                .fleet
                .by_address(address)
                .map_or_else(|| address.to_owned(), |slot| slot.config.display());
            Err(rsync::explain_failure(
                &node,
                &self.config.known_hosts,
                status.code(),
                &stderr,
            ))
        }
    }
}

/// One node's rsync run.
#[derive(Clone, Copy)]
struct RsyncJob<'a> {
    take_id: i64,
    take: &'a TakeName,
    address: &'a str,
    staging: &'a Path,
    sorted: &'a Path,
    bytes_already: u64,
}

/// When each phase of one node's download ended, for the timing line in the log: where a
/// download's time goes (queue, manifest, connecting, the link itself, checking) is what
/// decides whether it runs at the link's rate.
struct Timings {
    requested: Instant,
    permitted: Option<Instant>,
    manifest: Option<Instant>,
    transfer_started: Option<Instant>,
    first_data: Option<Instant>,
    transfer_ended: Option<Instant>,
    /// Hashing, fsync and linking, mostly overlapped with the transfer.
    checking: Duration,
    /// Whether rsync found the node's ssh master connection up.
    via_master: bool,
}

impl Timings {
    fn new() -> Timings {
        Timings {
            requested: Instant::now(),
            permitted: None,
            manifest: None,
            transfer_started: None,
            first_data: None,
            transfer_ended: None,
            checking: Duration::ZERO,
            via_master: false,
        }
    }

    fn log(&self, take: &TakeName, address: &str, bytes: u64) {
        let ms = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64() * 1e3,
            _ => f64::NAN,
        };
        let now = Some(Instant::now());
        let transfer_s = ms(self.transfer_started, self.transfer_ended) / 1e3;
        tracing::info!(
            take = %take,
            node = address,
            bytes,
            via_master = self.via_master,
            queued_ms = ms(Some(self.requested), self.permitted),
            manifest_ms = ms(self.permitted, self.manifest),
            connect_ms = ms(self.transfer_started, self.first_data),
            transfer_ms = ms(self.transfer_started, self.transfer_ended),
            transfer_mbit_s = bytes as f64 * 8.0 / transfer_s / 1e6,
            checking_ms = self.checking.as_secs_f64() * 1e3,
            after_transfer_ms = ms(self.transfer_ended, now),
            total_ms = ms(Some(self.requested), now),
            "download timings"
        );
    }
}

/// Bytes received so far in a staging directory, partial files included.
fn staged_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
