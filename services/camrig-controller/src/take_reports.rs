//! What the controller runs over a sorted take: the sync report (as soon as every node's copy
//! is verified, at start-up for verified takes a restart left without one, and on demand)
//! and exports with progress (the web UI's EXPORT button). The work itself is
//! [`camrig_sorted_takes::take_dir`] and [`camrig_sorted_takes::export`], run on blocking threads; the verdict (or why
//! there is none) goes into the take store, progress into memory and the SSE `takes` event.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;

use crate::http_error::ApiError;
use crate::rig_core::{reads_core, RigCore};
use crate::views::{ExportProgress, ExportRequest, TakeDownload, TakeView};
use camrig_sorted_takes::export::{self, Format};
use camrig_sorted_takes::sync_report::{Probe, SyncReport};
use camrig_sorted_takes::take_dir;

/// Sync reports and exports of verified takes (progress in [`RigCore::exports`]).
pub struct TakeReports {
    core: Arc<RigCore>,
}

reads_core!(TakeReports);

impl TakeReports {
    pub fn new(core: Arc<RigCore>) -> TakeReports {
        TakeReports { core }
    }

    /// The sorted take directory of a take.
    pub fn take_dir(&self, name: &str) -> PathBuf {
        camrig_sorted_takes::layout::take_dir(&self.config.downloads_dir, name)
    }

    fn verified_take(&self, name: &str) -> Result<TakeView, ApiError> {
        let take = self
            .store
            .take_by_name(name)?
            .ok_or_else(|| ApiError::not_found(format!("no take named {name:?}")))?;
        if take.download != TakeDownload::Verified {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "take {name} is not downloaded and verified from every node (download: {}); download it first",
                    take.download
                ),
            ));
        }
        Ok(take)
    }

    /// Makes (or makes again) a verified take's sync report and frames table, and records
    /// its verdict — or, when a file is missing or damaged, why there is none.
    pub async fn make_sync_report(self: &Arc<Self>, name: &str) -> Result<SyncReport, ApiError> {
        let take = self.verified_take(name)?;
        let probes: HashMap<String, (Option<Probe>, Option<Probe>)> = take
            .nodes
            .iter()
            .map(|n| {
                let start = n.offset_start_ns.map(|offset_ns| Probe {
                    offset_ns,
                    rtt_ns: n.rtt_start_ns,
                });
                let stop = n.offset_stop_ns.map(|offset_ns| Probe {
                    offset_ns,
                    rtt_ns: n.rtt_stop_ns,
                });
                (n.address.clone(), (start, stop))
            })
            .collect();
        let dir = self.take_dir(name);
        let tolerance = self.config.sync_tolerance_ns;
        let result =
            tokio::task::spawn_blocking(move || take_dir::make_report(&dir, &probes, tolerance))
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("sync report task failed: {e}"),
                    )
                })?;
        let stored = match &result {
            Ok(r) => self.store.set_sync(take.id, Some(r.verdict.as_str()), None),
            Err(e) => self.store.set_sync(take.id, None, Some(&e.to_string())),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot record the sync verdict");
        }
        self.changed();
        match result {
            Ok(r) => {
                tracing::info!(take = name, verdict = r.verdict.as_str(), skew_bound_us = ?r.skew_bound_us, "sync report written");
                Ok(r)
            }
            Err(e) => {
                tracing::warn!(take = name, error = %e, "no sync report");
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("no sync report for {name}: {e}"),
                ))
            }
        }
    }

    /// After a download: reports the take if it is now verified everywhere.
    pub async fn report_if_verified(self: &Arc<Self>, name: &str) {
        if let Ok(Some(t)) = self.store.take_by_name(name) {
            if t.download == TakeDownload::Verified {
                let _ = self.make_sync_report(name).await;
            }
        }
    }

    /// Verified takes with neither verdict nor error (the controller stopped before it made
    /// their report): reports them now.
    pub async fn report_unreported(self: &Arc<Self>) {
        let Ok(takes) = self.store.list_takes() else {
            return;
        };
        for t in takes {
            if t.download == TakeDownload::Verified
                && t.sync_verdict.is_none()
                && t.sync_error.is_none()
            {
                let _ = self.make_sync_report(&t.name).await;
            }
        }
    }

    /// Starts exporting a verified take into `<take dir>/export/`; progress shows in the
    /// take's `export`.
    pub fn start_export(
        self: &Arc<Self>,
        name: &str,
        req: ExportRequest,
    ) -> Result<ExportProgress, ApiError> {
        let format =
            Format::parse(&req.format).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let take = self.verified_take(name)?;
        let dir = self.take_dir(name);
        let out_dir = dir.join("export");
        let progress = ExportProgress {
            state: "running".into(),
            format: format.extension().into(),
            trim_common: req.trim_common,
            cameras_done: 0,
            cameras_total: 0,
            out_dir: out_dir.display().to_string(),
            message: None,
        };
        {
            let mut jobs = self.exports.jobs.lock().expect("exports lock");
            if jobs.get(&take.id).is_some_and(|p| p.state == "running") {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("take {name} is being exported already"),
                ));
            }
            jobs.insert(take.id, progress.clone());
        }
        self.changed();
        let rig = self.clone();
        let take_id = take.id;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let opts = export::Options {
                format,
                trim_common: req.trim_common,
                out_dir: Some(out_dir),
            };
            let result = export::export(&dir, &opts, |done, total| {
                rig.exports.update(take_id, |p| {
                    p.cameras_done = done;
                    p.cameras_total = total;
                });
                rig.changed();
            });
            rig.exports.update(take_id, |p| match &result {
                Ok(s) => {
                    p.state = "done".into();
                    p.message = Some(format!("{} file(s) written", s.cameras.len()));
                }
                Err(e) => {
                    p.state = "failed".into();
                    p.message = Some(e.to_string());
                }
            });
            match &result {
                Ok(_) => tracing::info!(take = name, "export done"),
                Err(e) => tracing::warn!(take = name, error = %e, "export failed"),
            }
            rig.changed();
        });
        Ok(progress)
    }
}
