//! The one textual form of a timestamp: RFC 3339 in UTC, as events, exports, checkpoints and the
//! API write it.
//!
//! `2026-11-25T10:00:00Z`, `2026-11-25T10:00:00.1234Z`: a `Z` offset, and the fraction of a second
//! only when there is one, with its trailing zeros trimmed (so a time reads back to the
//! nanosecond and whole seconds carry no fraction). A year outside 0–9999 has no RFC 3339
//! spelling and is refused rather than written. Reading accepts any RFC 3339 offset and
//! converts to UTC; a leap second is read as the last nanosecond before it.
//!
//! Use it on a field with `#[serde(with = "credledger_domain::time_format")]`, or
//! `credledger_domain::time_format::option` for an `Option`.

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserializer, Serializer, de};

/// Why a text is not an RFC 3339 time this ledger can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 time: {reason}")]
pub struct InvalidTime {
    text: String,
    reason: &'static str,
}

/// The RFC 3339 spelling of `at` in UTC, or `None` when its year falls outside 0–9999.
pub fn format(at: &DateTime<Utc>) -> Option<String> {
    if !(0..=9999).contains(&at.year()) {
        return None;
    }
    let mut text = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // `…:SS.nnnnnnnnnZ`: trim the fraction's trailing zeros, and the point with them.
    text.pop();
    let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
    text.truncate(trimmed);
    text.push('Z');
    Some(text)
}

/// Reads an RFC 3339 time (`T` between date and time, any offset) as UTC.
pub fn parse(text: &str) -> Result<DateTime<Utc>, InvalidTime> {
    let invalid = |reason| InvalidTime { text: text.to_owned(), reason };
    // chrono also takes a space between date and time, which RFC 3339 does not.
    if text.as_bytes().get(10) == Some(&b' ') {
        return Err(invalid("the date and the time must be separated by `T`"));
    }
    let at = DateTime::parse_from_rfc3339(text).map_err(|_| invalid("expected e.g. `2026-11-25T10:00:00Z`"))?.to_utc();
    if at.nanosecond() < 1_000_000_000 {
        return Ok(at);
    }
    // A leap second exists only as 23:59:60 UTC on the last day of a month.
    let last_of_month = at.date_naive().succ_opt().is_some_and(|next| next.day() == 1);
    if (at.hour(), at.minute(), last_of_month) != (23, 59, true) {
        return Err(invalid("a leap second is only 23:59:60 UTC at the end of a month"));
    }
    Ok(at.with_nanosecond(999_999_999).unwrap_or(at))
}

/// Serializes a time in the form above; a year outside 0–9999 is an error.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    match format(at) {
        Some(text) => serializer.serialize_str(&text),
        None => Err(serde::ser::Error::custom(format_args!("the year of {at:?} has no RFC 3339 spelling"))),
    }
}

/// Deserializes an RFC 3339 time with any offset, as UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_str(Visitor)
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 time")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text).map_err(E::custom)
    }
}

/// The same form for an `Option`: `null` when absent.
pub mod option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] DateTime<Utc>);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(at)| at))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde::Deserialize;

    use super::*;

    #[test]
    fn fractions_are_trimmed_and_whole_seconds_carry_none() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        assert_eq!(format(&at).unwrap(), "2026-11-25T10:00:00Z");
        let cases = [
            (123_400_000, "2026-11-25T10:00:00.1234Z"),
            (500_000_000, "2026-11-25T10:00:00.5Z"),
            (123_456_789, "2026-11-25T10:00:00.123456789Z"),
            (1, "2026-11-25T10:00:00.000000001Z"),
            (120_000, "2026-11-25T10:00:00.00012Z"),
        ];
        for (nanos, text) in cases {
            let at = at.with_nanosecond(nanos).unwrap();
            assert_eq!(format(&at).unwrap(), text);
            assert_eq!(parse(text).unwrap(), at);
        }
    }

    #[test]
    fn any_offset_reads_as_utc() {
        let at = parse("2026-06-01T02:00:00.5+02:00").unwrap();
        assert_eq!(format(&at).unwrap(), "2026-06-01T00:00:00.5Z");
        assert_eq!(parse("2026-06-01t00:00:00.5z").unwrap(), at);
    }

    #[test]
    fn years_outside_rfc_3339_and_odd_spellings_are_refused() {
        assert!(format(&Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap()).is_none());
        assert!(format(&Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap()).is_none());
        let past = parse("9999-12-31T23:59:59-23:59").unwrap();
        assert!(format(&past).is_none());
        for text in ["2026-11-25 10:00:00Z", "2026-11-25T10:00:00", "2026-11-25T10:00:60Z", "+2026-11-25T10:00:00Z"] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(format(&parse("2026-12-31T23:59:60.5Z").unwrap()).unwrap(), "2026-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn serde_round_trips_and_refuses_unwritable_years() {
        #[derive(serde::Serialize, Deserialize, PartialEq, Debug)]
        struct Times {
            #[serde(with = "super")]
            at: DateTime<Utc>,
            #[serde(with = "super::option")]
            until: Option<DateTime<Utc>>,
        }
        let times = Times { at: Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap(), until: None };
        let text = serde_json::to_string(&times).unwrap();
        assert_eq!(text, r#"{"at":"2026-01-05T10:00:00Z","until":null}"#);
        assert_eq!(serde_json::from_str::<Times>(&text).unwrap(), times);
        let later = Times { until: Some(times.at + chrono::TimeDelta::milliseconds(250)), ..times };
        let text = serde_json::to_string(&later).unwrap();
        assert_eq!(text, r#"{"at":"2026-01-05T10:00:00Z","until":"2026-01-05T10:00:00.25Z"}"#);
        assert_eq!(serde_json::from_str::<Times>(&text).unwrap(), later);
        let unwritable = Times { at: Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(), until: None };
        assert!(serde_json::to_string(&unwritable).is_err());
    }
}
