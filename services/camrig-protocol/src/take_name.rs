//! The take-name rule: 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
//!
//! Take names become directory and file names on every node and on the controller, and
//! arguments to rsync; the rule keeps them portable and impossible to read as a path or an option.

use std::fmt;

/// The rule in words, quoted in every rejection so the person can fix the name.
pub const RULE: &str =
    "a take name is 1-64 characters of A-Z a-z 0-9 . _ - and must not start with '.' or '-'";

/// Maximum take name length in bytes (all allowed characters are ASCII).
pub const MAX_LEN: usize = 64;

/// A take name that passed [`TakeName::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TakeName(String);

/// Why a take name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeNameError {
    #[error("take name is empty; {RULE}")]
    Empty,
    #[error("take name is {0} characters long; {RULE}")]
    TooLong(usize),
    #[error("take name {name:?} contains {bad:?}; {RULE}")]
    BadCharacter { name: String, bad: char },
    #[error("take name {0:?} starts with {1:?}; {RULE}")]
    BadStart(String, char),
}

impl TakeName {
    pub fn parse(name: &str) -> Result<TakeName, TakeNameError> {
        if name.is_empty() {
            return Err(TakeNameError::Empty);
        }
        let chars = name.chars().count();
        if chars > MAX_LEN {
            return Err(TakeNameError::TooLong(chars));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TakeNameError::BadCharacter {
                name: name.to_owned(),
                bad,
            });
        }
        // A leading '-' would read as an option to rsync, ssh or any tool a person runs on
        // the files later; a leading '.' hides the directory and allows "." and "..".
        let first = name.chars().next().expect("checked non-empty");
        if first == '.' || first == '-' {
            return Err(TakeNameError::BadStart(name.to_owned(), first));
        }
        Ok(TakeName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TakeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TakeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for TakeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TakeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TakeName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "test_001_windy", "A.b-c_9", &"x".repeat(64)] {
            assert_eq!(TakeName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_with_the_rule_in_the_message() {
        let cases = [
            ("", TakeNameError::Empty),
            (&"x".repeat(65) as &str, TakeNameError::TooLong(65)),
            (".hidden", TakeNameError::BadStart(".hidden".into(), '.')),
            ("-rf", TakeNameError::BadStart("-rf".into(), '-')),
            (
                "a/b",
                TakeNameError::BadCharacter {
                    name: "a/b".into(),
                    bad: '/',
                },
            ),
            (
                "a b",
                TakeNameError::BadCharacter {
                    name: "a b".into(),
                    bad: ' ',
                },
            ),
            (
                "tak\u{e9}",
                TakeNameError::BadCharacter {
                    name: "tak\u{e9}".into(),
                    bad: '\u{e9}',
                },
            ),
        ];
        for (name, want) in cases {
            let err = TakeName::parse(name).unwrap_err();
            assert_eq!(err, want);
            assert!(err.to_string().contains(RULE), "{err}");
        }
    }

    #[test]
    fn deserializing_applies_the_rule() {
        let ok: TakeName = serde_json::from_str("\"t1\"").unwrap();
        assert_eq!(ok.as_str(), "t1");
        assert!(serde_json::from_str::<TakeName>("\"../etc\"").is_err());
    }
}
