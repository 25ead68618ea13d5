//! Brute-force protection of client authentication at the token and introspection endpoints.
//!
//! Failed authentications are counted per client id *from one source* and per source in
//! one-minute windows; past the limit the caller gets 429 with `Retry-After`. A client that fails
//! [`LOCK_AFTER`] times in a row from one source is locked there for [`LOCK_FOR`], whatever secret
//! it then presents; the lock is recorded in the log as a `locked` denial of the credential.
//!
//! Counting a client id together with its source matters: client ids are not secret, so a lock
//! keyed by the id alone would let anyone lock a pipeline out from elsewhere. Sources are IPv4
//! addresses or IPv6 /64 networks (one host holds a whole /64), and only well-formed client ids
//! are tracked, so neither map can be grown with junk faster than requests arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Failed authentications per client id, or per source IP, in one window.
pub const FAILURES_PER_WINDOW: u32 = 20;
pub const WINDOW: TimeDelta = TimeDelta::minutes(1);
/// Consecutive failures that lock a client.
pub const LOCK_AFTER: u32 = 10;
pub const LOCK_FOR: TimeDelta = TimeDelta::minutes(15);

#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_client: HashMap<String, Counter>,
    by_ip: HashMap<IpAddr, Counter>,
    /// Refused machine assertions per source: no lock (an assertion is not a guessable
    /// secret), only a throttle on the work forged ones cause.
    assertions_by_ip: HashMap<IpAddr, Counter>,
}

/// Refused assertions per source in one window.
pub const ASSERTION_FAILURES_PER_WINDOW: u32 = 100;

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: DateTime<Utc>,
    failures_in_window: u32,
    consecutive: u32,
    locked_until: Option<DateTime<Utc>>,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Too many failures recently: retry after this many seconds.
    Throttled {
        retry_after: i64,
    },
    /// The client is locked until then.
    Locked {
        retry_after: i64,
    },
}

/// What a failure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted,
    /// This failure locked the client.
    LockedNow,
}

/// Client ids and addresses tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 100_000;

impl Counter {
    /// Whether forgetting this counter would lose anything: a lock, or a window still open.
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now) || now - self.window_start < WINDOW
    }

    fn new(now: DateTime<Utc>) -> Self {
        Self { window_start: now, failures_in_window: 0, consecutive: 0, locked_until: None }
    }

    fn roll_window(&mut self, now: DateTime<Utc>) {
        if now - self.window_start >= WINDOW {
            self.window_start = now;
            self.failures_in_window = 0;
        }
    }

    fn verdict(&mut self, now: DateTime<Utc>) -> Verdict {
        if let Some(until) = self.locked_until {
            if until > now {
                return Verdict::Locked { retry_after: seconds_until(until, now) };
            }
            self.locked_until = None;
            self.consecutive = 0;
        }
        self.roll_window(now);
        if self.failures_in_window >= FAILURES_PER_WINDOW {
            return Verdict::Throttled { retry_after: seconds_until(self.window_start + WINDOW, now) };
        }
        Verdict::Allowed
    }
}

fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds().max(1)
}

/// The source a failure is counted against: the address, or an IPv6 address's /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                let segments = v6.segments();
                IpAddr::from([segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0])
            }
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The key of a client at a source; `None` for a malformed client id (counted per source only).
fn client_key(client_id: &str, ip: IpAddr) -> Option<String> {
    credledger_domain::token::ClientId::parse(client_id).ok().map(|id| format!("{id}|{}", source(ip)))
}

impl Limiter {
    /// Checks the client (at this source) and the source before any secret is looked at.
    pub fn check(&self, client_id: &str, ip: IpAddr, now: DateTime<Utc>) -> Verdict {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(key) = client_key(client_id, ip) {
            let client = inner.by_client.get_mut(&key).map_or(Verdict::Allowed, |counter| counter.verdict(now));
            if client != Verdict::Allowed {
                return client;
            }
        }
        inner.by_ip.get_mut(&source(ip)).map_or(Verdict::Allowed, |counter| counter.verdict(now))
    }

    pub fn failed(&self, client_id: &str, ip: IpAddr, now: DateTime<Utc>) -> Failure {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Attackers choose client ids and addresses freely: forget the idle ones before the maps
        // grow without bound.
        if inner.by_client.len() + inner.by_ip.len() > MAX_TRACKED {
            inner.by_client.retain(|_, counter| counter.is_live(now));
            inner.by_ip.retain(|_, counter| counter.is_live(now));
        }
        let by_ip = inner.by_ip.entry(source(ip)).or_insert_with(|| Counter::new(now));
        by_ip.roll_window(now);
        by_ip.failures_in_window += 1;
        let Some(key) = client_key(client_id, ip) else { return Failure::Counted };
        let client = inner.by_client.entry(key).or_insert_with(|| Counter::new(now));
        client.roll_window(now);
        client.failures_in_window += 1;
        client.consecutive += 1;
        if client.consecutive >= LOCK_AFTER && client.locked_until.is_none() {
            client.locked_until = Some(now + LOCK_FOR);
            return Failure::LockedNow;
        }
        Failure::Counted
    }

    /// Checks a source before a machine assertion is verified.
    pub fn check_assertion(&self, ip: IpAddr, now: DateTime<Utc>) -> Verdict {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(counter) = inner.assertions_by_ip.get_mut(&source(ip)) else { return Verdict::Allowed };
        counter.roll_window(now);
        if counter.failures_in_window >= ASSERTION_FAILURES_PER_WINDOW {
            return Verdict::Throttled { retry_after: seconds_until(counter.window_start + WINDOW, now) };
        }
        Verdict::Allowed
    }

    pub fn assertion_failed(&self, ip: IpAddr, now: DateTime<Utc>) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.assertions_by_ip.len() > MAX_TRACKED {
            inner.assertions_by_ip.retain(|_, counter| counter.is_live(now));
        }
        let counter = inner.assertions_by_ip.entry(source(ip)).or_insert_with(|| Counter::new(now));
        counter.roll_window(now);
        counter.failures_in_window += 1;
    }

    /// A success ends the run of consecutive failures.
    pub fn succeeded(&self, client_id: &str, ip: IpAddr) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counter) = client_key(client_id, ip).and_then(|key| inner.by_client.get_mut(&key)) {
            counter.consecutive = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    const NOW: DateTime<Utc> = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(10, 0, 0).unwrap().and_utc();

    fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    const C: &str = "cl_ci_000000000000000000000001";

    #[test]
    fn consecutive_failures_lock_the_client_for_a_period() {
        let limiter = Limiter::default();
        for i in 1..LOCK_AFTER {
            assert_eq!(limiter.failed(C, ip(), NOW), Failure::Counted, "failure {i}");
        }
        assert_eq!(limiter.failed(C, ip(), NOW), Failure::LockedNow);
        assert!(matches!(limiter.check(C, ip(), NOW), Verdict::Locked { .. }));
        // Only where the failures came from: the pipeline elsewhere keeps working.
        assert_eq!(limiter.check(C, IpAddr::from([198, 51, 100, 1]), NOW), Verdict::Allowed);
        assert_eq!(limiter.check(C, ip(), NOW + LOCK_FOR), Verdict::Allowed);
    }

    #[test]
    fn a_success_resets_the_run_of_failures() {
        let limiter = Limiter::default();
        for _ in 1..LOCK_AFTER {
            limiter.failed(C, ip(), NOW);
        }
        limiter.succeeded(C, ip());
        assert_eq!(limiter.failed(C, ip(), NOW), Failure::Counted);
    }

    #[test]
    fn many_failures_from_one_address_throttle_it_for_the_rest_of_the_window() {
        let limiter = Limiter::default();
        for n in 0..FAILURES_PER_WINDOW {
            limiter.failed(&format!("client-{n}"), ip(), NOW);
        }
        assert_eq!(limiter.check(C, ip(), NOW), Verdict::Throttled { retry_after: 60 });
        assert_eq!(limiter.check(C, IpAddr::from([198, 51, 100, 1]), NOW), Verdict::Allowed);
        assert_eq!(limiter.check(C, ip(), NOW + WINDOW), Verdict::Allowed);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_network() {
        let limiter = Limiter::default();
        for n in 0..FAILURES_PER_WINDOW {
            let ip: IpAddr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
            limiter.failed("junk", ip, NOW);
        }
        let elsewhere_in_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(limiter.check(C, elsewhere_in_64, NOW), Verdict::Throttled { retry_after: 60 });
        assert_eq!(limiter.check(C, "2001:db8:1:3::1".parse().unwrap(), NOW), Verdict::Allowed);
    }
}
