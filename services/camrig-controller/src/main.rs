//! `camrig-controller --config FILE [--listen ADDR] [--data-dir DIR]`
//!
//! Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration or arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "camrig controller: web UI, REST API, fan-out, downloads"
)]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = "/etc/camrig/controller.toml")]
    config: PathBuf,
    /// Overrides `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `data_dir` (and `downloads_dir` when the file does not set it).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    camrig_systemd::logging::init("info");
    let mut config = match camrig_controller::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("camrig-controller: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        if config.downloads_dir == config.data_dir.join("video_downloads") {
            config.downloads_dir = dir.join("video_downloads");
        }
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result: anyhow::Result<()> = runtime.block_on(async {
        let shutdown = camrig_systemd::shutdown::signal_received();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        camrig_controller::run(config, listener, shutdown).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("camrig-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}
