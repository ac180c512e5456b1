//! The site file: one TOML description of a whole rig (subnet, controller, nodes, cameras,
//! time), parsed strictly and checked as a whole before anything is written.
//!
//! Every problem carries the line it is about, so the user can jump to it. The checks here
//! are the ones that need the whole rig at once (duplicate names and addresses, addresses
//! outside the subnet, the controller in the node list); the per-device checks (hostnames,
//! camera modes, SSH key syntax) are the identity crate's, run on each device's camrig.toml
//! by [`crate::cards`] and reported at the site's line too.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::ops::Range;

use camrig_identity::camera_wiring::CameraPort;
use camrig_identity::cidr::Ipv4Cidr;
use camrig_identity::identity::{CameraConfig, RecordingConfig, SyntheticConfig};
use camrig_protocol::camera_settings::CameraSettings;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The site file format version this tool reads.
pub const FORMAT_VERSION: u32 = 1;

/// A whole rig, as described by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub format: Spanned<u32>,
    pub rig: Spanned<RigSection>,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub time: TimeSection,
    pub controller: Spanned<ControllerSection>,
    /// Settings every node starts from; a node's own sections override them key by key.
    #[serde(default)]
    pub node_defaults: NodeDefaults,
    #[serde(default, rename = "node")]
    pub nodes: Vec<Spanned<NodeSection>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigSection {
    /// Names the rig in key comments and ties a state directory to it.
    pub name: Spanned<String>,
    pub subnet: Spanned<Ipv4Cidr>,
    pub gateway: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Ethernet interface to configure on every device; empty: every Ethernet port.
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Public keys that may log in as root on every device.
    #[serde(default)]
    pub authorized_keys: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSection {
    /// Upstream NTP servers of the controller; empty: the controller's clock is the reference.
    #[serde(default)]
    pub upstream: Vec<Spanned<String>>,
    /// START is refused when a node's clock is further off than this.
    pub max_clock_offset_ms: Option<Spanned<f64>>,
    /// START is refused while a node is not synchronised to the controller.
    pub require_node_sync: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSection {
    pub hostname: Spanned<String>,
    pub address: Spanned<Ipv4Addr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDefaults {
    pub standalone: Option<bool>,
    pub camera: Option<Section<CameraConfig>>,
    pub recording: Option<Section<RecordingConfig>>,
    pub synthetic: Option<Section<SyntheticConfig>>,
    /// The cameras' settings at start-up; a node's own table replaces this one whole.
    pub camera_settings: Option<Spanned<CameraSettings>>,
    /// Camera wiring of every node that gives none of its own.
    pub camera_wiring: Option<Wiring>,
}

/// `camera_wiring`: which CSI sensor is on which port (camrig-identity's `camera_wiring`).
pub type Wiring = Spanned<Vec<Spanned<CameraPort>>>;

/// A table of node settings as the site gives it (`[node_defaults.camera]`,
/// `[node.recording]`, …): its keys with their places in the file, so a node's table can
/// override `[node_defaults]` key by key and every problem names its line. The keys and
/// their types are those of the node config's section `T` (camrig-config), so a setting the
/// node gains is a setting the site file has, with nothing added here.
#[derive(Debug, Clone)]
pub struct Section<T> {
    /// The whole table.
    pub span: Range<usize>,
    /// Each key with its span, and its value.
    pub entries: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    section: PhantomData<fn() -> T>,
}

impl<'de, T> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table: Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>> =
            Deserialize::deserialize(d)?;
        Ok(Section {
            span: table.span(),
            entries: table.into_inner(),
            section: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> Section<T> {
    /// The span of `key` when this table sets it.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.entries
            .get_key_value(key)
            .map(|(k, v)| k.span().start..v.span().end)
    }

    /// Keys `T` refuses (unknown, or a value of the wrong type): their spans and why.
    pub fn problems(&self) -> Vec<(Range<usize>, String)> {
        let mut problems: Vec<(Range<usize>, String)> = self
            .entries
            .iter()
            .filter_map(|(key, value)| {
                one_key::<T>(key.get_ref(), value.get_ref())
                    .err()
                    .map(|e| (key.span().start..value.span().end, e))
            })
            .collect();
        // In the file's order, not the keys' alphabetical one.
        problems.sort_by_key(|(span, _)| span.start);
        problems
    }

    /// The keys `T` takes, as a table (refused ones are left out: [`check`] reports them).
    fn valid_entries(&self) -> toml::Table {
        self.entries
            .iter()
            .filter(|(k, v)| one_key::<T>(k.get_ref(), v.get_ref()).is_ok())
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect()
    }
}

/// Whether `T` takes `key = value` (every other key at its default).
fn one_key<T: DeserializeOwned>(key: &str, value: &toml::Value) -> Result<(), String> {
    let mut table = toml::Table::new();
    table.insert(key.to_owned(), value.clone());
    toml::Value::Table(table)
        .try_into::<T>()
        .map(|_| ())
        .map_err(|e| e.message().trim_end().replace('\n', " "))
}

/// A node's table over `[node_defaults]`' key by key, as a table of the keys `T` takes;
/// `None` when neither sets anything.
pub fn merged<T: DeserializeOwned>(
    own: Option<&Section<T>>,
    defaults: Option<&Section<T>>,
) -> Option<toml::Table> {
    if own.is_none() && defaults.is_none() {
        return None;
    }
    let mut table = defaults.map(Section::valid_entries).unwrap_or_default();
    table.extend(own.map(Section::valid_entries).unwrap_or_default());
    Some(table)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's host name, also its display name on the controller.
    pub name: Spanned<String>,
    pub address: Spanned<Ipv4Addr>,
    /// The node's API port, 8081 unless changed.
    pub port: Option<Spanned<u16>>,
    /// The `<node>` part of file names; unset: the node's IP with dots as underscores.
    pub file_name: Option<Spanned<String>>,
    pub standalone: Option<bool>,
    pub camera: Option<Section<CameraConfig>>,
    pub recording: Option<Section<RecordingConfig>>,
    pub synthetic: Option<Section<SyntheticConfig>>,
    pub camera_settings: Option<Spanned<CameraSettings>>,
    /// Which CSI sensor is on which port, cam1 the lowest port; replaces
    /// `[node_defaults]`' whole.
    pub camera_wiring: Option<Wiring>,
}

/// One thing wrong with a site file, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteProblem {
    pub line: usize,
    /// Where in the site, like `node[1].address` (`node 'camrig-node-102'`).
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for SiteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: {}; {}",
            self.line, self.key, self.problem, self.fix
        )
    }
}

/// Why a site file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{} problem(s), nothing was written:\n{}", .0.len(), list(.0))]
    Invalid(Vec<SiteProblem>),
}

/// The problems as an indented list, one per line.
pub fn list(problems: &[SiteProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A parsed site together with its text, so later checks can name lines.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub site: Site,
    pub text: String,
}

impl SiteFile {
    /// 1-based line of a span's start.
    pub fn line(&self, span: Range<usize>) -> usize {
        line_column(&self.text, span.start).0
    }
}

/// Parses a site file and runs the whole-rig checks (not yet the per-device ones).
pub fn parse(text: &str) -> Result<SiteFile, SiteError> {
    let file = parse_syntax(text)?;
    let problems = check(&file);
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(SiteError::Invalid(problems))
    }
}

/// Parses a site file: syntax, types and unknown keys only.
pub fn parse_syntax(text: &str) -> Result<SiteFile, SiteError> {
    let site: Site = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((0, 0));
        SiteError::Syntax {
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    Ok(SiteFile {
        site,
        text: text.to_owned(),
    })
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl NodeSection {
    /// How the node is named in messages: `node 'camrig-node-101'`.
    pub fn label(&self) -> String {
        format!("node '{}'", self.name.get_ref())
    }
}

/// The whole-rig checks. Per-device ones run later on each device's identity.
pub fn check(file: &SiteFile) -> Vec<SiteProblem> {
    let site = &file.site;
    let mut out = Vec::new();
    let mut fail = |span: Range<usize>, key: String, problem: String, fix: &str| {
        out.push(SiteProblem {
            line: file.line(span),
            key,
            problem,
            fix: fix.to_owned(),
        })
    };

    if *site.format.get_ref() != FORMAT_VERSION {
        fail(
            site.format.span(),
            "format".into(),
            format!(
                "is {}, this tool reads format {FORMAT_VERSION}",
                site.format.get_ref()
            ),
            "write format = 1",
        );
    }

    let rig = site.rig.get_ref();
    let name = rig.name.get_ref();
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        fail(
            rig.name.span(),
            "rig.name".into(),
            format!("'{name}' is not a short lowercase name"),
            "use up to 32 lowercase letters, digits and '-', like \"studio-a\"",
        );
    }
    let subnet = *rig.subnet.get_ref();
    // Addresses a device cannot have: the network's own and its broadcast address (a /31 or
    // /32 has neither).
    let reserved = |ip: Ipv4Addr| {
        subnet.prefix() <= 30 && (ip == subnet.network() || ip == subnet.broadcast())
    };

    let ctl = site.controller.get_ref();
    let ctl_ip = *ctl.address.get_ref();
    let gateway = rig.gateway.as_ref().map(|g| *g.get_ref());

    if let Some(gw) = &rig.gateway {
        let ip = *gw.get_ref();
        if !subnet.contains(ip) {
            fail(
                gw.span(),
                "rig.gateway".into(),
                format!("{ip} is outside the rig's subnet {subnet}"),
                "give the router's address inside rig.subnet, or leave gateway out",
            );
        } else if reserved(ip) {
            fail(
                gw.span(),
                "rig.gateway".into(),
                format!("{ip} is the subnet's network or broadcast address"),
                "give the router's address, or leave gateway out",
            );
        }
    }

    let mut device_address = |span: Range<usize>, key: String, ip: Ipv4Addr, what: &str| {
        if !subnet.contains(ip) {
            fail(
                span,
                key,
                format!("{ip} is outside the rig's subnet {subnet}"),
                &format!("give {what} an address inside rig.subnet (or fix rig.subnet)"),
            );
        } else if reserved(ip) {
            fail(
                span,
                key,
                format!("{ip} is the subnet's network or broadcast address"),
                &format!("give {what} a host address between them"),
            );
        } else if Some(ip) == gateway {
            fail(
                span,
                key,
                format!("{ip} is the gateway's address"),
                &format!("give {what} its own address"),
            );
        }
    };
    device_address(
        ctl.address.span(),
        "controller.address".into(),
        ctl_ip,
        "the controller",
    );
    for (i, node) in site.nodes.iter().enumerate() {
        let node = node.get_ref();
        device_address(
            node.address.span(),
            format!("node[{i}].address ({})", node.label()),
            *node.address.get_ref(),
            "this node",
        );
    }

    let defaults = &site.node_defaults;
    node_sections(
        &mut fail,
        "node_defaults",
        "",
        &defaults.camera,
        &defaults.recording,
        &defaults.synthetic,
    );

    if site.nodes.is_empty() {
        fail(
            site.controller.span(),
            "node".into(),
            "the site has no nodes".into(),
            "add one [[node]] table (name, address) per camera Pi",
        );
    }

    // Duplicates: first occurrence wins, every later one is reported with the line of the
    // first so the user sees both.
    let ctl_line = file.line(ctl.address.span());
    let mut addresses: HashMap<Ipv4Addr, String> = HashMap::new();
    let ctl_name_line = file.line(ctl.hostname.span());
    let mut names: HashMap<String, String> = HashMap::new();
    let mut file_names: HashMap<String, String> = HashMap::new();
    names.insert(
        ctl.hostname.get_ref().clone(),
        format!("the controller's hostname (line {ctl_name_line})"),
    );
    for (i, spanned) in site.nodes.iter().enumerate() {
        let node = spanned.get_ref();
        let ip = *node.address.get_ref();
        let key = format!("node[{i}].address ({})", node.label());
        if ip == ctl_ip {
            fail(
                node.address.span(),
                key,
                format!("{ip} is the controller's address (line {ctl_line})"),
                "the controller is not a node: give this camera Pi its own address",
            );
        } else if let Some(first) = addresses.get(&ip) {
            fail(
                node.address.span(),
                key,
                format!("{ip} is also {first}"),
                "give every device its own address",
            );
        } else {
            let line = file.line(node.address.span());
            addresses.insert(ip, format!("the address of {} (line {line})", node.label()));
        }

        let name = node.name.get_ref();
        if let Some(first) = names.get(name) {
            fail(
                node.name.span(),
                format!("node[{i}].name"),
                format!("'{name}' is also {first}"),
                "give every device its own name",
            );
        } else {
            let line = file.line(node.name.span());
            names.insert(name.clone(), format!("the name of node[{i}] (line {line})"));
        }
        if let Some(file_name) = &node.file_name {
            let label = file_name.get_ref();
            let key = format!("node[{i}].file_name ({})", node.label());
            if label.is_empty()
                || label.len() > 32
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                fail(
                    file_name.span(),
                    key,
                    format!("'{label}' cannot be part of a file name"),
                    "use up to 32 letters, digits, '-' and '_', like \"left\", or leave file_name out for the node's IP",
                );
            } else if let Some(first) = file_names.get(label) {
                fail(
                    file_name.span(),
                    key,
                    format!("'{label}' is also {first}"),
                    "give every node its own file_name: the names tell the footage apart",
                );
            } else {
                let line = file.line(file_name.span());
                file_names.insert(
                    label.clone(),
                    format!("the file_name of {} (line {line})", node.label()),
                );
            }
        }
        node_sections(
            &mut fail,
            &format!("node[{i}]"),
            &format!(" ({})", node.label()),
            &node.camera,
            &node.recording,
            &node.synthetic,
        );
        if let Some(port) = &node.port {
            if *port.get_ref() == 0 {
                fail(
                    port.span(),
                    format!("node[{i}].port ({})", node.label()),
                    "is 0".into(),
                    "give the node's API port (8081 unless changed), or leave port out",
                );
            }
        }
    }
    out
}

/// Keys of a node's (or `[node_defaults]`') camera, recording and synthetic tables that the
/// node config refuses.
fn node_sections(
    fail: &mut impl FnMut(Range<usize>, String, String, &str),
    owner: &str,
    label: &str,
    camera: &Option<Section<CameraConfig>>,
    recording: &Option<Section<RecordingConfig>>,
    synthetic: &Option<Section<SyntheticConfig>>,
) {
    let tables = [
        ("camera", camera.as_ref().map(Section::problems)),
        ("recording", recording.as_ref().map(Section::problems)),
        ("synthetic", synthetic.as_ref().map(Section::problems)),
    ];
    for (name, problems) in tables {
        for (span, problem) in problems.unwrap_or_default() {
            fail(
                span,
                format!("{owner}.{name}{label}"),
                problem,
                "use the node's keys of that table (node.example.toml lists them with their defaults)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provisioning tests' small rig (tests/fixtures/site.toml) with a gateway, so every
    /// line from the rig's on is one further down.
    fn site() -> String {
        include_str!("../tests/fixtures/site.toml").replace(
            "subnet = \"192.168.1.0/24\"\n",
            "subnet = \"192.168.1.0/24\"\ngateway = \"192.168.1.1\"\n",
        )
    }

    fn problems(text: &str) -> Vec<SiteProblem> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(SiteError::Invalid(p)) => p,
            Err(e) => panic!("expected problems, got {e}"),
        }
    }

    #[test]
    fn the_example_site_parses() {
        let file = parse(&site()).unwrap();
        let site = &file.site;
        assert_eq!(site.nodes.len(), 2);
        assert_eq!(
            *site.controller.get_ref().address.get_ref(),
            Ipv4Addr::new(192, 168, 1, 10)
        );
        let n1 = site.nodes[1].get_ref();
        let camera = n1.camera.as_ref().unwrap();
        assert_eq!(camera.entries["count"].get_ref().as_integer(), Some(2));
        assert_eq!(file.line(camera.key_span("count").unwrap()), 26);
        assert_eq!(file.line(n1.address.span()), 24);
    }

    #[test]
    fn duplicate_address_names_both_lines() {
        let text = site().replace("192.168.1.102", "192.168.1.101");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 24);
        assert!(p[0].key.starts_with("node[1].address"), "{}", p[0]);
        assert!(p[0].problem.contains("line 20"), "{}", p[0]);
        assert!(p[0].fix.contains("own address"));
    }

    #[test]
    fn controller_address_in_the_node_list_is_refused() {
        let text = site().replace("192.168.1.101", "192.168.1.10");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 20);
        assert!(
            p[0].problem.contains("controller's address (line 13)"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn addresses_outside_the_subnet_are_refused() {
        let text = site()
            .replace("192.168.1.102", "192.168.2.102")
            .replace("\"192.168.1.1\"", "\"10.0.0.1\"");
        let p = problems(&text);
        let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![6, 24], "{p:?}");
        assert!(p[1]
            .problem
            .contains("outside the rig's subnet 192.168.1.0/24"));
    }

    #[test]
    fn broadcast_and_gateway_addresses_are_refused() {
        let text = site()
            .replace("192.168.1.101", "192.168.1.255")
            .replace("192.168.1.102", "192.168.1.1");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].problem.contains("broadcast"));
        assert!(p[1].problem.contains("gateway"));
    }

    #[test]
    fn duplicate_names_including_the_controllers_are_refused() {
        let text = site()
            .replace("camrig-node-101", "camrig-controller")
            .replace("camrig-node-102", "camrig-controller");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].problem.contains("controller's hostname (line 12)"));
        assert_eq!(p[1].line, 23);
    }

    #[test]
    fn unknown_key_is_a_syntax_error_with_its_line() {
        let text = site().replace("gateway =", "gatway =");
        match parse(&text).unwrap_err() {
            SiteError::Syntax { line, message, .. } => {
                assert_eq!(line, 6);
                assert!(message.contains("unknown field `gatway`"), "{message}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn node_setting_keys_are_the_node_configs_and_named_at_their_line() {
        let text = site().replace("count = 2", "cuont = 2");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 26);
        assert_eq!(p[0].key, "node[1].camera (node 'camrig-node-102')");
        assert!(p[0].problem.contains("unknown field `cuont`"), "{}", p[0]);
        let text = site().replace("source = \"synthetic\"", "source = \"usb\"\nfps = \"fast\"");
        let p = problems(&text);
        assert_eq!(
            p.iter().map(|p| p.line).collect::<Vec<_>>(),
            [16, 17],
            "{p:?}"
        );
        assert!(p[0].key.starts_with("node_defaults.camera"), "{}", p[0]);
        assert!(p[0].problem.contains("usb"), "{}", p[0]);
        // Any key of the node config's section is a site key, with nothing added here.
        let text = site().replace("count = 2", "count = 2\npixel_format = \"NV12\"");
        assert_eq!(problems(&text), Vec::new());
        // Inline tables too, with the key's own line.
        let text = site().replace(
            "[node.camera]\ncount = 2\n",
            "camera = { count = 2, fsp = 1 }\n",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 25);
        assert!(p[0].problem.contains("unknown field `fsp`"), "{}", p[0]);
    }

    #[test]
    fn bad_subnet_says_what_to_write() {
        let text = site().replace("192.168.1.0/24", "192.168.1.0");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("line 5"), "{err}");
        assert!(err.contains("192.168.1.0/24"), "{err}");
    }

    #[test]
    fn file_names_must_be_usable_and_distinct() {
        let text = site()
            .replace(
                "address = \"192.168.1.101\"",
                "address = \"192.168.1.101\"\nfile_name = \"left\"",
            )
            .replace(
                "address = \"192.168.1.102\"",
                "address = \"192.168.1.102\"\nfile_name = \"left\"",
            );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0]
            .problem
            .contains("file_name of node 'camrig-node-101' (line 21)"));
        let p = problems(&text.replacen("\"left\"", "\"../x\"", 1));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].problem.contains("cannot be part of a file name"));
    }

    #[test]
    fn a_site_without_nodes_is_refused() {
        let end = site().find("[node_defaults").unwrap();
        let p = problems(&site()[..end]);
        assert_eq!(p.len(), 1);
        assert!(p[0].fix.contains("[[node]]"));
    }

    #[test]
    fn wrong_format_and_bad_rig_name_are_both_reported() {
        let text = site()
            .replace("format = 1", "format = 7")
            .replace("test-rig", "Studio A");
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["format", "rig.name"]);
    }
}
