//! The test harness: a rig directory with a site file, the binary, and base disk images
//! laid out like image/build's (MBR, FAT32 boot partition first, then ext4 space), made
//! from files without loop devices.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The example site of `provisioning/`, the one users start from.
pub const EXAMPLE_SITE: &str = include_str!("../../../../provisioning/site.example.toml");

/// The ci scripts' test rig (ci/lib.sh makes their identities from it).
pub const CI_FIXTURE_SITE: &str = include_str!("../../../../ci/fixtures/site.toml");

/// A small rig: a controller and two nodes with synthetic cameras (the unit tests' too).
pub const SITE: &str = include_str!("../fixtures/site.toml");

pub struct Rig {
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// A directory holding `site.toml` with `text`.
    pub fn with_site(text: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("site.toml"), text).expect("write site");
        Rig { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn site(&self) -> PathBuf {
        self.path("site.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn out(&self) -> PathBuf {
        self.path("cards")
    }

    /// Runs `camrig-provision ARGS…` in the rig directory.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_camrig-provision"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run camrig-provision");
        Run(out)
    }

    /// `build` with the rig's state and output directories and extra arguments.
    pub fn build(&self, extra: &[&str]) -> Run {
        let (site, state, out) = (self.site(), self.state(), self.out());
        let mut args = vec![
            "build",
            site.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `write site.toml DEVICE TARGET` with the rig's state directory.
    pub fn write(&self, device: &str, target: &str) -> Run {
        let state = self.state();
        self.run(&[
            "write",
            "site.toml",
            device,
            target,
            "--state",
            state.to_str().unwrap(),
        ])
    }

    /// `rotate site.toml` with the rig's state directory and extra arguments.
    pub fn rotate(&self, extra: &[&str]) -> Run {
        let state = self.state();
        let mut args = vec!["rotate", "site.toml", "--state", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Every file under the state directory with its contents, sorted.
    pub fn state_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        walk(&self.state(), &self.state(), &mut files);
        files.sort();
        files
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, std::fs::read(&path).expect("read file")));
        }
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert_eq!(
            self.code(),
            0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts exit code `code` and returns stderr.
    pub fn fails_with(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            code,
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }
}

/// Runs a command and returns stdout, panicking with stderr on failure.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Byte offset of the FAT partition in `make_base_image`'s layout.
pub const BOOT_OFFSET: u64 = 4 << 20;

/// The base image's config.txt: the end of image/build's, which includes the card's camera
/// wiring.
pub const BASE_CONFIG_TXT: &str = "dtparam=eee=off\ninclude camrig-cameras.txt\n";
/// The wiring include an image ships before any card is provisioned.
pub const BASE_CAMERAS_TXT: &str = "# camrig-cameras.txt: no wiring (image default)\n";

/// A base image like image/build's: MBR; partition 1 FAT32 (label CAMRIG-BOOT) with a
/// config.txt and camrig-cameras.txt at 4 MiB; partition 2 (Linux) behind it. Made from
/// files: mkfs.vfat -C, mcopy, sfdisk on the image file, dd.
pub fn make_base_image(dir: &Path, name: &str) -> PathBuf {
    let fat = dir.join(format!("{name}.boot.fat"));
    let img = dir.join(name);
    let _ = std::fs::remove_file(&fat);
    sh(
        "mkfs.vfat",
        &[
            "-F",
            "32",
            "-n",
            "CAMRIG-BOOT",
            "-C",
            fat.to_str().unwrap(),
            "40960",
        ],
    );
    for (file, contents) in [
        ("config.txt", BASE_CONFIG_TXT),
        ("camrig-cameras.txt", BASE_CAMERAS_TXT),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, contents).unwrap();
        sh(
            "mcopy",
            &[
                "-i",
                fat.to_str().unwrap(),
                path.to_str().unwrap(),
                &format!("::{file}"),
            ],
        );
    }
    // 4 MiB gap, 40 MiB boot, 8 MiB root: 52 MiB, sparse.
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(52 << 20).unwrap();
    drop(f);
    let table = "label: dos\nunit: sectors\nstart=8192, size=81920, type=c, bootable\nstart=90112, size=16384, type=83\n";
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            img.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(table.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
    sh(
        "dd",
        &[
            &format!("if={}", fat.display()),
            &format!("of={}", img.display()),
            "bs=1M",
            "seek=4",
            "conv=notrunc,sparse",
            "status=none",
        ],
    );
    std::fs::remove_file(&fat).unwrap();
    img
}

/// `mtype` of a file in the boot partition of `img`.
pub fn mtype(img: &Path, name: &str) -> String {
    sh(
        "mtype",
        &[
            "-i",
            &format!("{}@@{BOOT_OFFSET}", img.display()),
            &format!("::{name}"),
        ],
    )
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
