//! What every subsystem of the controller reads and writes: the configuration, the take
//! store, the fleet, the metrics, the webhook, the live progress of downloads and exports,
//! and the change counter that wakes the SSE streams; and the views built from them (a take
//! and the rig as the API shows them). It knows none of the subsystems (take control,
//! downloads, reports, verification, deletion, camera settings): each holds an
//! `Arc<RigCore>` and its own state, and [`crate::rig`] composes them.

use camrig_protocol::now_unix_ns;
use camrig_protocol::take_name::TakeName;
use tokio::sync::watch;

use crate::config::Config;
use crate::fleet::{Blocker, Fleet};
use crate::jobs::{DownloadJobs, ExportJobs};
use crate::metrics::ControllerMetrics;
use crate::take_error::TakeError;
use crate::take_store::{Store, StoreError};
use crate::views::{NodeDownload, RigState, TakeDownload, TakeNodeState, TakeState};
use crate::views::{RigView, TakeView};
use crate::webhook::Webhook;

pub struct RigCore {
    pub config: Config,
    pub store: Store,
    pub fleet: Fleet,
    pub metrics: ControllerMetrics,
    pub webhook: Webhook,
    pub downloads: DownloadJobs,
    pub exports: ExportJobs,
    changes: watch::Sender<u64>,
}

/// A subsystem reads the core's fields as its own (`self.store`, `self.changed()`): its
/// methods were written against the one `Rig` before the split, and read the same now.
macro_rules! reads_core {
    ($subsystem:ty) => {
        impl std::ops::Deref for $subsystem {
            type Target = crate::rig_core::RigCore;
            fn deref(&self) -> &crate::rig_core::RigCore {
                &self.core
            }
        }
    };
}
pub(crate) use reads_core;

impl RigCore {
    pub fn new(config: Config, store: Store) -> RigCore {
        RigCore {
            fleet: Fleet::new(&config),
            downloads: DownloadJobs::new(config.download_parallelism),
            exports: ExportJobs::default(),
            metrics: ControllerMetrics::new(),
            webhook: Webhook::new(config.webhook.clone()),
            config,
            store,
            changes: watch::channel(0).0,
        }
    }

    /// Tells every SSE stream that takes or downloads changed.
    pub fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The stopped take `name` as the API shows it, for the commands that act on a finished
    /// take's copies (VERIFY, DELETE FROM NODES); `then` says what to do about one that is
    /// not stopped.
    pub fn stopped_take(&self, name: &TakeName, then: &str) -> Result<TakeView, TakeError> {
        let take = self
            .store
            .take_by_name(name.as_str())?
            .ok_or_else(|| TakeError::UnknownTake(name.as_str().to_owned()))?;
        let take = self.take_view(take);
        if take.state != TakeState::Stopped {
            return Err(TakeError::NotVerified(format!(
                "take {name} is {}, not stopped; {then}",
                take.state
            )));
        }
        Ok(take)
    }

    /// A take as the API shows it: the stored record plus live download progress.
    pub fn take_view(&self, mut take: TakeView) -> TakeView {
        for node in &mut take.nodes {
            node.progress = self.downloads.progress(take.id, &node.address);
            if node.progress.as_ref().is_some_and(|p| p.is_active()) {
                node.download = NodeDownload::Downloading;
            }
        }
        if take
            .nodes
            .iter()
            .any(|n| n.download == NodeDownload::Downloading)
        {
            take.download = TakeDownload::Downloading;
        }
        take.export = self.exports.get(take.id);
        take
    }

    pub fn takes(&self) -> Result<Vec<TakeView>, StoreError> {
        Ok(self
            .store
            .list_takes()?
            .into_iter()
            .map(|t| self.take_view(t))
            .collect())
    }

    pub fn rig_view(&self) -> Result<RigView, StoreError> {
        let current = self.store.current_take()?.map(|t| self.take_view(t));
        let nodes: Vec<_> = (0..self.fleet.nodes().len())
            .map(|i| self.fleet.view(i, &self.config))
            .collect();
        let start_blockers: Vec<String> = (0..nodes.len())
            .filter_map(|i| self.fleet.blocker(i, &self.config))
            .map(|b: Blocker| b.message().to_owned())
            .chain(
                (0..nodes.len()).filter_map(|i| self.fleet.health_warning(i, &self.config, None)),
            )
            .collect();
        let nodes_busy = (0..nodes.len()).any(|i| {
            self.fleet
                .status(i)
                .is_some_and(|s| s.state != camrig_protocol::api::NodeState::Idle)
        });
        let state = match &current {
            // The take is stopped, but nodes still record up to the STOP instant or finish
            // their files: the rig is not idle yet.
            None if nodes_busy => RigState::Stopping,
            None => RigState::Idle,
            Some(t) => {
                let any = |state: TakeNodeState| t.nodes.iter().any(|n| n.state == state);
                if !any(TakeNodeState::Recording) && !any(TakeNodeState::Armed) {
                    // Every node of the take was lost: nothing is armed, nothing records.
                    RigState::Failed
                } else if t.stop_at_ns.is_some() {
                    RigState::Stopping
                } else if any(TakeNodeState::Recording) {
                    RigState::Recording
                } else {
                    RigState::Armed
                }
            }
        };
        Ok(RigView {
            state,
            start_ready: current.is_none() && !nodes_busy && start_blockers.is_empty(),
            current_take: current,
            nodes,
            start_blockers,
            require_node_sync: self.config.require_node_sync,
            max_clock_offset_ms: self.config.max_clock_offset_ns as f64 / 1e6,
            downloads_pending: self.downloads.active_count(),
            controller_now_ns: now_unix_ns(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
}
