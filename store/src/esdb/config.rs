//! The `esdb://` store URL: the EventStoreDB client's own connection string, plus credledger's
//! `ledger=NAME` parameter naming the one stream that holds the whole log.
//!
//! A store URL may carry a password (`esdb://admin:changeit@host:2113`), so nothing here puts
//! the URL, or any part of it the client's parser echoes back, into an error.

use std::fmt;

use eventstore::ClientSettings;

use crate::StoreError;

/// The ledger stream when the URL names none.
pub(super) const DEFAULT_LEDGER: &str = "credledger-ledger";

/// The schemes this backend answers to. `kurrentdb` is the server's new name; the client only
/// knows `esdb`, so those URLs are handed to it with the scheme rewritten.
const SCHEMES: [(&str, &str); 4] = [
    ("esdb://", "esdb://"),
    ("esdb+discover://", "esdb+discover://"),
    ("kurrentdb://", "esdb://"),
    ("kurrentdb+discover://", "esdb+discover://"),
];

/// A parsed store URL.
pub(super) struct Config {
    pub settings: ClientSettings,
    /// The EventStoreDB stream that holds the ledger.
    pub ledger: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings hold the credentials: only the ledger name is shown.
        f.debug_struct("Config").field("ledger", &self.ledger).finish_non_exhaustive()
    }
}

/// Parses a store URL; the error never repeats the URL or its password.
pub(super) fn parse(url: &str) -> Result<Config, StoreError> {
    let (scheme, client_scheme) = SCHEMES.iter().find(|(scheme, _)| url.starts_with(scheme)).ok_or_else(|| {
        invalid("the URL must start with esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://")
    })?;
    let rest = &url[scheme.len()..];
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));

    let mut ledger = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = form_urlencoded::parse(pair.as_bytes()).next().unwrap_or_default();
        if key.eq_ignore_ascii_case("ledger") {
            if ledger.replace(value.into_owned()).is_some() {
                return Err(invalid("the URL names the ledger stream twice"));
            }
        } else {
            kept.push(pair);
        }
    }
    let ledger = ledger.unwrap_or_else(|| DEFAULT_LEDGER.to_owned());
    check_ledger_name(&ledger)?;

    let mut connection_string = format!("{client_scheme}{base}");
    if !kept.is_empty() {
        connection_string.push('?');
        connection_string.push_str(&kept.join("&"));
    }
    let settings = connection_string.parse::<ClientSettings>().map_err(|error| {
        // A URL the `url` crate rejects is echoed whole in the client's message; only the kind
        // of failure is safe to repeat. Its other messages name a parameter and its value,
        // which may still be the password in a misplaced spot.
        let reason = match error.error() {
            Some(kind) => format!("the URL does not parse ({kind})"),
            None if contains_secret(error.message(), url) => "the URL is not a valid connection string".to_owned(),
            None => error.message().to_owned(),
        };
        invalid(&reason)
    })?;
    Ok(Config { settings, ledger })
}

/// The ledger must be an ordinary stream: `$`-streams belong to the server.
fn check_ledger_name(ledger: &str) -> Result<(), StoreError> {
    let valid = !ledger.is_empty()
        && ledger.len() <= 256
        && !ledger.starts_with('$')
        && !ledger.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(invalid("the ledger stream name must be 1 to 256 characters without spaces and not start with `$`"))
    }
}

/// Whether `message` repeats the URL's user information (user name or password).
fn contains_secret(message: &str, url: &str) -> bool {
    let authority = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    let Some((user_info, _)) = authority.rsplit_once('@') else {
        return false;
    };
    user_info.split(':').any(|part| !part.is_empty() && message.contains(part))
}

fn invalid(reason: &str) -> StoreError {
    StoreError::UnsupportedUrl(format!("invalid EventStoreDB store URL: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_defaults_and_the_rest_is_the_clients_connection_string() {
        let config = parse("esdb://127.0.0.1:2113?tls=false").unwrap();
        assert_eq!(config.ledger, DEFAULT_LEDGER);
        assert!(!config.settings.is_secure_mode_enabled());
        assert!(!config.settings.is_dns_discovery_enabled());
        let hosts = config.settings.hosts();
        assert_eq!((hosts.len(), hosts[0].host.as_str(), hosts[0].port), (1, "127.0.0.1", 2113));

        let secure = parse("esdb://db.example:2113").unwrap();
        assert!(secure.settings.is_secure_mode_enabled(), "TLS is on unless the URL turns it off");
    }

    #[test]
    fn the_ledger_parameter_names_the_stream_and_is_not_passed_to_the_client() {
        let config = parse("esdb://localhost:2113?tls=false&ledger=credledger-test-1&tlsVerifyCert=false").unwrap();
        assert_eq!(config.ledger, "credledger-test-1");
        assert!(!config.settings.is_secure_mode_enabled());
        assert!(!config.settings.is_tls_certificate_verification_enabled());

        assert_eq!(parse("esdb://localhost?ledger=my%2Dledger").unwrap().ledger, "my-ledger");
        assert_eq!(parse("esdb://localhost?LEDGER=upper").unwrap().ledger, "upper");
    }

    #[test]
    fn discovery_and_kurrentdb_schemes_are_accepted() {
        assert!(parse("esdb+discover://cluster.example:2113?ledger=l").unwrap().settings.is_dns_discovery_enabled());
        assert!(parse("kurrentdb+discover://cluster.example").unwrap().settings.is_dns_discovery_enabled());
        let seeds = parse("kurrentdb://a:2113,b:2114,c:2115?tls=false").unwrap();
        assert_eq!(seeds.settings.hosts().len(), 3);
        assert!(matches!(parse("esdb:x"), Err(StoreError::UnsupportedUrl(_))));
    }

    #[test]
    fn bad_ledger_names_are_refused() {
        for url in [
            "esdb://localhost?ledger=",
            "esdb://localhost?ledger=%24all",
            "esdb://localhost?ledger=has+space",
            "esdb://localhost?ledger=a&ledger=b",
        ] {
            assert!(matches!(parse(url), Err(StoreError::UnsupportedUrl(_))), "{url}");
        }
    }

    #[test]
    fn errors_never_repeat_the_password() {
        for url in [
            "esdb://admin:hunter2@localhost:notaport?tls=false",
            "esdb://admin:hunter2@localhost:2113?tls=maybe",
            "esdb://admin:hunter2@localhost:2113?tls=hunter2",
            "esdb://admin:hunter2@localhost:2113/path",
            "esdb://admin:hunter2@localhost:2113?ledger=%24hunter2",
            "esdb://admin:hunter2@localhost:2113?nodePreference=hunter2",
        ] {
            let error = parse(url).unwrap_err();
            assert!(matches!(error, StoreError::UnsupportedUrl(_)), "{url}: {error:?}");
            let text = format!("{error} {error:?}");
            assert!(!text.contains("hunter2"), "{url} leaked: {text}");
            assert!(!text.contains("admin"), "{url} leaked the user: {text}");
        }
        let config = parse("esdb://admin:hunter2@localhost:2113?tls=false").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(config.settings.default_authenticated_user().is_some(), "the credentials reach the client");
    }
}
