//! Checks across the fields of an [`Identity`]: addresses inside the rig's subnet, the keys
//! each role needs (and only those), hostnames, tokens, camera modes. Every problem names the
//! key and says what to write instead; all problems are reported at once. [`parse`] is the
//! one way in: the format read strictly ([`crate::identity`]), then these checks.

use std::collections::HashSet;
use std::fmt;

use crate::camera_wiring;
use crate::identity::{CameraSource, Identity, NodeSettings, Role, FORMAT_VERSION};
use crate::render;

/// Why a `camrig.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("camrig.toml line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("camrig.toml has {} problem(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
}

/// Parses and validates a `camrig.toml`.
pub fn parse(text: &str) -> Result<Identity, IdentityError> {
    let identity: Identity = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((0, 0));
        IdentityError::Syntax {
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let problems = check(&identity);
    if problems.is_empty() {
        Ok(identity)
    } else {
        Err(IdentityError::Invalid(problems))
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// One thing wrong with a `camrig.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a dotted path (`network.address`).
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; {}", self.key, self.problem, self.fix)
    }
}

/// The problems as an indented list, one per line.
pub fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Checker(Vec<Problem>);

impl Checker {
    fn fail(&mut self, key: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// Every problem of an identity (empty: valid).
pub fn check(id: &Identity) -> Vec<Problem> {
    let mut c = Checker(Vec::new());
    if id.format != FORMAT_VERSION {
        c.fail(
            "format",
            format!("is {}, this image reads format {FORMAT_VERSION}", id.format),
            format!("write format = {FORMAT_VERSION} (or build the card with a matching image)"),
        );
    }
    if let Err(why) = hostname(&id.hostname) {
        c.fail(
            "hostname",
            format!("'{}' {why}", id.hostname),
            "use lowercase letters, digits and '-', like \"camrig-node-101\"",
        );
    }
    network(&mut c, id);
    rig(&mut c, id);
    ssh(&mut c, id);
    match id.role {
        Role::Node => node(&mut c, id),
        Role::Controller => controller(&mut c, id),
    }
    c.0
}

/// A DNS host name (RFC 1123 labels), lowercase.
fn hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 63 {
        return Err("is longer than 63 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("has characters other than a-z, 0-9 and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("starts or ends a label with '-'");
        }
    }
    Ok(())
}

fn network(c: &mut Checker, id: &Identity) {
    let net = &id.network;
    let lan = net.address.network();
    if let Some(gw) = net.gateway {
        if !lan.contains(gw) {
            c.fail(
                "network.gateway",
                format!("{gw} is not on this device's LAN {lan}"),
                "give a router address inside network.address's network, or leave gateway out",
            );
        } else if gw == net.address.addr() {
            c.fail(
                "network.gateway",
                format!("{gw} is this device's own address"),
                "give the router's address, or leave gateway out",
            );
        }
    }
    let iface = &net.interface;
    if !iface.is_empty()
        && (iface.len() > 15
            || !iface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
    {
        c.fail(
            "network.interface",
            format!("'{iface}' is not an interface name"),
            "write a name like \"end0\" or \"eth0\", or \"\" for every Ethernet port",
        );
    }
}

fn rig(c: &mut Checker, id: &Identity) {
    let subnet = id.rig.subnet;
    let own = id.network.address.addr();
    if !subnet.contains(own) {
        c.fail(
            "network.address",
            format!("{own} is outside the rig's subnet {subnet}"),
            "give an address inside rig.subnet (or fix rig.subnet)",
        );
    }
    let ctl = id.rig.controller;
    if !subnet.contains(ctl) {
        c.fail(
            "rig.controller",
            format!("{ctl} is outside the rig's subnet {subnet}"),
            "give the controller's address inside rig.subnet",
        );
    }
    match id.role {
        Role::Controller if ctl != own => c.fail(
            "rig.controller",
            format!("is {ctl}, but this controller's network.address is {own}"),
            "on the controller's card both are the controller's own address",
        ),
        Role::Node if ctl == own => c.fail(
            "rig.controller",
            format!("{ctl} is this node's own address"),
            "give the controller's address (nodes take their time from it)",
        ),
        _ => {}
    }
    let token = &id.rig.token;
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        c.fail(
            "rig.token",
            "must be at least 16 printable characters without spaces",
            "use the rig's shared token (camrig provision generates one)",
        );
    }
}

/// Checks an OpenSSH public key line: `<type> <base64> [comment]`.
pub fn public_key(line: &str) -> Result<(), String> {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut fields = line.split_whitespace();
    let kind = fields.next().unwrap_or("");
    if !TYPES.contains(&kind) {
        return Err(format!("'{kind}' is not an SSH public key type"));
    }
    let blob = fields.next().unwrap_or("");
    if blob.len() < 16
        || !blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return Err("has no base64 key after the type".to_owned());
    }
    if line.contains('\n') {
        return Err("spans more than one line".to_owned());
    }
    Ok(())
}

fn private_key(pem: &str) -> bool {
    let pem = pem.trim();
    pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        && pem.ends_with("-----END OPENSSH PRIVATE KEY-----")
}

const PUBKEY_FIX: &str = "paste one line of a .pub file, like \"ssh-ed25519 AAAA... user@host\"";
const PRIVKEY_FIX: &str =
    "paste the whole OpenSSH private key (BEGIN/END OPENSSH PRIVATE KEY lines included) as a \"\"\" string";

fn ssh(c: &mut Checker, id: &Identity) {
    let ssh = &id.ssh;
    for (i, key) in ssh.authorized_keys.iter().enumerate() {
        if let Err(why) = public_key(key) {
            c.fail(&format!("ssh.authorized_keys[{i}]"), why, PUBKEY_FIX);
        }
    }
    match (&ssh.host_key, &ssh.host_key_public) {
        (Some(private), Some(public)) => {
            if !private_key(private) {
                c.fail("ssh.host_key", "is not an OpenSSH private key", PRIVKEY_FIX);
            }
            if let Err(why) = public_key(public) {
                c.fail("ssh.host_key_public", why, PUBKEY_FIX);
            }
        }
        (Some(_), None) => c.fail(
            "ssh.host_key_public",
            "is missing while ssh.host_key is given",
            "add the host key's public line (its .pub file)",
        ),
        (None, Some(_)) => c.fail(
            "ssh.host_key",
            "is missing while ssh.host_key_public is given",
            "add the private host key, or remove host_key_public to let the card make its own",
        ),
        (None, None) => {}
    }
}

fn node(c: &mut Checker, id: &Identity) {
    let ssh = &id.ssh;
    match &ssh.controller_key {
        None => c.fail(
            "ssh.controller_key",
            "is missing",
            "add the controller's public key: it downloads recordings over SSH as user camrig",
        ),
        Some(key) => {
            if let Err(why) = public_key(key) {
                c.fail("ssh.controller_key", why, PUBKEY_FIX);
            }
        }
    }
    if ssh.private_key.is_some() {
        c.fail(
            "ssh.private_key",
            "is a controller key on a node's card",
            "remove it: a node never logs in anywhere",
        );
    }
    if !ssh.known_hosts.is_empty() {
        c.fail(
            "ssh.known_hosts",
            "is for the controller's card",
            "remove it from the node's camrig.toml",
        );
    }
    if id.controller.is_some() {
        c.fail(
            "controller",
            "is a controller section on a node's card",
            "remove [controller], or set role = \"controller\"",
        );
    }
    if !id.time.upstream.is_empty() {
        c.fail(
            "time.upstream",
            "is for the controller; a node takes time from rig.controller only",
            "remove it from the node's camrig.toml",
        );
    }
    let Some(settings) = &id.node else { return };
    let before = c.0.len();
    camera_wiring(c, settings);
    if c.0.len() > before {
        // The node's own check would only repeat the mismatch in its terms.
        return;
    }
    // The node's sections are the node config's types: its own validation decides, so a
    // card is refused here for exactly what the node would refuse at start.
    if let Err(e) = render::node_config(id).validate() {
        match e {
            camrig_config::node::ConfigError::Invalid { key, problem } => c.fail(
                &format!("node.{key}"),
                problem,
                "give a value the node takes (its keys and defaults: node.example.toml)",
            ),
            other => c.fail(
                "node",
                other.to_string(),
                "give a value the node takes (its keys and defaults: node.example.toml)",
            ),
        }
    }
}

/// `[[node.camera_wiring]]`: known sensors, ports 0 and 1 each used once, and the node's
/// `[node.camera]` agreeing with it (libcamera, `count` cameras, `select` in port order).
fn camera_wiring(c: &mut Checker, settings: &NodeSettings) {
    let wiring = &settings.camera_wiring;
    if wiring.is_empty() {
        return;
    }
    if wiring.len() > 2 {
        c.fail(
            "node.camera_wiring",
            format!("lists {} cameras", wiring.len()),
            "a node has 1 or 2 cameras: list one entry per camera",
        );
        return;
    }
    let before = c.0.len();
    let mut ports: Vec<(u8, usize)> = Vec::new();
    for (i, camera) in wiring.iter().enumerate() {
        if camera_wiring::sensor(&camera.sensor).is_none() {
            let lower = camera.sensor.to_ascii_lowercase();
            let fix = if camera_wiring::sensor(&lower).is_some() {
                format!("write \"{lower}\" (lowercase, as libcamera names it)")
            } else {
                format!(
                    "use one of the sensors camrig knows: {}",
                    camera_wiring::sensor_names()
                )
            };
            c.fail(
                &format!("node.camera_wiring[{i}].sensor"),
                format!("'{}' is not a sensor camrig knows", camera.sensor),
                fix,
            );
        }
        let port = camera.connector();
        if port > 1 {
            c.fail(
                &format!("node.camera_wiring[{i}].port"),
                format!("is {port}"),
                "give 0 (CAM0) or 1 (CAM1, the default connector and the only one on a Pi 3, 4 or Zero)",
            );
        } else if let Some((_, first)) = ports.iter().find(|(p, _)| *p == port) {
            c.fail(
                &format!("node.camera_wiring[{i}].port"),
                format!("port {port} is also node.camera_wiring[{first}]'s (an absent port is 1)"),
                "give each camera its own port: 0 and 1",
            );
        } else {
            ports.push((port, i));
        }
    }
    let entries_ok = c.0.len() == before;
    let camera = settings.camera.clone().unwrap_or_default();
    if camera.source != CameraSource::Libcamera {
        c.fail(
            "node.camera.source",
            "is \"synthetic\" while node.camera_wiring names CSI cameras",
            "remove the wiring, or set source = \"libcamera\"",
        );
    }
    if !entries_ok {
        // What the cameras must agree with is not settled yet.
        return;
    }
    if camera.count != wiring.len() {
        c.fail(
            "node.camera.count",
            format!(
                "is {} but node.camera_wiring lists {} camera(s)",
                camera.count,
                wiring.len()
            ),
            format!("write count = {} (one camera per wired port)", wiring.len()),
        );
    }
    let select = camera_wiring::camera_select(wiring);
    if camera.select != select {
        c.fail(
            "node.camera.select",
            format!(
                "is {:?} but the wiring in port order is {select:?}",
                camera.select
            ),
            format!("write select = {select:?}: cam1 is the lowest port's camera, cam2 the next"),
        );
    }
}

fn controller(c: &mut Checker, id: &Identity) {
    let ssh = &id.ssh;
    match &ssh.private_key {
        None => c.fail(
            "ssh.private_key",
            "is missing",
            "add the controller's private key: it logs in to the nodes to download recordings",
        ),
        Some(key) if !private_key(key) => c.fail(
            "ssh.private_key",
            "is not an OpenSSH private key",
            PRIVKEY_FIX,
        ),
        Some(_) => {}
    }
    if ssh.controller_key.is_some() {
        c.fail(
            "ssh.controller_key",
            "is for a node's card",
            "remove it from the controller's camrig.toml",
        );
    }
    let mut known: HashSet<&str> = HashSet::new();
    for (i, line) in ssh.known_hosts.iter().enumerate() {
        let (hosts, key) = line
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or(("", ""));
        if hosts.is_empty() || public_key(key.trim()).is_err() {
            c.fail(
                &format!("ssh.known_hosts[{i}]"),
                "is not a known_hosts line",
                "write \"<node address> <key type> <base64 key>\", like \"192.168.1.101 ssh-ed25519 AAAA...\"",
            );
        }
        known.extend(hosts.split(','));
    }
    if id.node.is_some() {
        c.fail(
            "node",
            "is a node section on the controller's card",
            "remove [node], or set role = \"node\"",
        );
    }
    for (i, server) in id.time.upstream.iter().enumerate() {
        if server.is_empty() || server.contains(char::is_whitespace) {
            c.fail(
                &format!("time.upstream[{i}]"),
                format!("'{server}' is not a server name or address"),
                "write a host name or address like \"192.168.1.1\"",
            );
        }
    }
    let api_token = id.controller.as_ref().and_then(|s| s.api_token.as_deref());
    match api_token {
        None => c.fail(
            "controller.api_token",
            "is missing",
            "the controller has no default password: add the API token `camrig provision build` made (16+ characters)",
        ),
        Some(t) if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => c.fail(
            "controller.api_token",
            "is shorter than 16 characters or has spaces",
            "use the token `camrig provision build` made",
        ),
        Some(_) => {}
    }
    if let Some(h) = id
        .controller
        .as_ref()
        .and_then(|s| s.password_hash.as_deref())
    {
        if !h.starts_with("$argon2") {
            c.fail(
                "controller.password_hash",
                "is not an Argon2 password hash",
                "use the hash `camrig provision build` wrote (a string starting with $argon2id$); never a plain password",
            );
        }
    }
    let Some(settings) = &id.controller else {
        return;
    };
    if let Some(ms) = settings.max_clock_offset_ms {
        if !(ms > 0.0 && ms.is_finite()) {
            c.fail(
                "controller.max_clock_offset_ms",
                format!("is {ms}"),
                "give a positive number of milliseconds, like 1.0",
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, entry) in settings.nodes.iter().enumerate() {
        let key = format!("controller.nodes[{i}].address");
        let addr = entry.address;
        if !seen.insert(addr) {
            c.fail(
                &key,
                format!("{addr} is listed twice"),
                "list each node once",
            );
        }
        if !id.rig.subnet.contains(addr) {
            c.fail(
                &key,
                format!("{addr} is outside the rig's subnet {}", id.rig.subnet),
                "give the node's address inside rig.subnet",
            );
        }
        if addr == id.network.address.addr() {
            c.fail(
                &key,
                format!("{addr} is the controller's own address"),
                "list only the camera nodes",
            );
        }
        if !known.contains(addr.to_string().as_str()) {
            c.fail(
                &key,
                format!("{addr} has no line in ssh.known_hosts"),
                "add the node's host key to ssh.known_hosts: downloads check it strictly",
            );
        }
        if entry.port == Some(0) {
            c.fail(
                &format!("controller.nodes[{i}].port"),
                "is 0",
                "give the node's API port (8081 unless changed)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLLER: &str = r#"
format = 1
role = "controller"
hostname = "camrig-controller"
[network]
address = "192.168.1.10/24"
[rig]
subnet = "192.168.1.0/24"
controller = "192.168.1.10"
token = "0123456789abcdef0123"
[ssh]
private_key = """
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAA
-----END OPENSSH PRIVATE KEY-----
"""
known_hosts = ["192.168.1.101 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIxyz"]
[controller]
api_token = "api-token-0123456789abcdef"
[[controller.nodes]]
address = "192.168.1.101"
"#;

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(IdentityError::Invalid(p)) => p,
            Err(e) => panic!("expected validation problems, got {e}"),
        }
    }

    fn keys(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.key).collect()
    }

    const NODE: &str = r#"
format = 1
role = "node"
hostname = "camrig-node-101"
[network]
address = "192.168.1.101/24"
[rig]
subnet = "192.168.1.0/24"
controller = "192.168.1.10"
token = "0123456789abcdef0123"
[ssh]
controller_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdef camrig@controller"
"#;

    const TWO_HQ: &str = r#"[node.camera]
count = 2
select = ["imx477:port0", "imx219:port1"]
[[node.camera_wiring]]
sensor = "imx219"
port = 1
[[node.camera_wiring]]
sensor = "imx477"
port = 0
"#;

    #[test]
    fn wired_cameras_in_port_order_are_valid() {
        assert_eq!(problems(&format!("{NODE}{TWO_HQ}")), Vec::new());
        // One camera on the default connector needs no port.
        let one = "[node.camera]\nselect = [\"imx708_wide:port1\"]\n\
                   [[node.camera_wiring]]\nsensor = \"imx708_wide\"\n";
        assert_eq!(problems(&format!("{NODE}{one}")), Vec::new());
    }

    #[test]
    fn unknown_sensors_bad_and_shared_ports_are_named_with_the_fix() {
        let text = format!("{NODE}{TWO_HQ}")
            .replace("sensor = \"imx219\"", "sensor = \"IMX219\"")
            .replace("sensor = \"imx477\"", "sensor = \"imx999\"");
        let p = problems(&text);
        assert_eq!(
            p.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
            [
                "node.camera_wiring[0].sensor",
                "node.camera_wiring[1].sensor"
            ],
            "{p:?}"
        );
        assert!(p[0].fix.contains("\"imx219\""), "{}", p[0]);
        assert!(p[1].problem.contains("'imx999'"), "{}", p[1]);
        assert!(
            p[1].fix.contains("imx219") && p[1].fix.contains("ov5647"),
            "{}",
            p[1]
        );

        let text = format!("{NODE}{TWO_HQ}").replace("port = 0", "port = 2");
        assert_eq!(keys(&text), vec!["node.camera_wiring[1].port"]);
        let text = format!("{NODE}{TWO_HQ}").replace("port = 0\n", "");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "node.camera_wiring[1].port");
        assert!(p[0].problem.contains("absent port is 1"), "{}", p[0]);
    }

    #[test]
    fn the_node_camera_must_agree_with_the_wiring() {
        let text = format!("{NODE}{TWO_HQ}").replace("count = 2", "count = 1");
        assert_eq!(keys(&text), vec!["node.camera.count"]);
        let text = format!("{NODE}{TWO_HQ}").replace(
            "select = [\"imx477:port0\", \"imx219:port1\"]",
            "select = [\"imx219:port1\", \"imx477:port0\"]",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "node.camera.select");
        assert!(
            p[0].fix.contains("[\"imx477:port0\", \"imx219:port1\"]") && p[0].fix.contains("cam1"),
            "{}",
            p[0]
        );
        let text =
            format!("{NODE}{TWO_HQ}").replace("count = 2", "count = 2\nsource = \"synthetic\"");
        assert_eq!(keys(&text), vec!["node.camera.source"]);
    }

    #[test]
    fn node_sections_are_checked_by_the_nodes_own_validation() {
        let text = format!("{NODE}[node.camera]\ncount = 3\n");
        assert_eq!(keys(&text), vec!["node.camera.count"]);
        let text = format!("{NODE}[node.recording]\nsegment_seconds = 0\n");
        assert_eq!(keys(&text), vec!["node.recording.segment_seconds"]);
        // A key the node config has is a key camrig.toml has (one schema).
        let text = format!("{NODE}[node.recording]\nmax_start_lead_ms = 20000\n");
        assert_eq!(problems(&text), Vec::new());
    }

    #[test]
    fn controller_identity_is_valid() {
        assert_eq!(problems(CONTROLLER), Vec::new());
    }

    #[test]
    fn node_without_known_host_is_named_with_the_fix() {
        let text = CONTROLLER.replace("192.168.1.101 ssh", "192.168.1.102 ssh");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "controller.nodes[0].address");
        assert!(p[0].fix.contains("ssh.known_hosts"));
    }

    #[test]
    fn addresses_outside_the_subnet_are_refused() {
        let text = CONTROLLER.replace("subnet = \"192.168.1.0/24\"", "subnet = \"10.0.0.0/8\"");
        let k = keys(&text);
        assert!(k.contains(&"network.address".to_owned()), "{k:?}");
        assert!(k.contains(&"rig.controller".to_owned()), "{k:?}");
        assert!(
            k.contains(&"controller.nodes[0].address".to_owned()),
            "{k:?}"
        );
    }

    #[test]
    fn controller_must_be_its_own_controller() {
        let text = CONTROLLER.replace(
            "controller = \"192.168.1.10\"",
            "controller = \"192.168.1.11\"",
        );
        assert_eq!(keys(&text), vec!["rig.controller"]);
    }

    #[test]
    fn duplicate_node_is_refused() {
        let text = format!("{CONTROLLER}[[controller.nodes]]\naddress = \"192.168.1.101\"\n");
        assert_eq!(keys(&text), vec!["controller.nodes[1].address"]);
    }

    #[test]
    fn controller_needs_its_api_token_and_only_a_hashed_password() {
        let text = CONTROLLER.replace("api_token = \"api-token-0123456789abcdef\"\n", "");
        assert_eq!(keys(&text), vec!["controller.api_token"]);
        let text = CONTROLLER.replace(
            "api_token = \"api-token-0123456789abcdef\"",
            "api_token = \"api-token-0123456789abcdef\"\npassword_hash = \"hunter2hunter2\"",
        );
        assert_eq!(keys(&text), vec!["controller.password_hash"]);
    }

    #[test]
    fn controller_needs_its_private_key() {
        let start = CONTROLLER.find("private_key").unwrap();
        let end = CONTROLLER.find("known_hosts").unwrap();
        let text = format!("{}{}", &CONTROLLER[..start], &CONTROLLER[end..]);
        assert_eq!(keys(&text), vec!["ssh.private_key"]);
    }

    #[test]
    fn bad_hostname_short_token_and_wrong_format_are_all_reported() {
        let text = CONTROLLER
            .replace("camrig-controller", "Camrig_Controller")
            .replace("0123456789abcdef0123", "short")
            .replace("format = 1", "format = 2");
        assert_eq!(keys(&text), vec!["format", "hostname", "rig.token"]);
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI admin").is_ok());
        assert!(public_key("ssh-dss AAAAB3NzaC1kc3MAAACBA").is_err());
        assert!(public_key("ssh-ed25519").is_err());
        assert!(public_key("ssh-ed25519 not*base64*at*all*here").is_err());
    }

    #[test]
    fn hostnames_follow_rfc1123() {
        assert!(hostname("camrig-node-101").is_ok());
        assert!(hostname("node.rig").is_ok());
        assert!(hostname("-node").is_err());
        assert!(hostname("node_1").is_err());
        assert!(hostname("").is_err());
    }

    #[test]
    fn problems_print_key_problem_and_fix() {
        let p = Problem {
            key: "rig.token".into(),
            problem: "is empty".into(),
            fix: "add it".into(),
        };
        assert_eq!(p.to_string(), "rig.token: is empty; add it");
        assert_eq!(list(&[p]), "  - rig.token: is empty; add it");
    }
}
