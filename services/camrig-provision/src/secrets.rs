//! The rig's secrets, kept in a local state directory: the rig token, the controller's SSH
//! key pair (it logs in to the nodes to download), every device's SSH host key (so the
//! controller's known_hosts is written before any card boots: no trust on first use), and
//! the known_hosts files derived from them.
//!
//! Layout (directory 0700, every file 0600):
//!
//! ```text
//! state.toml                           format version and the rig this directory belongs to
//! token                                the rig token (controller → nodes)
//! api-token                            the controller's API token (CLI, scripts, one-click login)
//! operator-password.hash               the operator password's Argon2 hash (the password
//!                                      itself is printed once when made, never stored)
//! controller-key/id_ed25519{,.pub}     the controller's login key
//! host-keys/<hostname>/ssh_host_ed25519_key{,.pub}
//! known_hosts                          the controller's: every node's address and host key
//! admin_known_hosts                    every device's, for an administrator's ssh
//! retired/<UTC time>/…                 what `rotate` replaced (never deleted by this tool)
//! ```
//!
//! Re-running reuses everything present and only creates what is missing; a key pair is
//! replaced only by [`StateDir::rotate`]. Keys are made by `ssh-keygen` (run with an argv,
//! never a shell) into a fresh directory that is renamed into place, so a crash never leaves
//! half a pair.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::tool::{self, ToolFailure};

/// Version of the state directory's layout.
pub const STATE_FORMAT: u32 = 1;

const STATE_FILE: &str = "state.toml";
const TOKEN_FILE: &str = "token";
pub const API_TOKEN_FILE: &str = "api-token";
const PASSWORD_HASH_FILE: &str = "operator-password.hash";
const CONTROLLER_KEY_DIR: &str = "controller-key";
const CONTROLLER_KEY: &str = "id_ed25519";
const HOST_KEYS_DIR: &str = "host-keys";
const HOST_KEY: &str = "ssh_host_ed25519_key";
pub const KNOWN_HOSTS: &str = "known_hosts";
pub const ADMIN_KNOWN_HOSTS: &str = "admin_known_hosts";
const RETIRED_DIR: &str = "retired";

/// An OpenSSH key pair: the private key file's text and the public line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

impl KeyPair {
    /// The public key without its comment (`ssh-ed25519 AAAA…`), as known_hosts wants it.
    pub fn public_key(&self) -> String {
        self.public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Everything secret a rig's cards carry.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub token: String,
    /// The controller's API token.
    pub api_token: String,
    /// The operator password's Argon2 hash.
    pub password_hash: String,
    pub controller_key: KeyPair,
    /// Host key per device hostname (the controller's and every node's).
    pub host_keys: BTreeMap<String, KeyPair>,
}

/// A secret `rotate` can replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    Token,
    ApiToken,
    Password,
    ControllerKey,
    HostKey(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "state directory {} is open to other users (mode {mode:03o}); it holds the rig's private keys: run `chmod 700 {}`",
        path.display(), path.display()
    )]
    OpenDirectory { path: PathBuf, mode: u32 },
    #[error(
        "{} is readable by other users (mode {mode:03o}); run `chmod 600 {}`",
        path.display(), path.display()
    )]
    OpenFile { path: PathBuf, mode: u32 },
    #[error("{} is not a directory; give --state a directory (it is created if missing)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: {problem}", path.display())]
    StateFile { path: PathBuf, problem: String },
    #[error(
        "state directory {} belongs to rig '{state}', but the site file describes rig '{site}'; give --state the directory of rig '{site}' (or a new one)",
        path.display()
    )]
    OtherRig {
        path: PathBuf,
        state: String,
        site: String,
    },
    #[error("cannot run {program}: {source}; install openssh-client")]
    KeygenMissing { program: String, source: io::Error },
    #[error("{command} failed: {stderr}")]
    Keygen { command: String, stderr: String },
    #[error(
        "{} does not match its private key; the pair was changed by hand: {fix}",
        path.display()
    )]
    Mismatch { path: PathBuf, fix: String },
    #[error("{} is missing while its public key is present: {fix}", path.display())]
    PrivateKeyMissing { path: PathBuf, fix: String },
    #[error("{}: the rig token is too short or has spaces; {fix}", path.display())]
    BadToken { path: PathBuf, fix: String },
    #[error("{}: not an Argon2 password hash; run `rotate --password` to make a new password", path.display())]
    BadPasswordHash { path: PathBuf },
    #[error("no device named '{name}' in the site; devices: {known}")]
    UnknownDevice { name: String, known: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SecretsError + 'a {
    move |source| SecretsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    rig: String,
}

/// An opened (and, if new, created) state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    ssh_keygen: PathBuf,
}

impl StateDir {
    /// Opens the state directory of rig `rig`, creating it (mode 0700) if missing. Refuses a
    /// directory other users can read or one that belongs to another rig.
    pub fn open(root: &Path, rig: &str, ssh_keygen: &Path) -> Result<StateDir, SecretsError> {
        match fs::metadata(root) {
            Ok(meta) if !meta.is_dir() => {
                return Err(SecretsError::NotADirectory {
                    path: root.to_owned(),
                })
            }
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretsError::OpenDirectory {
                        path: root.to_owned(),
                        mode,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                private_dir(root)?;
            }
            Err(e) => return Err(io_err("read", root)(e)),
        }
        let dir = StateDir {
            root: root.to_owned(),
            ssh_keygen: ssh_keygen.to_owned(),
        };
        let state_path = root.join(STATE_FILE);
        match fs::read_to_string(&state_path) {
            Ok(text) => {
                let state: StateFile =
                    toml::from_str(&text).map_err(|e| SecretsError::StateFile {
                        path: state_path.clone(),
                        problem: format!("{}; this is not a camrig state file", e.message()),
                    })?;
                if state.format != STATE_FORMAT {
                    return Err(SecretsError::StateFile {
                        path: state_path,
                        problem: format!(
                            "format {} is not the format this tool reads ({STATE_FORMAT}); use the camrig version that made it",
                            state.format
                        ),
                    });
                }
                if state.rig != rig {
                    return Err(SecretsError::OtherRig {
                        path: root.to_owned(),
                        state: state.rig,
                        site: rig.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let text = format!(
                    "# camrig rig state: secrets of rig '{rig}'. Keep this directory private and backed up.\nformat = {STATE_FORMAT}\nrig = \"{rig}\"\n"
                );
                camrig_fs::write_atomic_with(
                    &state_path,
                    text.as_bytes(),
                    camrig_fs::Access::mode(0o600),
                )
                .map_err(io_err("write", &state_path))?;
            }
            Err(e) => return Err(io_err("read", &state_path)(e)),
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.root.join(KNOWN_HOSTS)
    }

    pub fn admin_known_hosts_path(&self) -> PathBuf {
        self.root.join(ADMIN_KNOWN_HOSTS)
    }

    /// Where a device's host key pair lives.
    pub fn host_key_path(&self, hostname: &str) -> PathBuf {
        self.root.join(HOST_KEYS_DIR).join(hostname).join(HOST_KEY)
    }

    pub fn controller_key_path(&self) -> PathBuf {
        self.root.join(CONTROLLER_KEY_DIR).join(CONTROLLER_KEY)
    }

    /// Loads every secret the devices need, creating the missing ones. Returns the secrets
    /// and a line per secret created.
    pub fn ensure(
        &self,
        rig: &str,
        devices: &[String],
    ) -> Result<(Secrets, Vec<String>), SecretsError> {
        let mut created = Vec::new();
        let token = self.ensure_token(TOKEN_FILE, "rig token", "rotate --token", &mut created)?;
        let api_token = self.ensure_token(
            API_TOKEN_FILE,
            "controller API token",
            "rotate --api-token",
            &mut created,
        )?;
        let hash_path = self.root.join(PASSWORD_HASH_FILE);
        let password_hash = match read_private(&hash_path)? {
            Some(text) => {
                let hash = text.trim().to_owned();
                if camrig_protocol::operator_password::check_hash(&hash).is_err() {
                    return Err(SecretsError::BadPasswordHash { path: hash_path });
                }
                hash
            }
            None => {
                let (password, hash) = self.new_password()?;
                created.push(format!(
                    "operator password for the web UI: {password}\n    (shown this once; write it down now: only its hash is kept, in {})",
                    hash_path.display()
                ));
                hash
            }
        };
        let controller_key = self.ensure_pair(
            &self.controller_key_path(),
            &format!("camrig-controller@{rig}"),
            "rotate --controller-key",
            &mut created,
        )?;
        let mut host_keys = BTreeMap::new();
        for name in devices {
            let pair = self.ensure_pair(
                &self.host_key_path(name),
                &format!("root@{name}"),
                &format!("rotate --host-key {name}"),
                &mut created,
            )?;
            host_keys.insert(name.clone(), pair);
        }
        Ok((
            Secrets {
                token,
                api_token,
                password_hash,
                controller_key,
                host_keys,
            },
            created,
        ))
    }

    /// Replaces the given secrets with new ones, moving the old files to
    /// `retired/<UTC time>/`. Returns a line per secret replaced.
    pub fn rotate(
        &self,
        rig: &str,
        devices: &[String],
        what: &[Rotation],
    ) -> Result<Vec<String>, SecretsError> {
        for r in what {
            if let Rotation::HostKey(name) = r {
                if !devices.contains(name) {
                    return Err(SecretsError::UnknownDevice {
                        name: name.clone(),
                        known: devices.join(", "),
                    });
                }
            }
        }
        let retired = self.retired_dir()?;
        let mut done = Vec::new();
        for r in what {
            let (path, label) = match r {
                Rotation::Token => (self.root.join(TOKEN_FILE), "rig token".to_owned()),
                Rotation::ApiToken => (
                    self.root.join(API_TOKEN_FILE),
                    "controller API token".to_owned(),
                ),
                Rotation::Password => (
                    self.root.join(PASSWORD_HASH_FILE),
                    "operator password".to_owned(),
                ),
                Rotation::ControllerKey => (
                    self.root.join(CONTROLLER_KEY_DIR),
                    "controller key".to_owned(),
                ),
                Rotation::HostKey(name) => (
                    self.root.join(HOST_KEYS_DIR).join(name),
                    format!("host key of {name}"),
                ),
            };
            if path.exists() {
                let rel = path.strip_prefix(&self.root).unwrap_or(&path);
                let dest = retired.join(rel);
                if let Some(parent) = dest.parent() {
                    private_dir(parent)?;
                }
                fs::rename(&path, &dest).map_err(io_err("retire", &path))?;
            }
            match r {
                Rotation::Token => {
                    self.new_token(TOKEN_FILE)?;
                }
                Rotation::ApiToken => {
                    self.new_token(API_TOKEN_FILE)?;
                }
                Rotation::Password => {
                    let (password, _) = self.new_password()?;
                    done.push(format!(
                        "{label} (old one kept in {}); the new operator password for the web UI: {password} (shown this once; write it down now)",
                        retired.display()
                    ));
                    continue;
                }
                Rotation::ControllerKey => {
                    self.generate_pair(
                        &self.controller_key_path(),
                        &format!("camrig-controller@{rig}"),
                    )?;
                }
                Rotation::HostKey(name) => {
                    self.generate_pair(&self.host_key_path(name), &format!("root@{name}"))?;
                }
            }
            done.push(format!("{label} (old one kept in {})", retired.display()));
        }
        Ok(done)
    }

    /// Writes a derived file (known_hosts) if its contents changed.
    pub fn write_derived(&self, name: &str, contents: &str) -> Result<bool, SecretsError> {
        let path = self.root.join(name);
        if fs::read_to_string(&path).ok().as_deref() == Some(contents) {
            return Ok(false);
        }
        camrig_fs::write_atomic_with(&path, contents.as_bytes(), camrig_fs::Access::mode(0o600))
            .map_err(io_err("write", &path))?;
        Ok(true)
    }

    fn retired_dir(&self) -> Result<PathBuf, SecretsError> {
        let base = self.root.join(RETIRED_DIR);
        private_dir(&base)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        // Two rotations within a second get their own directories.
        for n in 0.. {
            let dir = if n == 0 {
                base.join(&stamp)
            } else {
                base.join(format!("{stamp}-{n}"))
            };
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &dir)(e)),
            }
        }
        unreachable!("the loop above only ends by returning")
    }

    /// Loads the token in `name`, making it if missing.
    fn ensure_token(
        &self,
        name: &str,
        label: &str,
        rotate_hint: &str,
        created: &mut Vec<String>,
    ) -> Result<String, SecretsError> {
        let path = self.root.join(name);
        match read_private(&path)? {
            Some(text) => {
                let token = text.trim().to_owned();
                if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(SecretsError::BadToken {
                        path,
                        fix: format!("run `{rotate_hint}` to make a new one"),
                    });
                }
                Ok(token)
            }
            None => {
                let token = self.new_token(name)?;
                created.push(format!("{label} ({})", path.display()));
                Ok(token)
            }
        }
    }

    /// A new operator password (16 characters of an unambiguous alphabet, ~80 bits) whose
    /// hash is written; the password itself is returned to be shown once.
    fn new_password(&self) -> Result<(String, String), SecretsError> {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io_err("read", Path::new("/dev/urandom")))?;
        let password: String = bytes[..16]
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        let salt: [u8; 16] = bytes[16..].try_into().expect("16 bytes");
        let hash = camrig_protocol::operator_password::hash(&password, &salt)
            .expect("a 16-character password is accepted");
        let path = self.root.join(PASSWORD_HASH_FILE);
        camrig_fs::write_atomic_with(
            &path,
            format!("{hash}\n").as_bytes(),
            camrig_fs::Access::mode(0o600),
        )
        .map_err(io_err("write", &path))?;
        Ok((password, hash))
    }

    fn new_token(&self, name: &str) -> Result<String, SecretsError> {
        let mut bytes = [0u8; 24];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io_err("read", Path::new("/dev/urandom")))?;
        let token = hex::encode(bytes);
        let path = self.root.join(name);
        camrig_fs::write_atomic_with(
            &path,
            format!("{token}\n").as_bytes(),
            camrig_fs::Access::mode(0o600),
        )
        .map_err(io_err("write", &path))?;
        Ok(token)
    }

    /// Loads the pair at `private` (and `private.pub`), making it if neither exists.
    fn ensure_pair(
        &self,
        private: &Path,
        comment: &str,
        rotate_hint: &str,
        created: &mut Vec<String>,
    ) -> Result<KeyPair, SecretsError> {
        let public = pub_path(private);
        let fix = format!("run `{rotate_hint}` to replace it with a new pair");
        match (read_private(private)?, read_private(&public)?) {
            (Some(priv_text), Some(pub_text)) => {
                let derived = self.public_of(private)?;
                let pair = KeyPair {
                    private: priv_text,
                    public: pub_text.trim().to_owned(),
                };
                if derived
                    .split_whitespace()
                    .take(2)
                    .ne(pair.public.split_whitespace().take(2))
                {
                    return Err(SecretsError::Mismatch { path: public, fix });
                }
                Ok(pair)
            }
            (Some(priv_text), None) => {
                // The public half is derived data; restoring it changes no key.
                let derived = self.public_of(private)?;
                let line = format!("{} {comment}\n", derived.trim());
                camrig_fs::write_atomic_with(
                    &public,
                    line.as_bytes(),
                    camrig_fs::Access::mode(0o600),
                )
                .map_err(io_err("write", &public))?;
                Ok(KeyPair {
                    private: priv_text,
                    public: line.trim().to_owned(),
                })
            }
            (None, Some(_)) => Err(SecretsError::PrivateKeyMissing {
                path: private.to_owned(),
                fix,
            }),
            (None, None) => {
                let pair = self.generate_pair(private, comment)?;
                created.push(format!("{comment} key ({})", private.display()));
                Ok(pair)
            }
        }
    }

    /// Makes a new pair in a fresh directory next to the final one and renames it into
    /// place (the final directory must not exist).
    fn generate_pair(&self, private: &Path, comment: &str) -> Result<KeyPair, SecretsError> {
        let dir = private.parent().expect("key paths are inside a directory");
        let parent = dir.parent().expect("key directories are inside the state");
        private_dir(parent)?;
        let tmp = parent.join(format!(
            ".new-{}-{}",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        private_dir(&tmp)?;
        let result = (|| {
            let key_name = private.file_name().expect("key paths name a file");
            let tmp_key = tmp.join(key_name);
            let mut cmd = Command::new(&self.ssh_keygen);
            cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&tmp_key)
                .stdin(Stdio::null());
            run(&mut cmd, &self.ssh_keygen)?;
            let tmp_pub = pub_path(&tmp_key);
            // ssh-keygen leaves the public half world-readable; nothing here is.
            for f in [&tmp_key, &tmp_pub] {
                fs::set_permissions(f, fs::Permissions::from_mode(0o600))
                    .map_err(io_err("chmod", f))?;
                fs::File::open(f)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("sync", f))?;
            }
            camrig_fs::sync_dir(&tmp).map_err(io_err("sync", &tmp))?;
            let pair = KeyPair {
                private: fs::read_to_string(&tmp_key).map_err(io_err("read", &tmp_key))?,
                public: fs::read_to_string(&tmp_pub)
                    .map_err(io_err("read", &tmp_pub))?
                    .trim()
                    .to_owned(),
            };
            fs::rename(&tmp, dir).map_err(io_err("rename into place", dir))?;
            camrig_fs::sync_dir(parent).map_err(io_err("sync", parent))?;
            Ok(pair)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// The public key line of a private key file (`ssh-keygen -y`).
    fn public_of(&self, private: &Path) -> Result<String, SecretsError> {
        let mut cmd = Command::new(&self.ssh_keygen);
        cmd.arg("-y").arg("-f").arg(private).stdin(Stdio::null());
        run(&mut cmd, &self.ssh_keygen)
    }
}

fn pub_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Creates a directory (and missing parents) with mode 0700.
fn private_dir(path: &Path) -> Result<(), SecretsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("create", path))?;
    // The umask may have widened nothing but can narrow; set exactly 0700 either way.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", path))
}

/// Reads a secret file, refusing one that others can read. `None`: it does not exist.
fn read_private(path: &Path) -> Result<Option<String>, SecretsError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::OpenFile {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read_to_string(path)
        .map(Some)
        .map_err(io_err("read", path))
}

/// Runs a command, returning its stdout; a failure carries the command line and stderr.
fn run(cmd: &mut Command, program: &Path) -> Result<String, SecretsError> {
    tool::stdout_of(cmd).map_err(|failure| match failure {
        ToolFailure::NotStarted(source) => SecretsError::KeygenMissing {
            program: program.display().to_string(),
            source,
        },
        ToolFailure::Failed { command, stderr } => SecretsError::Keygen { command, stderr },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_drops_the_comment() {
        let pair = KeyPair {
            private: String::new(),
            public: "ssh-ed25519 AAAAC3Nza root@camrig-node-101".into(),
        };
        assert_eq!(pair.public_key(), "ssh-ed25519 AAAAC3Nza");
    }

    #[test]
    fn pub_path_appends_the_suffix() {
        assert_eq!(
            pub_path(Path::new("/s/host-keys/n/ssh_host_ed25519_key")),
            Path::new("/s/host-keys/n/ssh_host_ed25519_key.pub")
        );
    }
}
