//! `camrig-identity`: applies this card's camrig.toml at boot, or checks a file.
//!
//! Exit codes: 0 done; 2 camrig.toml missing; 3 camrig.toml invalid or for the other role;
//! 4 the image is broken or writing failed; 64 bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use camrig_identity::apply::ApplyOptions;
use camrig_identity::boot::{self, BootOptions};
use camrig_identity::generator;
use camrig_identity::render::{self, IDENTITY_PATH, IMAGE_ROLE_PATH};
use camrig_identity::{parse, Role};

#[derive(Parser)]
#[command(version, about = "camrig per-card identity (camrig.toml)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply camrig.toml at boot: network, hostname, time, SSH and service configuration.
    Apply {
        /// The identity file.
        #[arg(long, default_value = IDENTITY_PATH)]
        identity: PathBuf,
        /// Write under this directory instead of / (and leave the hostname alone).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The image's role (default: read from /usr/lib/camrig/role under the root).
        #[arg(long)]
        image_role: Option<Role>,
    },
    /// systemd generator: unit drop-ins that depend on camrig.toml (camrig-node after
    /// udev's coldplug trigger on a node with libcamera cameras). Never fails the boot.
    Generate {
        /// The generator's normal output directory (systemd passes three; the others are
        /// not used).
        normal_dir: PathBuf,
        #[arg(hide = true)]
        _early_dir: Option<PathBuf>,
        #[arg(hide = true)]
        _late_dir: Option<PathBuf>,
        /// The identity file.
        #[arg(long, default_value = IDENTITY_PATH)]
        identity: PathBuf,
    },
    /// Check a camrig.toml and list every problem.
    Check {
        file: PathBuf,
        /// Also require this role.
        #[arg(long)]
        role: Option<Role>,
    },
}

fn main() -> ExitCode {
    let cli = match camrig_identity::command_line::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Apply {
            identity,
            root,
            image_role,
        } => {
            let opts = BootOptions {
                identity,
                image_role,
                image_role_file: PathBuf::from(IMAGE_ROLE_PATH),
                apply: ApplyOptions {
                    set_hostname: root == std::path::Path::new("/"),
                    root,
                    ssh_keygen: PathBuf::from("ssh-keygen"),
                },
            };
            match boot::run(&opts) {
                Ok(report) => {
                    println!(
                        "camrig identity applied: {} files written, ssh host key {}",
                        report.files_written, report.host_key
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{}", render::error_banner(&e.to_string()));
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Generate {
            normal_dir,
            identity,
            ..
        } => {
            // A generator's stderr goes to the kernel log; a failure here only loses the
            // ordering, so it is reported and the boot goes on.
            if let Err(e) = generator::run(&identity, &normal_dir) {
                eprintln!(
                    "camrig-identity generator: writing to {}: {e}",
                    normal_dir.display()
                );
            }
            ExitCode::SUCCESS
        }
        Command::Check { file, role } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("camrig-identity: cannot read {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            match parse(&text) {
                Ok(id) if role.is_some_and(|r| r != id.role) => {
                    eprintln!(
                        "{}: role is \"{}\", expected \"{}\"",
                        file.display(),
                        id.role,
                        role.unwrap_or(id.role)
                    );
                    ExitCode::from(3)
                }
                Ok(id) => {
                    println!(
                        "{}: ok ({} {}, {})",
                        file.display(),
                        id.role,
                        id.hostname,
                        id.network.address
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    ExitCode::from(3)
                }
            }
        }
    }
}
