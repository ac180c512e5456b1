//! `camrig`: drive a camrig controller from a terminal, or run a demo rig.
//!
//! Exit codes: see [`EXIT_CODES`] (also in `--help` and the README). `camrig provision`
//! keeps camrig-provision's own exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use camrig_cli::controller_client::{self, ControllerClient};
use camrig_cli::scripting::{self, parse_duration};
use camrig_cli::{commands, demo};
use camrig_protocol::views::StartTake;
use clap::{Parser, Subcommand};

/// The exit codes, as `--help` and the README list them.
const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the controller refused or failed the command (message on stderr; with --json also
       {\"error\": ..., \"exit_code\": 1} on stdout), or it cannot be reached
  2    bad arguments
  3    some node downloads failed verification or transfer (run download again to retry),
       or VERIFY found sorted copies that no longer match
  130  camrig record was interrupted (Ctrl-C/SIGTERM); the take was stopped cleanly
camrig provision keeps camrig-provision's own exit codes (see camrig provision --help).";

#[derive(Parser)]
#[command(
    name = "camrig",
    version,
    about = "camrig: synchronised multi-camera recording",
    after_help = EXIT_CODES
)]
struct Args {
    /// Controller URL.
    #[arg(
        long,
        env = "CAMRIG_CONTROLLER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    controller: String,
    /// File holding the controller's API token (the token itself may come in CAMRIG_TOKEN;
    /// never on the command line, where `ps` shows it to every user).
    #[arg(long, env = "CAMRIG_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print one JSON document on stdout (status, takes, start, stop, download, record);
    /// field names are stable and documented in the README.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

/// What START may go ahead despite (`camrig start`, `camrig record`).
#[derive(clap::Args)]
struct StartFlags {
    /// Go ahead when some nodes fail to arm or are unreachable.
    #[arg(long)]
    allow_partial: bool,
    /// Go ahead although some node's clock is unsynchronised or off (recorded in the take).
    #[arg(long)]
    override_clock: bool,
    /// Go ahead although a node is throttled, under-voltage, hot or short of disk
    /// (recorded in the take).
    #[arg(long)]
    override_health: bool,
}

impl StartFlags {
    fn request(&self, name: String, planned_seconds: Option<u64>) -> StartTake {
        StartTake {
            name,
            allow_partial: self.allow_partial,
            override_clock: self.override_clock,
            override_health: self.override_health,
            planned_seconds,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the rig: every node's state, frames, disk and clock offset.
    Status,
    /// Start a take on every node at a scheduled instant.
    Start {
        /// Take name: 1-64 characters of A-Z a-z 0-9 . _ -
        name: String,
        #[command(flatten)]
        flags: StartFlags,
    },
    /// Record a take of a fixed length: START, wait, STOP (Ctrl-C stops it cleanly now).
    Record {
        /// Take name: 1-64 characters of A-Z a-z 0-9 . _ -
        name: String,
        /// How long: 30s, 2m, 1h, 1500ms (nodes must hold that much recording).
        #[arg(long, value_parser = parse_duration)]
        duration: std::time::Duration,
        #[command(flatten)]
        flags: StartFlags,
    },
    /// Mark the current instant in the running take.
    Mark {
        /// Optional note.
        #[arg(default_value = "")]
        note: String,
    },
    /// Stop the running take. Exits 1 when any node of the take did not stop.
    Stop,
    /// Abort whatever one node records (the recovery for a node that did not take STOP);
    /// what it recorded is kept on the node.
    AbortNode {
        /// The node's address (or its 0-based index in the rig).
        node: String,
    },
    /// List takes with their download and verification state.
    Takes,
    /// Download, verify and sort a take (or every take not yet downloaded).
    Download { take: Option<String> },
    /// Hash a take's sorted copies again against the manifests; a missing or damaged one
    /// turns back to not verified (exit 3) and `camrig download` fetches it again.
    Verify { take: String },
    /// Delete a verified take from the nodes (asks first). The controller checks its
    /// sorted copies again; each node deletes only if they match its manifest exactly.
    DeleteFromNodes {
        take: String,
        /// Only these node addresses (repeatable); default every node that recorded it.
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Change the operator password of the web UI. Reads the new password twice from
    /// standard input (not echoed on a terminal); needs the API token.
    Password,
    /// Show or change the rig's camera settings (exposure, gain, white balance, …).
    #[command(subcommand)]
    CameraSettings(SettingsCmd),
    /// Make a verified take's sync report again on the controller and show its verdict.
    SyncReport { take: String },
    /// Export a sorted take (video_downloads/<take>) as one video file per camera, every
    /// frame at its true time. Runs here, on any machine the take was copied to.
    Export {
        /// The sorted take directory (video_downloads/<take>).
        take_dir: PathBuf,
        /// Container: mkv or mp4.
        #[arg(long, default_value = "mkv")]
        format: String,
        /// `common`: cut every camera to the slot range all cover, filling drops with the
        /// previous frame, so every file has the same frame count.
        #[arg(long, value_parser = ["common"])]
        trim: Option<String>,
        /// Output directory (default <take dir>/export/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a controller and N synthetic-camera nodes on this machine.
    Demo {
        /// Number of nodes (127.0.0.2, 127.0.0.3, …, or the next free addresses).
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Web UI port on 127.0.0.1 [default: 8080, or a free one when 8080 is taken].
        #[arg(long)]
        port: Option<u16>,
        /// Directory for configs, recordings, downloads and logs (default: a new one in /tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Turn a site file into one identity and one flashable card per Pi.
    #[command(subcommand)]
    Provision(camrig_provision::Command),
}

#[derive(Subcommand)]
enum SettingsCmd {
    /// Every camera's settings and the values it applied to its latest frame.
    Show,
    /// Set the same settings on every camera (settings not given are automatic).
    Set {
        /// Exposure time in µs, or auto.
        #[arg(long)]
        exposure_us: Option<String>,
        /// Analogue gain (1.0 = none), or auto.
        #[arg(long)]
        gain: Option<String>,
        /// White balance: auto, a mode (daylight, tungsten, …) or colour gains red,blue.
        #[arg(long)]
        awb: Option<String>,
        /// Lens position in dioptres, or auto.
        #[arg(long)]
        focus: Option<String>,
        /// auto, off, fast, high_quality or minimal.
        #[arg(long)]
        noise_reduction: Option<String>,
        /// Frames per second within every camera's range (nodes reopen their cameras at it
        /// between takes), or auto (each node's camera.fps).
        #[arg(long)]
        frame_rate: Option<String>,
        /// Only these node addresses (repeatable); default every node.
        #[arg(long = "node")]
        nodes: Vec<String>,
    },
    /// Freeze exposure, gain and colour where they are: every camera takes the reference
    /// camera's values (NODE:CAMERA), or its own without --reference.
    Lock {
        #[arg(long)]
        reference: Option<String>,
    },
    /// Back to automatic exposure, gain, white balance and focus.
    Unlock,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Provisioning is synchronous file and device work with its own exit codes
    // (see camrig-provision's main.rs); it needs no runtime and no controller.
    if let Cmd::Provision(command) = args.command {
        return match camrig_provision::run_provision(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("camrig provision: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let token = match controller_client::resolve_token(
            std::env::var("CAMRIG_TOKEN").ok(),
            args.token_file.as_deref(),
        ) {
            Ok(t) => t,
            Err(e) if !matches!(args.command, Cmd::Demo { .. } | Cmd::Export { .. }) => {
                eprintln!("camrig: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => None,
        };
        let client = ControllerClient::new(&args.controller, token.as_deref());
        if args.json {
            if let Some(code) = json_command(&client, &args.command).await {
                return code;
            }
        }
        let result = match args.command {
            Cmd::Status => commands::status(&client).await,
            Cmd::Start { name, flags } if !flags.override_health => {
                commands::start(&client, &name, flags.allow_partial, flags.override_clock).await
            }
            Cmd::Start { name, flags } => {
                let req = flags.request(name, None);
                client.start(&req).await.map(|t| {
                    println!("take {} started (health override recorded)", t.name);
                })
            }
            Cmd::Record {
                name,
                duration,
                flags,
            } => {
                let req = flags.request(name, Some(duration.as_secs().max(1)));
                match scripting::record(&client, req, duration, false).await {
                    Ok(r) => {
                        println!(
                            "take {} recorded for {:.1} s{}",
                            r.stopped.name,
                            r.seconds,
                            if r.interrupted { " (interrupted, stopped cleanly)" } else { "" }
                        );
                        if r.interrupted {
                            return ExitCode::from(130);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Cmd::Mark { note } => commands::mark(&client, &note).await,
            Cmd::Stop => commands::stop(&client).await,
            Cmd::AbortNode { node } => commands::abort_node(&client, &node).await,
            Cmd::Takes => commands::takes(&client).await,
            Cmd::Password => commands::password(&client).await,
            // Not a terminal (a script, a pipe, cron): one summary line per take instead of
            // progress bars.
            Cmd::Download { take } if !scripting::stdout_is_terminal() => {
                match scripting::download_report(&client, take.as_deref()).await {
                    Ok(report) => {
                        if report.downloads.is_empty() {
                            println!("nothing to download");
                        }
                        for line in scripting::summary_lines(&report) {
                            println!("{line}");
                        }
                        if report.failed > 0 {
                            eprintln!(
                                "camrig: {} node download(s) failed; run the download again to retry",
                                report.failed
                            );
                            return ExitCode::from(3);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Cmd::Download { take } => match commands::download(&client, take.as_deref()).await {
                Ok(0) => Ok(()),
                Ok(n) => {
                    eprintln!(
                        "camrig: {n} node download(s) failed; run the download again to retry"
                    );
                    return ExitCode::from(3);
                }
                Err(e) => Err(e),
            },
            Cmd::Verify { take } => match commands::verify(&client, &take).await {
                Ok(0) => Ok(()),
                Ok(_) => return ExitCode::from(3),
                Err(e) => Err(e),
            },
            Cmd::DeleteFromNodes { take, nodes, yes } => {
                commands::delete_from_nodes(&client, &take, &nodes, yes).await
            }
            Cmd::CameraSettings(c) => match c {
                SettingsCmd::Show => commands::camera_settings_show(&client).await,
                SettingsCmd::Set {
                    exposure_us,
                    gain,
                    awb,
                    focus,
                    noise_reduction,
                    frame_rate,
                    nodes,
                } => {
                    let args = commands::SettingsArgs {
                        exposure_us,
                        analogue_gain: gain,
                        awb,
                        focus,
                        noise_reduction,
                        frame_rate,
                    };
                    commands::camera_settings_set(&client, &args, &nodes).await
                }
                SettingsCmd::Lock { reference } => {
                    commands::camera_settings_lock(&client, reference.as_deref()).await
                }
                SettingsCmd::Unlock => commands::camera_settings_unlock(&client).await,
            },
            Cmd::SyncReport { take } => commands::sync_report(&client, &take).await,
            Cmd::Export {
                take_dir,
                format,
                trim,
                out,
            } => {
                return match commands::export(&take_dir, &format, trim.is_some(), out) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("camrig export: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            Cmd::Provision(_) => unreachable!("handled before the runtime starts"),
            Cmd::Demo { nodes, port, dir } => {
                return match demo::run(demo::DemoOptions { nodes, port, dir }).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("camrig demo: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("camrig: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `--json`: runs the command and prints its one JSON document; `None` for commands that
/// have no JSON form (they run as usual).
async fn json_command(client: &ControllerClient, command: &Cmd) -> Option<ExitCode> {
    fn print<T: serde::Serialize>(value: &T) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("views serialise")
        );
    }
    let result: Result<ExitCode, camrig_cli::controller_client::ClientError> =
        match command {
            Cmd::Status => client.rig().await.map(|v| {
                print(&v);
                ExitCode::SUCCESS
            }),
            Cmd::Takes => client.takes().await.map(|v| {
                print(&v);
                ExitCode::SUCCESS
            }),
            Cmd::Start { name, flags } => client
                .start(&flags.request(name.clone(), None))
                .await
                .map(|v| {
                    print(&v);
                    ExitCode::SUCCESS
                }),
            // As without --json: exit 1 when a node of the take did not stop (the take, with
            // each node's state, is still printed).
            Cmd::Stop => client.stop().await.map(|v| {
                print(&v);
                let failed = v
                    .nodes
                    .iter()
                    .filter(|n| n.state == camrig_protocol::views::TakeNodeState::Failed)
                    .count();
                if failed > 0 {
                    eprintln!("camrig: {failed} node(s) did not stop; see the take's nodes");
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }),
            Cmd::Download { take } => scripting::download_report(client, take.as_deref())
                .await
                .map(|r| {
                    print(&r);
                    if r.failed > 0 {
                        ExitCode::from(3)
                    } else {
                        ExitCode::SUCCESS
                    }
                }),
            Cmd::Record {
                name,
                duration,
                flags,
            } => {
                let req = flags.request(name.clone(), Some(duration.as_secs().max(1)));
                scripting::record(client, req, *duration, true)
                    .await
                    .map(|r| {
                        print(&r);
                        if r.interrupted {
                            ExitCode::from(130)
                        } else {
                            ExitCode::SUCCESS
                        }
                    })
            }
            _ => return None,
        };
    Some(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camrig: {e}");
            print(&serde_json::json!({ "error": e.to_string(), "exit_code": 1 }));
            ExitCode::FAILURE
        }
    })
}
