//! Writes an [`Identity`] (the identity crate's type, which only reads) as `camrig.toml`
//! text, in the order and with the section layout of `camrig.example.toml`.
//!
//! The identity crate owns the format; this is only its serializer. Every text made here is
//! parsed back with [`camrig_identity::parse`] before it goes anywhere (see
//! [`crate::cards`]), so a disagreement between the two shows up as a refused card, never
//! as a card that will not boot.

use camrig_identity::identity::{
    Camera, CameraSource, Codec, ControllerSettings, NodeSettings, Recording, Synthetic,
};
use camrig_identity::Identity;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

/// The `camrig.toml` text of an identity, starting with `header` (comment lines).
pub fn render(id: &Identity, header: &str) -> String {
    let mut doc = DocumentMut::new();
    doc["format"] = int(id.format);
    doc["role"] = toml_edit::value(id.role.as_str());
    doc["hostname"] = toml_edit::value(&id.hostname);

    let mut network = Table::new();
    network["address"] = toml_edit::value(id.network.address.to_string());
    if let Some(gw) = id.network.gateway {
        network["gateway"] = toml_edit::value(gw.to_string());
    }
    if !id.network.dns.is_empty() {
        network["dns"] = strings(id.network.dns.iter().map(|d| d.to_string()));
    }
    network["interface"] = toml_edit::value(&id.network.interface);
    doc["network"] = Item::Table(network);

    let mut rig = Table::new();
    rig["subnet"] = toml_edit::value(id.rig.subnet.to_string());
    rig["controller"] = toml_edit::value(id.rig.controller.to_string());
    rig["token"] = toml_edit::value(&id.rig.token);
    doc["rig"] = Item::Table(rig);

    let ssh = &id.ssh;
    let mut t = Table::new();
    t["authorized_keys"] = strings(ssh.authorized_keys.iter().cloned());
    opt_str(&mut t, "host_key", ssh.host_key.as_deref());
    opt_str(&mut t, "host_key_public", ssh.host_key_public.as_deref());
    opt_str(&mut t, "controller_key", ssh.controller_key.as_deref());
    opt_str(&mut t, "private_key", ssh.private_key.as_deref());
    if !ssh.known_hosts.is_empty() {
        t["known_hosts"] = strings(ssh.known_hosts.iter().cloned());
    }
    doc["ssh"] = Item::Table(t);

    let mut time = Table::new();
    time["upstream"] = strings(id.time.upstream.iter().cloned());
    doc["time"] = Item::Table(time);

    if let Some(node) = &id.node {
        doc["node"] = Item::Table(node_table(node));
    }
    if let Some(controller) = &id.controller {
        doc["controller"] = Item::Table(controller_table(controller));
    }

    let mut text = String::from(header);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&doc.to_string());
    text
}

fn int(v: impl Into<i64>) -> Item {
    toml_edit::value(v.into())
}

fn strings(items: impl Iterator<Item = String>) -> Item {
    let mut array = Array::new();
    for s in items {
        array.push(s);
    }
    // One item per line: SSH keys are long and diffs of these files are read by people.
    for v in array.iter_mut() {
        v.decor_mut().set_prefix("\n  ");
    }
    array.set_trailing("\n");
    array.set_trailing_comma(true);
    Item::Value(Value::Array(array))
}

/// A string on its own, as a multi-line literal when it is a key file (PEM text reads and
/// copies better that way, and it has no quotes or backslashes to escape).
fn opt_str(t: &mut Table, key: &str, value: Option<&str>) {
    let Some(value) = value else { return };
    let v = if value.contains('\n') && !value.contains("'''") {
        let body = value.trim_end_matches('\n');
        let repr = format!("'''\n{body}\n'''");
        match repr.parse::<Value>() {
            Ok(v) => v,
            Err(_) => Value::from(value),
        }
    } else {
        Value::from(value)
    };
    t[key] = Item::Value(v);
}

fn node_table(node: &NodeSettings) -> Table {
    let mut t = Table::new();
    t["name"] = toml_edit::value(&node.name);
    t["standalone"] = toml_edit::value(node.standalone);
    if let Some(c) = &node.camera {
        t["camera"] = Item::Table(camera_table(c));
    }
    if let Some(r) = &node.recording {
        t["recording"] = Item::Table(recording_table(r));
    }
    if let Some(s) = &node.synthetic {
        t["synthetic"] = Item::Table(synthetic_table(s));
    }
    if let Some(s) = &node.camera_settings {
        // The settings' own serialisation ("auto" or a number, awb a mode or gains).
        let text = toml::to_string(s).expect("camera settings serialise");
        let doc: DocumentMut = text.parse().expect("serialised settings parse");
        t["camera_settings"] = Item::Table(doc.as_table().clone());
    }
    t
}

fn camera_table(c: &Camera) -> Table {
    let mut t = Table::new();
    if let Some(source) = c.source {
        t["source"] = toml_edit::value(match source {
            CameraSource::Libcamera => "libcamera",
            CameraSource::Synthetic => "synthetic",
        });
    }
    if let Some(v) = c.count {
        t["count"] = int(v);
    }
    if let Some(v) = c.width {
        t["width"] = int(v);
    }
    if let Some(v) = c.height {
        t["height"] = int(v);
    }
    if let Some(v) = c.fps {
        t["fps"] = int(v);
    }
    t
}

fn codec(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "h264",
        Codec::Mjpeg => "mjpeg",
    }
}

fn recording_table(r: &Recording) -> Table {
    let mut t = Table::new();
    if let Some(c) = r.codec {
        t["codec"] = toml_edit::value(codec(c));
    }
    if let Some(c) = r.standalone_codec {
        t["standalone_codec"] = toml_edit::value(codec(c));
    }
    if let Some(v) = r.segment_seconds {
        t["segment_seconds"] = int(v);
    }
    if let Some(v) = r.min_free_mb {
        // TOML integers are i64; a free-space floor beyond that is not a real setting.
        t["min_free_mb"] = int(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = r.h264_bitrate_kbps {
        t["h264_bitrate_kbps"] = int(v);
    }
    if let Some(v) = r.mjpeg_quality {
        t["mjpeg_quality"] = int(v);
    }
    t
}

fn synthetic_table(s: &Synthetic) -> Table {
    let mut t = Table::new();
    if let Some(v) = s.drift_ppm {
        t["drift_ppm"] = toml_edit::value(v);
    }
    if let Some(v) = s.jitter_us {
        t["jitter_us"] = int(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(v) = s.drop_every {
        t["drop_every"] = int(i64::try_from(v).unwrap_or(i64::MAX));
    }
    t
}

fn controller_table(c: &ControllerSettings) -> Table {
    let mut t = Table::new();
    t["require_node_sync"] = toml_edit::value(c.require_node_sync);
    if let Some(ms) = c.max_clock_offset_ms {
        t["max_clock_offset_ms"] = toml_edit::value(ms);
    }
    let mut nodes = ArrayOfTables::new();
    for n in &c.nodes {
        let mut e = Table::new();
        e["address"] = toml_edit::value(n.address.to_string());
        e["name"] = toml_edit::value(&n.name);
        if let Some(port) = n.port {
            e["port"] = int(port);
        }
        nodes.push(e);
    }
    t["nodes"] = Item::ArrayOfTables(nodes);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../camrig-identity/camrig.example.toml");

    #[test]
    fn the_identity_example_survives_a_round_trip() {
        let id = camrig_identity::parse(EXAMPLE).unwrap();
        let text = render(&id, "# test\n");
        assert!(
            text.starts_with("# test\nformat = 1\nrole = \"node\"\n"),
            "{text}"
        );
        let again = camrig_identity::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(render(&again, "# test\n"), text);
        assert_eq!(again.hostname, "camrig-node-101");
        assert_eq!(again.ssh.authorized_keys, id.ssh.authorized_keys);
    }

    #[test]
    fn private_keys_are_multi_line_literals_that_parse_back_exactly() {
        let mut id = camrig_identity::parse(EXAMPLE).unwrap();
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        id.ssh.host_key = Some(pem.into());
        id.ssh.host_key_public = Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIxyz root@n".into());
        let text = render(&id, "");
        assert!(text.contains("host_key = '''\n-----BEGIN"), "{text}");
        let again = camrig_identity::parse(&text).unwrap();
        assert_eq!(again.ssh.host_key.as_deref(), Some(pem));
    }
}
