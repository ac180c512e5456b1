//! Logging: journald (structured fields, priorities) when systemd connected our stderr to
//! the journal (`$JOURNAL_STREAM` set), plain stderr otherwise. `RUST_LOG` overrides the
//! default filter.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default_filter` is e.g. `"info"`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journald)
                    .init();
                return;
            }
            Err(e) => eprintln!("journald unavailable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only on a terminal: log files and the harnesses that read
                // them (tests, benchmarks) get plain text.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
}
