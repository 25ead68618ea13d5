//! Names of organizations, projects and environments, and member emails.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::ValueError;

/// A slug: `[a-z0-9][a-z0-9-]{0,62}`, used for organization, project and environment names so
/// that they are safe in URLs, CLI flags and logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub const MAX_LEN: usize = 63;

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let valid = !input.is_empty()
            && input.len() <= Self::MAX_LEN
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !input.starts_with('-');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(ValueError::InvalidName {
                reason: "use 1 to 63 lowercase letters, digits and dashes, not starting with a dash",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(value: Slug) -> Self {
        value.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member's email address, lower-cased. Only the shape is checked (one `@`, a dot in the
/// domain, no spaces): deliverability is not the ledger's business.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let email = input.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid { Ok(Self(email)) } else { Err(ValueError::InvalidEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_lowercase_digits_and_dashes_only() {
        assert!(Slug::parse("my-api-2").is_ok());
        for bad in ["", "-x", "My-Api", "a b", "é", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn email_is_lowercased_and_shape_checked() {
        assert_eq!(Email::parse(" Ops@Acme.Example ").unwrap().as_str(), "ops@acme.example");
        for bad in ["", "ops", "ops@acme", "@acme.example", "o ps@acme.example", "a@b@c.d"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
