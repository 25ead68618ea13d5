//! What the connections count during the measured window, merged into the one JSON line the
//! load generator prints.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies from 1 µs to a minute, to three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("the histogram bounds are valid")
}

/// Requests, errors and latencies of one class of requests.
#[derive(Debug)]
pub struct Tally {
    /// Latency in microseconds of every answered request, errors included.
    latencies: Histogram<u64>,
    requests: u64,
    errors: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self { latencies: histogram(), requests: 0, errors: 0 }
    }
}

impl Tally {
    pub fn answered(&mut self, success: bool, latency: Duration) {
        self.requests += 1;
        self.errors += u64::from(!success);
        self.latencies.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
    }

    /// A request that got no answer (refused connection, reset, timeout): an error, no latency.
    pub fn failed(&mut self) {
        self.requests += 1;
        self.errors += 1;
    }

    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies.add(&other.latencies).expect("histograms of the same bounds merge");
    }

    /// The latency at a quantile, in milliseconds; `null` without any answered request.
    fn quantile_ms(&self, quantile: f64) -> Value {
        if self.latencies.is_empty() {
            return Value::Null;
        }
        let micros = self.latencies.value_at_quantile(quantile) as f64;
        json!(micros / 1000.0)
    }
}

/// Everything one connection counted.
#[derive(Debug, Default)]
pub struct ConnectionTally {
    pub all: Tally,
    /// `mixed` only: the lifecycle commands, also counted in `all`.
    pub lifecycle: Tally,
    /// Answers by status code, plus `inactive` (a 2xx introspection that said `active: false`) and
    /// `transport` (no answer).
    pub outcomes: BTreeMap<String, u64>,
}

impl ConnectionTally {
    pub fn outcome(&mut self, key: impl Into<String>) {
        *self.outcomes.entry(key.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        self.all.merge(&other.all);
        self.lifecycle.merge(&other.lifecycle);
        for (key, count) in &other.outcomes {
            *self.outcomes.entry(key.clone()).or_default() += count;
        }
    }

    /// The report: `rps` counts successful requests only.
    pub fn report(&self, scenario: &str, connections: usize, duration: Duration, mut detail: Value) -> Value {
        let seconds = duration.as_secs_f64();
        let successes = self.all.requests - self.all.errors;
        if self.lifecycle.requests > 0 {
            detail["lifecycleRequests"] = json!(self.lifecycle.requests);
            detail["lifecycleErrors"] = json!(self.lifecycle.errors);
            detail["lifecycleP50Ms"] = self.lifecycle.quantile_ms(0.5);
            detail["lifecycleP99Ms"] = self.lifecycle.quantile_ms(0.99);
        }
        json!({
            "scenario": scenario,
            "connections": connections,
            "durationSeconds": seconds,
            "requests": self.all.requests,
            "errors": self.all.errors,
            "rps": (successes as f64 / seconds).round(),
            "p50Ms": self.all.quantile_ms(0.5),
            "p99Ms": self.all.quantile_ms(0.99),
            "p999Ms": self.all.quantile_ms(0.999),
            "outcomes": self.outcomes,
            "detail": detail,
        })
    }
}
