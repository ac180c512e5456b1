//! The boot step `camrig-identity apply`: read camrig.toml, check it against the image's
//! role, apply it, or leave the error state: a banner on the console and above every login
//! prompt, and a failed camrig-identity.service that the camrig services require (so they
//! do not start, and `systemctl status` says why).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::apply::{self, under, ApplyError, ApplyOptions, Report};
use crate::identity::{self, Role};
use crate::render::{self, ISSUE_PATH};
use crate::validate::{self, IdentityError};

/// Why the boot step failed; each has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("no identity file at {0}: write this card's camrig.toml onto its boot partition")]
    Missing(PathBuf),
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        source: IdentityError,
    },
    #[error(
        "{path} says role = \"{identity}\" but this is a {image} image: write the card with the {identity} image, or give it a {image}'s camrig.toml"
    )]
    WrongRole {
        path: PathBuf,
        identity: Role,
        image: Role,
    },
    #[error("cannot read the image's role from {path}: {why}")]
    ImageRole { path: PathBuf, why: String },
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl BootError {
    /// Exit codes: 2 identity missing, 3 identity invalid or for the other role,
    /// 4 the image is broken or writing failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            BootError::Missing(_) => 2,
            BootError::Unreadable { .. }
            | BootError::Invalid { .. }
            | BootError::WrongRole { .. } => 3,
            BootError::ImageRole { .. } | BootError::Apply(_) => 4,
        }
    }
}

/// Inputs of the boot step.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub identity: PathBuf,
    /// The image's role; read from `image_role_file` under the root when `None`.
    pub image_role: Option<Role>,
    pub image_role_file: PathBuf,
    pub apply: ApplyOptions,
}

/// Reads the image's role file.
pub fn image_role(path: &Path) -> Result<Role, BootError> {
    let text = fs::read_to_string(path).map_err(|e| BootError::ImageRole {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    text.parse().map_err(|why| BootError::ImageRole {
        path: path.to_owned(),
        why,
    })
}

fn load(opts: &BootOptions) -> Result<(identity::Identity, Role), BootError> {
    let image = match opts.image_role {
        Some(role) => role,
        None => image_role(&under(&opts.apply.root, &opts.image_role_file))?,
    };
    let path = &opts.identity;
    let text = fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => BootError::Missing(path.clone()),
        _ => BootError::Unreadable {
            path: path.clone(),
            source,
        },
    })?;
    let id = validate::parse(&text).map_err(|source| BootError::Invalid {
        path: path.clone(),
        source,
    })?;
    if id.role != image {
        return Err(BootError::WrongRole {
            path: path.clone(),
            identity: id.role,
            image,
        });
    }
    Ok((id, image))
}

/// Runs the boot step. On an identity error the banner is written to the issue file
/// under the root before the error is returned (the caller prints it to the console).
pub fn run(opts: &BootOptions) -> Result<Report, BootError> {
    let issue = under(&opts.apply.root, Path::new(ISSUE_PATH));
    match load(opts) {
        Ok((id, _)) => {
            let report = apply::apply(&render::plan(&id), &opts.apply)?;
            let _ = fs::remove_file(&issue);
            Ok(report)
        }
        Err(e) => {
            // Best effort: the error itself matters more than the login-prompt copy.
            let _ = apply::write_atomic(
                &issue,
                render::error_banner(&e.to_string()).as_bytes(),
                0o644,
                None,
            );
            Err(e)
        }
    }
}
