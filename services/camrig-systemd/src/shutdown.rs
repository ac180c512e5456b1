//! The one shutdown signal of a camrig service: SIGTERM (systemd stop) or SIGINT (Ctrl-C).

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Returns a future that completes when SIGTERM or SIGINT arrives. The handlers are
/// installed when this is called, not when the future is first polled, so call it early
/// (before READY) and a stop during start-up is not lost. Must be called inside a runtime.
pub fn signal_received() -> impl Future<Output = ()> + Send + 'static {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
