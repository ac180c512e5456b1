//! The composition root of the controller's subsystems, as tacd's `init()`: one [`Rig`] per
//! process, behind an `Arc`, built by [`Rig::new`] and handed to the HTTP API. Each subsystem
//! owns its state and is handed the shared [`RigCore`] and whatever else it needs: the
//! command lock that take control and camera settings share (one command at a time), the
//! lock that VERIFY and DELETE FROM NODES share (they re-hash the same copies), the reports
//! that a finished download runs. None of the subsystems imports another's module except
//! along that order (reports ← downloads; the core below all).

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::access::Access;
use crate::camera_settings::CameraSettingsControl;
use crate::config::Config;
use crate::download::Downloader;
use crate::node_deletion::NodeDeletion;
use crate::rig_core::{reads_core, RigCore};
use crate::take_control::TakeControl;
use crate::take_reports::TakeReports;
use crate::take_store::Store;
use crate::take_verification::TakeVerification;

pub struct Rig {
    core: Arc<RigCore>,
    /// Who may drive the rig: credentials and sessions.
    pub access: Arc<Access>,
    /// START, MARK, STOP, abort of a node and the mid-take monitor.
    pub takes: Arc<TakeControl>,
    /// DOWNLOAD & SORT, with the ssh masters the transfers use.
    pub downloader: Arc<Downloader>,
    /// Sync reports and exports of verified takes.
    pub reports: Arc<TakeReports>,
    /// VERIFY.
    pub verification: Arc<TakeVerification>,
    /// DELETE FROM NODES.
    pub deletion: Arc<NodeDeletion>,
    /// Rig-wide camera settings, LOCK and UNLOCK.
    pub camera_settings: Arc<CameraSettingsControl>,
}

reads_core!(Rig);

impl Rig {
    pub fn new(config: Config, store: Store) -> Arc<Rig> {
        let access = Arc::new(Access::new(
            config.access.clone(),
            config.listen,
            &config.data_dir,
        ));
        let core = Arc::new(RigCore::new(config, store));
        // One command at a time: START/MARK/STOP, the take monitor and camera settings.
        let command_lock = Arc::new(Mutex::new(()));
        // VERIFY and DELETE FROM NODES re-hash the same copies and act on the result.
        let copies_lock = Arc::new(Mutex::new(()));
        let reports = Arc::new(TakeReports::new(core.clone()));
        let downloader = Arc::new(Downloader::new(core.clone(), reports.clone()));
        Arc::new(Rig {
            access,
            takes: Arc::new(TakeControl::new(core.clone(), command_lock.clone())),
            downloader,
            reports,
            verification: Arc::new(TakeVerification::new(core.clone(), copies_lock.clone())),
            deletion: Arc::new(NodeDeletion::new(core.clone(), copies_lock)),
            camera_settings: Arc::new(CameraSettingsControl::new(core.clone(), command_lock)),
            core,
        })
    }
}
