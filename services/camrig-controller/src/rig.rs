//! The controller's shared state: configuration, take store, fleet, downloads, and the
//! change counter that wakes the SSE streams. One [`Rig`] per process, behind an `Arc`.

use std::sync::Arc;

use camrig_protocol::now_unix_ns;
use tokio::sync::{broadcast, watch, Mutex};

use crate::config::Config;
use crate::download::Downloads;
use crate::fleet::{Blocker, Fleet};
use crate::metrics::ControllerMetrics;
use crate::ssh_master::SshMasters;
use crate::take_store::{Store, StoreError};
use crate::views::{NodeDeletionEvent, RigView, TakeView};
use crate::views::{NodeDownload, RigState, TakeDownload, TakeNodeState};
use crate::webhook::Webhook;

pub struct Rig {
    pub config: Config,
    /// Who may drive the rig: credentials and sessions.
    pub access: Arc<crate::access::Access>,
    pub store: Store,
    pub fleet: Fleet,
    pub downloads: Downloads,
    pub ssh_masters: SshMasters,
    pub metrics: ControllerMetrics,
    pub webhook: Webhook,
    pub exports: crate::take_reports::Exports,
    /// Serialises START/MARK/STOP and the take monitor: one command at a time. Shared so
    /// START can hand its guard to the bookkeeping it finishes after answering.
    pub(crate) command_lock: Arc<Mutex<()>>,
    /// Serialises DELETE FROM NODES (kept apart from START/STOP: re-hashing is slow).
    pub(crate) deletion_lock: Mutex<()>,
    changes: watch::Sender<u64>,
    /// Every change of a node deletion, for the SSE `node_deletion` event.
    deletions: broadcast::Sender<NodeDeletionEvent>,
    /// The camera settings this controller last applied to the rig.
    pub(crate) rig_settings: std::sync::Mutex<crate::camera_settings::RigSettings>,
}

impl Rig {
    pub fn new(config: Config, store: Store) -> Arc<Rig> {
        let fleet = Fleet::new(&config);
        let downloads = Downloads::new(config.download_parallelism);
        let ssh_masters = SshMasters::new(&config.nodes);
        let access = Arc::new(crate::access::Access::new(
            config.access.clone(),
            config.listen,
            &config.data_dir,
        ));
        let webhook = Webhook::new(config.webhook.clone());
        Arc::new(Rig {
            access,
            metrics: ControllerMetrics::new(),
            webhook,
            config,
            store,
            fleet,
            downloads,
            ssh_masters,
            exports: Default::default(),
            command_lock: Arc::new(Mutex::new(())),
            deletion_lock: Mutex::new(()),
            changes: watch::channel(0).0,
            deletions: broadcast::channel(64).0,
            rig_settings: Default::default(),
        })
    }

    /// Tells every SSE stream that takes or downloads changed.
    pub fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells every SSE stream where a node deletion stands (and that takes changed).
    pub fn deletion_changed(&self, event: NodeDeletionEvent) {
        // No subscriber is fine: nobody has the page open.
        let _ = self.deletions.send(event);
        self.changed();
    }

    pub fn subscribe_deletions(&self) -> broadcast::Receiver<NodeDeletionEvent> {
        self.deletions.subscribe()
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
