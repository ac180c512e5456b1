//! The rsync command line for pulling one take from one node, and the reading of its
//! failures. rsync and ssh get an argument vector with fixed options, never a shell; the
//! only variable parts are configured paths and the take name, which passed
//! [`TakeName::parse`] (so it cannot start with `-` or contain `/`), and `--` ends the
//! options before the paths anyway. `--protect-args` stops the remote shell from splitting
//! or expanding the remote path.

use std::ffi::OsString;
use std::path::Path;

use camrig_protocol::take_name::TakeName;

use crate::config::RsyncSource;

/// Where interrupted transfers keep their partial files, inside the staging directory, so
/// the next run resumes them.
pub const PARTIAL_DIR: &str = ".rsync-partial";

/// The SSH identity and host keys rsync's ssh uses.
pub struct SshSetup<'a> {
    pub key: &'a Path,
    pub known_hosts: &'a Path,
    /// The node's [`crate::ssh_master`] control socket, if masters are kept.
    pub control_path: Option<&'a Path>,
}

/// The source argument: `<recordings>/<take>/` locally or `user@host:<recordings>/<take>/`.
pub fn source_arg(source: &RsyncSource, take: &TakeName) -> OsString {
    match source {
        RsyncSource::Local(dir) => {
            let mut s = dir.join(take.as_str()).into_os_string();
            s.push("/");
            s
        }
        RsyncSource::Remote {
            user, host, path, ..
        } => format!("{user}@{host}:{path}/{}/", take.as_str()).into(),
    }
}

/// The ssh command rsync runs (`-e`): key only, batch mode, strict host keys from the
/// provisioned known_hosts, no passwords. ServerAlive makes ssh give up on a dead link (cable
/// out, node powered off) within ~15 s: rsync's own `--timeout` never fires while ssh keeps
/// accepting its keep-alive writes, so without it a cut link hangs the download for TCP's
/// ~15 minutes; with it rsync exits, keeps the partial file, and the next run resumes.
///
/// Suited to a LAN carrying video (each choice measured with `ci/rig-bench`):
/// - key exchange: X25519 first. The default post-quantum hybrid (sntrup761) costs a few
///   hundred ms of CPU per connection on a busy two-core machine, most of a small take's
///   download overhead; the pinned host keys authenticate the node either way.
/// - cipher: AES-GCM first (hardware AES on x86 controllers and the Pi 5 makes it the
///   cheapest per byte); ChaCha20 for a peer without it.
/// - no compression: the video is compressed already; zlib would only burn CPU.
/// - a running [`crate::ssh_master`] connection is used when there is one
///   (`ControlMaster=no`: never become a master, fall back to an own connection when the
///   master is not up), so a download skips the handshake and login.
///
/// rsync splits this on spaces; the config refuses paths with spaces or quotes, and
/// [`crate::ssh_master::control_path`] offers no socket path that has any.
pub fn ssh_command(ssh: &SshSetup<'_>, port: u16) -> String {
    let mut words = vec!["ssh".to_owned()];
    words.extend(ssh_options(ssh, port));
    if let Some(socket) = ssh.control_path {
        words.extend([
            "-o".to_owned(),
            format!("ControlPath={}", socket.display()),
            "-o".to_owned(),
            "ControlMaster=no".to_owned(),
        ]);
    }
    words.join(" ")
}

/// The ssh options (after the program name) every connection to a node uses.
pub fn ssh_options(ssh: &SshSetup<'_>, port: u16) -> Vec<String> {
    let mut v = vec![
        "-i".to_owned(),
        ssh.key.display().to_string(),
        "-p".to_owned(),
        port.to_string(),
    ];
    for o in [
        "IdentitiesOnly=yes".to_owned(),
        "BatchMode=yes".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={}", ssh.known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "PasswordAuthentication=no".to_owned(),
        "ConnectTimeout=10".to_owned(),
        "ServerAliveInterval=5".to_owned(),
        "ServerAliveCountMax=3".to_owned(),
        "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com".to_owned(),
        "Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com".to_owned(),
        "Compression=no".to_owned(),
    ] {
        v.push("-o".to_owned());
        v.push(o);
    }
    v
}

/// The options every pull starts with: times and modes kept (`--compare-dest` skips by size
/// and time); an interrupted file resumes from a hidden partial directory instead of lying
/// truncated under its own name; names reach the remote side without its shell splitting
/// them; a link silent for a minute fails the job instead of hanging it; no daemon banner.
const FIXED_OPTIONS: [&str; 6] = [
    "--archive",
    "--partial",
    "--partial-dir=.rsync-partial",
    "--protect-args",
    "--timeout=60",
    "--no-motd",
];

/// Arguments (after the program name `rsync`) to pull `take` into `staging`. Files already
/// sorted into `sorted` (same size and time) are skipped via `--compare-dest`.
pub fn argv(
    source: &RsyncSource,
    take: &TakeName,
    staging: &Path,
    sorted: &Path,
    ssh: &SshSetup<'_>,
) -> Vec<OsString> {
    let port = match source {
        RsyncSource::Remote { port, .. } => *port,
        RsyncSource::Local(_) => 22,
    };
    let mut compare = OsString::from("--compare-dest=");
    compare.push(sorted);
    let mut dest = staging.as_os_str().to_owned();
    dest.push("/");
    let mut args: Vec<OsString> = FIXED_OPTIONS.iter().map(OsString::from).collect();
    args.push(compare);
    args.push("-e".into());
    args.push(ssh_command(ssh, port).into());
    args.push("--".into());
    args.push(source_arg(source, take));
    args.push(dest);
    args
}

/// A failed rsync run, said so a person knows what to fix.
pub fn explain_failure(node: &str, known_hosts: &Path, code: Option<i32>, stderr: &str) -> String {
    let has = |s: &str| stderr.contains(s);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("Host key verification failed")
        || has("host key for") && has("not known")
        || has("No ED25519 host key is known")
        || has("No RSA host key is known")
        || has("No ECDSA host key is known")
    {
        return format!(
            "ssh host key of node {node} does not match {}: the node was re-flashed or this is not the node; provision its host key into known_hosts (nothing was downloaded)",
            known_hosts.display()
        );
    }
    if has("Permission denied") {
        return format!(
            "node {node} refused the controller's ssh key (Permission denied): install the controller's public key for the rsync user on the node"
        );
    }
    if has("No such file or directory") && has("change_dir") {
        return format!("node {node} has no such take directory to download");
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim();
    match code {
        Some(c) => format!("rsync from node {node} failed (exit {c}): {last}"),
        None => format!("rsync from node {node} was killed: {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn remote_pull_has_fixed_options_then_the_paths() {
        let source = RsyncSource::Remote {
            user: "camrig".into(),
            host: "192.168.1.101".into(),
            port: 22,
            path: "/var/lib/camrig/recordings".into(),
        };
        let take = TakeName::parse("t_01").unwrap();
        let ssh = SshSetup {
            key: Path::new("/etc/camrig/ssh/id_ed25519"),
            known_hosts: Path::new("/etc/camrig/ssh/known_hosts"),
            control_path: Some(Path::new("/var/lib/camrig/ssh-control/192.168.1.101")),
        };
        let args = strings(&argv(
            &source,
            &take,
            Path::new("/d/.staging/t_01/192.168.1.101"),
            Path::new("/d/t_01/192.168.1.101"),
            &ssh,
        ));
        assert_eq!(args[..FIXED_OPTIONS.len()], FIXED_OPTIONS);
        assert_eq!(
            args[FIXED_OPTIONS.len()..],
            [
                "--compare-dest=/d/t_01/192.168.1.101",
                "-e",
                "ssh -i /etc/camrig/ssh/id_ed25519 -p 22 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/camrig/ssh/known_hosts -o GlobalKnownHostsFile=/dev/null -o PasswordAuthentication=no -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com -o Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com -o Compression=no -o ControlPath=/var/lib/camrig/ssh-control/192.168.1.101 -o ControlMaster=no",
                "--",
                "camrig@192.168.1.101:/var/lib/camrig/recordings/t_01/",
                "/d/.staging/t_01/192.168.1.101/",
            ]
        );
    }

    #[test]
    fn local_source_is_a_plain_path() {
        let take = TakeName::parse("x").unwrap();
        let source = RsyncSource::Local("/tmp/demo/nodes/127.0.0.2/recordings".into());
        assert_eq!(
            source_arg(&source, &take),
            OsString::from("/tmp/demo/nodes/127.0.0.2/recordings/x/")
        );
    }

    #[test]
    fn host_key_trouble_names_the_node_and_known_hosts() {
        let stderr = "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\nrsync: connection unexpectedly closed (0 bytes received so far) [Receiver]\n";
        let m = explain_failure(
            "10.0.0.5",
            Path::new("/etc/camrig/ssh/known_hosts"),
            Some(255),
            stderr,
        );
        assert!(
            m.contains("10.0.0.5") && m.contains("/etc/camrig/ssh/known_hosts"),
            "{m}"
        );
        let m = explain_failure("n", Path::new("/k"), Some(23), "rsync: something odd\n\n");
        assert_eq!(
            m,
            "rsync from node n failed (exit 23): rsync: something odd"
        );
    }
}
