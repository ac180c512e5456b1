//! sd_notify messages. Every function is a no-op outside systemd (no `$NOTIFY_SOCKET`);
//! a failed send is logged, never fatal: the service works the same without a supervisor.

use sd_notify::NotifyState;

fn send(state: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// READY=1: send once the service really serves (listener bound, cameras open).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// STATUS=<line>: what `systemctl status` shows under the unit.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// WATCHDOG=1: only from [`crate::watchdog`], which checks progress first.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// STOPPING=1: shutdown has begun (files are being closed).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
