//! Writing a [`Plan`] under a root directory (`/` at boot, a temporary directory in tests):
//! each file temp → fsync → rename with its mode and owner, the SSH host key kept, replaced
//! or generated, and the hostname set. Owners are looked up in the root's own
//! `etc/passwd` and `etc/group`, so a plan applies the same way to an image tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::render::{HostKey, Plan, HOST_KEY_PATH};

/// Why applying a plan failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("user or group '{name}' is not in {file}; is the camrig package installed?")]
    NoSuchOwner { name: String, file: PathBuf },
    #[error("generating the ssh host key with ssh-keygen: {0}")]
    Keygen(String),
    #[error("setting the hostname: {0}")]
    Hostname(nix::Error),
}

/// How to apply a plan.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Prefix of every path (`/` on a device).
    pub root: PathBuf,
    /// Set the kernel hostname (only on the device itself).
    pub set_hostname: bool,
    /// The ssh-keygen program.
    pub ssh_keygen: PathBuf,
}

/// What applying did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub files_written: usize,
    pub host_key: &'static str,
}

/// `root` joined with an absolute path.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Finds `name`'s numeric id in a passwd- or group-format file.
fn lookup_id(file: &Path, name: &str) -> Result<u32, ApplyError> {
    let missing = || ApplyError::NoSuchOwner {
        name: name.to_owned(),
        file: file.to_owned(),
    };
    let text = fs::read_to_string(file).map_err(|_| missing())?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let user = fields.next()?;
            let id = fields.nth(1)?;
            (user == name).then(|| id.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(missing)
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` atomically with `mode` and (if given) owner ids.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), ApplyError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    camrig_fs::write_atomic_with(
        path,
        contents,
        camrig_fs::Access {
            mode: Some(mode),
            owner,
        },
    )
    .map_err(write_err(path))
}

/// Applies a plan.
pub fn apply(plan: &Plan, opts: &ApplyOptions) -> Result<Report, ApplyError> {
    let mut report = Report::default();
    for file in &plan.files {
        let owner = match file.owner {
            None => None,
            Some(name) => Some((
                lookup_id(&under(&opts.root, Path::new("/etc/passwd")), name)?,
                lookup_id(&under(&opts.root, Path::new("/etc/group")), name)?,
            )),
        };
        write_atomic(
            &under(&opts.root, &file.path),
            file.contents.as_bytes(),
            file.mode,
            owner,
        )?;
        report.files_written += 1;
    }
    report.host_key = host_key(plan, opts)?;
    if opts.set_hostname {
        nix::unistd::sethostname(&plan.hostname).map_err(ApplyError::Hostname)?;
    }
    Ok(report)
}

/// Puts the SSH host key in place; returns what was done.
fn host_key(plan: &Plan, opts: &ApplyOptions) -> Result<&'static str, ApplyError> {
    let private = under(&opts.root, Path::new(HOST_KEY_PATH));
    let public = private.with_extension("pub");
    match &plan.host_key {
        HostKey::Provisioned {
            private: key,
            public: line,
        } => {
            if fs::read_to_string(&private).ok().as_deref() == Some(key.as_str())
                && fs::read_to_string(&public).ok().as_deref() == Some(line.as_str())
            {
                return Ok("provisioned, unchanged");
            }
            write_atomic(&public, line.as_bytes(), 0o644, None)?;
            write_atomic(&private, key.as_bytes(), 0o600, None)?;
            Ok("provisioned, written")
        }
        HostKey::GenerateIfMissing => {
            if private.exists() && public.exists() {
                return Ok("kept from the data partition");
            }
            let dir = private.parent().unwrap_or(Path::new("/"));
            fs::create_dir_all(dir).map_err(write_err(dir))?;
            let tmp = dir.join(".ssh_host_ed25519_key.new");
            let tmp_pub = tmp.with_extension("new.pub");
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&tmp_pub);
            let out = Command::new(&opts.ssh_keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("root@{}", plan.hostname))
                .arg("-f")
                .arg(&tmp)
                .output()
                .map_err(|e| ApplyError::Keygen(e.to_string()))?;
            if !out.status.success() {
                return Err(ApplyError::Keygen(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ));
            }
            // Public first: a private key without its .pub would be regenerated next boot.
            fs::rename(&tmp_pub, &public).map_err(write_err(&public))?;
            fs::rename(&tmp, &private).map_err(write_err(&private))?;
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write_err(dir))?;
            Ok("generated")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn lookup_finds_ids_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\ncamrig:x:998:997::/var/lib/camrig:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(lookup_id(&passwd, "camrig").unwrap(), 998);
        assert!(matches!(
            lookup_id(&passwd, "nobody"),
            Err(ApplyError::NoSuchOwner { .. })
        ));
    }

    #[test]
    fn under_joins_absolute_paths() {
        assert_eq!(
            under(Path::new("/tmp/x"), Path::new("/run/camrig/token")),
            PathBuf::from("/tmp/x/run/camrig/token")
        );
        assert_eq!(
            under(Path::new("/"), Path::new("/run")),
            PathBuf::from("/run")
        );
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret");
        write_atomic(&path, b"one", 0o600, None).unwrap();
        write_atomic(&path, b"two", 0o640, None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
