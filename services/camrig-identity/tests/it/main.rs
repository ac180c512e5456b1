//! The `camrig-identity` binary as the boot unit and a user run it: applying identities under
//! a temporary root (real files, real ssh-keygen), the error state, `check` and the systemd
//! generator.

mod apply;
mod check;
mod generate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary root with the passwd/group entries the services' packages would create.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn create() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let uid = nix_ids("-u");
        let gid = nix_ids("-g");
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\ncamrig:x:{uid}:{gid}::/var/lib/camrig:/bin/sh\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            format!("root:x:0:\ncamrig:x:{gid}:\n"),
        )
        .unwrap();
        Root { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// Writes camrig.toml (outside the root, like the FAT partition) and runs `apply`.
    pub fn apply(&self, identity: Option<&str>, image_role: &str) -> Output {
        let file = self.dir.path().join("boot-camrig.toml");
        match identity {
            Some(text) => std::fs::write(&file, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        run(&[
            "apply",
            "--identity",
            file.to_str().unwrap(),
            "--root",
            self.dir.path().to_str().unwrap(),
            "--image-role",
            image_role,
        ])
    }
}

fn nix_ids(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camrig-identity"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh ed25519 key pair from ssh-keygen: (private, public line).
pub fn keypair(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned(),
    )
}

/// A node identity on QEMU's user network, with the given controller key.
pub fn node_identity(controller_key: &str, extra: &str) -> String {
    format!(
        r#"format = 1
role = "node"
hostname = "camrig-node-1"
[network]
address = "10.0.2.15/24"
gateway = "10.0.2.2"
[rig]
subnet = "10.0.2.0/24"
controller = "10.0.2.2"
token = "test-token-0123456789"
[ssh]
authorized_keys = ["{controller_key}"]
controller_key = "{controller_key}"
{extra}
[node.camera]
source = "synthetic"
"#
    )
}
