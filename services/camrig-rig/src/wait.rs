//! Polling with deadlines: the harness never sleeps a fixed time hoping something happened.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{Result, RigError};
use crate::netns::Netns;

/// How long a service gets to start listening on a loaded two-core machine.
pub const SERVICE_START: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(RigError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something accepts TCP connections on `addr`, connecting from inside `ns`.
pub fn tcp_listening(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<()> {
    ns.run_inside(|| {
        until(&format!("{addr} to accept connections"), timeout, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        })
    })?
}
