//! Brute-force protection of client authentication at the token and introspection endpoints.
//!
//! Failed authentications are counted per client id and per source IP in one-minute windows;
//! past the limit the caller gets 429 with `Retry-After`. A client that fails
//! [`LOCK_AFTER`] times in a row is locked for [`LOCK_FOR`], whatever secret it then presents;
//! the lock is recorded in the log as a `locked` denial of the credential.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// Failed authentications per client id, or per source IP, in one window.
pub const FAILURES_PER_WINDOW: u32 = 20;
pub const WINDOW: Duration = Duration::minutes(1);
/// Consecutive failures that lock a client.
pub const LOCK_AFTER: u32 = 10;
pub const LOCK_FOR: Duration = Duration::minutes(15);

#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_client: HashMap<String, Counter>,
    by_ip: HashMap<IpAddr, Counter>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: OffsetDateTime,
    failures_in_window: u32,
    consecutive: u32,
    locked_until: Option<OffsetDateTime>,
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
    fn is_live(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| until > now) || now - self.window_start < WINDOW
    }

    fn new(now: OffsetDateTime) -> Self {
        Self { window_start: now, failures_in_window: 0, consecutive: 0, locked_until: None }
    }

    fn roll_window(&mut self, now: OffsetDateTime) {
        if now - self.window_start >= WINDOW {
            self.window_start = now;
            self.failures_in_window = 0;
        }
    }

    fn verdict(&mut self, now: OffsetDateTime) -> Verdict {
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

fn seconds_until(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (at - now).whole_seconds().max(1)
}

impl Limiter {
    /// Checks the client id and the source IP before any secret is looked at.
    pub fn check(&self, client_id: &str, ip: IpAddr, now: OffsetDateTime) -> Verdict {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = inner.by_client.get_mut(client_id).map_or(Verdict::Allowed, |counter| counter.verdict(now));
        if client != Verdict::Allowed {
            return client;
        }
        inner.by_ip.get_mut(&ip).map_or(Verdict::Allowed, |counter| counter.verdict(now))
    }

    pub fn failed(&self, client_id: &str, ip: IpAddr, now: OffsetDateTime) -> Failure {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Attackers choose client ids and addresses freely: forget the idle ones before the maps
        // grow without bound.
        if inner.by_client.len() + inner.by_ip.len() > MAX_TRACKED {
            inner.by_client.retain(|_, counter| counter.is_live(now));
            inner.by_ip.retain(|_, counter| counter.is_live(now));
        }
        let by_ip = inner.by_ip.entry(ip).or_insert_with(|| Counter::new(now));
        by_ip.roll_window(now);
        by_ip.failures_in_window += 1;
        let client = inner.by_client.entry(client_id.to_owned()).or_insert_with(|| Counter::new(now));
        client.roll_window(now);
        client.failures_in_window += 1;
        client.consecutive += 1;
        if client.consecutive >= LOCK_AFTER && client.locked_until.is_none() {
            client.locked_until = Some(now + LOCK_FOR);
            return Failure::LockedNow;
        }
        Failure::Counted
    }

    /// A success ends the run of consecutive failures.
    pub fn succeeded(&self, client_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counter) = inner.by_client.get_mut(client_id) {
            counter.consecutive = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    #[test]
    fn consecutive_failures_lock_the_client_for_a_period() {
        let limiter = Limiter::default();
        for i in 1..LOCK_AFTER {
            assert_eq!(limiter.failed("c", ip(), NOW), Failure::Counted, "failure {i}");
        }
        assert_eq!(limiter.failed("c", ip(), NOW), Failure::LockedNow);
        assert!(matches!(limiter.check("c", IpAddr::from([198, 51, 100, 1]), NOW), Verdict::Locked { .. }));
        assert_eq!(limiter.check("c", ip(), NOW + LOCK_FOR), Verdict::Allowed);
    }

    #[test]
    fn a_success_resets_the_run_of_failures() {
        let limiter = Limiter::default();
        for _ in 1..LOCK_AFTER {
            limiter.failed("c", ip(), NOW);
        }
        limiter.succeeded("c");
        assert_eq!(limiter.failed("c", ip(), NOW), Failure::Counted);
    }

    #[test]
    fn many_failures_from_one_address_throttle_it_for_the_rest_of_the_window() {
        let limiter = Limiter::default();
        for n in 0..FAILURES_PER_WINDOW {
            limiter.failed(&format!("client-{n}"), ip(), NOW);
        }
        assert_eq!(limiter.check("fresh", ip(), NOW), Verdict::Throttled { retry_after: 60 });
        assert_eq!(limiter.check("fresh", IpAddr::from([198, 51, 100, 1]), NOW), Verdict::Allowed);
        assert_eq!(limiter.check("fresh", ip(), NOW + WINDOW), Verdict::Allowed);
    }
}
