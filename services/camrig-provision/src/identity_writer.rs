//! Writes an [`Identity`] (the identity crate's type, which only reads) as `camrig.toml`
//! text, in the order and with the section layout of `camrig.example.toml`. The node's
//! sections are camrig-config's types and are written by serde, so a node setting needs no
//! code here.
//!
//! The identity crate owns the format; this is only its serializer. Every text made here is
//! parsed back with [`camrig_identity::parse`] before it goes anywhere (see
//! [`crate::cards`]), so a disagreement between the two shows up as a refused card, never
//! as a card that will not boot.

use camrig_identity::identity::{ControllerSettings, NodeSettings};
use camrig_identity::Identity;
use serde::Serialize;
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
    // The sections are the node config's own types, written by serde: the keys the site
    // chose, the rest left to the node's defaults (node.example.toml).
    for (name, section) in [
        ("camera", node.camera.as_ref().map(changed_keys)),
        ("recording", node.recording.as_ref().map(changed_keys)),
        ("synthetic", node.synthetic.as_ref().map(changed_keys)),
    ] {
        if let Some(section) = section.filter(|s| !s.is_empty()) {
            t[name] = Item::Table(section);
        }
    }
    if let Some(s) = &node.camera_settings {
        // Every setting, "auto" or a number (awb a mode or gains): the site's table replaced
        // the defaults' whole.
        t["camera_settings"] = Item::Table(as_table(&toml::Table::try_from(s).expect(SERIALISES)));
    }
    if !node.camera_wiring.is_empty() {
        #[derive(Serialize)]
        struct Wiring<'a> {
            camera_wiring: &'a [camrig_identity::camera_wiring::CameraPort],
        }
        let text = toml::to_string(&Wiring {
            camera_wiring: &node.camera_wiring,
        })
        .expect(SERIALISES);
        let mut doc: DocumentMut = text.parse().expect("serialised TOML parses");
        if let Some(mut wiring) = doc.remove("camera_wiring") {
            if let Some(tables) = wiring.as_array_of_tables_mut() {
                for table in tables.iter_mut() {
                    table.decor_mut().set_prefix("\n");
                }
            }
            t["camera_wiring"] = wiring;
        }
    }
    t
}

const SERIALISES: &str = "node settings serialise as TOML";

/// A node config section as a table of the keys whose value is not the node's default, in
/// the section's own order.
fn changed_keys<T: Serialize + Default>(section: &T) -> Table {
    let text = toml::to_string(section).expect(SERIALISES);
    let value: toml::Table = toml::from_str(&text).expect("serialised TOML parses");
    let default = toml::Table::try_from(T::default()).expect(SERIALISES);
    let mut doc: DocumentMut = text.parse().expect("serialised TOML parses");
    for (key, v) in &value {
        if default.get(key) == Some(v) {
            doc.remove(key);
        }
    }
    doc.as_table().clone()
}

/// A `toml` table as a `toml_edit` one (through its text: the two crates' values are
/// different types).
fn as_table(table: &toml::Table) -> Table {
    let text = toml::to_string(table).expect(SERIALISES);
    let doc: DocumentMut = text.parse().expect("serialised TOML parses");
    doc.as_table().clone()
}

fn controller_table(c: &ControllerSettings) -> Table {
    let mut t = Table::new();
    if let Some(token) = &c.api_token {
        t["api_token"] = toml_edit::value(token);
    }
    if let Some(hash) = &c.password_hash {
        t["password_hash"] = toml_edit::value(hash);
    }
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
    fn node_sections_keep_the_keys_that_differ_from_the_nodes_defaults() {
        let mut id = camrig_identity::parse(EXAMPLE).unwrap();
        let node = id.node.as_mut().unwrap();
        let camera = node.camera.as_mut().unwrap();
        camera.fps = 29.97;
        camera.count = 2;
        camera.select = vec!["imx477:port0".into(), "imx219:port1".into()];
        node.camera_wiring = vec![
            camrig_identity::camera_wiring::CameraPort {
                sensor: "imx477".into(),
                port: Some(0),
            },
            camrig_identity::camera_wiring::CameraPort {
                sensor: "imx219".into(),
                port: None,
            },
        ];
        node.recording.as_mut().unwrap().max_start_lead_ms = 20_000;
        let text = render(&id, "");
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let camera = doc["node"]["camera"].as_table().unwrap();
        let mut keys: Vec<&str> = camera.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["count", "fps", "select"], "{text}");
        assert!(
            text.contains("[[node.camera_wiring]]\nsensor = \"imx477\"\nport = 0\n"),
            "{text}"
        );
        assert_eq!(
            doc["node"]["recording"]["max_start_lead_ms"].as_integer(),
            Some(20_000)
        );
        let again = camrig_identity::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let node = again.node.unwrap();
        assert_eq!(node.camera, id.node.as_ref().unwrap().camera);
        assert_eq!(node.camera_wiring, id.node.as_ref().unwrap().camera_wiring);
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
