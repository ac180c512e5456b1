//! camrig-controller: the Control Pi service. It runs the rig from one web page: the fleet
//! of nodes (status, clock probes), takes (scheduled START/MARK/STOP fan-out, history in
//! SQLite), verified download & sort, and the REST API, SSE and web UI on one port.
//!
//! - [`config`]: the TOML configuration, validated with key names in every refusal.
//! - [`access`]: login, sessions, the API token, trusted subnets, and the cross-site and
//!   Host checks in front of every route.
//! - [`node_client`]: HTTP client for one node's `/v1` API.
//! - [`clock_probe`]: four-timestamp offset measurement over `GET /v1/time`.
//! - [`fleet`]: live status and clock of every node; what blocks START.
//! - [`take_store`]: the SQLite take history.
//! - [`take_control`]: START, MARK, STOP and the mid-take monitor.
//! - [`rsync`], [`download`], [`download_verifier`] and [`sorting`]: pulling, verifying
//!   (while the transfer goes on) and sorting recorded files; [`ssh_master`] keeps one SSH
//!   connection per node open so a download starts without a handshake.
//! - [`camera_settings`]: rig-wide camera settings, LOCK and UNLOCK, checked then fanned out.
//! - [`node_deletion`]: DELETE FROM NODES, for verified takes only, re-checked first.
//! - [`api`], [`http_error`], [`views`]: the HTTP surface and its JSON.
//! - [`status_line`]: the systemd STATUS= line.
//! - [`take_reports`]: each verified take's sync report and, on request, its exports, made
//!   by `camrig-sorted-takes` (shared with the `camrig` CLI) on blocking threads.
//! - [`metrics`]: the Prometheus `/metrics` series; [`webhook`]: take events POSTed to
//!   the studio's URL.

mod access;
mod api;
mod camera_settings;
mod clock_probe;
/// The controller's config schema lives in camrig-config (one schema for readers and writers).
pub use camrig_config::controller as config;
mod download;
mod download_verifier;
mod fleet;
mod http_error;
mod jobs;
mod metrics;
mod node_client;
mod node_deletion;
mod rig;
mod rig_core;
mod rsync;
mod sorting;
mod ssh_master;
mod status_line;
mod take_control;
mod take_error;
mod take_reports;
mod take_store;
mod take_verification;
/// The `/api` bodies live in camrig-protocol (the CLI reads them without the controller).
use camrig_protocol::views;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use camrig_systemd::{notify, watchdog};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::rig::Rig;
use crate::take_store::{Store, StoreError};

/// Why the service stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("background task {0} ended unexpectedly")]
    TaskEnded(&'static str),
}

/// Runs the controller on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    for dir in [&config.data_dir, &config.downloads_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = Store::open(&config.data_dir.join("takes.sqlite3"))?;
    store.fail_interrupted_downloads()?;
    store.fail_interrupted_deletions()?;
    let rig = Rig::new(config, store);
    {
        let r = rig.clone();
        tokio::spawn(async move { r.reports.report_unreported().await });
    }
    if let Some(take) = rig.store.current_take()? {
        tracing::info!(
            take = take.name,
            "carrying on with the take recorded before the restart"
        );
    }

    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    for i in 0..rig.fleet.nodes().len() {
        let r = rig.clone();
        tasks.spawn(async move {
            r.fleet.poll_status(i).await;
            "status poll"
        });
        let r = rig.clone();
        tasks.spawn(async move {
            r.fleet.probe_clock(i).await;
            "clock probe"
        });
        let r = rig.clone();
        tasks.spawn(async move {
            let (config, node) = (r.config.clone(), r.fleet.nodes()[i].config.clone());
            ssh_master::keep(config, node, &r.downloader.ssh_masters).await;
            "ssh master"
        });
    }
    let progress = watchdog::Progress::new();
    {
        let (r, p) = (rig.clone(), progress.clone());
        tasks.spawn(async move {
            event_loop(r, p).await;
            "event loop"
        });
        tasks.spawn(async move {
            watchdog::run(progress).await;
            // No watchdog configured: nothing to do, but this must not end the service.
            std::future::pending::<()>().await;
            "watchdog"
        });
    }

    let app = api::router(rig.clone());
    tracing::info!(addr = %listener.local_addr().map_err(RunError::Serve)?, "serving web UI and API");
    notify::ready();
    // The peer address lets the access guard honour `trusted_subnets`.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let result = tokio::select! {
        r = server => r.map_err(RunError::Serve),
        ended = tasks.join_next() => {
            let name = match ended {
                Some(Ok(name)) => name,
                Some(Err(e)) => { tracing::error!(error = %e, "background task panicked"); "panicked task" }
                None => "none",
            };
            Err(RunError::TaskEnded(name))
        }
    };
    notify::stopping();
    tasks.shutdown().await;
    result
}

/// The controller's heartbeat: watches the current take, publishes STATUS= every second,
/// and ticks the watchdog's progress counter each turn it completes.
async fn event_loop(rig: Arc<Rig>, progress: watchdog::Progress) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0u64;
    loop {
        ticker.tick().await;
        if let Err(e) = rig.takes.watch_current_take().await {
            tracing::error!(error = %e, "cannot update the current take");
        }
        turn += 1;
        if turn.is_multiple_of(2) {
            match rig.rig_view() {
                Ok(view) => notify::status(&status_line::status_line(&view)),
                Err(e) => tracing::error!(error = %e, "cannot build rig status"),
            }
        }
        progress.tick();
    }
}
