//! The harness's one error type: what failed while building, driving or tearing down a rig.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("the virtual rig needs root (network namespaces, veth, tc); run the tests as root")]
    NotRoot,
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not run `{command}`: {source}; is it installed (ci/install-deps)?")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("binary `{name}` not found in {looked_in:?}; build it first with `cargo build --workspace --bins`")]
    MissingBinary {
        name: String,
        looked_in: Vec<PathBuf>,
    },
    /// A service config the rig was asked to write is not one the schema takes.
    #[error("{0}")]
    Config(String),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("this kernel has no {qdisc} queueing discipline, so links cannot be given {feature}")]
    KernelLacks {
        qdisc: &'static str,
        feature: &'static str,
    },
    #[error("entering network namespace {name}: {source}")]
    Setns { name: String, source: nix::Error },
    #[error("http {method} {url}: {detail}")]
    Http {
        method: String,
        url: String,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl RigError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
        let what = what.into();
        move |source| RigError::Io { what, source }
    }
}

pub type Result<T, E = RigError> = std::result::Result<T, E>;
