//! The live progress of the controller's background jobs, kept in memory and shown in every
//! take view and SSE `takes` event: downloads (per take and node, with the parallelism limit)
//! and exports (per take). The subsystems that run the jobs write here; the views read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::views::{DownloadPhase, DownloadProgress, ExportProgress};

/// Download jobs: the parallelism limit and every job's live progress.
pub struct DownloadJobs {
    pub(crate) limit: Arc<Semaphore>,
    jobs: Mutex<HashMap<(i64, String), DownloadProgress>>,
}

impl DownloadJobs {
    pub fn new(parallelism: usize) -> DownloadJobs {
        DownloadJobs {
            limit: Arc::new(Semaphore::new(parallelism)),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    pub fn progress(&self, take_id: i64, address: &str) -> Option<DownloadProgress> {
        self.jobs
            .lock()
            .expect("downloads lock poisoned")
            .get(&(take_id, address.to_owned()))
            .cloned()
    }

    pub fn all(&self) -> Vec<DownloadProgress> {
        let mut v: Vec<_> = self
            .jobs
            .lock()
            .expect("downloads lock poisoned")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.take, &a.address).cmp(&(&b.take, &b.address)));
        v
    }

    pub fn active_count(&self) -> usize {
        self.jobs
            .lock()
            .expect("downloads lock poisoned")
            .values()
            .filter(|p| p.is_active())
            .count()
    }

    pub(crate) fn update(
        &self,
        take_id: i64,
        address: &str,
        f: impl FnOnce(&mut DownloadProgress),
    ) {
        if let Some(p) = self
            .jobs
            .lock()
            .expect("downloads lock poisoned")
            .get_mut(&(take_id, address.to_owned()))
        {
            f(p);
        }
    }

    /// Registers a job unless one is already active; returns the job's progress and
    /// whether it is new.
    pub(crate) fn register(
        &self,
        take_id: i64,
        take: &str,
        address: &str,
    ) -> (DownloadProgress, bool) {
        let mut jobs = self.jobs.lock().expect("downloads lock poisoned");
        let key = (take_id, address.to_owned());
        if let Some(p) = jobs.get(&key).filter(|p| p.is_active()) {
            return (p.clone(), false);
        }
        let p = DownloadProgress {
            take: take.to_owned(),
            address: address.to_owned(),
            phase: DownloadPhase::Queued,
            bytes_total: 0,
            bytes_done: 0,
            files_total: 0,
            files_verified: 0,
            files_failed: 0,
            message: None,
        };
        jobs.insert(key, p.clone());
        (p, true)
    }
}

/// The latest export of each take (by take id), while it runs and after.
#[derive(Default)]
pub struct ExportJobs {
    pub(crate) jobs: Mutex<HashMap<i64, ExportProgress>>,
}

impl ExportJobs {
    pub fn get(&self, take_id: i64) -> Option<ExportProgress> {
        self.jobs
            .lock()
            .expect("exports lock")
            .get(&take_id)
            .cloned()
    }
    pub(crate) fn update(&self, take_id: i64, f: impl FnOnce(&mut ExportProgress)) {
        if let Some(p) = self.jobs.lock().expect("exports lock").get_mut(&take_id) {
            f(p);
        }
    }
}
