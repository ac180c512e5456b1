//! From a site and its secrets to one validated `camrig.toml` per device.
//!
//! Each device's identity is built from the site (node settings = `[node_defaults]`
//! overridden key by key by the node's own sections), rendered, and parsed back with the
//! identity crate, which runs its own checks (hostnames, camera modes, key syntax, what
//! each role needs). Its problems are reported at the site line they come from. The same
//! path runs once with placeholder secrets before the state directory is touched, so a bad
//! site is refused before anything is written.

use std::net::Ipv4Addr;
use std::ops::Range;

use camrig_identity::camera_wiring::{self, CameraPort};
use camrig_identity::cidr::Ipv4Interface;
use camrig_identity::identity::{
    CameraConfig, ControllerSettings, Network, NodeEntry, NodeSettings, Rig, Ssh, Time,
    FORMAT_VERSION,
};
use camrig_identity::{Identity, IdentityError, Role};
use serde::de::DeserializeOwned;
use toml::Spanned;

use crate::identity_writer;
use crate::secrets::{KeyPair, Secrets};
use crate::site::{self, NodeSection, Section, SiteFile, SiteProblem, Wiring};

/// One device's finished identity.
#[derive(Debug, Clone)]
pub struct Card {
    pub hostname: String,
    pub role: Role,
    pub address: Ipv4Addr,
    /// The `camrig.toml` text, already validated by the identity crate.
    pub text: String,
    /// The boot partition's camera wiring include (`camrig-cameras.txt`), from the same
    /// identity: written onto the card with camrig.toml, so re-provisioning replaces it.
    pub boot_config: String,
}

impl Card {
    /// What goes onto the card's boot partition.
    pub fn files(&self) -> crate::card_target::IdentityFiles<'_> {
        crate::card_target::IdentityFiles {
            identity: &self.text,
            boot_config: &self.boot_config,
        }
    }
}

/// Hostnames of every device, controller first.
pub fn device_names(file: &SiteFile) -> Vec<String> {
    let site = &file.site;
    std::iter::once(site.controller.get_ref().hostname.get_ref().clone())
        .chain(
            site.nodes
                .iter()
                .map(|n| n.get_ref().name.get_ref().clone()),
        )
        .collect()
}

/// Secrets of the right shape and no value, for checking a site before any exist.
pub fn placeholder_secrets(file: &SiteFile) -> Secrets {
    let pair = KeyPair {
        private:
            "-----BEGIN OPENSSH PRIVATE KEY-----\nplaceholder\n-----END OPENSSH PRIVATE KEY-----\n"
                .into(),
        public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAplaceholder placeholder".into(),
    };
    Secrets {
        token: "placeholder-token-0123456789".into(),
        api_token: "placeholder-api-token-0123456789".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$cGxhY2Vob2xkZXI$cGxhY2Vob2xkZXI".into(),
        controller_key: pair.clone(),
        host_keys: device_names(file)
            .into_iter()
            .map(|n| (n, pair.clone()))
            .collect(),
    }
}

/// Every device's card, or every problem found (at site lines). With `site_has_problems`
/// (the whole-rig checks already failed), problems those checks report in the site's own
/// terms are left out rather than said twice.
pub fn build(
    file: &SiteFile,
    secrets: &Secrets,
    site_has_problems: bool,
) -> Result<Vec<Card>, Vec<SiteProblem>> {
    let site = &file.site;
    let rig_name = site.rig.get_ref().name.get_ref();
    let header = format!(
        "# camrig.toml written by `camrig provision` from the site description of rig '{rig_name}'.\n\
         # It holds this device's secrets: keep copies private. Re-run the tool rather than edit.\n"
    );
    let mut cards = Vec::new();
    let mut problems = Vec::new();

    let ctl = site.controller.get_ref();
    let ctl_id = controller_identity(file, secrets);
    match check(&ctl_id, &header, site_has_problems) {
        Ok(text) => cards.push(Card {
            hostname: ctl_id.hostname.clone(),
            role: Role::Controller,
            address: *ctl.address.get_ref(),
            text,
            boot_config: camera_wiring::boot_config(&ctl_id.hostname, ctl_id.camera_wiring()),
        }),
        Err(errors) => {
            for (key, problem, fix) in errors {
                let span = controller_span(file, &key);
                problems.push(SiteProblem {
                    line: file.line(span),
                    key: format!("controller: camrig.toml {key}"),
                    problem,
                    fix,
                });
            }
        }
    }

    for (i, spanned) in site.nodes.iter().enumerate() {
        let node = spanned.get_ref();
        let id = node_identity(file, node, secrets);
        match check(&id, &header, site_has_problems) {
            Ok(text) => cards.push(Card {
                hostname: id.hostname.clone(),
                role: Role::Node,
                address: *node.address.get_ref(),
                text,
                boot_config: camera_wiring::boot_config(&id.hostname, id.camera_wiring()),
            }),
            Err(errors) => {
                for (key, problem, fix) in errors {
                    let span = node_span(file, spanned, &key);
                    problems.push(SiteProblem {
                        line: file.line(span),
                        key: format!("node[{i}] ({}): camrig.toml {key}", node.label()),
                        problem,
                        fix,
                    });
                }
            }
        }
    }
    // Problems with shared settings (admin keys, time) repeat on every device; say them once.
    problems.sort_by_key(|p| p.line);
    problems.dedup_by(|a, b| a.line == b.line && a.problem == b.problem);
    if problems.is_empty() {
        Ok(cards)
    } else {
        Err(problems)
    }
}

/// Renders and parses back one identity; `Err` lists (key, problem, fix).
fn check(
    id: &Identity,
    header: &str,
    site_has_problems: bool,
) -> Result<String, Vec<(String, String, String)>> {
    let text = identity_writer::render(id, header);
    match camrig_identity::parse(&text) {
        Ok(_) => Ok(text),
        Err(IdentityError::Invalid(problems)) => Err(problems
            .into_iter()
            .filter(|p| !(site_has_problems && covered_by_site_checks(&p.key)))
            .map(|p| (p.key, p.problem, p.fix))
            .collect()),
        // The writer produced something the format refuses: a bug here, not in the site.
        Err(e) => Err(vec![(
            "(whole file)".into(),
            format!("the written camrig.toml does not parse: {e}"),
            "report this as a camrig bug".into(),
        )]),
    }
}

/// Identity keys whose problems [`crate::site::check`] reports in the site's own terms
/// (addresses, subnet membership, duplicates).
fn covered_by_site_checks(key: &str) -> bool {
    matches!(
        key,
        "network.address" | "network.gateway" | "rig.controller"
    ) || key.starts_with("controller.nodes[")
}

fn interface(file: &SiteFile, addr: Ipv4Addr) -> Ipv4Interface {
    let prefix = file.site.rig.get_ref().subnet.get_ref().prefix();
    format!("{addr}/{prefix}").parse().unwrap_or_else(|_| {
        // The site checks refuse network and broadcast addresses before this runs; a
        // /32-style fallback keeps the placeholder pass from panicking regardless.
        format!("{addr}/32").parse().expect("a /32 always parses")
    })
}

fn common(
    file: &SiteFile,
    role: Role,
    hostname: &str,
    addr: Ipv4Addr,
    secrets: &Secrets,
) -> Identity {
    let site = &file.site;
    let rig = site.rig.get_ref();
    let host_key = secrets.host_keys.get(hostname);
    Identity {
        format: FORMAT_VERSION,
        role,
        hostname: hostname.to_owned(),
        network: Network {
            address: interface(file, addr),
            gateway: rig.gateway.as_ref().map(|g| *g.get_ref()),
            dns: rig.dns.clone(),
            interface: rig
                .interface
                .as_ref()
                .map(|i| i.get_ref().clone())
                .unwrap_or_default(),
        },
        rig: Rig {
            subnet: *rig.subnet.get_ref(),
            controller: *site.controller.get_ref().address.get_ref(),
            token: secrets.token.clone(),
        },
        ssh: Ssh {
            authorized_keys: site
                .admin
                .authorized_keys
                .iter()
                .map(|k| k.get_ref().trim().to_owned())
                .collect(),
            host_key: host_key.map(|k| k.private.clone()),
            host_key_public: host_key.map(|k| k.public.clone()),
            ..Ssh::default()
        },
        time: Time::default(),
        node: None,
        controller: None,
    }
}

fn controller_identity(file: &SiteFile, secrets: &Secrets) -> Identity {
    let site = &file.site;
    let ctl = site.controller.get_ref();
    let mut id = common(
        file,
        Role::Controller,
        ctl.hostname.get_ref(),
        *ctl.address.get_ref(),
        secrets,
    );
    id.ssh.private_key = Some(secrets.controller_key.private.clone());
    id.ssh.known_hosts = known_hosts_lines(file, secrets, false);
    id.time.upstream = site
        .time
        .upstream
        .iter()
        .map(|s| s.get_ref().clone())
        .collect();
    id.controller = Some(ControllerSettings {
        api_token: Some(secrets.api_token.clone()),
        password_hash: Some(secrets.password_hash.clone()),
        require_node_sync: site.time.require_node_sync.unwrap_or(true),
        max_clock_offset_ms: site.time.max_clock_offset_ms.as_ref().map(|m| *m.get_ref()),
        nodes: site
            .nodes
            .iter()
            .map(|n| {
                let n = n.get_ref();
                NodeEntry {
                    address: *n.address.get_ref(),
                    name: n.name.get_ref().clone(),
                    port: n.port.as_ref().map(|p| *p.get_ref()),
                }
            })
            .collect(),
    });
    id
}

/// known_hosts lines: every node's address and host key (the controller's file), plus the
/// controller's own with `include_controller` (the administrator's file).
pub fn known_hosts_lines(
    file: &SiteFile,
    secrets: &Secrets,
    include_controller: bool,
) -> Vec<String> {
    let site = &file.site;
    let ctl = site.controller.get_ref();
    let controller = include_controller.then(|| (ctl.hostname.get_ref(), *ctl.address.get_ref()));
    controller
        .into_iter()
        .chain(site.nodes.iter().map(|n| {
            let n = n.get_ref();
            (n.name.get_ref(), *n.address.get_ref())
        }))
        .filter_map(|(name, addr)| {
            secrets
                .host_keys
                .get(name)
                .map(|k| format!("{addr} {}", k.public_key()))
        })
        .collect()
}

fn node_identity(file: &SiteFile, node: &NodeSection, secrets: &Secrets) -> Identity {
    let site = &file.site;
    let defaults = &site.node_defaults;
    let mut id = common(
        file,
        Role::Node,
        node.name.get_ref(),
        *node.address.get_ref(),
        secrets,
    );
    id.ssh.controller_key = Some(secrets.controller_key.public.clone());
    // A node's wiring replaces the defaults' whole (ports are not merged one by one).
    let wiring: Vec<CameraPort> = node
        .camera_wiring
        .as_ref()
        .or(defaults.camera_wiring.as_ref())
        .map(|w| w.get_ref().iter().map(|c| c.get_ref().clone()).collect())
        .unwrap_or_default();
    let mut camera = site::merged(node.camera.as_ref(), defaults.camera.as_ref());
    if !wiring.is_empty() {
        // The wiring decides how many cameras and in which order, over what [node_defaults]
        // says for every node; a table as specific as the wiring that says so itself is kept
        // (the identity's check then names any disagreement at its line).
        let own_wiring = node.camera_wiring.is_some();
        let sets = |key: &str| {
            let sets_in = |s: &Option<Section<CameraConfig>>| {
                s.as_ref().is_some_and(|s| s.key_span(key).is_some())
            };
            sets_in(&node.camera) || (!own_wiring && sets_in(&defaults.camera))
        };
        let table = camera.get_or_insert_with(toml::Table::new);
        if !sets("count") {
            table.insert("count".into(), toml::Value::Integer(wiring.len() as i64));
        }
        if !sets("select") {
            let select = camera_wiring::camera_select(&wiring);
            table.insert(
                "select".into(),
                toml::Value::Array(select.into_iter().map(toml::Value::String).collect()),
            );
        }
    }
    id.node = Some(NodeSettings {
        name: node
            .file_name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_default(),
        standalone: node.standalone.or(defaults.standalone).unwrap_or(false),
        camera: camera.and_then(typed),
        recording: site::merged(node.recording.as_ref(), defaults.recording.as_ref())
            .and_then(typed),
        synthetic: site::merged(node.synthetic.as_ref(), defaults.synthetic.as_ref())
            .and_then(typed),
        // Settings default to auto field by field, so a node's table replaces the defaults'.
        camera_settings: node
            .camera_settings
            .as_ref()
            .or(defaults.camera_settings.as_ref())
            .map(|s| *s.get_ref()),
        camera_wiring: wiring,
    });
    id
}

/// A merged site table as the node config's section. Every key in it was accepted on its
/// own by [`site::merged`], so this fails only on a combination serde refuses, which the
/// identity's own check then reports as the section's defaults.
fn typed<T: DeserializeOwned>(table: toml::Table) -> Option<T> {
    toml::Value::Table(table).try_into().ok()
}

/// The site span an identity key of the controller's card comes from.
fn controller_span(file: &SiteFile, key: &str) -> Range<usize> {
    let site = &file.site;
    let ctl = site.controller.get_ref();
    shared_span(file, key).unwrap_or_else(|| match key {
        "hostname" => ctl.hostname.span(),
        "network.address" => ctl.address.span(),
        k if k.starts_with("time.") => {
            index_span(&site.time.upstream, k).unwrap_or_else(|| site.controller.span())
        }
        "controller.max_clock_offset_ms" => site
            .time
            .max_clock_offset_ms
            .as_ref()
            .map_or_else(|| site.controller.span(), |m| m.span()),
        _ => site.controller.span(),
    })
}

/// The site span an identity key of a node's card comes from: the key's own line in the
/// node's table if it sets it, else in `[node_defaults]`', else the table, else the node.
fn node_span(file: &SiteFile, spanned: &Spanned<NodeSection>, key: &str) -> Range<usize> {
    let node = spanned.get_ref();
    let defaults = &file.site.node_defaults;
    fn in_section<T: DeserializeOwned>(
        own: &Option<Section<T>>,
        default: &Option<Section<T>>,
        field: &str,
    ) -> Option<Range<usize>> {
        let (own, default) = (own.as_ref(), default.as_ref());
        own.and_then(|o| o.key_span(field))
            .or_else(|| default.and_then(|d| d.key_span(field)))
            .or_else(|| own.or(default).map(|s| s.span.clone()))
    }
    fn in_wiring(
        own: &Option<Wiring>,
        default: &Option<Wiring>,
        key: &str,
    ) -> Option<Range<usize>> {
        let wiring = own.as_ref().or(default.as_ref())?;
        index_span(
            wiring.get_ref(),
            key.rsplit_once('.').map_or(key, |(head, _)| head),
        )
        .or_else(|| Some(wiring.span()))
    }
    let field = key.rsplit('.').next().unwrap_or("");
    shared_span(file, key)
        .or_else(|| match key {
            "hostname" => Some(node.name.span()),
            "network.address" => Some(node.address.span()),
            k if k.starts_with("node.camera_wiring") => {
                in_wiring(&node.camera_wiring, &defaults.camera_wiring, k)
            }
            k if k.starts_with("node.camera.") => in_section(&node.camera, &defaults.camera, field),
            k if k.starts_with("node.recording.") => {
                in_section(&node.recording, &defaults.recording, field)
            }
            k if k.starts_with("node.synthetic.") => {
                in_section(&node.synthetic, &defaults.synthetic, field)
            }
            _ => None,
        })
        .unwrap_or_else(|| spanned.span())
}

/// Spans of keys every card shares (admin keys, gateway, interface).
fn shared_span(file: &SiteFile, key: &str) -> Option<Range<usize>> {
    let site = &file.site;
    let rig = site.rig.get_ref();
    if key.starts_with("ssh.authorized_keys") {
        return index_span(&site.admin.authorized_keys, key);
    }
    match key {
        "network.gateway" => rig.gateway.as_ref().map(|g| g.span()),
        "network.interface" => rig.interface.as_ref().map(|i| i.span()),
        k if k.starts_with("rig.") => Some(site.rig.span()),
        _ => None,
    }
}

/// The span of `list[i]` for a key ending in `[i]`.
fn index_span<T>(list: &[Spanned<T>], key: &str) -> Option<Range<usize>> {
    let i: usize = key.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()?;
    list.get(i).map(|s| s.span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site;
    use camrig_protocol::camera_settings::{AutoOr, Awb};

    const SITE: &str = r#"format = 1
[rig]
name = "studio-a"
subnet = "192.168.1.0/24"
[admin]
authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbcdefgh admin@laptop"]
[controller]
hostname = "camrig-controller"
address = "192.168.1.10"
[node_defaults.camera]
source = "synthetic"
fps = 25
[[node]]
name = "camrig-node-101"
address = "192.168.1.101"
[node.camera]
count = 2
[[node]]
name = "camrig-node-102"
address = "192.168.1.102"
"#;

    fn cards(text: &str) -> Result<Vec<Card>, Vec<SiteProblem>> {
        let file = site::parse(text).unwrap();
        build(&file, &placeholder_secrets(&file), false)
    }

    #[test]
    fn every_device_gets_a_valid_card() {
        let cards = cards(SITE).unwrap();
        let names: Vec<_> = cards.iter().map(|c| c.hostname.as_str()).collect();
        assert_eq!(
            names,
            ["camrig-controller", "camrig-node-101", "camrig-node-102"]
        );
        let ctl = camrig_identity::parse(&cards[0].text).unwrap();
        assert_eq!(ctl.network.address.to_string(), "192.168.1.10/24");
        assert_eq!(ctl.controller.unwrap().nodes.len(), 2);
        assert_eq!(ctl.ssh.known_hosts.len(), 2);
        assert!(ctl.ssh.known_hosts[0].starts_with("192.168.1.101 ssh-ed25519 "));
        let node = camrig_identity::parse(&cards[1].text).unwrap();
        let camera = node.node.unwrap().camera.unwrap();
        assert_eq!((camera.count, camera.fps), (2, 25.0));
        assert!(node.ssh.controller_key.is_some());
        assert_eq!(node.rig.controller, Ipv4Addr::new(192, 168, 1, 10));
    }

    #[test]
    fn camera_settings_defaults_reach_every_nodes_config() {
        let text = SITE.replace(
            "[[node]]\nname = \"camrig-node-101\"",
            "[node_defaults.camera_settings]\nexposure_us = 8000\nawb = { red = 1.5, blue = 2.0 }\n\
             [[node]]\nname = \"camrig-node-101\"",
        );
        let text = text.replace(
            "address = \"192.168.1.102\"\n",
            "address = \"192.168.1.102\"\n[node.camera_settings]\nanalogue_gain = 2.5\n",
        );
        let cards = cards(&text).unwrap();
        let n101 = camrig_identity::parse(&cards[1].text).unwrap();
        let s = n101.node.as_ref().unwrap().camera_settings.unwrap();
        assert_eq!(s.exposure_us, AutoOr::Fixed(8000));
        assert_eq!(
            s.awb,
            Awb::Gains {
                red: 1.5,
                blue: 2.0
            }
        );
        let config = camrig_identity::render::node_toml(&n101);
        assert!(
            config.contains("[camera_settings]") && config.contains("exposure_us = 8000"),
            "{config}"
        );
        // A node's own table replaces the defaults whole: unset fields are auto.
        let n102 = camrig_identity::parse(&cards[2].text).unwrap();
        let s = n102.node.unwrap().camera_settings.unwrap();
        assert_eq!(s.analogue_gain, AutoOr::Fixed(2.5));
        assert_eq!(s.exposure_us, AutoOr::Auto);
    }

    #[test]
    fn identity_problems_are_reported_at_the_site_line() {
        let text = SITE
            .replace("camrig-node-102", "Camera_2")
            .replace("fps = 25", "fps = 500");
        let problems = cards(&text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        // fps comes from [node_defaults.camera] (its line, 12) for both nodes: reported once.
        assert_eq!(lines, vec![12, 19], "{problems:?}");
        assert!(problems[1].problem.contains("Camera_2"), "{}", problems[1]);
        assert!(problems[1].fix.contains("lowercase"), "{}", problems[1]);
    }

    #[test]
    fn node_tables_override_the_defaults_key_by_key_and_problems_name_the_keys_line() {
        let text = SITE.replace(
            "[node.camera]\ncount = 2\n",
            "[node.camera]\ncount = 2\nwidth = 640\n[node.recording]\nsegment_seconds = 0\n",
        );
        let problems = cards(&text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        // The node's own `segment_seconds` line, refused by the node config's validation.
        assert_eq!(problems[0].line, 20, "{}", problems[0]);
        assert!(
            problems[0].key.ends_with("node.recording.segment_seconds"),
            "{}",
            problems[0]
        );
        let cards = cards(&text.replace("segment_seconds = 0", "segment_seconds = 5")).unwrap();
        let node = camrig_identity::parse(&cards[1].text).unwrap();
        let camera = node.node.unwrap().camera.unwrap();
        // fps from [node_defaults.camera], count and width from the node's own table.
        assert_eq!((camera.count, camera.width, camera.fps), (2, 640, 25.0));
    }

    const WIRED: &str = "[[node.camera_wiring]]\nsensor = \"imx219\"\n\
                         [[node.camera_wiring]]\nsensor = \"imx477\"\nport = 0\n";

    #[test]
    fn wiring_sets_the_cameras_in_port_order_and_the_boot_partitions_overlays() {
        let text = SITE
            .replace("source = \"synthetic\"", "source = \"libcamera\"")
            .replace("[node.camera]\ncount = 2\n", WIRED);
        let cards = cards(&text).unwrap_or_else(|p| panic!("{}", site::list(&p)));
        let node = camrig_identity::parse(&cards[1].text).unwrap();
        let settings = node.node.as_ref().unwrap();
        let camera = settings.camera.clone().unwrap();
        // cam1 is port 0's camera.
        assert_eq!(camera.count, 2);
        assert_eq!(camera.select, ["imx477:port0", "imx219:port1"]);
        assert_eq!(settings.camera_wiring.len(), 2);
        let config = camrig_identity::render::node_config(&node);
        assert_eq!(config.camera.select, ["imx477:port0", "imx219:port1"]);
        assert_eq!(
            cards[1]
                .boot_config
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                "[all]",
                "camera_auto_detect=0",
                "dtoverlay=imx477,cam0",
                "dtoverlay=imx219"
            ]
        );
        // Nodes without wiring keep the firmware's auto-detection; so does the controller.
        for card in [&cards[0], &cards[2]] {
            assert!(
                card.boot_config.lines().all(|l| l.starts_with('#')),
                "{}",
                card.boot_config
            );
        }
    }

    #[test]
    fn wiring_problems_are_named_at_the_wiring_line() {
        let text = SITE
            .replace("source = \"synthetic\"", "source = \"libcamera\"")
            .replace(
                "[node.camera]\ncount = 2\n",
                &WIRED
                    .replace("imx477", "imx999")
                    .replace("\"imx219\"", "\"imx219\"\nport = 0"),
            );
        let problems = cards(&text).unwrap_err();
        let found: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.key.rsplit(' ').next().unwrap()))
            .collect();
        // Line 16: the first entry (port 0 given twice: reported at the second); line 19: the
        // second entry's unknown sensor.
        assert_eq!(
            found,
            [
                (19, "node.camera_wiring[1].sensor"),
                (19, "node.camera_wiring[1].port")
            ],
            "{problems:?}"
        );
        assert!(problems[0].fix.contains("imx708"), "{}", problems[0]);
        // [node_defaults]' count gives way to a node's own wiring.
        let text = SITE
            .replace(
                "source = \"synthetic\"",
                "source = \"libcamera\"\ncount = 1",
            )
            .replace("[node.camera]\ncount = 2\n", WIRED);
        let node = camrig_identity::parse(&cards(&text).unwrap()[1].text).unwrap();
        assert_eq!(node.node.unwrap().camera.unwrap().count, 2);
        // A count the node's table gives itself must agree.
        let text = SITE
            .replace("source = \"synthetic\"", "source = \"libcamera\"")
            .replace("count = 2\n", &format!("count = 1\n{WIRED}"));
        let problems = cards(&text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 17, "{}", problems[0]);
        assert!(
            problems[0].key.ends_with("node.camera.count"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn bad_admin_key_is_named_once_at_its_line() {
        let text = SITE.replace(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbcdefgh",
            "ssh-dss AAAA",
        );
        let problems = cards(&text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 6);
    }
}
