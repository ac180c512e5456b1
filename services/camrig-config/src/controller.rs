//! The controller's configuration file (`/etc/camrig/controller.toml`): parsing, defaults
//! and validation. [`Config::parse`] is pure; [`Config::load`] adds the file reads (the
//! config itself and the optional `token_file`, `[access] api_token_file` and
//! `password_hash_file`). Every refusal names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use camrig_protocol::api::NODE_API_PORT;
use camrig_protocol::operator_password;

pub use crate::access::{AccessConfig, Subnet};

/// A validated controller configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub downloads_dir: PathBuf,
    /// The rig token, already read from `token_file` when that was given.
    pub token: String,
    pub ssh_key: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_user: String,
    pub start_lead: Duration,
    pub stop_lead: Duration,
    /// START is refused while a node's measured offset is beyond this.
    pub max_clock_offset_ns: i64,
    pub download_parallelism: usize,
    /// When false, a node whose kernel says its clock is unsynchronised may still start
    /// (the measured offset limit still applies). For rigs on one host clock (demo, CI).
    pub require_node_sync: bool,
    /// Who may use the UI and API (`[access]`).
    pub access: AccessConfig,
    /// The sync report's tolerance on the skew bound; `None` = a quarter of the frame period.
    pub sync_tolerance_ns: Option<i64>,
    pub nodes: Vec<NodeConfig>,
    /// `[health]`: what makes a node's health hold START back.
    pub health: HealthLimits,
    /// `[webhook]`: where take events are POSTed, if anywhere.
    pub webhook: Option<WebhookConfig>,
}

/// `[health]`: START is refused (unless overridden) when a node is throttled,
/// under-voltage, hotter than `max_temp_c` or holds less than `min_record_minutes` of
/// recording (or the take's planned duration); it is refused outright when a node cannot
/// record at all (no camera, or free space below its floor).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthLimits {
    pub max_temp_c: f64,
    pub min_record_seconds: u64,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits {
            max_temp_c: 80.0,
            min_record_seconds: 30 * 60,
        }
    }
}

/// `[webhook]`: take events POSTed as JSON (the controller's `webhook` module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://host:port/path` (the controller speaks plain HTTP only).
    pub url: String,
    pub timeout: Duration,
    /// Further attempts after a failed one (1 s, 2 s, 4 s … apart).
    pub retries: u32,
}

/// One camera Pi.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// IP address or host name of the node API; also the folder name downloads sort into.
    pub address: String,
    pub port: u16,
    /// Display name; empty when not configured.
    pub name: String,
    pub rsync_source: RsyncSource,
}

impl NodeConfig {
    /// `http://address:port`
    pub fn base_url(&self) -> String {
        if self.address.contains(':') {
            format!("http://[{}]:{}", self.address, self.port)
        } else {
            format!("http://{}:{}", self.address, self.port)
        }
    }

    /// What the UI and messages call this node.
    pub fn display(&self) -> String {
        if self.name.is_empty() {
            self.address.clone()
        } else {
            format!("{} ({})", self.name, self.address)
        }
    }
}

/// Where a node's `recordings` directory is, as rsync sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RsyncSource {
    /// A directory on this machine (the demo rig, tests).
    Local(PathBuf),
    /// `user@host:path` over SSH.
    Remote {
        user: String,
        host: String,
        port: u16,
        path: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// `controller.toml` as written; every key optional except the nodes. [`Config::parse`] reads
/// and validates it; tools that write a controller config build one and call
/// [`ControllerFile::to_toml`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerFile {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads_dir: Option<PathBuf>,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub token_file: String,
    #[serde(default = "default_ssh_key")]
    pub ssh_key: PathBuf,
    #[serde(default = "default_known_hosts")]
    pub known_hosts: PathBuf,
    #[serde(default = "default_ssh_user")]
    pub ssh_user: String,
    #[serde(default = "default_start_lead")]
    pub start_lead_ms: u64,
    #[serde(default = "default_stop_lead")]
    pub stop_lead_ms: u64,
    #[serde(default = "default_max_offset")]
    pub max_clock_offset_ms: f64,
    #[serde(default = "default_parallelism")]
    pub download_parallelism: usize,
    #[serde(default = "default_true")]
    pub require_node_sync: bool,
    /// Who may use the UI and API; required (there is no default password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessEntry>,
    /// The sync report's tolerance, µs; absent = a quarter of the frame period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_tolerance_us: Option<f64>,
    #[serde(default)]
    pub node: Vec<NodeEntry>,
    /// `[health]`: what makes a node's health hold START back.
    #[serde(default)]
    pub health: HealthFile,
    /// `[webhook]`: where take events are POSTed; absent = nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookFile>,
}

/// `[health]` of `controller.toml` as written.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    #[serde(default = "default_max_temp")]
    pub max_temp_c: f64,
    #[serde(default = "default_min_record_minutes")]
    pub min_record_minutes: f64,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            max_temp_c: default_max_temp(),
            min_record_minutes: default_min_record_minutes(),
        }
    }
}

fn default_max_temp() -> f64 {
    80.0
}
fn default_min_record_minutes() -> f64 {
    30.0
}

/// `[webhook]` of `controller.toml` as written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_webhook_retries")]
    pub retries: u32,
}

impl WebhookFile {
    /// A webhook at `url` with the default timeout and retries.
    pub fn new(url: impl Into<String>) -> WebhookFile {
        WebhookFile {
            url: url.into(),
            timeout_ms: default_webhook_timeout(),
            retries: default_webhook_retries(),
        }
    }
}

fn default_webhook_timeout() -> u64 {
    5000
}
fn default_webhook_retries() -> u32 {
    3
}

/// `[access]` as written: the operator's credentials, inline or as files.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_token_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_hash: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_hash_file: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_subnets: Vec<String>,
}

/// One `[[node]]` of `controller.toml`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub address: String,
    #[serde(default = "default_node_port")]
    pub port: u16,
    #[serde(default)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_source: Option<String>,
    /// SSH port of the node for rsync (default 22).
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
}

impl Default for ControllerFile {
    /// Every key at its default and no nodes (which [`Config::parse`] refuses: add some).
    fn default() -> ControllerFile {
        ControllerFile {
            listen: default_listen(),
            data_dir: default_data_dir(),
            downloads_dir: None,
            token: String::new(),
            token_file: String::new(),
            ssh_key: default_ssh_key(),
            known_hosts: default_known_hosts(),
            ssh_user: default_ssh_user(),
            start_lead_ms: default_start_lead(),
            stop_lead_ms: default_stop_lead(),
            max_clock_offset_ms: default_max_offset(),
            download_parallelism: default_parallelism(),
            require_node_sync: true,
            access: None,
            sync_tolerance_us: None,
            node: Vec::new(),
            health: HealthFile::default(),
            webhook: None,
        }
    }
}

impl ControllerFile {
    /// The config as `controller.toml` text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a controller config serialises as TOML")
    }
}

impl NodeEntry {
    /// A node at `address` with every other key at its default.
    pub fn new(address: impl Into<String>) -> NodeEntry {
        NodeEntry {
            address: address.into(),
            port: default_node_port(),
            name: String::new(),
            rsync_source: None,
            ssh_port: default_ssh_port(),
        }
    }
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_data_dir() -> PathBuf {
    "/var/lib/camrig-controller".into()
}
fn default_ssh_key() -> PathBuf {
    "/etc/camrig/ssh/id_ed25519".into()
}
fn default_known_hosts() -> PathBuf {
    "/etc/camrig/ssh/known_hosts".into()
}
fn default_ssh_user() -> String {
    "camrig".into()
}
fn default_start_lead() -> u64 {
    500
}
fn default_stop_lead() -> u64 {
    200
}
fn default_max_offset() -> f64 {
    1.0
}
fn default_parallelism() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_node_port() -> u16 {
    NODE_API_PORT
}
fn default_ssh_port() -> u16 {
    22
}

/// Where the token comes from before `token_file` is read.
#[derive(Debug, PartialEq)]
enum TokenSource {
    Inline(String),
    File(PathBuf),
}

impl Config {
    /// Reads and validates the file at `path`, including `token_file`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (mut config, token, files) = Config::parse_with_token_source(&text, path)?;
        if let Some(file) = files.api_token_file {
            config.access.api_token = read_secret(path, "access.api_token_file", &file)?;
        }
        if let Some(file) = files.password_hash_file {
            let hash = read_secret(path, "access.password_hash_file", &file)?;
            operator_password::check_hash(&hash).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                key: "access.password_hash_file".into(),
                problem: format!("{}: {e}", file.display()),
            })?;
            config.access.password_hash = Some(hash);
        }
        if let TokenSource::File(file) = token {
            let raw = std::fs::read_to_string(&file).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                key: "token_file".into(),
                problem: format!("cannot read {}: {e}", file.display()),
            })?;
            config.token = raw.trim().to_owned();
            if config.token.is_empty() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: "token_file".into(),
                    problem: format!("{} is empty; write the rig token into it", file.display()),
                });
            }
        }
        Ok(config)
    }

    /// Parses a config whose token is given inline (`token_file` is refused here because
    /// reading it is I/O; use [`Config::load`]). `origin` only labels error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let (config, token, files) = Config::parse_with_token_source(text, origin)?;
        if files.api_token_file.is_some() || files.password_hash_file.is_some() {
            return Err(invalid(
                origin,
                "access",
                "api_token_file and password_hash_file need Config::load (it reads the files)",
            ));
        }
        match token {
            TokenSource::Inline(_) => Ok(config),
            TokenSource::File(_) => Err(invalid(
                origin,
                "token_file",
                "token_file needs Config::load (it reads the file)",
            )),
        }
    }

    fn parse_with_token_source(
        text: &str,
        origin: &Path,
    ) -> Result<(Config, TokenSource, AccessFiles), ConfigError> {
        let raw: ControllerFile = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: origin.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(
                origin,
                "listen",
                &format!(
                    "{:?} is not an address:port such as \"0.0.0.0:8080\"",
                    raw.listen
                ),
            )
        })?;
        let token = match (raw.token.trim(), raw.token_file.trim()) {
            ("", "") => {
                return Err(invalid(
                    origin,
                    "token",
                    "no rig token: set token = \"...\" or token_file = \"/path\"",
                ))
            }
            (t, "") => TokenSource::Inline(t.to_owned()),
            ("", f) => TokenSource::File(PathBuf::from(f)),
            _ => {
                return Err(invalid(
                    origin,
                    "token",
                    "give either token or token_file, not both",
                ))
            }
        };
        for (key, path) in [("ssh_key", &raw.ssh_key), ("known_hosts", &raw.known_hosts)] {
            check_ssh_path(origin, key, path)?;
        }
        if raw.ssh_user.is_empty() || !raw.ssh_user.chars().all(is_user_char) {
            return Err(invalid(
                origin,
                "ssh_user",
                "must be a user name of A-Z a-z 0-9 . _ -",
            ));
        }
        if raw.start_lead_ms < 50 || raw.start_lead_ms > 10_000 {
            return Err(invalid(
                origin,
                "start_lead_ms",
                "must be 50-10000 (ms); the default 500 suits a LAN",
            ));
        }
        if raw.stop_lead_ms > 10_000 {
            return Err(invalid(origin, "stop_lead_ms", "must be 0-10000 (ms)"));
        }
        if raw
            .sync_tolerance_us
            .is_some_and(|us| !(us.is_finite() && us > 0.0))
        {
            return Err(invalid(
                origin,
                "sync_tolerance_us",
                "must be a positive number of microseconds (leave it out for a quarter of the frame period)",
            ));
        }
        if !(raw.max_clock_offset_ms.is_finite() && raw.max_clock_offset_ms > 0.0) {
            return Err(invalid(
                origin,
                "max_clock_offset_ms",
                "must be a positive number of milliseconds, e.g. 1.0",
            ));
        }
        if raw.download_parallelism == 0 || raw.download_parallelism > 64 {
            return Err(invalid(origin, "download_parallelism", "must be 1-64"));
        }
        if raw.node.is_empty() {
            return Err(invalid(
                origin,
                "node",
                "no [[node]] configured; add one [[node]] with address and rsync_source per camera Pi",
            ));
        }
        let mut nodes = Vec::with_capacity(raw.node.len());
        for (i, n) in raw.node.into_iter().enumerate() {
            let key = |k: &str| format!("node[{i}].{k}");
            let address = n.address.trim().to_owned();
            if address.is_empty()
                || address.starts_with('-')
                || !address
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            {
                return Err(invalid(
                    origin,
                    &key("address"),
                    &format!("{address:?} is not an IP address or host name"),
                ));
            }
            if n.port == 0 {
                return Err(invalid(origin, &key("port"), "must be 1-65535"));
            }
            if n.ssh_port == 0 {
                return Err(invalid(origin, &key("ssh_port"), "must be 1-65535"));
            }
            let source_text = n.rsync_source.unwrap_or_default();
            let rsync_source = parse_rsync_source(&source_text, &raw.ssh_user, n.ssh_port)
                .map_err(|problem| invalid(origin, &key("rsync_source"), &problem))?;
            if nodes
                .iter()
                .any(|o: &NodeConfig| o.address == address && o.port == n.port)
            {
                return Err(invalid(
                    origin,
                    &key("address"),
                    &format!("{address}:{} is configured twice", n.port),
                ));
            }
            if nodes.iter().any(|o: &NodeConfig| o.address == address) {
                // Downloads sort into one folder per node address; two nodes on one address
                // would mix their files.
                return Err(invalid(
                    origin,
                    &key("address"),
                    &format!("{address} is used by another node; every node needs its own address"),
                ));
            }
            nodes.push(NodeConfig {
                address,
                port: n.port,
                name: n.name.trim().to_owned(),
                rsync_source,
            });
        }
        let (access, access_files) = parse_access(origin, raw.access)?;
        if !(raw.health.max_temp_c.is_finite() && raw.health.max_temp_c > 0.0) {
            return Err(invalid(
                origin,
                "health.max_temp_c",
                "must be a positive temperature in °C, e.g. 80",
            ));
        }
        if !(raw.health.min_record_minutes.is_finite() && raw.health.min_record_minutes >= 0.0) {
            return Err(invalid(
                origin,
                "health.min_record_minutes",
                "must be 0 or more minutes, e.g. 30",
            ));
        }
        let health = HealthLimits {
            max_temp_c: raw.health.max_temp_c,
            min_record_seconds: (raw.health.min_record_minutes * 60.0).round() as u64,
        };
        let webhook = match raw.webhook {
            None => None,
            Some(w) => {
                let url = w.url.trim().to_owned();
                if !is_http_url(&url) {
                    return Err(invalid(
                        origin,
                        "webhook.url",
                        &format!("{url:?} is not an http:// URL such as \"http://10.0.0.5:9000/camrig\" (https is not supported)"),
                    ));
                }
                if w.timeout_ms == 0 || w.timeout_ms > 60_000 {
                    return Err(invalid(
                        origin,
                        "webhook.timeout_ms",
                        "must be 1-60000 (ms)",
                    ));
                }
                if w.retries > 10 {
                    return Err(invalid(origin, "webhook.retries", "must be 0-10"));
                }
                Some(WebhookConfig {
                    url,
                    timeout: Duration::from_millis(w.timeout_ms),
                    retries: w.retries,
                })
            }
        };
        let downloads_dir = raw
            .downloads_dir
            .unwrap_or_else(|| raw.data_dir.join("video_downloads"));
        let token_value = match &token {
            TokenSource::Inline(t) => t.clone(),
            TokenSource::File(_) => String::new(),
        };
        Ok((
            Config {
                listen,
                data_dir: raw.data_dir,
                downloads_dir,
                token: token_value,
                ssh_key: raw.ssh_key,
                known_hosts: raw.known_hosts,
                ssh_user: raw.ssh_user,
                start_lead: Duration::from_millis(raw.start_lead_ms),
                stop_lead: Duration::from_millis(raw.stop_lead_ms),
                max_clock_offset_ns: (raw.max_clock_offset_ms * 1e6).round() as i64,
                download_parallelism: raw.download_parallelism,
                require_node_sync: raw.require_node_sync,
                access,
                sync_tolerance_ns: raw.sync_tolerance_us.map(|us| (us * 1e3).round() as i64),
                nodes,
                health,
                webhook,
            },
            token,
            access_files,
        ))
    }
}

/// The `[access]` files [`Config::load`] still has to read.
#[derive(Debug, Default)]
struct AccessFiles {
    api_token_file: Option<PathBuf>,
    password_hash_file: Option<PathBuf>,
}

/// Shortest API token accepted (provisioning and the demo make 48 hex characters).
const MIN_API_TOKEN_CHARS: usize = 16;

fn parse_access(
    origin: &Path,
    raw: Option<AccessEntry>,
) -> Result<(AccessConfig, AccessFiles), ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(
            origin,
            "access",
            "no [access] section: the controller has no default password; give [access] api_token_file (and password_hash_file) as `camrig provision build` writes them, or see controller.example.toml",
        ));
    };
    let mut files = AccessFiles::default();
    let api_token = match (raw.api_token.trim(), raw.api_token_file.trim()) {
        ("", "") => {
            return Err(invalid(
                origin,
                "access.api_token",
                "no API token: set api_token = \"...\" or api_token_file = \"/path\"",
            ))
        }
        (t, "") => {
            if t.len() < MIN_API_TOKEN_CHARS || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    origin,
                    "access.api_token",
                    &format!("must be at least {MIN_API_TOKEN_CHARS} printable characters without spaces"),
                ));
            }
            t.to_owned()
        }
        ("", f) => {
            files.api_token_file = Some(PathBuf::from(f));
            String::new()
        }
        _ => {
            return Err(invalid(
                origin,
                "access.api_token",
                "give either api_token or api_token_file, not both",
            ))
        }
    };
    let password_hash = match (raw.password_hash.trim(), raw.password_hash_file.trim()) {
        ("", "") => None,
        (h, "") => {
            operator_password::check_hash(h)
                .map_err(|e| invalid(origin, "access.password_hash", &e.to_string()))?;
            Some(h.to_owned())
        }
        ("", f) => {
            files.password_hash_file = Some(PathBuf::from(f));
            None
        }
        _ => {
            return Err(invalid(
                origin,
                "access.password_hash",
                "give either password_hash or password_hash_file, not both",
            ))
        }
    };
    let mut hosts = Vec::with_capacity(raw.hosts.len());
    for (i, h) in raw.hosts.iter().enumerate() {
        let h = h.trim();
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(invalid(
                origin,
                &format!("access.hosts[{i}]"),
                &format!("{h:?} is not a host name or IP address (no port, no scheme)"),
            ));
        }
        hosts.push(h.to_owned());
    }
    let trusted_subnets = raw
        .trusted_subnets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Subnet::parse(s)
                .map_err(|p| invalid(origin, &format!("access.trusted_subnets[{i}]"), &p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        AccessConfig {
            api_token,
            password_hash,
            hosts,
            trusted_subnets,
        },
        files,
    ))
}

/// A one-line secret from a file named in the config.
fn read_secret(origin: &Path, key: &str, file: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        path: origin.to_owned(),
        key: key.into(),
        problem: format!("cannot read {}: {e}", file.display()),
    })?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Err(ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.into(),
            problem: format!("{} is empty", file.display()),
        });
    }
    Ok(value)
}

fn invalid(origin: &Path, key: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        path: origin.to_owned(),
        key: key.to_owned(),
        problem: problem.to_owned(),
    }
}

/// `http://host[:port][/path]`: plain HTTP (the controller's client speaks no TLS) with a
/// host and, if given, a numeric port.
fn is_http_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    !host.is_empty()
        && !host.chars().any(|c| c.is_whitespace())
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0))
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// rsync splits its `-e` command on spaces and honours quotes, so paths going into it must
/// contain neither; refusing them here keeps the ssh command exactly what we built.
fn check_ssh_path(origin: &Path, key: &str, path: &Path) -> Result<(), ConfigError> {
    let s = path.to_string_lossy();
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        return Err(invalid(
            origin,
            key,
            "must be a path without spaces or quotes",
        ));
    }
    Ok(())
}

/// `user@host:path`, `host:path` (user = `ssh_user`) or an absolute local path.
pub fn parse_rsync_source(
    text: &str,
    ssh_user: &str,
    ssh_port: u16,
) -> Result<RsyncSource, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "missing; give the node's recordings directory as user@host:/var/lib/camrig/recordings or a local path"
                .into(),
        );
    }
    if text.starts_with('-') {
        return Err(format!("{text:?} must not start with '-'"));
    }
    if text.starts_with('/') {
        return Ok(RsyncSource::Local(PathBuf::from(
            text.trim_end_matches('/'),
        )));
    }
    let Some((login, path)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is neither an absolute local path nor user@host:path"
        ));
    };
    let (user, host) = match login.split_once('@') {
        Some((u, h)) => (u.to_owned(), h.to_owned()),
        None => (ssh_user.to_owned(), login.to_owned()),
    };
    if user.is_empty() || !user.chars().all(is_user_char) {
        return Err(format!("{text:?}: the user must be A-Z a-z 0-9 . _ -"));
    }
    if host.is_empty()
        || host.starts_with('-')
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return Err(format!(
            "{text:?}: {host:?} is not a host name or IPv4 address"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{text:?}: the remote path must be absolute, e.g. /var/lib/camrig/recordings"
        ));
    }
    Ok(RsyncSource::Remote {
        user,
        host,
        port: ssh_port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("controller.toml"))
    }

    const MINIMAL: &str = r#"
token = "secret"
[access]
api_token = "0123456789abcdef0123"
[[node]]
address = "192.168.1.101"
rsync_source = "camrig@192.168.1.101:/var/lib/camrig/recordings"
"#;

    #[test]
    fn a_written_config_reads_back_through_the_reader() {
        let file = ControllerFile {
            token: "tok".into(),
            require_node_sync: false,
            access: Some(AccessEntry {
                api_token: "0123456789abcdef0123".into(),
                hosts: vec!["rig.local".into()],
                trusted_subnets: vec!["10.0.0.0/24".into()],
                ..AccessEntry::default()
            }),
            node: vec![NodeEntry {
                rsync_source: Some("/srv/node1/recordings".into()),
                ..NodeEntry::new("10.0.0.2")
            }],
            health: HealthFile {
                max_temp_c: 75.0,
                min_record_minutes: 10.0,
            },
            webhook: Some(WebhookFile::new("http://10.0.0.9:9000/camrig")),
            ..ControllerFile::default()
        };
        let text = file.to_toml();
        let back: ControllerFile = toml::from_str(&text).unwrap();
        assert_eq!(back, file);
        let c = Config::parse(&text, Path::new("controller.toml")).unwrap();
        assert_eq!(c.nodes[0].address, "10.0.0.2");
        assert!(!c.require_node_sync);
        assert_eq!(c.access.hosts, ["rig.local"]);
        assert_eq!(c.access.trusted_subnets[0].prefix, 24);
        assert_eq!(c.health.min_record_seconds, 600);
        assert_eq!(
            c.webhook,
            Some(WebhookConfig {
                url: "http://10.0.0.9:9000/camrig".into(),
                timeout: Duration::from_millis(5000),
                retries: 3,
            })
        );
    }

    #[test]
    fn the_shipped_example_parses_once_it_has_a_token() {
        let text = include_str!("../../camrig-controller/controller.example.toml")
            .replace("token = \"\"", "token = \"t\"")
            .replace(
                "api_token_file = ",
                "api_token = \"0123456789abcdef0123\"\n#",
            )
            .replace("password_hash_file = ", "#");
        let c = parse(&text).unwrap();
        assert_eq!(c.access.hosts, ["camrig-controller", "192.168.1.10"]);
        assert!(c.access.trusted_subnets.is_empty());
        assert_eq!(c.access.password_hash, None);
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].port, 8081);
        assert_eq!(c.start_lead, Duration::from_millis(500));
        assert_eq!(c.max_clock_offset_ns, 1_000_000);
        assert!(c.require_node_sync);
        assert_eq!(
            c.nodes[1].rsync_source,
            RsyncSource::Remote {
                user: "camrig".into(),
                host: "192.168.1.102".into(),
                port: 22,
                path: "/var/lib/camrig/recordings".into()
            }
        );
    }

    #[test]
    fn defaults_fill_what_is_missing() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.downloads_dir,
            PathBuf::from("/var/lib/camrig-controller/video_downloads")
        );
        assert_eq!(c.stop_lead, Duration::from_millis(200));
        assert_eq!(c.download_parallelism, 4);
        assert_eq!(c.nodes[0].base_url(), "http://192.168.1.101:8081");
    }

    fn problem(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_the_key() {
        assert!(problem(&format!("bogus = 1\n{MINIMAL}")).contains("bogus"));
        assert!(problem(&format!("listen = \"nope\"\n{MINIMAL}")).contains("listen"));
        assert!(problem(&MINIMAL.replace("token = \"secret\"", "")).contains("token"));
        assert!(problem(&format!("max_clock_offset_ms = -1.0\n{MINIMAL}"))
            .contains("max_clock_offset_ms"));
        assert!(problem(&format!("download_parallelism = 0\n{MINIMAL}"))
            .contains("download_parallelism"));
        assert!(problem(&format!("ssh_key = \"/a b\"\n{MINIMAL}")).contains("ssh_key"));
        assert!(problem("token = \"t\"\n").contains("node"));
        let e = problem(&MINIMAL.replace("camrig@192.168.1.101:/var", "-e sh:/var"));
        assert!(e.contains("node[0].rsync_source"), "{e}");
        let e = problem(&format!(
            "{MINIMAL}\n[[node]]\naddress = \"192.168.1.101\"\nport = 9000\nrsync_source = \"/x\"\n"
        ));
        assert!(e.contains("node[1].address"), "{e}");
        assert!(
            problem(&format!("{MINIMAL}[health]\nmax_temp_c = -3\n")).contains("health.max_temp_c")
        );
        let e = problem(&format!("{MINIMAL}[webhook]\nurl = \"https://x/y\"\n"));
        assert!(e.contains("webhook.url") && e.contains("https"), "{e}");
        let c = parse(&format!(
            "{MINIMAL}[health]\nmax_temp_c = 70\nmin_record_minutes = 5\n[webhook]\nurl = \"http://127.0.0.1:9/h\"\n"
        ))
        .unwrap();
        assert_eq!(c.health.min_record_seconds, 300);
        assert_eq!(c.webhook.unwrap().retries, 3);
        for bad in [
            "http://",
            "http:///x",
            "ftp://h/x",
            "http://h:x/y",
            "http://h:0/",
        ] {
            let e = problem(&format!("{MINIMAL}[webhook]\nurl = \"{bad}\"\n"));
            assert!(e.contains("webhook.url"), "{bad}: {e}");
        }
        assert!(problem(&format!(
            "{MINIMAL}[webhook]\nurl = \"http://h/\"\nretries = 11\n"
        ))
        .contains("webhook.retries"));
        assert!(
            problem(&format!("{MINIMAL}[health]\nmin_record_minutes = -1\n"))
                .contains("health.min_record_minutes")
        );
        let e = problem(&format!("{MINIMAL}color = \"red\"\n"));
        assert!(e.contains("color"), "{e}");
    }

    #[test]
    fn access_has_no_default() {
        let no_access = MINIMAL.replace("[access]\napi_token = \"0123456789abcdef0123\"\n", "");
        let e = problem(&no_access);
        assert!(
            e.contains("access") && e.contains("no default password"),
            "{e}"
        );
        let e = problem(&MINIMAL.replace("0123456789abcdef0123", "short"));
        assert!(e.contains("access.api_token"), "{e}");
        let with = |extra: &str| MINIMAL.replace("[access]\n", &format!("[access]\n{extra}\n"));
        let e = problem(&with("password_hash = \"hunter2\""));
        assert!(
            e.contains("access.password_hash") && e.contains("Argon2"),
            "{e}"
        );
        let e = problem(&with("trusted_subnets = [\"10.0.0.0/33\"]"));
        assert!(e.contains("access.trusted_subnets[0]"), "{e}");
        let e = problem(&with("hosts = [\"http://x\"]"));
        assert!(e.contains("access.hosts[0]"), "{e}");
        let c = parse(&with(
            "trusted_subnets = [\"192.168.1.0/24\"]\nhosts = [\"rig.local\"]",
        ))
        .unwrap();
        assert_eq!(c.access.trusted_subnets[0].prefix, 24);
        assert_eq!(c.access.hosts, ["rig.local"]);
    }

    #[test]
    fn rsync_sources() {
        assert_eq!(
            parse_rsync_source("/tmp/x/recordings/", "camrig", 22).unwrap(),
            RsyncSource::Local("/tmp/x/recordings".into())
        );
        assert_eq!(
            parse_rsync_source("10.0.0.5:/data", "pi", 2222).unwrap(),
            RsyncSource::Remote {
                user: "pi".into(),
                host: "10.0.0.5".into(),
                port: 2222,
                path: "/data".into()
            }
        );
        for bad in [
            "",
            "relative/dir",
            "host:relative",
            "-oProxyCommand=x:/a",
            "u@-h:/a",
            "a b@h:/x",
        ] {
            assert!(parse_rsync_source(bad, "camrig", 22).is_err(), "{bad}");
        }
    }
}
