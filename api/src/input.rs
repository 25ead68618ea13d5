//! Request fields as clients send them, and their parsing into domain values with the offending
//! field named (`conditions.ipAllowlist[2]`) and a specific code (`invalid_cidr`).

use chrono::TimeDelta;
use credledger_domain::values::{Cidr, Conditions, Scopes, TimeWindow, UserAgentPattern, ValueError};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::problem::Problem;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionsInput {
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    #[serde(default)]
    pub time_windows: Vec<TimeWindowInput>,
    #[serde(default)]
    pub user_agent_pattern: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindowInput {
    /// Days the window starts on: mon, tue, wed, thu, fri, sat, sun (or ranges like mon-fri).
    pub days: Vec<String>,
    /// `HH:MM` UTC.
    pub start_utc: String,
    /// `HH:MM` UTC, exclusive; before the start means the window runs past midnight.
    pub end_utc: String,
}

fn at_field(error: ValueError, field: String) -> Problem {
    Problem::from(error).with_field(field)
}

impl ConditionsInput {
    pub fn parse(&self) -> Result<Conditions, Problem> {
        let ip_allowlist = self
            .ip_allowlist
            .iter()
            .enumerate()
            .map(|(i, cidr)| Cidr::parse(cidr).map_err(|e| at_field(e, format!("conditions.ipAllowlist[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let time_windows = self
            .time_windows
            .iter()
            .enumerate()
            .map(|(i, window)| {
                TimeWindow::new(&window.days, &window.start_utc, &window.end_utc)
                    .map_err(|e| at_field(e, format!("conditions.timeWindows[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let user_agent_pattern = self.user_agent_pattern.as_deref().map(UserAgentPattern::parse).transpose()?;
        Ok(Conditions::new(ip_allowlist, time_windows, user_agent_pattern)?)
    }
}

/// A scope as the document names it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum ScopeName {
    #[schema(rename = "credledger-api/read")]
    Read,
    #[schema(rename = "credledger-api/write")]
    Write,
}

/// A lowercase slug: a project's or an environment's name.
#[derive(ToSchema)]
#[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
#[allow(dead_code)]
pub struct SlugName(String);

pub fn parse_scopes(scopes: &[String]) -> Result<Scopes, Problem> {
    Ok(Scopes::parse(scopes)?)
}

/// `null` and absent differ for a PATCH: `Some(None)` clears the value, `None` leaves it.
#[allow(clippy::option_option)]
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A duration as the filters take it: `90d`, `12h`, `30m`, or a bare number of days.
pub fn parse_duration(field: &str, input: &str) -> Result<TimeDelta, Problem> {
    let invalid = || {
        Problem::bad_request("invalid_duration", format!("`{field}` takes a duration such as 30d, 12h or 90m"))
            .with_field(field)
    };
    let input = input.trim();
    let (number, unit) = match input.char_indices().last() {
        Some((i, unit @ ('d' | 'h' | 'm'))) => (&input[..i], unit),
        _ => (input, 'd'),
    };
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let minutes = match unit {
        'h' => number.checked_mul(60),
        'm' => Some(number),
        _ => number.checked_mul(24 * 60),
    };
    // A hundred years is longer than any credential lives; beyond it, times would overflow.
    match minutes {
        Some(minutes @ 0..=52_560_000) => Ok(TimeDelta::minutes(minutes)),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_days_hours_minutes_or_bare_days() {
        assert_eq!(parse_duration("f", "90d").unwrap(), TimeDelta::days(90));
        assert_eq!(parse_duration("f", "12h").unwrap(), TimeDelta::hours(12));
        assert_eq!(parse_duration("f", "30m").unwrap(), TimeDelta::minutes(30));
        assert_eq!(parse_duration("f", "7").unwrap(), TimeDelta::days(7));
        for bad in ["", "d", "-1d", "1w", "1.5d", "99999999999d", "52560000d", "876001h"] {
            assert!(parse_duration("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_condition_names_its_index() {
        let input = ConditionsInput { ip_allowlist: vec!["10.0.0.0/8".into(), "nope".into()], ..Default::default() };
        let problem = input.parse().unwrap_err();
        assert_eq!((problem.code, problem.field.as_deref()), ("invalid_cidr", Some("conditions.ipAllowlist[1]")));
    }
}
