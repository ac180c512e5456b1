//! The rig operator's password as provisioning stores it and the controller checks it: an
//! Argon2id hash in PHC string form (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), the
//! argon2 crate's recommended parameters. The plain password is never stored anywhere.
//!
//! Pure: the caller supplies the salt's random bytes, so this crate still does no I/O.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted when one is set or changed.
pub const MIN_CHARS: usize = 10;
/// Longest password accepted (Argon2 takes any length; this bounds the work per attempt).
pub const MAX_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must be {MIN_CHARS}-{MAX_CHARS} characters long")]
    BadLength,
    #[error("not an Argon2 password hash (a PHC string starting with $argon2id$): {0}")]
    BadHash(String),
}

/// Whether `password` may become the operator's password.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&n) {
        return Err(PasswordError::BadLength);
    }
    Ok(())
}

/// Hashes `password` with the given 16 random bytes as salt.
pub fn hash(password: &str, salt: &[u8; 16]) -> Result<String, PasswordError> {
    check_new(password)?;
    let salt = SaltString::encode_b64(salt).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::BadHash(e.to_string()))
}

/// Whether `phc` is an Argon2 hash this module can verify against.
pub fn check_hash(phc: &str) -> Result<(), PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") || parsed.hash.is_none() {
        return Err(PasswordError::BadHash(format!(
            "algorithm {} without a hash",
            parsed.algorithm
        )));
    }
    Ok(())
}

/// Whether `password` matches the hash `phc` (false for a malformed hash or an over-long
/// password, never a panic).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.chars().count() > MAX_CHARS {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery", &[7; 16]).unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("", &h));
        assert_ne!(h, hash("correct horse battery", &[8; 16]).unwrap());
    }

    #[test]
    fn bad_passwords_and_hashes_are_refused() {
        assert_eq!(check_new("short"), Err(PasswordError::BadLength));
        assert_eq!(check_new(&"x".repeat(257)), Err(PasswordError::BadLength));
        assert!(check_hash("hunter2").is_err());
        assert!(check_hash("").is_err());
        assert!(!verify("anything", "not a hash"));
        assert!(!verify(
            &"x".repeat(10_000),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
        ));
    }
}
