//! Who may drive the rig: the operator's login (password → session cookie), the API token
//! (`Authorization: Bearer`), the opt-in trusted subnets, and the cross-site and Host checks
//! every request passes first ([`guard`], one layer over the whole router, so a route added
//! later is protected without a line of its own).
//!
//! The order of the checks in [`guard`]:
//! 1. the `Host` header must name this controller (configured `hosts`, the listen address,
//!    localhost): a DNS-rebound name reaches nothing (421);
//! 2. a state-changing request (anything but GET/HEAD) must be JSON and same-origin: no
//!    foreign `Origin`, `Sec-Fetch-Site` only `same-origin` or `none` (403), and
//!    `Content-Type: application/json` (415), which no cross-site form can send;
//! 3. anything but the login page and `POST /api/login` needs a credential: a session
//!    cookie, the API token, or a client address in a trusted subnet (401; the UI's page
//!    redirects to `/login`).
//!
//! Sessions live in memory (a controller restart logs everyone out) and last
//! [`SESSION_LIFETIME`]. A password changed from the UI or CLI is kept in
//! `<data_dir>/operator-password.toml` together with the provisioned hash it replaced, so a
//! new password provisioned later (`camrig provision rotate --password`) wins again.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use camrig_protocol::operator_password;

use crate::http_error::ApiError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "camrig_session";
/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Sessions kept at most (the oldest goes first); a rig has a handful of operators.
const MAX_SESSIONS: usize = 256;
/// A failed login waits this long before answering, so guessing is slow.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);
/// Where a password changed on the controller is kept, under `data_dir`.
pub const CHANGED_PASSWORD_FILE: &str = "operator-password.toml";

pub use camrig_config::controller::AccessConfig;

/// How a request proved itself; handlers that need more (changing the password) look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    ApiToken,
    Session,
    TrustedSubnet,
}

/// The password changed on the controller, and the provisioned hash it replaced.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangedPassword {
    format: u32,
    /// The provisioned hash this change replaced; a different one provisioned since wins.
    replaces: String,
    hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the current password is wrong")]
    WrongPassword,
    #[error(transparent)]
    BadPassword(#[from] operator_password::PasswordError),
    #[error("cannot keep the new password in {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The controller's live access state: the credentials and the open sessions.
pub struct Access {
    config: AccessConfig,
    /// Host names accepted in `Host` (lowercase, without port).
    hosts: Vec<String>,
    password_hash: RwLock<Option<String>>,
    changed_password_file: PathBuf,
    /// Session id → when it ends.
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Access {
    /// `listen` adds the controller's own address to the accepted hosts; `data_dir` holds a
    /// password changed on the controller.
    pub fn new(config: AccessConfig, listen: SocketAddr, data_dir: &Path) -> Access {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        if !listen.ip().is_unspecified() {
            hosts.push(listen.ip().to_string());
        }
        hosts.extend(config.hosts.iter().map(|h| h.to_ascii_lowercase()));
        let changed_password_file = data_dir.join(CHANGED_PASSWORD_FILE);
        let password_hash = effective_password(&config, &changed_password_file);
        Access {
            config,
            hosts,
            password_hash: RwLock::new(password_hash),
            changed_password_file,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a password login is possible (else only the token logs in).
    pub fn has_password(&self) -> bool {
        self.password_hash.read().expect("lock").is_some()
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host_without_port(host).to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.config.api_token.as_bytes())
    }

    fn session_valid(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().expect("lock");
        match sessions.get(id) {
            Some(end) if *end > Instant::now() => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    /// Checks a login (the password, or the API token for the one-click link) and opens a
    /// session. `None` after [`FAILED_LOGIN_DELAY`] when it is wrong.
    pub async fn login(&self, password: Option<&str>, token: Option<&str>) -> Option<String> {
        let ok = match (password, token) {
            (_, Some(t)) => self.token_matches(t),
            (Some(p), None) => {
                let hash = self.password_hash.read().expect("lock").clone();
                match hash {
                    // Argon2 takes tens of milliseconds: off the async workers.
                    Some(h) => {
                        let p = p.to_owned();
                        tokio::task::spawn_blocking(move || operator_password::verify(&p, &h))
                            .await
                            .unwrap_or(false)
                    }
                    None => false,
                }
            }
            (None, None) => false,
        };
        if !ok {
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            return None;
        }
        let id = random_hex(32);
        let mut sessions = self.sessions.lock().expect("lock");
        let now = Instant::now();
        sessions.retain(|_, end| *end > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now + SESSION_LIFETIME);
        Some(id)
    }

    pub fn logout(&self, session: &str) {
        self.sessions.lock().expect("lock").remove(session);
    }

    /// Changes the operator password. `current` must match unless the request came with the
    /// API token (the token is the rig's administrator credential: with it a lost password
    /// is replaced). Every other session ends.
    pub async fn change_password(
        &self,
        credential: Credential,
        current: Option<&str>,
        new: &str,
        keep_session: Option<&str>,
    ) -> Result<(), AccessError> {
        operator_password::check_new(new)?;
        if credential != Credential::ApiToken {
            let hash = self.password_hash.read().expect("lock").clone();
            let (Some(hash), Some(current)) = (hash, current) else {
                tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                return Err(AccessError::WrongPassword);
            };
            let current = current.to_owned();
            let ok =
                tokio::task::spawn_blocking(move || operator_password::verify(&current, &hash))
                    .await
                    .unwrap_or(false);
            if !ok {
                tokio::time::sleep(FAILED_LOGIN_DELAY).await;
                return Err(AccessError::WrongPassword);
            }
        }
        let salt: [u8; 16] = random_bytes();
        let new = new.to_owned();
        let hash = tokio::task::spawn_blocking(move || operator_password::hash(&new, &salt))
            .await
            .expect("hashing does not panic")?;
        let record = ChangedPassword {
            format: 1,
            replaces: self.config.password_hash.clone().unwrap_or_default(),
            hash: hash.clone(),
        };
        let text = format!(
            "# The operator password changed on this controller (camrig password / the web UI).\n{}",
            toml::to_string(&record).expect("serialises")
        );
        write_private(&self.changed_password_file, text.as_bytes()).map_err(|source| {
            AccessError::Save {
                path: self.changed_password_file.clone(),
                source,
            }
        })?;
        *self.password_hash.write().expect("lock") = Some(hash);
        self.sessions
            .lock()
            .expect("lock")
            .retain(|id, _| Some(id.as_str()) == keep_session);
        Ok(())
    }
}

/// The provisioned hash, or the one changed on the controller while it still replaces the
/// provisioned one.
fn effective_password(config: &AccessConfig, changed: &Path) -> Option<String> {
    let provisioned = config.password_hash.clone();
    let Ok(text) = std::fs::read_to_string(changed) else {
        return provisioned;
    };
    match toml::from_str::<ChangedPassword>(&text) {
        Ok(c)
            if c.format == 1
                && c.replaces == provisioned.clone().unwrap_or_default()
                && operator_password::check_hash(&c.hash).is_ok() =>
        {
            Some(c.hash)
        }
        Ok(_) => {
            tracing::warn!(
                file = %changed.display(),
                "a password was provisioned since the operator changed it; the provisioned one applies"
            );
            provisioned
        }
        Err(e) => {
            tracing::error!(file = %changed.display(), error = %e, "ignoring an unreadable changed password");
            provisioned
        }
    }
}

/// temp → fsync → rename, mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("the kernel's random source is readable");
    buf
}

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("the kernel's random source is readable");
    hex::encode(buf)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `name`, `name:port`, `[v6]:port` or `v6` → the host part.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // More than one colon: a bare IPv6 address.
        Some((h, _)) if !h.contains(':') => h,
        _ => host,
    }
}

/// The session id in the request's cookies, if any.
pub fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` for a new session (or, with `None`, one that clears it).
pub fn session_cookie(id: Option<&str>) -> HeaderValue {
    let text = match id {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&text).expect("cookie is ASCII")
}

/// Paths anyone may load: the login page and what it needs.
fn is_public(method: &Method, path: &str) -> bool {
    match path {
        "/login" | "/login.js" | "/style.css" => method == Method::GET || method == Method::HEAD,
        "/api/login" => method == Method::POST,
        _ => false,
    }
}

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The layer in front of every route (see the module doc for the order of checks).
pub async fn guard(
    State(access): State<std::sync::Arc<Access>>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return ApiError::bad_request("the request has no Host header").into_response();
    };
    if !access.host_allowed(host) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this controller does not answer for the host name {:?}; use its configured name or address (add a name under [access] hosts in controller.toml)",
                host_without_port(host)
            ),
        )
        .into_response();
    }
    let method = req.method().clone();
    if !is_safe(&method) {
        if let Err(e) = same_origin(headers, host) {
            return e.into_response();
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a request that changes something must be JSON: send Content-Type: application/json (and {} when there is nothing to say)",
            )
            .into_response();
        }
    }
    let path = req.uri().path().to_owned();
    if is_public(&method, &path) {
        return next.run(req).await;
    }
    let credential = credential_of(&access, &req);
    match credential {
        Some(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        None if path == "/" && is_safe(&method) => Redirect::to("/login").into_response(),
        None => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "log in first: open the web UI's login page, or send the rig's API token as \"Authorization: Bearer <token>\" (the camrig CLI reads CAMRIG_TOKEN or CAMRIG_TOKEN_FILE)",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"camrig\""),
            );
            resp
        }
    }
}

fn credential_of(access: &Access, req: &Request) -> Option<Credential> {
    let headers = req.headers();
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // A wrong token is a failed login, whatever else the request carries.
        return auth
            .strip_prefix("Bearer ")
            .filter(|t| access.token_matches(t.trim()))
            .map(|_| Credential::ApiToken);
    }
    if let Some(id) = session_of(headers) {
        if access.session_valid(&id) {
            return Some(Credential::Session);
        }
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    access
        .config
        .trusted_subnets
        .iter()
        .any(|s| s.contains(peer))
        .then_some(Credential::TrustedSubnet)
}

/// A browser names where a request comes from; anything but this page's own origin is
/// refused. Clients that are not browsers (the CLI, scripts) send neither header.
fn same_origin(headers: &HeaderMap, host: &str) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-site request refused (Sec-Fetch-Site: {site}); drive the rig from its own web UI"),
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-site request refused (Origin: {origin}); drive the rig from its own web UI"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("camrig:8080"), "camrig");
        assert_eq!(host_without_port("10.0.0.1"), "10.0.0.1");
        assert_eq!(host_without_port("[::1]:8080"), "::1");
        assert_eq!(host_without_port("fe80::1"), "fe80::1");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; camrig_session=abc; b=2"),
        );
        assert_eq!(session_of(&h).as_deref(), Some("abc"));
        let c = session_cookie(Some("x")).to_str().unwrap().to_owned();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
