//! camrig provisioning: one site file (the whole rig, described once) becomes one
//! `camrig.toml` and one flashable card per Pi.
//!
//! - [`site`]: the site file format, parsed strictly, with whole-rig checks at named lines;
//! - [`cards`]: each device's identity, validated by the identity crate;
//! - [`identity_writer`]: the identity crate's format written as text;
//! - [`secrets`]: the rig's token and SSH keys in a private state directory;
//! - [`fat_image`]: files in a FAT boot partition through mtools, never mounting;
//! - [`card_target`]: per-card images and writing onto flashed cards;
//! - [`block_device`] and [`flash`]: writing a card safely, with read-back verification;
//! - `tool`: running mtools, sfdisk and ssh-keygen for their output.
//!
//! [`Command`] and [`run_provision`] are the whole command line, so the `camrig` CLI can
//! offer it as `camrig provision …` and the `camrig-provision` binary is a thin wrapper.

pub mod block_device;
pub mod card_target;
pub mod cards;
pub mod fat_image;
pub mod flash;
pub mod identity_writer;
pub mod secrets;
pub mod site;
mod tool;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::card_target::CardError;
use crate::cards::Card;
use crate::flash::{FlashError, FlashOptions, Target};
use crate::secrets::{Rotation, SecretsError, StateDir};
use crate::site::{SiteError, SiteFile};

/// `camrig provision` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Check a site file and list every problem; nothing is written.
    Check {
        /// The site file (see provisioning/site.example.toml).
        site: PathBuf,
    },
    /// Make the rig's secrets (the missing ones) and every device's camrig.toml; with base
    /// images, a finished image per card, ready to flash.
    Build(BuildArgs),
    /// Write one device's camrig.toml onto an already-flashed card: its block device, an
    /// image file, or its boot partition mounted as a directory.
    Write(WriteArgs),
    /// Write an image to a card (block device) with a progress bar, then read it back and
    /// compare. Refuses mounted devices and the disk this system runs from.
    Flash(FlashArgs),
    /// Replace secrets on purpose (never done otherwise); old ones go to <state>/retired/.
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// The rig's secrets directory (created 0700 if missing) [default: <site file's
    /// directory>/<rig name>.camrig-state].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The site file.
    pub site: PathBuf,
    #[command(flatten)]
    pub state: StateArg,
    /// Where the cards go: <out>/<hostname>/camrig.toml and <out>/<hostname>.img
    /// [default: <site file's directory>/<rig name>-cards].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Base node image from image/build (makes <out>/<node>.img for every node).
    #[arg(long, value_name = "IMG")]
    pub node_image: Option<PathBuf>,
    /// Base controller image from image/build (makes <out>/<controller>.img).
    #[arg(long, value_name = "IMG")]
    pub controller_image: Option<PathBuf>,
    /// Only these devices (hostnames; repeat). Default: every device.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// The site file.
    pub site: PathBuf,
    /// The device (hostname from the site file) whose identity to write.
    pub device: String,
    /// The card: a block device (/dev/sdb or its boot partition /dev/sdb1), an image file,
    /// or the mounted boot partition's directory.
    pub target: PathBuf,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Clone, Args)]
pub struct FlashArgs {
    /// The raw image (a per-card .img from `build`).
    pub image: PathBuf,
    /// The whole card's block device, like /dev/sdb or /dev/mmcblk0 (see `lsblk`).
    pub device: PathBuf,
    /// Accept a regular file as DEVICE (tests, copies).
    #[arg(long)]
    pub allow_file: bool,
    /// Do not ask before overwriting the card.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// The site file.
    pub site: PathBuf,
    #[command(flatten)]
    pub state: StateArg,
    /// A new rig token.
    #[arg(long)]
    pub token: bool,
    /// A new API token for the controller (CLI, scripts).
    #[arg(long)]
    pub api_token: bool,
    /// A new operator password for the web UI (printed once).
    #[arg(long)]
    pub password: bool,
    /// A new controller SSH key pair.
    #[arg(long)]
    pub controller_key: bool,
    /// A new SSH host key for this device (repeat for several).
    #[arg(long, value_name = "NAME")]
    pub host_key: Vec<String>,
    /// Everything: tokens, password, controller key, every host key.
    #[arg(long)]
    pub all: bool,
}

/// Why a provisioning command failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot read site file {}: {source}", path.display())]
    ReadSite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Site { path: PathBuf, source: SiteError },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Card(#[from] CardError),
    #[error(transparent)]
    Flash(#[from] FlashError),
    #[error("{}: no device named '{name}'; devices: {known}", path.display())]
    UnknownDevice {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("say what to rotate: --token, --api-token, --password, --controller-key, --host-key NAME, or --all")]
    NothingToRotate,
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotConfirmed(String),
}

impl ProvisionError {
    /// The process exit code: 2 site file refused, 3 target refused as unsafe or in use,
    /// 4 read-back verification failed, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::Site { .. } | ProvisionError::UnknownDevice { .. } => 2,
            ProvisionError::Flash(
                FlashError::InUse { .. }
                | FlashError::Partition { .. }
                | FlashError::RegularFile { .. }
                | FlashError::NotADevice { .. }
                | FlashError::TooSmall { .. },
            )
            | ProvisionError::Card(CardError::InUse { .. })
            | ProvisionError::NotConfirmed(_) => 3,
            ProvisionError::Flash(FlashError::Mismatch { .. }) => 4,
            _ => 1,
        }
    }
}

/// Runs one `camrig provision` command, printing what it did to stdout.
pub fn run_provision(command: Command) -> Result<(), ProvisionError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Check { site } => {
            let (file, cards) = load_and_validate(&site)?;
            let _ = writeln!(
                out,
                "{}: ok, rig '{}' with {} devices:",
                site.display(),
                file.site.rig.get_ref().name.get_ref(),
                cards.len()
            );
            for card in &cards {
                let _ = writeln!(
                    out,
                    "  {:<24} {:<10} {}",
                    card.hostname,
                    card.role.as_str(),
                    card.address
                );
            }
            Ok(())
        }
        Command::Build(args) => build(&args, &mut out),
        Command::Write(args) => write(&args, &mut out),
        Command::Flash(args) => flash(&args, &mut out),
        Command::Rotate(args) => rotate(&args, &mut out),
    }
}

/// Reads the site, checks it whole-rig and per device (placeholder secrets): every
/// problem is found before anything is written.
pub fn load_and_validate(path: &Path) -> Result<(SiteFile, Vec<Card>), ProvisionError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProvisionError::ReadSite {
        path: path.to_owned(),
        source,
    })?;
    let site_err = |source| ProvisionError::Site {
        path: path.to_owned(),
        source,
    };
    let file = site::parse_syntax(&text).map_err(site_err)?;
    // Whole-rig and per-device problems together, in line order: one run shows them all.
    let mut problems = site::check(&file);
    let placeholders = cards::placeholder_secrets(&file);
    let cards = match cards::build(&file, &placeholders, !problems.is_empty()) {
        Ok(cards) => cards,
        Err(more) => {
            problems.extend(more);
            Vec::new()
        }
    };
    if problems.is_empty() {
        Ok((file, cards))
    } else {
        problems.sort_by_key(|p| p.line);
        Err(site_err(SiteError::Invalid(problems)))
    }
}

fn site_dir(site: &Path) -> PathBuf {
    match site.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn rig_name(file: &SiteFile) -> &str {
    file.site.rig.get_ref().name.get_ref()
}

/// The state directory path for a site.
pub fn state_path(site: &Path, file: &SiteFile, arg: &StateArg) -> PathBuf {
    arg.state
        .clone()
        .unwrap_or_else(|| site_dir(site).join(format!("{}.camrig-state", rig_name(file))))
}

/// Opens the state, makes missing secrets, refreshes the known_hosts files, and builds
/// the real cards.
fn secrets_and_cards(
    site: &Path,
    file: &SiteFile,
    state: &StateArg,
    out: &mut impl Write,
) -> Result<(StateDir, Vec<Card>), ProvisionError> {
    let rig = rig_name(file);
    let dir = StateDir::open(&state_path(site, file, state), rig, Path::new("ssh-keygen"))?;
    let (secrets, created) = dir.ensure(rig, &cards::device_names(file))?;
    for line in created {
        let _ = writeln!(out, "created {line}");
    }
    let known = cards::known_hosts_lines(file, &secrets, false);
    dir.write_derived(secrets::KNOWN_HOSTS, &lines(&known))?;
    let admin = cards::known_hosts_lines(file, &secrets, true);
    dir.write_derived(secrets::ADMIN_KNOWN_HOSTS, &lines(&admin))?;
    let cards = cards::build(file, &secrets, false).map_err(|problems| ProvisionError::Site {
        path: site.to_owned(),
        source: SiteError::Invalid(problems),
    })?;
    Ok((dir, cards))
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

fn private_dir(path: &Path) -> Result<(), ProvisionError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |action| {
        move |source| ProvisionError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io("create"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io("chmod"))
}

fn build(args: &BuildArgs, out: &mut impl Write) -> Result<(), ProvisionError> {
    let (file, planned) = load_and_validate(&args.site)?;
    let names = cards::device_names(&file);
    for name in &args.only {
        if !names.contains(name) {
            return Err(ProvisionError::UnknownDevice {
                path: args.site.clone(),
                name: name.clone(),
                known: names.join(", "),
            });
        }
    }
    let wanted = |c: &Card| args.only.is_empty() || args.only.contains(&c.hostname);
    let base_for = |c: &Card| match c.role {
        camrig_identity::Role::Node => args.node_image.as_deref(),
        camrig_identity::Role::Controller => args.controller_image.as_deref(),
    };
    // Base images are checked before the state directory is touched, like the site.
    for card in planned.iter().filter(|c| wanted(c)) {
        if let Some(base) = base_for(card) {
            card_target::check_base_image(base, card.role.as_str())?;
        }
    }

    let (dir, cards) = secrets_and_cards(&args.site, &file, &args.state, out)?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| site_dir(&args.site).join(format!("{}-cards", rig_name(&file))));
    private_dir(&out_dir)?;
    for card in cards.iter().filter(|c| wanted(c)) {
        let card_dir = out_dir.join(&card.hostname);
        private_dir(&card_dir)?;
        let toml = card_dir.join(card_target::IDENTITY_FILE);
        for (path, contents) in [
            (&toml, &card.text),
            (
                &card_dir.join(card_target::BOOT_CONFIG_FILE),
                &card.boot_config,
            ),
        ] {
            camrig_fs::write_atomic_with(path, contents.as_bytes(), camrig_fs::Access::mode(0o600))
                .map_err(|source| ProvisionError::Io {
                    action: "write",
                    path: path.clone(),
                    source,
                })?;
        }
        let image = match base_for(card) {
            Some(base) => {
                let img = out_dir.join(format!("{}.img", card.hostname));
                card_target::make_card_image(base, &img, card.files())?;
                img.display().to_string()
            }
            None => "(no base image given: no .img)".into(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:<15} {}  {}",
            card.hostname,
            card.role.as_str(),
            card.address,
            toml.display(),
            image
        );
    }
    let _ = writeln!(
        out,
        "secrets: {} (keep it private and backed up)\nnext: camrig provision flash {}/<hostname>.img /dev/<card>",
        dir.root().display(),
        out_dir.display()
    );
    Ok(())
}

fn write(args: &WriteArgs, out: &mut impl Write) -> Result<(), ProvisionError> {
    let (file, planned) = load_and_validate(&args.site)?;
    if !planned.iter().any(|c| c.hostname == args.device) {
        return Err(ProvisionError::UnknownDevice {
            path: args.site.clone(),
            name: args.device.clone(),
            known: cards::device_names(&file).join(", "),
        });
    }
    let (_, cards) = secrets_and_cards(&args.site, &file, &args.state, out)?;
    let card = cards
        .iter()
        .find(|c| c.hostname == args.device)
        .expect("the same site yields the same devices");
    let written = card_target::write_identity(&args.target, card.files())?;
    let _ = writeln!(
        out,
        "wrote {}'s identity to {}",
        card.hostname, written.description
    );
    if let Some(prev) = written.replaced.filter(|p| *p != card.hostname) {
        let _ = writeln!(out, "replaced the identity of {prev} that was on it");
    }
    Ok(())
}

fn flash(args: &FlashArgs, out: &mut impl Write) -> Result<(), ProvisionError> {
    let size = flash::check_image(&args.image)?;
    let opts = FlashOptions {
        allow_file: args.allow_file,
        progress: true,
    };
    let target = flash::check_target(&args.device, size, &opts)?;
    if matches!(target, Target::Card(_)) && !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(ProvisionError::NotConfirmed(format!(
                "not writing {} without confirmation; add --yes when not at a terminal",
                target.describe()
            )));
        }
        let _ = write!(
            out,
            "write {} to {}? everything on it is lost [y/N] ",
            args.image.display(),
            target.describe()
        );
        let _ = out.flush();
        let mut answer = String::new();
        let _ = stdin.lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(ProvisionError::NotConfirmed(
                "flash cancelled; nothing was written".into(),
            ));
        }
    }
    let report = flash::write_and_verify(&args.image, &target, &opts)?;
    let mb = report.bytes as f64 / 1e6;
    let _ = writeln!(
        out,
        "flashed {} to {}: {mb:.1} MB written in {:.1} s ({:.1} MB/s), read back and verified in {:.1} s, sha256 {}",
        args.image.display(),
        target.describe(),
        report.write_time.as_secs_f64(),
        mb / report.write_time.as_secs_f64().max(1e-6),
        report.verify_time.as_secs_f64(),
        report.sha256
    );
    Ok(())
}

fn rotate(args: &RotateArgs, out: &mut impl Write) -> Result<(), ProvisionError> {
    let (file, _) = load_and_validate(&args.site)?;
    let names = cards::device_names(&file);
    let mut what = Vec::new();
    if args.all || args.token {
        what.push(Rotation::Token);
    }
    if args.all || args.api_token {
        what.push(Rotation::ApiToken);
    }
    if args.all || args.password {
        what.push(Rotation::Password);
    }
    if args.all || args.controller_key {
        what.push(Rotation::ControllerKey);
    }
    if args.all {
        what.extend(names.iter().cloned().map(Rotation::HostKey));
    } else {
        what.extend(args.host_key.iter().cloned().map(Rotation::HostKey));
    }
    if what.is_empty() {
        return Err(ProvisionError::NothingToRotate);
    }
    let rig = rig_name(&file);
    let dir = StateDir::open(
        &state_path(&args.site, &file, &args.state),
        rig,
        Path::new("ssh-keygen"),
    )?;
    for line in dir.rotate(rig, &names, &what)? {
        let _ = writeln!(out, "rotated {line}");
    }
    // Refresh the derived files now, so the state never lists a retired key.
    secrets_and_cards(&args.site, &file, &args.state, out)?;
    let _ = writeln!(
        out,
        "the cards carry the old secrets until rebuilt: run `build` again and write or flash {}",
        if what
            .iter()
            .any(|w| matches!(w, Rotation::Token | Rotation::ControllerKey))
        {
            "every card".to_owned()
        } else if args.host_key.is_empty() {
            "the controller's card".to_owned()
        } else {
            format!("the controller's card and {}", args.host_key.join(", "))
        }
    );
    Ok(())
}
