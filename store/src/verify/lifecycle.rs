//! The invariant the writers keep, checked from an export alone: no use of a credential is
//! recorded after the event that stopped it.
//!
//! In log order, a credential stops at its revocation (for good), at its disabling (until it is
//! enabled again) and at its recorded expiry (until a roll gives it a new value and lifetime).
//! A `CredentialUsed` or `AccessTokenIssued` of a credential while it stands stopped is named,
//! with the position of the event that stopped it. Only the stopped credentials are remembered.
//! What the log cannot show is not checked here: which of a rolled credential's values a use
//! presented, and an expiry the clock had reached before the sweeper recorded it.

use std::collections::HashMap;

use super::VerifyError;

#[derive(Debug, Default)]
pub(super) struct Lifecycles {
    /// Stopped credentials (by id, as their streams name them): why, and since which position.
    stopped: HashMap<String, Stops>,
}

#[derive(Debug, Default)]
struct Stops {
    revoked: Option<(u64, String)>,
    disabled: Option<(u64, String)>,
    expired: Option<(u64, String)>,
}

impl Stops {
    /// The earliest event that stands between the credential and a use.
    fn first(&self) -> Option<&(u64, String)> {
        [&self.revoked, &self.disabled, &self.expired].into_iter().flatten().min_by_key(|(position, _)| *position)
    }
}

/// The lifecycle streams of credentials, by prefix.
const LIFECYCLE_PREFIXES: [&str; 4] = ["mt-", "sc-", "mi-", "pat-"];

impl Lifecycles {
    /// Takes in the event at `position`; refuses a use of a stopped credential.
    pub(super) fn observe(&mut self, position: u64, stream: &str, event_type: &str) -> Result<(), VerifyError> {
        if event_type == "CredentialUsed" || event_type == "AccessTokenIssued" {
            let Some(credential) = used_credential(stream) else { return Ok(()) };
            if let Some((stopped_at, stopped_by)) = self.stopped.get(credential).and_then(Stops::first) {
                return Err(VerifyError::UseAfterStop {
                    position,
                    credential: credential.to_owned(),
                    stopped_at: *stopped_at,
                    stopped_by: stopped_by.clone(),
                });
            }
            return Ok(());
        }
        let Some(credential) = LIFECYCLE_PREFIXES.iter().find_map(|prefix| stream.strip_prefix(prefix)) else {
            return Ok(());
        };
        let stop = Some((position, event_type.to_owned()));
        if event_type.ends_with("Revoked") {
            self.stopped.entry(credential.to_owned()).or_default().revoked = stop;
        } else if event_type == "MachineTokenDisabled" {
            self.stopped.entry(credential.to_owned()).or_default().disabled = stop;
        } else if event_type == "MachineTokenExpired" {
            self.stopped.entry(credential.to_owned()).or_default().expired = stop;
        } else if (event_type == "MachineTokenEnabled" || event_type == "MachineTokenRolled")
            && let Some(stops) = self.stopped.get_mut(credential)
        {
            if event_type == "MachineTokenEnabled" {
                stops.disabled = None;
            } else {
                stops.expired = None;
            }
            if stops.first().is_none() {
                self.stopped.remove(credential);
            }
        }
        Ok(())
    }
}

/// The credential a usage event belongs to, by its stream: `usage-{id}`, or `assertion-{id}-…`
/// for the one use of a machine's assertion.
fn used_credential(stream: &str) -> Option<&str> {
    if let Some(id) = stream.strip_prefix("usage-") {
        return Some(id);
    }
    let rest = stream.strip_prefix("assertion-")?;
    // A credential id is a hyphenated UUID: 36 characters.
    rest.get(..36)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01a24c43-5294-76b6-b5c3-487a9953f210";

    fn feed(events: &[(&str, &str)]) -> Result<(), VerifyError> {
        let mut lifecycles = Lifecycles::default();
        for (position, (stream, event_type)) in (1u64..).zip(events) {
            lifecycles.observe(position, stream, event_type)?;
        }
        Ok(())
    }

    #[test]
    fn a_use_after_a_revocation_disabling_or_expiry_is_named_with_the_event_that_stopped_it() {
        let token = format!("mt-{ID}");
        let usage = format!("usage-{ID}");
        for stop in ["MachineTokenRevoked", "MachineTokenDisabled", "MachineTokenExpired"] {
            let error = feed(&[
                (&token, "MachineTokenCreated"),
                (&usage, "CredentialUsed"),
                (&token, stop),
                (&usage, "CredentialUsed"),
            ])
            .unwrap_err();
            match error {
                VerifyError::UseAfterStop { position: 4, credential, stopped_at: 3, stopped_by } => {
                    assert_eq!((credential.as_str(), stopped_by.as_str()), (ID, stop));
                }
                other => panic!("{stop}: {other:?}"),
            }
        }
        let assertion = format!("assertion-{ID}-00ff");
        let machine = format!("mi-{ID}");
        assert!(matches!(
            feed(&[(&machine, "MachineCreated"), (&machine, "MachineRevoked"), (&assertion, "AccessTokenIssued")]),
            Err(VerifyError::UseAfterStop { position: 3, stopped_at: 2, .. })
        ));
    }

    #[test]
    fn uses_before_a_stop_after_enabling_or_rolling_and_denials_pass() {
        let token = format!("mt-{ID}");
        let usage = format!("usage-{ID}");
        feed(&[
            (&token, "MachineTokenCreated"),
            (&usage, "CredentialUsed"),
            (&token, "MachineTokenDisabled"),
            (&usage, "CredentialAccessDenied"),
            (&token, "MachineTokenEnabled"),
            (&usage, "CredentialUsed"),
            (&token, "MachineTokenExpired"),
            (&token, "MachineTokenRolled"),
            (&usage, "CredentialUsed"),
            (&token, "MachineTokenRevoked"),
            (&usage, "CredentialAccessDenied"),
        ])
        .unwrap();
        // Disabled and then expired: enabling alone does not make it usable again.
        assert!(
            feed(&[
                (&token, "MachineTokenDisabled"),
                (&token, "MachineTokenExpired"),
                (&token, "MachineTokenEnabled"),
                (&usage, "CredentialUsed"),
            ])
            .is_err()
        );
    }
}
