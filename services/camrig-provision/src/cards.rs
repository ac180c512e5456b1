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

use camrig_identity::cidr::Ipv4Interface;
use camrig_identity::identity::{
    Camera, ControllerSettings, Network, NodeEntry, NodeSettings, Recording, Rig, Ssh, Synthetic,
    Time, FORMAT_VERSION,
};
use camrig_identity::{Identity, IdentityError, Role};
use toml::Spanned;

use crate::identity_writer;
use crate::secrets::{KeyPair, Secrets};
use crate::site::{NodeSection, SiteFile, SiteProblem};

/// One device's finished identity.
#[derive(Debug, Clone)]
pub struct Card {
    pub hostname: String,
    pub role: Role,
    pub address: Ipv4Addr,
    /// The `camrig.toml` text, already validated by the identity crate.
    pub text: String,
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
    id.node = Some(NodeSettings {
        name: node
            .file_name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_default(),
        standalone: node.standalone.or(defaults.standalone).unwrap_or(false),
        camera: merge(&node.camera, &defaults.camera, merge_camera),
        recording: merge(&node.recording, &defaults.recording, merge_recording),
        synthetic: merge(&node.synthetic, &defaults.synthetic, merge_synthetic),
        // Settings default to auto field by field, so a node's table replaces the defaults'.
        camera_settings: node
            .camera_settings
            .as_ref()
            .or(defaults.camera_settings.as_ref())
            .map(|s| *s.get_ref()),
    });
    id
}

fn merge<T: Clone>(
    own: &Option<Spanned<T>>,
    default: &Option<Spanned<T>>,
    f: fn(&T, &T) -> T,
) -> Option<T> {
    match (own, default) {
        (Some(o), Some(d)) => Some(f(o.get_ref(), d.get_ref())),
        (Some(o), None) => Some(o.get_ref().clone()),
        (None, Some(d)) => Some(d.get_ref().clone()),
        (None, None) => None,
    }
}

fn merge_camera(o: &Camera, d: &Camera) -> Camera {
    Camera {
        source: o.source.or(d.source),
        count: o.count.or(d.count),
        width: o.width.or(d.width),
        height: o.height.or(d.height),
        fps: o.fps.or(d.fps),
    }
}

fn merge_recording(o: &Recording, d: &Recording) -> Recording {
    Recording {
        codec: o.codec.or(d.codec),
        standalone_codec: o.standalone_codec.or(d.standalone_codec),
        segment_seconds: o.segment_seconds.or(d.segment_seconds),
        min_free_mb: o.min_free_mb.or(d.min_free_mb),
        h264_bitrate_kbps: o.h264_bitrate_kbps.or(d.h264_bitrate_kbps),
        mjpeg_quality: o.mjpeg_quality.or(d.mjpeg_quality),
    }
}

fn merge_synthetic(o: &Synthetic, d: &Synthetic) -> Synthetic {
    Synthetic {
        drift_ppm: o.drift_ppm.or(d.drift_ppm),
        jitter_us: o.jitter_us.or(d.jitter_us),
        drop_every: o.drop_every.or(d.drop_every),
    }
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

/// The site span an identity key of a node's card comes from.
fn node_span(file: &SiteFile, spanned: &Spanned<NodeSection>, key: &str) -> Range<usize> {
    let node = spanned.get_ref();
    let defaults = &file.site.node_defaults;
    // The node's own table if it sets the key, else [node_defaults]'s.
    fn pick<T>(
        own: &Option<Spanned<T>>,
        default: &Option<Spanned<T>>,
        sets: impl Fn(&T) -> bool,
    ) -> Option<Range<usize>> {
        own.as_ref()
            .filter(|o| sets(o.get_ref()))
            .or(default.as_ref())
            .or(own.as_ref())
            .map(|s| s.span())
    }
    let field = key.rsplit('.').next().unwrap_or("");
    shared_span(file, key)
        .or_else(|| match key {
            "hostname" => Some(node.name.span()),
            "network.address" => Some(node.address.span()),
            k if k.starts_with("node.camera.") => {
                pick(&node.camera, &defaults.camera, |c| match field {
                    "source" => c.source.is_some(),
                    "count" => c.count.is_some(),
                    "width" => c.width.is_some(),
                    "height" => c.height.is_some(),
                    "fps" => c.fps.is_some(),
                    _ => true,
                })
            }
            k if k.starts_with("node.recording.") => {
                pick(&node.recording, &defaults.recording, |r| match field {
                    "segment_seconds" => r.segment_seconds.is_some(),
                    "mjpeg_quality" => r.mjpeg_quality.is_some(),
                    _ => true,
                })
            }
            k if k.starts_with("node.synthetic") => {
                pick(&node.synthetic, &defaults.synthetic, |_| true)
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
        assert_eq!((camera.count, camera.fps), (Some(2), Some(25)));
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
        // fps comes from [node_defaults.camera] (line 10) for both nodes: reported once.
        assert_eq!(lines, vec![10, 19], "{problems:?}");
        assert!(problems[1].problem.contains("Camera_2"), "{}", problems[1]);
        assert!(problems[1].fix.contains("lowercase"), "{}", problems[1]);
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
