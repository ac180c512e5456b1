//! systemd integration for camrig's services, and only that.
//!
//! - [`notify`]: READY=1 / STATUS= / WATCHDOG=1 / STOPPING=1 over `$NOTIFY_SOCKET`, a no-op when
//!   not run by systemd (e.g. `camrig demo` on a PC).
//! - [`watchdog`]: pets the watchdog at half of `WatchdogSec=` only while a [`watchdog::Progress`]
//!   counter moves, so a stuck camera or a stuck event loop gets the service restarted.
//! - [`logging`]: journald with structured fields when systemd runs us, stderr otherwise.
//! - [`shutdown`]: the one future that completes on SIGTERM or SIGINT.

pub mod logging;
pub mod notify;
pub mod shutdown;
pub mod watchdog;
