//! The virtual rig's tests: the harness itself (network, shaping, cuts, sshd/rsync, teardown),
//! then camrig's real services across it.

mod harness;
mod scenarios;
