//! The unit tests' node identity (on QEMU's user network, 10.0.2.0/24), one text for every
//! module's tests to start from.

/// A node's camrig.toml: `network` is added to its `[network]` table, `tail` (its `[node]`
/// tables, or nothing) goes at the end.
pub(crate) fn node(network: &str, tail: &str) -> String {
    format!(
        r#"
format = 1
role = "node"
hostname = "n1"
[network]
address = "10.0.2.15/24"
{network}[rig]
subnet = "10.0.2.0/24"
controller = "10.0.2.2"
token = "0123456789abcdef0123"
[ssh]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc admin@laptop"]
controller_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller"
{tail}"#
    )
}
