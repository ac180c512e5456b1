//! SSH for the rig, set up as the appliance images provision it: the controller's key pair
//! generated once, each node's host key generated for it, a real `sshd` per node namespace
//! (its own config, key-only login, no passwords), and a known_hosts file pre-filled with every
//! node's host key so clients run with `StrictHostKeyChecking=yes` and never trust on first use.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, RigError};
use crate::netns::{run, Netns};
use crate::process::Process;

pub const SSH_PORT: u16 = 22;

/// An ed25519 key pair on disk.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub public_line: String,
}

impl KeyPair {
    pub fn generate(path: &Path, comment: &str) -> Result<KeyPair> {
        let p = path.to_str().expect("utf-8 scratch path");
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", p],
        )?;
        let public_line = std::fs::read_to_string(path.with_extension("pub"))
            .map_err(RigError::io("reading a generated public key"))?
            .trim()
            .to_owned();
        Ok(KeyPair {
            private: path.to_owned(),
            public_line,
        })
    }

    /// The `type base64` part, without the comment, as known_hosts wants it.
    pub fn public_key(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The text of a known_hosts file listing each address with its host key.
pub fn known_hosts(entries: &[(Ipv4Addr, String)]) -> String {
    let mut out = String::new();
    for (ip, key) in entries {
        writeln!(out, "{ip} {key}").expect("writing to a string");
    }
    out
}

/// An sshd_config for one node: listens only on the node's rig address, root may log in with
/// a key and nothing else. `StrictModes no` because the scratch tree lives under /tmp, whose
/// mode sshd's ownership walk refuses. Sessions get `home` as HOME: a node's rsync user has
/// an empty home, while the rig logs in as this machine's root, whose shell startup files
/// (Debian's bash reads ~/.bashrc for every ssh command) may run anything, e.g. pyenv's
/// init, measured at 0.4–0.9 s per session, which would be charged to every download.
pub fn sshd_config(
    listen: Ipv4Addr,
    host_key: &Path,
    authorized_keys: &Path,
    home: &Path,
) -> String {
    format!(
        "ListenAddress {listen}:{SSH_PORT}\n\
         HostKey {}\n\
         AuthorizedKeysFile {}\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers root\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         UseDNS no\n\
         PidFile none\n\
         LogLevel VERBOSE\n\
         MaxStartups 100:30:200\n\
         SetEnv HOME={}\n",
        host_key.display(),
        authorized_keys.display(),
        home.display(),
    )
}

/// A running sshd inside a node namespace.
#[derive(Debug)]
pub struct SshServer {
    pub host_key: KeyPair,
    pub process: Process,
}

impl SshServer {
    /// Generates the host key, writes the config and authorized_keys, starts `sshd -D` in the
    /// namespace and waits until it accepts connections.
    pub fn start(ns: &Netns, dir: &Path, ip: Ipv4Addr, client: &KeyPair) -> Result<SshServer> {
        std::fs::create_dir_all(dir).map_err(RigError::io("creating the sshd directory"))?;
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").map_err(RigError::io("creating /run/sshd"))?;
        let host_key = KeyPair::generate(&dir.join("ssh_host_ed25519_key"), &format!("node-{ip}"))?;
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", client.public_line))
            .map_err(RigError::io("writing authorized_keys"))?;
        let config = dir.join("sshd_config");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(RigError::io("creating the ssh user's home"))?;
        std::fs::write(
            &config,
            sshd_config(ip, &host_key.private, &authorized, &home),
        )
        .map_err(RigError::io("writing sshd_config"))?;
        let mut cmd: Command = ns.command("/usr/sbin/sshd");
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let process = Process::spawn(cmd, dir.join("sshd.log"))?;
        crate::wait::tcp_listening(ns, (ip, SSH_PORT).into(), crate::wait::SERVICE_START)?;
        Ok(SshServer { host_key, process })
    }
}

/// The ssh options every rig client uses: the given key only, the provisioned known_hosts
/// only, strict checking, never a password prompt.
pub fn client_options(key: &Path, known_hosts: &Path) -> Vec<String> {
    vec![
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=5".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lists_address_then_key() {
        let text = known_hosts(&[
            ("10.77.0.10".parse().unwrap(), "ssh-ed25519 AAAA1".into()),
            ("10.77.0.11".parse().unwrap(), "ssh-ed25519 AAAA2".into()),
        ]);
        assert_eq!(
            text,
            "10.77.0.10 ssh-ed25519 AAAA1\n10.77.0.11 ssh-ed25519 AAAA2\n"
        );
    }

    #[test]
    fn sshd_config_allows_keys_only() {
        let c = sshd_config(
            "10.77.0.10".parse().unwrap(),
            Path::new("/k"),
            Path::new("/a"),
            Path::new("/h"),
        );
        assert!(c.contains("ListenAddress 10.77.0.10:22\n"));
        assert!(c.contains("PasswordAuthentication no\n"));
        assert!(c.contains("PermitRootLogin prohibit-password\n"));
        assert!(c.contains("AuthorizedKeysFile /a\n"));
        assert!(c.contains("SetEnv HOME=/h\n"));
    }
}
