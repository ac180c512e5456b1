//! `camrig-node`: parses flags, loads the config, sets up logging, binds the API port and
//! hands over to [`camrig_node::run`]. Exit codes: 0 clean stop, 1 runtime failure,
//! 2 bad configuration or flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use camrig_node::config::{CameraSource, NodeConfig, DEFAULT_CONFIG_PATH};
use clap::Parser;

/// camrig's recording node: cameras, segmented takes with per-frame timestamps, HTTP API.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Config file (TOML); default /etc/camrig/node.toml if it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// API listen address, overrides `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory, overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use N synthetic cameras (1 or 2) instead of the configured source.
    #[arg(long, value_name = "N")]
    synthetic: Option<usize>,
    /// File holding the rig token, overrides `token`/`token_file`. (There is no flag for the
    /// token itself: a command line is readable by every user in /proc/PID/cmdline.)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// The rig token from the environment, overriding the config (for a shell or a container;
/// unlike a flag, /proc/PID/environ is readable only by the process's own user).
const TOKEN_ENV: &str = "CAMRIG_NODE_TOKEN";

fn load(args: &Args) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
            NodeConfig::load(DEFAULT_CONFIG_PATH.as_ref())?
        }
        None => NodeConfig::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(n) = args.synthetic {
        config.camera.source = CameraSource::Synthetic;
        config.camera.count = n;
    }
    if let Some(f) = &args.token_file {
        config.token.clear();
        config.token_file = f.to_string_lossy().into_owned();
    }
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        config.token = t.trim().to_owned();
        config.token_file.clear();
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    camrig_systemd::logging::init("info");
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("camrig-node: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("camrig-node: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = camrig_systemd::shutdown::signal_received();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        camrig_node::run(config, listener, shutdown).await?;
        Ok(())
    })
}
