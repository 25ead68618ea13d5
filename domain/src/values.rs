//! Parsed values of commands and events: environment hints, token names, roles, scopes and the
//! conditions of conditional access.
//!
//! Each type can only be built by parsing, so a value that exists is valid: nothing checks it
//! again. Deserialisation parses too, so an event or a request body cannot smuggle in a value
//! the parser would refuse.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Why a value was refused. Each variant names the field it belongs to and has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("environmentHint must be 1 to 16 lowercase letters, digits or dashes")]
    InvalidEnvHint,
    #[error("name: {reason}")]
    InvalidTokenName { reason: &'static str },
    #[error("name: {reason}")]
    InvalidName { reason: &'static str },
    #[error("not a valid email address")]
    InvalidEmail,
    #[error("role must be owner, admin or member")]
    InvalidRole,
    #[error("`{0}` is not a scope: use credledger-api/read or credledger-api/write")]
    InvalidScope(String),
    #[error("scopes must name at least one scope")]
    NoScopes,
    #[error("`{0}` is not an IPv4 or IPv6 address or CIDR")]
    InvalidCidr(String),
    #[error("time window: {reason}")]
    InvalidTimeWindow { reason: &'static str },
    #[error("userAgentPattern: {reason}")]
    InvalidUserAgentPattern { reason: String },
    #[error("conditions allow at most {max} {what}")]
    TooManyConditions { what: &'static str, max: usize },
}

impl ValueError {
    /// A stable, snake_case code for clients and problem+json.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEnvHint => "invalid_environment_hint",
            Self::InvalidTokenName { .. } | Self::InvalidName { .. } => "invalid_name",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidRole => "invalid_role",
            Self::InvalidScope(_) | Self::NoScopes => "invalid_scope",
            Self::InvalidCidr(_) => "invalid_cidr",
            Self::InvalidTimeWindow { .. } => "invalid_time_window",
            Self::InvalidUserAgentPattern { .. } => "invalid_user_agent_pattern",
            Self::TooManyConditions { .. } => "too_many_conditions",
        }
    }

    /// The request field the value came from, in the API's camelCase.
    pub fn field(&self) -> &'static str {
        match self {
            Self::InvalidEnvHint => "environmentHint",
            Self::InvalidTokenName { .. } | Self::InvalidName { .. } => "name",
            Self::InvalidEmail => "email",
            Self::InvalidRole => "role",
            Self::InvalidScope(_) | Self::NoScopes => "scopes",
            Self::InvalidCidr(_) => "conditions.ipAllowlist",
            Self::InvalidTimeWindow { .. } => "conditions.timeWindows",
            Self::InvalidUserAgentPattern { .. } => "conditions.userAgentPattern",
            Self::TooManyConditions { what, .. } => match *what {
                "CIDRs" => "conditions.ipAllowlist",
                _ => "conditions.timeWindows",
            },
        }
    }
}

/// Implements the string-backed serde and display plumbing of a parsed newtype.
macro_rules! string_value {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.to_string()
            }
        }
    };
}

/// The environment hint embedded in a machine token (`cl_mt_{env}_…`): `[a-z0-9-]{1,16}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvHint(String);

impl EnvHint {
    pub const MAX_LEN: usize = 16;

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let valid = (1..=Self::MAX_LEN).contains(&input.len())
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid { Ok(Self(input.to_owned())) } else { Err(ValueError::InvalidEnvHint) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_value!(EnvHint);

/// A credential's human-readable name: 1 to 100 characters after trimming, no control
/// characters (they would forge lines in logs and terminals).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenName(String);

impl TokenName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(ValueError::InvalidTokenName { reason: "must not be empty" });
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::InvalidTokenName { reason: "must be at most 100 characters" });
        }
        if name.chars().any(char::is_control) {
            return Err(ValueError::InvalidTokenName { reason: "must not contain control characters" });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_value!(TokenName);

/// A member's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages everything, service credentials included.
    Owner,
    /// Manages members, machine tokens and machines.
    Admin,
    /// Manages the credentials it owns.
    Member,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(ValueError::InvalidRole),
        }
    }

    /// Owners and admins manage members and other people's credentials.
    pub const fn is_admin(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// A permission a credential may carry: every GET needs `read`, every mutation `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "credledger-api/read",
            Self::Write => "credledger-api/write",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input.trim() {
            "credledger-api/read" => Ok(Self::Read),
            "credledger-api/write" => Ok(Self::Write),
            other => Err(ValueError::InvalidScope(other.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Scope {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(value: Scope) -> Self {
        value.as_str().to_owned()
    }
}

/// A non-empty set of scopes, serialised as a sorted array of scope strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Read and write.
    pub fn all() -> Self {
        Self(BTreeSet::from([Scope::Read, Scope::Write]))
    }

    pub fn read_only() -> Self {
        Self(BTreeSet::from([Scope::Read]))
    }

    /// Parses a list of scope strings; duplicates collapse, an empty list is refused.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, ValueError> {
        let scopes = scopes.iter().map(|s| Scope::parse(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        Self::try_from(scopes)
    }

    /// Parses the space-separated form of OAuth2 (`scope=a b`).
    pub fn parse_space_separated(input: &str) -> Result<Self, ValueError> {
        Self::parse(&input.split_ascii_whitespace().collect::<Vec<_>>())
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The OAuth2 form: scope strings separated by single spaces.
    pub fn to_space_separated(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

impl TryFrom<Vec<Scope>> for Scopes {
    type Error = ValueError;
    fn try_from(scopes: Vec<Scope>) -> Result<Self, Self::Error> {
        if scopes.is_empty() { Err(ValueError::NoScopes) } else { Ok(Self(scopes.into_iter().collect())) }
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(scopes: Scopes) -> Self {
        scopes.0.into_iter().collect()
    }
}

/// An IPv4 or IPv6 network. A bare address means that one address (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let input = input.trim();
        let invalid = || ValueError::InvalidCidr(input.chars().take(64).collect());
        if input.contains('/') {
            // Host bits are dropped so `10.0.0.7/8` means the network it names.
            input.parse::<ipnet::IpNet>().map(|net| Self(net.trunc())).map_err(|_| invalid())
        } else {
            input.parse::<IpAddr>().map(|ip| Self(ip.into())).map_err(|_| invalid())
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client reaching an IPv6 socket appears as `::ffff:a.b.c.d`.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        self.0.contains(&ip)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_value!(Cidr);

/// Days of the week and a `HH:MM`–`HH:MM` span in UTC, end exclusive. A span whose start is
/// after its end runs past midnight: `fri 22:00-02:00` covers Friday night into Saturday.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawTimeWindow", into = "RawTimeWindow")]
pub struct TimeWindow {
    /// Bit `n` set: the window starts on day `n` (Monday = 0).
    days: u8,
    start: u16,
    end: u16,
}

/// The wire shape of a time window: `{"days": ["mon", …], "startUtc": "06:00", "endUtc": "22:00"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTimeWindow {
    pub days: Vec<String>,
    pub start_utc: String,
    pub end_utc: String,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    /// From the API's fields.
    pub fn new<S: AsRef<str>>(days: &[S], start_utc: &str, end_utc: &str) -> Result<Self, ValueError> {
        if days.is_empty() {
            return Err(ValueError::InvalidTimeWindow { reason: "name at least one day" });
        }
        let mut mask = 0u8;
        for day in days {
            mask |= parse_days(day.as_ref())?;
        }
        let start = parse_clock(start_utc)?;
        let end = parse_clock(end_utc)?;
        if start == end {
            return Err(ValueError::InvalidTimeWindow { reason: "start and end must differ" });
        }
        if start >= 24 * 60 {
            return Err(ValueError::InvalidTimeWindow { reason: "start must be before 24:00" });
        }
        Ok(Self { days: mask, start, end })
    }

    /// From the CLI's one-string form: `mon-fri 06:00-22:00`, `sat,sun 00:00-24:00`,
    /// `daily 22:00-02:00`.
    pub fn parse_spec(spec: &str) -> Result<Self, ValueError> {
        let (days, span) = spec
            .trim()
            .split_once(char::is_whitespace)
            .ok_or(ValueError::InvalidTimeWindow { reason: "write it as `mon-fri 06:00-22:00`" })?;
        let (start, end) = span
            .trim()
            .split_once('-')
            .ok_or(ValueError::InvalidTimeWindow { reason: "write the span as `HH:MM-HH:MM`" })?;
        Self::new(&days.split(',').collect::<Vec<_>>(), start, end)
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let day = at.weekday().num_days_from_monday() as u8;
        let minute = (at.hour() * 60 + at.minute()) as u16;
        let starts_on = |day: u8| self.days & (1 << day) != 0;
        if self.start < self.end {
            starts_on(day) && (self.start..self.end).contains(&minute)
        } else {
            let yesterday = (day + 6) % 7;
            (starts_on(day) && minute >= self.start) || (starts_on(yesterday) && minute < self.end)
        }
    }

    fn raw(&self) -> RawTimeWindow {
        RawTimeWindow {
            days: (0..7).filter(|d| self.days & (1 << d) != 0).map(|d| DAY_NAMES[d].to_owned()).collect(),
            start_utc: format_clock(self.start),
            end_utc: format_clock(self.end),
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw();
        write!(f, "{} {}-{}", raw.days.join(","), raw.start_utc, raw.end_utc)
    }
}

impl TryFrom<RawTimeWindow> for TimeWindow {
    type Error = ValueError;
    fn try_from(raw: RawTimeWindow) -> Result<Self, Self::Error> {
        Self::new(&raw.days, &raw.start_utc, &raw.end_utc)
    }
}

impl From<TimeWindow> for RawTimeWindow {
    fn from(window: TimeWindow) -> Self {
        window.raw()
    }
}

/// `mon`, `mon-fri` (a range may wrap: `fri-mon`), `daily`, `weekdays`, `weekends`.
fn parse_days(input: &str) -> Result<u8, ValueError> {
    let day = |name: &str| -> Result<u8, ValueError> {
        let name = name.trim().to_ascii_lowercase();
        DAY_NAMES
            .iter()
            .position(|d| name == *d || (name.len() > 3 && d.len() == 3 && day_full_name(d) == name))
            .map(|d| d as u8)
            .ok_or(ValueError::InvalidTimeWindow { reason: "days are mon, tue, wed, thu, fri, sat, sun" })
    };
    match input.trim().to_ascii_lowercase().as_str() {
        "daily" | "*" => return Ok(0b111_1111),
        "weekdays" => return Ok(0b001_1111),
        "weekends" => return Ok(0b110_0000),
        _ => {}
    }
    if let Some((from, to)) = input.split_once('-') {
        let (from, to) = (day(from)?, day(to)?);
        let mut mask = 0;
        let mut d = from;
        loop {
            mask |= 1 << d;
            if d == to {
                return Ok(mask);
            }
            d = (d + 1) % 7;
        }
    }
    Ok(1 << day(input)?)
}

fn day_full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

/// `HH:MM` from `00:00` to `24:00` as minutes since midnight.
fn parse_clock(input: &str) -> Result<u16, ValueError> {
    let invalid = ValueError::InvalidTimeWindow { reason: "times are HH:MM in UTC, 00:00 to 24:00" };
    let (hours, minutes) = input.trim().split_once(':').ok_or(invalid.clone())?;
    let valid_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !valid_digits(hours) || !valid_digits(minutes) {
        return Err(invalid);
    }
    let (hours, minutes): (u16, u16) =
        (hours.parse().map_err(|_| invalid.clone())?, minutes.parse().map_err(|_| invalid.clone())?);
    match (hours, minutes) {
        (0..=23, 0..=59) | (24, 0) => Ok(hours * 60 + minutes),
        _ => Err(invalid),
    }
}

fn format_clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A glob the request's `User-Agent` must match, e.g. `github-actions/*`. `*` matches any run
/// of characters, `/` included.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserAgentPattern {
    source: String,
    /// Shared by every pattern with the same text (see [`compiled`]): a compiled glob is a
    /// regex of several KiB, and most credentials of an organization use a handful of patterns.
    matcher: std::sync::Arc<globset::GlobMatcher>,
}

/// The compiled matcher of a pattern's text, shared while any pattern of that text is alive. The
/// table holds weak references, so it never keeps a matcher nobody uses; dead entries are
/// dropped whenever it has doubled since the last sweep.
fn compiled(source: &str) -> Result<std::sync::Arc<globset::GlobMatcher>, ValueError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock, Weak};
    struct Table {
        matchers: HashMap<String, Weak<globset::GlobMatcher>>,
        sweep_at: usize,
    }
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(Table { matchers: HashMap::new(), sweep_at: 1024 }));
    let lock = || table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(shared) = lock().matchers.get(source).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let glob = globset::GlobBuilder::new(source)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| ValueError::InvalidUserAgentPattern { reason: e.kind().to_string() })?;
    let matcher = Arc::new(glob.compile_matcher());
    let mut table = lock();
    if table.matchers.len() >= table.sweep_at {
        table.matchers.retain(|_, matcher| matcher.strong_count() > 0);
        table.sweep_at = (table.matchers.len() * 2).max(1024);
    }
    table.matchers.insert(source.to_owned(), Arc::downgrade(&matcher));
    Ok(matcher)
}

impl UserAgentPattern {
    pub const MAX_LEN: usize = 256;

    pub fn parse(input: &str) -> Result<Self, ValueError> {
        if input.is_empty() || input.len() > Self::MAX_LEN {
            return Err(ValueError::InvalidUserAgentPattern { reason: "use 1 to 256 characters".into() });
        }
        if input.chars().any(char::is_control) {
            return Err(ValueError::InvalidUserAgentPattern { reason: "must not contain control characters".into() });
        }
        Ok(Self { source: input.to_owned(), matcher: compiled(input)? })
    }

    pub fn matches(&self, user_agent: &str) -> bool {
        self.matcher.is_match(user_agent)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for UserAgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserAgentPattern").field(&self.source).finish()
    }
}

impl fmt::Display for UserAgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for UserAgentPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for UserAgentPattern {}

impl std::hash::Hash for UserAgentPattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

string_value!(UserAgentPattern);

/// Conditional access on a machine credential. Each present condition must hold; an empty one
/// does not restrict. Bounded so that evaluating them stays cheap on the hot path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawConditions", into = "RawConditions")]
pub struct Conditions {
    pub ip_allowlist: Vec<Cidr>,
    pub time_windows: Vec<TimeWindow>,
    pub user_agent_pattern: Option<UserAgentPattern>,
}

/// The wire shape of conditions; every field may be omitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConditions {
    #[serde(default)]
    pub ip_allowlist: Vec<Cidr>,
    #[serde(default)]
    pub time_windows: Vec<TimeWindow>,
    #[serde(default)]
    pub user_agent_pattern: Option<UserAgentPattern>,
}

impl Conditions {
    pub const MAX_CIDRS: usize = 100;
    pub const MAX_TIME_WINDOWS: usize = 20;

    /// No condition: the credential works from anywhere, at any time, with any user agent.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(
        ip_allowlist: Vec<Cidr>,
        time_windows: Vec<TimeWindow>,
        user_agent_pattern: Option<UserAgentPattern>,
    ) -> Result<Self, ValueError> {
        if ip_allowlist.len() > Self::MAX_CIDRS {
            return Err(ValueError::TooManyConditions { what: "CIDRs", max: Self::MAX_CIDRS });
        }
        if time_windows.len() > Self::MAX_TIME_WINDOWS {
            return Err(ValueError::TooManyConditions { what: "time windows", max: Self::MAX_TIME_WINDOWS });
        }
        Ok(Self { ip_allowlist, time_windows, user_agent_pattern })
    }

    pub fn is_empty(&self) -> bool {
        self.ip_allowlist.is_empty() && self.time_windows.is_empty() && self.user_agent_pattern.is_none()
    }
}

impl TryFrom<RawConditions> for Conditions {
    type Error = ValueError;
    fn try_from(raw: RawConditions) -> Result<Self, Self::Error> {
        Self::new(raw.ip_allowlist, raw.time_windows, raw.user_agent_pattern)
    }
}

impl From<Conditions> for RawConditions {
    fn from(conditions: Conditions) -> Self {
        Self {
            ip_allowlist: conditions.ip_allowlist,
            time_windows: conditions.time_windows,
            user_agent_pattern: conditions.user_agent_pattern,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn env_hint_is_lowercase_digits_and_dashes_up_to_16() {
        for good in ["prod", "ci-2", "a", "0123456789abcdef"] {
            assert!(EnvHint::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Prod", "pr_od", "0123456789abcdefg", "é", "a b"] {
            assert_eq!(EnvHint::parse(bad), Err(ValueError::InvalidEnvHint), "{bad:?}");
        }
    }

    #[test]
    fn token_name_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(TokenName::parse("  GitHub Actions prod ").unwrap().as_str(), "GitHub Actions prod");
        assert!(TokenName::parse(&"é".repeat(100)).is_ok(), "100 characters, not bytes");
        for bad in ["", "   ", &"x".repeat(101), "line\nbreak", "bell\u{7}"] {
            assert!(TokenName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_round_trip_as_strings_and_refuse_unknown_or_empty() {
        let scopes = Scopes::parse(&["credledger-api/write", "credledger-api/read"]).unwrap();
        assert_eq!(scopes, Scopes::all());
        let json = serde_json::to_string(&scopes).unwrap();
        assert_eq!(json, r#"["credledger-api/read","credledger-api/write"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), scopes);
        assert!(serde_json::from_str::<Scopes>("[]").is_err());
        assert!(serde_json::from_str::<Scopes>(r#"["admin"]"#).is_err());
        assert_eq!(Scopes::parse_space_separated("credledger-api/read").unwrap(), Scopes::read_only());
        assert!(Scopes::read_only().is_subset(&Scopes::all()));
        assert!(!Scopes::all().is_subset(&Scopes::read_only()));
    }

    #[test]
    fn cidr_accepts_v4_v6_and_bare_addresses() {
        let v4 = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        assert!(v4.contains("10.200.0.1".parse().unwrap()));
        assert!(!v4.contains("11.0.0.1".parse().unwrap()));
        assert!(v4.contains("::ffff:10.0.0.9".parse().unwrap()), "IPv4-mapped IPv6");
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "300.1.1.1", "example.com", "10.0.0.0/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_window_end_is_exclusive_and_wraps_past_midnight() {
        let office = TimeWindow::parse_spec("mon-fri 06:00-22:00").unwrap();
        assert!(office.contains(Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap())); // Wednesday
        assert!(office.contains(Utc.with_ymd_and_hms(2026, 11, 25, 21, 59, 0).unwrap()));
        assert!(!office.contains(Utc.with_ymd_and_hms(2026, 11, 25, 22, 0, 0).unwrap()));
        assert!(!office.contains(Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap())); // Saturday

        let night = TimeWindow::parse_spec("fri 22:00-02:00").unwrap();
        assert!(night.contains(Utc.with_ymd_and_hms(2026, 11, 27, 23, 30, 0).unwrap())); // Friday night
        assert!(night.contains(Utc.with_ymd_and_hms(2026, 11, 28, 1, 59, 0).unwrap())); // into Saturday
        assert!(!night.contains(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap()));
        assert!(!night.contains(Utc.with_ymd_and_hms(2026, 11, 28, 23, 0, 0).unwrap())); // Saturday night
        assert!(!night.contains(Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap())); // Thursday into Friday

        let whole_day = TimeWindow::parse_spec("sun 00:00-24:00").unwrap();
        assert!(whole_day.contains(Utc.with_ymd_and_hms(2026, 11, 29, 23, 59, 0).unwrap()));
        // Times in other offsets are compared in UTC.
        assert!(office.contains(DateTime::parse_from_rfc3339("2026-11-25T23:00:00+02:00").unwrap().to_utc()));
    }

    #[test]
    fn time_window_round_trips_through_the_api_shape() {
        let window = TimeWindow::parse_spec("fri-mon 22:00-02:00").unwrap();
        let json = serde_json::to_value(&window).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"days": ["mon", "fri", "sat", "sun"], "startUtc": "22:00", "endUtc": "02:00"})
        );
        assert_eq!(serde_json::from_value::<TimeWindow>(json).unwrap(), window);
        for bad in [
            "mon 06:00",
            "mon 6:00-22:00",
            "mon 06:00-25:00",
            "funday 06:00-22:00",
            "mon 10:00-10:00",
            "mon 24:00-01:00",
        ] {
            assert!(TimeWindow::parse_spec(bad).is_err(), "{bad:?}");
        }
        let empty_days = serde_json::json!({"days": [], "startUtc": "06:00", "endUtc": "22:00"});
        assert!(serde_json::from_value::<TimeWindow>(empty_days).is_err());
    }

    #[test]
    fn user_agent_pattern_is_a_bounded_glob() {
        let pattern = UserAgentPattern::parse("github-actions/*").unwrap();
        assert!(pattern.matches("github-actions/2.3"));
        assert!(!pattern.matches("curl/8.0"));
        assert!(!pattern.matches("GitHub-Actions/2.3"), "case-sensitive");
        assert!(UserAgentPattern::parse(&"a".repeat(257)).is_err());
        assert!(UserAgentPattern::parse("").is_err());
        assert!(UserAgentPattern::parse("[unclosed").is_err());
    }

    #[test]
    fn patterns_of_the_same_text_share_one_compiled_matcher() {
        let first = UserAgentPattern::parse("deploy-bot/*").unwrap();
        let second = UserAgentPattern::parse("deploy-bot/*").unwrap();
        assert!(std::sync::Arc::ptr_eq(&first.matcher, &second.matcher));
        let other = UserAgentPattern::parse("deploy-bot/1.*").unwrap();
        assert!(!std::sync::Arc::ptr_eq(&first.matcher, &other.matcher));
        assert!(second.matches("deploy-bot/7") && !other.matches("deploy-bot/7"));
        drop((first, second));
        // Nothing keeps a matcher alive once its patterns are gone; the text compiles again.
        let again = UserAgentPattern::parse("deploy-bot/*").unwrap();
        assert!(again.matches("deploy-bot/7"));
    }

    #[test]
    fn conditions_are_bounded_and_validated_when_deserialised() {
        let cidrs = vec![Cidr::parse("10.0.0.0/8").unwrap(); 101];
        let err = Conditions::new(cidrs, Vec::new(), None).unwrap_err();
        assert_eq!((err.code(), err.field()), ("too_many_conditions", "conditions.ipAllowlist"));
        let windows = vec![TimeWindow::parse_spec("daily 00:00-24:00").unwrap(); 21];
        assert!(Conditions::new(Vec::new(), windows, None).is_err());

        let json = serde_json::json!({
            "ipAllowlist": ["140.82.112.0/20", "2001:db8::/32"],
            "timeWindows": [{"days": ["mon", "tue"], "startUtc": "06:00", "endUtc": "22:00"}],
            "userAgentPattern": "github-actions/*"
        });
        let conditions: Conditions = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&conditions).unwrap(), json);
        assert_eq!(serde_json::from_value::<Conditions>(serde_json::json!({})).unwrap(), Conditions::none());
        let bad = serde_json::json!({"ipAllowlist": ["not-an-ip"]});
        assert!(serde_json::from_value::<Conditions>(bad).is_err());
        let unknown = serde_json::json!({"ipAllowList": []});
        assert!(serde_json::from_value::<Conditions>(unknown).is_err(), "a misspelt field is refused");
    }
}
