//! Per-card identity of a camrig appliance.
//!
//! Every card carries a `camrig.toml` on its FAT boot partition saying what the device is:
//! role, hostname, static address, the rig's subnet, controller and token, SSH keys and the
//! node's camera settings. This crate owns that format and what it becomes at boot:
//!
//! - [`identity`]: the format (serde model), pure and strict;
//! - [`validate`]: [`parse`] (the format, then checks across fields), each problem naming its
//!   key and the fix;
//! - [`cidr`]: IPv4 addresses with prefixes (`192.168.1.101/24`, `192.168.1.0/24`);
//! - [`camera_wiring`]: which CSI sensor is on which port, the sensors camrig knows, and the
//!   firmware's overlay lines they become on the boot partition;
//! - [`render`]: the files an identity turns into (networkd, chrony, service configs, SSH);
//! - [`apply`]: writing those files under a root directory, atomically;
//! - [`boot`]: the boot step (image role check, apply, or the error state);
//! - [`generator`]: the systemd generator (camrig-node's ordering for a camera node);
//! - [`command_line`]: the tools' bad-command-line exit code (64), shared with camrig-provision.
//!
//! The `camrig-identity` binary runs `apply` from a oneshot unit early at boot, `generate`
//! as a systemd generator, and `check` validates a file before it goes onto a card.

pub mod apply;
pub mod boot;
pub mod camera_wiring;
pub mod cidr;
pub mod command_line;
pub mod generator;
pub mod identity;
pub mod render;
#[cfg(test)]
mod test_identities;
pub mod validate;

pub use identity::{Identity, Role};
pub use validate::{parse, IdentityError};
