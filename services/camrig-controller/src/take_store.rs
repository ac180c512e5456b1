//! The take history on disk: SQLite (`<data_dir>/takes.sqlite3`) holding takes, each node's
//! part in them (armed/failed, clock offsets at start and stop), markers, and every file's
//! download and verification state. It is the controller's memory across restarts: a
//! controller restarted mid-take finds the current take here.
//!
//! The schema version lives in `PRAGMA user_version`; a database from a newer camrig is
//! refused rather than misread, an older one is migrated in place (additive steps only, in
//! one transaction each). Writes are synchronous (`synchronous=FULL`, WAL) because
//! a take record must survive the power cut that follows a START.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use camrig_protocol::manifest::FileEntry;
use camrig_protocol::UnixNanos;
use rusqlite::{params, Connection, OptionalExtension};

use crate::views::{
    FileState, FileView, MarkerNodeView, MarkerView, NodeDeletionState, NodeDownload, TakeDownload,
    TakeNodeState, TakeNodeView, TakeState, TakeView, UnknownState,
};

/// Bumped with every schema change; older databases are migrated in [`Store::open`].
pub const SCHEMA_VERSION: i64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("take database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("take database {path} has schema version {found}, newer than this camrig knows ({SCHEMA_VERSION}); upgrade camrig-controller")]
    TooNew { path: PathBuf, found: i64 },
}

/// The take database. Calls are short and synchronous; callers in async code hold the
/// lock only for one statement or transaction.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// A new take as START records it, before the fan-out.
pub struct NewTake<'a> {
    pub name: &'a str,
    pub command_id: &'a str,
    pub created_ns: UnixNanos,
    pub start_at_ns: UnixNanos,
    pub allow_partial: bool,
    pub override_clock: bool,
    pub override_note: Option<String>,
    pub nodes: Vec<NewTakeNode>,
}

pub struct NewTakeNode {
    pub address: String,
    pub name: String,
    pub offset_ns: Option<i64>,
    pub rtt_ns: Option<i64>,
}

/// Schema version 1, as the first camrig created it; later versions are [`MIGRATIONS`].
const SCHEMA: &str = "
CREATE TABLE takes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    command_id TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    start_at_ns INTEGER NOT NULL,
    stop_at_ns INTEGER,
    allow_partial INTEGER NOT NULL,
    override_clock INTEGER NOT NULL,
    override_note TEXT
);
CREATE INDEX takes_name ON takes(name);
CREATE TABLE take_nodes (
    take_id INTEGER NOT NULL REFERENCES takes(id),
    address TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    offset_start_ns INTEGER,
    rtt_start_ns INTEGER,
    offset_stop_ns INTEGER,
    download TEXT NOT NULL DEFAULT 'none',
    download_reason TEXT,
    PRIMARY KEY (take_id, address)
);
CREATE TABLE markers (
    id INTEGER PRIMARY KEY,
    take_id INTEGER NOT NULL REFERENCES takes(id),
    at_ns INTEGER NOT NULL,
    note TEXT NOT NULL,
    nodes_json TEXT NOT NULL
);
CREATE TABLE files (
    take_id INTEGER NOT NULL REFERENCES takes(id),
    address TEXT NOT NULL,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (take_id, address, name)
);
";

/// Step `i` takes a database from version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    "
ALTER TABLE take_nodes ADD COLUMN node_deletion TEXT NOT NULL DEFAULT 'none';
ALTER TABLE take_nodes ADD COLUMN node_deletion_reason TEXT;
ALTER TABLE take_nodes ADD COLUMN node_deleted_ns INTEGER;
",
    "
ALTER TABLE take_nodes ADD COLUMN rtt_stop_ns INTEGER;
ALTER TABLE takes ADD COLUMN sync_verdict TEXT;
ALTER TABLE takes ADD COLUMN sync_error TEXT;
",
    "
CREATE TABLE camera_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
",
];

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
            });
        }
        if version == 0 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))
                .map_err(err)?;
        }
        for (step, sql) in MIGRATIONS.iter().enumerate() {
            let to = step as i64 + 2;
            if version.max(1) < to {
                conn.execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {to}; COMMIT;"))
                    .map_err(err)?;
                if version > 0 {
                    tracing::info!(path = %path.display(), to, "take database migrated");
                }
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().expect("store lock poisoned");
        f(&mut conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// The rig's camera settings as this controller last applied them (JSON, owned by
    /// [`crate::camera_settings`]); `None` before the first change.
    pub fn camera_settings(&self) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row("SELECT state FROM camera_settings WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    pub fn set_camera_settings(&self, state: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO camera_settings (id, state) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                params![state],
            )
            .map(drop)
        })
    }

    /// Records a take and its nodes (state `starting`, nodes `armed` until told otherwise).
    pub fn insert_take(&self, t: &NewTake<'_>) -> Result<i64, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO takes (name, state, command_id, created_ns, start_at_ns, allow_partial, override_clock, override_note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    t.name,
                    TakeState::Starting.as_str(),
                    t.command_id,
                    t.created_ns,
                    t.start_at_ns,
                    t.allow_partial,
                    t.override_clock,
                    t.override_note
                ],
            )?;
            let id = tx.last_insert_rowid();
            for n in &t.nodes {
                tx.execute(
                    "INSERT INTO take_nodes (take_id, address, name, state, offset_start_ns, rtt_start_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, n.address, n.name, TakeNodeState::Armed.as_str(), n.offset_ns, n.rtt_ns],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    pub fn set_take_state(&self, id: i64, state: TakeState) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE takes SET state = ?2 WHERE id = ?1",
                params![id, state.as_str()],
            )
            .map(drop)
        })
    }

    pub fn set_stop(&self, id: i64, stop_at_ns: UnixNanos) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE takes SET stop_at_ns = ?2 WHERE id = ?1",
                params![id, stop_at_ns],
            )
            .map(drop)
        })
    }

    pub fn set_node_state(
        &self,
        id: i64,
        address: &str,
        state: TakeNodeState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE take_nodes SET state = ?3, reason = ?4 WHERE take_id = ?1 AND address = ?2",
                params![id, address, state.as_str(), reason],
            )
            .map(drop)
        })
    }

    /// The controller's clock probe of a node at STOP (offset and round trip).
    pub fn set_node_offset_stop(
        &self,
        id: i64,
        address: &str,
        offset_ns: Option<i64>,
        rtt_ns: Option<i64>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE take_nodes SET offset_stop_ns = ?3, rtt_stop_ns = ?4 WHERE take_id = ?1 AND address = ?2",
                params![id, address, offset_ns, rtt_ns],
            )
            .map(drop)
        })
    }

    /// Records the take's sync verdict (`pass`/`fail`), or why no report could be made.
    pub fn set_sync(
        &self,
        id: i64,
        verdict: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE takes SET sync_verdict = ?2, sync_error = ?3 WHERE id = ?1",
                params![id, verdict, error],
            )
            .map(drop)
        })
    }

    pub fn set_download(
        &self,
        id: i64,
        address: &str,
        state: NodeDownload,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| mark_download(c, id, address, state, reason))
    }

    pub fn add_marker(
        &self,
        id: i64,
        at_ns: UnixNanos,
        note: &str,
        nodes: &[MarkerNodeView],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(nodes).expect("marker results serialise");
        self.with(|c| {
            c.execute(
                "INSERT INTO markers (take_id, at_ns, note, nodes_json) VALUES (?1, ?2, ?3, ?4)",
                params![id, at_ns, note, json],
            )
            .map(drop)
        })
    }

    /// A node's download under way, in one transaction (one synchronous commit: this is a
    /// download's bookkeeping before its transfer): the node's download state `downloading`,
    /// its manifest's files recorded ([`upsert_files`]), and every one of them not yet
    /// verified marked `state`.
    pub fn begin_transfer(
        &self,
        id: i64,
        address: &str,
        files: &[FileEntry],
        state: FileState,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            mark_download(&tx, id, address, NodeDownload::Downloading, None)?;
            upsert_files(&tx, id, address, files)?;
            mark_unverified_files(&tx, id, address, state, None)?;
            tx.commit()
        })
    }

    /// Records one file ([`upsert_files`]) as verified, in one transaction.
    pub fn set_file_verified(
        &self,
        id: i64,
        address: &str,
        file: &FileEntry,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            upsert_files(&tx, id, address, std::slice::from_ref(file))?;
            mark_file(&tx, id, address, &file.name, FileState::Verified, None)?;
            tx.commit()
        })
    }

    pub fn set_file_state(
        &self,
        id: i64,
        address: &str,
        name: &str,
        state: FileState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| mark_file(c, id, address, name, state, reason))
    }

    /// Marks every not-yet-verified file of a node's take with `state`.
    pub fn set_unverified_files(
        &self,
        id: i64,
        address: &str,
        state: FileState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| mark_unverified_files(c, id, address, state, reason))
    }

    /// Downloads a previous controller process left running are over: say so, so they
    /// can be started again.
    pub fn fail_interrupted_downloads(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE take_nodes SET download = 'failed', download_reason = 'interrupted by a controller restart; download again' WHERE download = 'downloading'",
                [],
            )?;
            c.execute(
                "UPDATE files SET state = 'pending', reason = NULL WHERE state = 'transferring'",
                [],
            )
            .map(drop)
        })
    }

    /// Records where deleting a node's copy of a take stands.
    pub fn set_node_deletion(
        &self,
        id: i64,
        address: &str,
        state: NodeDeletionState,
        reason: Option<&str>,
        deleted_ns: Option<UnixNanos>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE take_nodes SET node_deletion = ?3, node_deletion_reason = ?4, node_deleted_ns = ?5
                 WHERE take_id = ?1 AND address = ?2",
                params![id, address, state.as_str(), reason, deleted_ns],
            )
            .map(drop)
        })
    }

    /// Deletions a previous controller process was waiting on: the node may or may not
    /// have done it. Asking again is safe (the node answers a repeat with its first answer).
    pub fn fail_interrupted_deletions(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE take_nodes SET node_deletion = 'failed', node_deletion_reason = 'interrupted by a controller restart; delete from nodes again' WHERE node_deletion = 'deleting'",
                [],
            )
            .map(drop)
        })
    }

    /// True when a take that was not aborted or cancelled (nothing recorded) uses `name`.
    pub fn name_in_use(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM takes WHERE name = ?1 AND state NOT IN (?2, ?3)",
                params![
                    name,
                    TakeState::Aborted.as_str(),
                    TakeState::Cancelled.as_str()
                ],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        })
    }

    /// The take being started or recording, if any (at most one).
    pub fn current_take(&self) -> Result<Option<TakeView>, StoreError> {
        let id: Option<i64> = self.with(|c| {
            c.query_row(
                "SELECT id FROM takes WHERE state IN (?1, ?2) ORDER BY id DESC LIMIT 1",
                params![TakeState::Starting.as_str(), TakeState::Recording.as_str()],
                |r| r.get(0),
            )
            .optional()
        })?;
        id.map(|id| self.take(id)).transpose().map(Option::flatten)
    }

    /// The newest take called `name` that was not aborted or cancelled, else the newest
    /// aborted or cancelled one.
    pub fn take_by_name(&self, name: &str) -> Result<Option<TakeView>, StoreError> {
        let id: Option<i64> = self.with(|c| {
            c.query_row(
                "SELECT id FROM takes WHERE name = ?1 ORDER BY (state IN (?2, ?3)), id DESC LIMIT 1",
                params![name, TakeState::Aborted.as_str(), TakeState::Cancelled.as_str()],
                |r| r.get(0),
            )
            .optional()
        })?;
        id.map(|id| self.take(id)).transpose().map(Option::flatten)
    }

    /// Every take, newest first.
    pub fn list_takes(&self) -> Result<Vec<TakeView>, StoreError> {
        let ids: Vec<i64> = self.with(|c| {
            let mut st = c.prepare("SELECT id FROM takes ORDER BY id DESC")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.take(id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    pub fn take(&self, id: i64) -> Result<Option<TakeView>, StoreError> {
        self.with(|c| {
            let take = c
                .query_row(
                    "SELECT id, name, state, command_id, created_ns, start_at_ns, stop_at_ns, allow_partial, override_clock, override_note,
                            sync_verdict, sync_error
                     FROM takes WHERE id = ?1",
                    params![id],
                    |r| {
                        Ok(TakeView {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            state: parsed(r, 2)?,
                            command_id: r.get(3)?,
                            created_ns: r.get(4)?,
                            start_at_ns: r.get(5)?,
                            stop_at_ns: r.get(6)?,
                            allow_partial: r.get(7)?,
                            override_clock: r.get(8)?,
                            override_note: r.get(9)?,
                            nodes: Vec::new(),
                            markers: Vec::new(),
                            download: TakeDownload::None,
                            sync_verdict: r.get(10)?,
                            sync_error: r.get(11)?,
                            export: None,
                        })
                    },
                )
                .optional()?;
            let Some(mut take) = take else {
                return Ok(None);
            };
            let mut st = c.prepare(
                "SELECT address, name, state, reason, offset_start_ns, rtt_start_ns, offset_stop_ns, download, download_reason,
                        node_deletion, node_deletion_reason, node_deleted_ns, rtt_stop_ns
                 FROM take_nodes WHERE take_id = ?1 ORDER BY rowid",
            )?;
            take.nodes = st
                .query_map(params![id], |r| {
                    Ok(TakeNodeView {
                        address: r.get(0)?,
                        name: r.get(1)?,
                        state: parsed(r, 2)?,
                        reason: r.get(3)?,
                        offset_start_ns: r.get(4)?,
                        rtt_start_ns: r.get(5)?,
                        offset_stop_ns: r.get(6)?,
                        download: parsed(r, 7)?,
                        download_reason: r.get(8)?,
                        node_deletion: parsed(r, 9)?,
                        node_deletion_reason: r.get(10)?,
                        node_deleted_ns: r.get(11)?,
                        rtt_stop_ns: r.get(12)?,
                        files: Vec::new(),
                        progress: None,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare(
                "SELECT name, bytes, sha256, state, reason FROM files
                 WHERE take_id = ?1 AND address = ?2 ORDER BY name",
            )?;
            for node in &mut take.nodes {
                node.files = st
                    .query_map(params![id, node.address], |r| {
                        Ok(FileView {
                            name: r.get(0)?,
                            bytes: r.get::<_, i64>(1)? as u64,
                            sha256: r.get(2)?,
                            state: parsed(r, 3)?,
                            reason: r.get(4)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
            }
            let mut st = c.prepare(
                "SELECT at_ns, note, nodes_json FROM markers WHERE take_id = ?1 ORDER BY id",
            )?;
            take.markers = st
                .query_map(params![id], |r| {
                    let json: String = r.get(2)?;
                    Ok(MarkerView {
                        at_ns: r.get(0)?,
                        note: r.get(1)?,
                        nodes: serde_json::from_str(&json).unwrap_or_default(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            take.download = take_download_state(&take);
            Ok(Some(take))
        })
    }
}

/// Whether a node's part of a take has files worth downloading: it recorded something.
pub fn node_has_recording(node: &TakeNodeView) -> bool {
    matches!(
        node.state,
        TakeNodeState::Stopped | TakeNodeState::Failed | TakeNodeState::Recording
    )
}

/// The take-level download summary from its nodes' states.
fn take_download_state(take: &TakeView) -> TakeDownload {
    let nodes: Vec<&TakeNodeView> = take
        .nodes
        .iter()
        .filter(|n| node_has_recording(n))
        .collect();
    if take.state != TakeState::Stopped || nodes.is_empty() {
        return TakeDownload::None;
    }
    let count = |s: NodeDownload| nodes.iter().filter(|n| n.download == s).count();
    if count(NodeDownload::Downloading) > 0 {
        TakeDownload::Downloading
    } else if count(NodeDownload::Verified) == nodes.len() {
        TakeDownload::Verified
    } else if count(NodeDownload::Verified) > 0 {
        TakeDownload::Partial
    } else if count(NodeDownload::Failed) > 0 {
        TakeDownload::Failed
    } else {
        TakeDownload::None
    }
}

/// A state column read back as its enum; a name this camrig does not know is an error.
fn parsed<T>(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = UnknownState>,
{
    let text: String = r.get(index)?;
    text.parse().map_err(|e: UnknownState| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Sets a node's download state (and why, for a failure).
fn mark_download(
    c: &Connection,
    id: i64,
    address: &str,
    state: NodeDownload,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE take_nodes SET download = ?3, download_reason = ?4 WHERE take_id = ?1 AND address = ?2",
        params![id, address, state.as_str(), reason],
    )
    .map(drop)
}

/// Sets one file's state (and why, for a failure).
fn mark_file(
    c: &Connection,
    id: i64,
    address: &str,
    name: &str,
    state: FileState,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE files SET state = ?4, reason = ?5 WHERE take_id = ?1 AND address = ?2 AND name = ?3",
        params![id, address, name, state.as_str(), reason],
    )
    .map(drop)
}

/// Sets the state of every file of a node's take not verified yet.
fn mark_unverified_files(
    c: &Connection,
    id: i64,
    address: &str,
    state: FileState,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE files SET state = ?3, reason = ?4 WHERE take_id = ?1 AND address = ?2 AND state != 'verified'",
        params![id, address, state.as_str(), reason],
    )
    .map(drop)
}

/// Records the files a node's manifest lists, inside a transaction. A file already known
/// keeps its state if its size and hash are unchanged; otherwise it starts again as
/// `pending`.
fn upsert_files(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    address: &str,
    files: &[FileEntry],
) -> rusqlite::Result<()> {
    for f in files {
        let known: Option<(i64, String)> = tx
            .query_row(
                "SELECT bytes, sha256 FROM files WHERE take_id = ?1 AND address = ?2 AND name = ?3",
                params![id, address, f.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match known {
            Some((bytes, sha)) if bytes as u64 == f.bytes && sha == f.sha256 => {}
            _ => {
                tx.execute(
                    "INSERT OR REPLACE INTO files (take_id, address, name, bytes, sha256, state, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', NULL)",
                    params![id, address, f.name, f.bytes as i64, f.sha256],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_take<'a>(name: &'a str) -> NewTake<'a> {
        NewTake {
            name,
            command_id: "c1",
            created_ns: 1,
            start_at_ns: 2,
            allow_partial: false,
            override_clock: true,
            override_note: Some("node x unsynchronised".into()),
            nodes: vec![
                NewTakeNode {
                    address: "10.0.0.1".into(),
                    name: String::new(),
                    offset_ns: Some(12),
                    rtt_ns: Some(300),
                },
                NewTakeNode {
                    address: "10.0.0.2".into(),
                    name: "right".into(),
                    offset_ns: None,
                    rtt_ns: None,
                },
            ],
        }
    }

    #[test]
    fn a_take_survives_reopening_with_its_nodes_markers_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("takes.sqlite3");
        {
            let s = Store::open(&path).unwrap();
            let id = s.insert_take(&new_take("t1")).unwrap();
            s.set_take_state(id, TakeState::Recording).unwrap();
            s.add_marker(id, 5, "clap", &[]).unwrap();
            s.set_node_state(id, "10.0.0.2", TakeNodeState::Failed, Some("gone"))
                .unwrap();
            s.set_file_verified(
                id,
                "10.0.0.1",
                &FileEntry {
                    name: "a.h264".into(),
                    bytes: 3,
                    sha256: "ab".into(),
                },
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let t = s.current_take().unwrap().expect("current take");
        assert_eq!(t.name, "t1");
        assert!(t.override_clock);
        assert_eq!(t.markers[0].note, "clap");
        assert_eq!(t.nodes[0].offset_start_ns, Some(12));
        assert_eq!(t.nodes[1].state, TakeNodeState::Failed);
        assert_eq!(t.nodes[0].files[0].state, FileState::Verified);
        assert!(s.name_in_use("t1").unwrap());

        // Same size and hash again: the verified state is kept.
        s.begin_transfer(
            t.id,
            "10.0.0.1",
            &[FileEntry {
                name: "a.h264".into(),
                bytes: 3,
                sha256: "ab".into(),
            }],
            FileState::Transferring,
        )
        .unwrap();
        assert_eq!(
            s.take(t.id).unwrap().unwrap().nodes[0].files[0].state,
            FileState::Verified
        );

        s.set_take_state(t.id, TakeState::Aborted).unwrap();
        assert!(!s.name_in_use("t1").unwrap());
        assert!(s.current_take().unwrap().is_none());
        assert_eq!(s.list_takes().unwrap().len(), 1);
    }

    #[test]
    fn a_download_records_its_files_and_marks_the_unverified_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("takes.sqlite3")).unwrap();
        let id = s.insert_take(&new_take("t1")).unwrap();
        let file = |name: &str, sha: &str| FileEntry {
            name: name.into(),
            bytes: 3,
            sha256: sha.into(),
        };
        s.set_file_verified(id, "10.0.0.1", &file("a.mjpeg", "aa"))
            .unwrap();
        s.set_download(id, "10.0.0.1", NodeDownload::Failed, Some("link cut"))
            .unwrap();
        // The verified file with the same hash stays verified; a new one and a changed one
        // are transferring; the node's download is under way again, the old reason gone.
        s.begin_transfer(
            id,
            "10.0.0.1",
            &[file("a.mjpeg", "aa"), file("b.mjpeg", "bb")],
            FileState::Transferring,
        )
        .unwrap();
        let node = s.take(id).unwrap().unwrap().nodes.remove(0);
        assert_eq!(
            (node.download, node.download_reason),
            (NodeDownload::Downloading, None)
        );
        let states = |s: &Store| -> Vec<(String, FileState)> {
            let mut v: Vec<_> = s.take(id).unwrap().unwrap().nodes[0]
                .files
                .iter()
                .map(|f| (f.name.clone(), f.state))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            states(&s),
            [
                ("a.mjpeg".into(), FileState::Verified),
                ("b.mjpeg".into(), FileState::Transferring)
            ]
        );
        s.begin_transfer(
            id,
            "10.0.0.1",
            &[file("a.mjpeg", "a2")],
            FileState::Transferring,
        )
        .unwrap();
        assert_eq!(states(&s)[0], ("a.mjpeg".into(), FileState::Transferring));
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_takes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("takes.sqlite3");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!("{SCHEMA} PRAGMA user_version = 1;"))
                .unwrap();
            c.execute(
                "INSERT INTO takes (name, state, command_id, created_ns, start_at_ns, allow_partial, override_clock)
                 VALUES ('old', 'stopped', 'c', 1, 2, 0, 0)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO take_nodes (take_id, address, name, state, download) VALUES (1, '10.0.0.1', '', 'stopped', 'verified')",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let t = s.take_by_name("old").unwrap().expect("old take kept");
        assert_eq!(t.nodes[0].download, NodeDownload::Verified);
        assert_eq!(t.nodes[0].node_deletion, NodeDeletionState::None);
        s.set_node_deletion(t.id, "10.0.0.1", NodeDeletionState::Deleting, None, None)
            .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        s.fail_interrupted_deletions().unwrap();
        let n = &s.take(t.id).unwrap().unwrap().nodes[0];
        assert_eq!(n.node_deletion, NodeDeletionState::Failed);
        assert!(n.node_deletion_reason.as_deref().unwrap().contains("again"));
        s.set_node_deletion(t.id, "10.0.0.1", NodeDeletionState::Deleted, None, Some(7))
            .unwrap();
        assert_eq!(
            s.take(t.id).unwrap().unwrap().nodes[0].node_deleted_ns,
            Some(7)
        );
        let version: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn camera_settings_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("takes.sqlite3");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.camera_settings().unwrap(), None);
        s.set_camera_settings("{\"a\":1}").unwrap();
        s.set_camera_settings("{\"a\":2}").unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.camera_settings().unwrap().as_deref(), Some("{\"a\":2}"));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("takes.sqlite3");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
