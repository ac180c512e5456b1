//! One long-lived SSH connection per node (an OpenSSH ControlMaster), so a download's rsync
//! runs as one more session on it instead of a new connection. Key exchange, host key check
//! and login took 0.15 s on an idle two-core controller and up to 1.9 s with four nodes
//! connecting at once on a busy one (`ci/rig-bench` phase timings, `connect_ms`): the
//! largest fixed cost of a download, and the one thing in it that is not the link.
//!
//! The master is a supervised `ssh -N` child of the controller with exactly the options
//! downloads use (strict host keys from known_hosts, key only, keep-alives that end it on a
//! dead link), restarted with back-off whenever it ends (link cut, node rebooted, wrong host
//! key). It never decides whether a download works: rsync's ssh uses the master's socket
//! when it answers and otherwise connects by itself, with the same checks and messages.
//!
//! A master was checked against the known_hosts and key of when it connected. So that a
//! changed known_hosts (a node re-provisioned, a key revoked) is never bypassed by an older
//! connection, the socket's name carries a digest of the known_hosts content and the key
//! file's identity: after a change, downloads look for a socket that does not exist yet and
//! connect by themselves under the new rules, and the master is replaced within
//! [`CREDENTIALS_CHECK`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::config::{Config, NodeConfig, RsyncSource};
use crate::rsync::{ssh_options, SshSetup};

/// First wait before restarting an ended master; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A master that lived this long was healthy: the next restart waits [`FIRST_BACKOFF`] again.
const HEALTHY: Duration = Duration::from_secs(60);
/// How often a running master checks that known_hosts and the key are still what it used.
pub const CREDENTIALS_CHECK: Duration = Duration::from_secs(2);
/// How often a connecting master's socket is looked for.
const SOCKET_POLL: Duration = Duration::from_millis(10);
/// Unix socket paths hold 107 bytes; ssh binds `<path>.<16 random chars>` first.
const MAX_SOCKET_PATH: usize = 107 - 17;

/// The directory of the control sockets (private to the controller's user).
pub fn control_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ssh-control")
}

/// Node `node`'s control socket under the current known_hosts and key, or `None` when it
/// has no SSH source, the files cannot be read, or the path would not work (too long for a
/// socket, or with characters rsync's `-e` splitting would break).
pub fn control_path(config: &Config, node: &NodeConfig) -> Option<PathBuf> {
    socket_path(
        &config.data_dir,
        node,
        &credentials_digest(&config.known_hosts, &config.ssh_key)?,
    )
}

/// 12 hex digits of sha256 over the known_hosts content and the key file's identity (device,
/// inode, size, mtime: the private key itself is not read).
fn credentials_digest(known_hosts: &Path, key: &Path) -> Option<String> {
    let hosts = std::fs::read(known_hosts).ok()?;
    let k = std::fs::metadata(key).ok()?;
    let mut h = Sha256::new();
    h.update(&hosts);
    h.update(format!(
        "{}:{}:{}:{}.{}",
        k.dev(),
        k.ino(),
        k.size(),
        k.mtime(),
        k.mtime_nsec()
    ));
    Some(hex::encode(&h.finalize()[..6]))
}

fn socket_path(data_dir: &Path, node: &NodeConfig, digest: &str) -> Option<PathBuf> {
    if !matches!(node.rsync_source, RsyncSource::Remote { .. }) {
        return None;
    }
    let path = control_dir(data_dir).join(format!("{}-{digest}", node.address));
    let text = path.to_str()?;
    let usable = text.len() <= MAX_SOCKET_PATH
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '%');
    usable.then_some(path)
}

/// Where one node's master stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterState {
    Down,
    /// Started, not yet accepting sessions.
    Connecting,
    Up,
}

/// Every node's master state, for downloads to wait for a master that is connecting (one
/// handshake instead of two racing for the CPU, e.g. right after the controller started).
pub struct SshMasters {
    states: HashMap<String, watch::Sender<MasterState>>,
}

impl SshMasters {
    pub fn new(nodes: &[NodeConfig]) -> SshMasters {
        SshMasters {
            states: nodes
                .iter()
                .map(|n| (n.address.clone(), watch::channel(MasterState::Down).0))
                .collect(),
        }
    }

    fn set(&self, address: &str, state: MasterState) {
        if let Some(s) = self.states.get(address) {
            s.send_replace(state);
        }
    }

    /// Waits up to `limit` while `address`'s master is connecting; returns its state then.
    pub async fn settled(&self, address: &str, limit: Duration) -> MasterState {
        let Some(s) = self.states.get(address) else {
            return MasterState::Down;
        };
        let mut rx = s.subscribe();
        let settled = tokio::time::timeout(limit, rx.wait_for(|st| *st != MasterState::Connecting))
            .await
            .ok()
            .and_then(|r| r.ok().map(|st| *st));
        settled.unwrap_or_else(|| *s.borrow())
    }
}

/// Keeps node `node`'s master connection up until the task is dropped (which kills it).
pub async fn keep(config: Config, node: NodeConfig, masters: &SshMasters) {
    let RsyncSource::Remote {
        user, host, port, ..
    } = &node.rsync_source
    else {
        return std::future::pending().await;
    };
    if let Err(e) = create_private_dir(&control_dir(&config.data_dir)) {
        tracing::warn!(node = node.address, "no ssh master connection: {e}");
        return std::future::pending().await;
    }
    let ssh = SshSetup {
        key: &config.ssh_key,
        known_hosts: &config.known_hosts,
        control_path: None,
    };
    let base = ssh_options(&ssh, *port);
    let target = format!("{user}@{host}");

    let mut backoff = FIRST_BACKOFF;
    let mut was_up = true;
    loop {
        let Some(socket) = control_path(&config, &node) else {
            // known_hosts or the key is missing right now: downloads say so themselves.
            tokio::time::sleep(CREDENTIALS_CHECK).await;
            continue;
        };
        // A socket left by a master of a controller that was killed: that master (if still
        // alive) is told to go, and the name is freed for ours.
        end_master(&base, &socket, &target).await;
        let mut args = base.clone();
        args.extend(
            [
                format!("ControlPath={}", socket.display()),
                "ControlMaster=yes".into(),
                "ControlPersist=no".into(),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_owned(), o]),
        );
        args.extend(["-N".into(), "-T".into(), target.clone()]);
        let started = Instant::now();
        masters.set(&node.address, MasterState::Connecting);
        // Up once ssh has bound the socket (after host key check and login); ends when
        // known_hosts or the key changes.
        let supervise = async {
            let mut up = false;
            let mut checked = Instant::now();
            loop {
                let pause = if up { CREDENTIALS_CHECK } else { SOCKET_POLL };
                tokio::time::sleep(pause).await;
                if !up && socket.exists() {
                    up = true;
                    masters.set(&node.address, MasterState::Up);
                }
                if checked.elapsed() >= CREDENTIALS_CHECK {
                    checked = Instant::now();
                    if control_path(&config, &node).as_ref() != Some(&socket) {
                        break;
                    }
                }
            }
        };
        let ended = tokio::select! {
            ended = run_master(&args) => ended,
            () = supervise => {
                tracing::info!(node = node.address, "known_hosts or the ssh key changed: reconnecting the ssh master");
                masters.set(&node.address, MasterState::Down);
                backoff = FIRST_BACKOFF;
                let _ = std::fs::remove_file(&socket);
                continue;
            }
        };
        masters.set(&node.address, MasterState::Down);
        let _ = std::fs::remove_file(&socket);
        let lived = started.elapsed();
        let up_now = lived >= HEALTHY;
        if up_now {
            backoff = FIRST_BACKOFF;
        }
        // Said once per change, not every retry: a node that is off stays quiet.
        if was_up && !up_now {
            tracing::info!(
                node = node.address,
                "ssh master connection ended ({ended}); downloads connect by themselves until it is back"
            );
        } else {
            tracing::debug!(node = node.address, "ssh master connection ended ({ended})");
        }
        was_up = up_now;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one master until it ends; returns what it said.
async fn run_master(args: &[String]) -> String {
    let child = tokio::process::Command::new("ssh")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("cannot run ssh: {e}"),
    };
    let mut stderr = child.stderr.take().expect("stderr piped");
    let mut text = String::new();
    let (status, _) = tokio::join!(child.wait(), stderr.read_to_string(&mut text));
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    match status {
        Ok(s) if last.is_empty() => s.to_string(),
        Ok(s) => format!("{s}: {last}"),
        Err(e) => e.to_string(),
    }
}

/// Asks a master on `socket` (one a killed controller left running) to exit, and frees the
/// name.
async fn end_master(base: &[String], socket: &Path, target: &str) {
    if !socket.exists() {
        return;
    }
    let _ = tokio::process::Command::new("ssh")
        .args(base)
        .arg("-o")
        .arg(format!("ControlPath={}", socket.display()))
        .args(["-O", "exit", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await;
    let _ = std::fs::remove_file(socket);
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(source: RsyncSource) -> NodeConfig {
        NodeConfig {
            address: "192.168.1.101".into(),
            port: 8080,
            name: String::new(),
            rsync_source: source,
        }
    }

    #[test]
    fn sockets_only_for_ssh_nodes_with_usable_paths() {
        let data = Path::new("/var/lib/camrig-controller");
        let remote = RsyncSource::Remote {
            user: "camrig".into(),
            host: "192.168.1.101".into(),
            port: 22,
            path: "/var/lib/camrig/recordings".into(),
        };
        assert_eq!(
            socket_path(data, &node(remote.clone()), "0123456789ab"),
            Some(PathBuf::from(
                "/var/lib/camrig-controller/ssh-control/192.168.1.101-0123456789ab"
            ))
        );
        assert_eq!(
            socket_path(data, &node(RsyncSource::Local("/r".into())), "0123456789ab"),
            None
        );
        assert_eq!(
            socket_path(Path::new("/data with space"), &node(remote.clone()), "0"),
            None
        );
        let long = PathBuf::from("/").join("x".repeat(100));
        assert_eq!(socket_path(&long, &node(remote), "0"), None);
    }

    #[tokio::test]
    async fn downloads_wait_for_a_connecting_master_only() {
        let masters =
            std::sync::Arc::new(SshMasters::new(&[node(RsyncSource::Local("/r".into()))]));
        let a = "192.168.1.101";
        let limit = Duration::from_secs(5);
        assert_eq!(masters.settled(a, limit).await, MasterState::Down);
        assert_eq!(masters.settled("10.9.9.9", limit).await, MasterState::Down);
        masters.set(a, MasterState::Connecting);
        let m = masters.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            m.set(a, MasterState::Up);
        });
        assert_eq!(masters.settled(a, limit).await, MasterState::Up);
        masters.set(a, MasterState::Connecting);
        let t = Instant::now();
        let st = masters.settled(a, Duration::from_millis(100)).await;
        assert_eq!(st, MasterState::Connecting);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_changed_known_hosts_names_another_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (hosts, key) = (dir.path().join("known_hosts"), dir.path().join("id"));
        std::fs::write(&hosts, "10.0.0.1 ssh-ed25519 AAAA1\n").unwrap();
        std::fs::write(&key, "private").unwrap();
        let first = credentials_digest(&hosts, &key).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(credentials_digest(&hosts, &key).unwrap(), first);
        std::fs::write(&hosts, "10.0.0.1 ssh-ed25519 AAAA2\n").unwrap();
        assert_ne!(credentials_digest(&hosts, &key).unwrap(), first);
        assert_eq!(credentials_digest(&dir.path().join("missing"), &key), None);
    }
}
