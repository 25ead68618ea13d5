//! Measuring: latency percentiles, the process's resident memory, and the store's own batch
//! metrics captured through a `metrics` recorder (the store records every group-commit batch's
//! size and duration; the benchmark reads them instead of guessing).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{Value, json};

/// Nearest-rank percentiles of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Self {
            count: samples.len(),
            p50_ms: millis(rank(samples, 0.50)),
            p99_ms: millis(rank(samples, 0.99)),
            max_ms: millis(samples[samples.len() - 1]),
            mean_ms: millis(total) / samples.len() as f64,
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": round3(self.p50_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
            "mean_ms": round3(self.mean_ms),
        })
    }
}

/// The nearest-rank `q` quantile of sorted samples.
fn rank<T: Copy>(sorted: &[T], q: f64) -> T {
    let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Rounded to three decimals, for readable JSON.
pub fn round3(value: f64) -> f64 {
    (value * 1e3).round() / 1e3
}

/// Summary of plain numbers (batch sizes): mean and nearest-rank percentiles.
pub fn distribution(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return json!({ "count": 0 });
    }
    samples.sort_unstable_by(f64::total_cmp);
    let sum: f64 = samples.iter().sum();
    json!({
        "count": samples.len(),
        "mean": round3(sum / samples.len() as f64),
        "p50": rank(samples, 0.50),
        "p99": rank(samples, 0.99),
        "max": samples[samples.len() - 1],
        "sum": round3(sum),
    })
}

/// The process's resident set, and its peak, in bytes (from /proc/self/status).
pub fn resident_memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/status"))?;
        let kib: u64 = line.trim_start_matches(name).trim().trim_end_matches("kB").trim().parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time this process has used so far (user + system, all threads), in seconds: compared with
/// the wall time of a span, it shows whether the run had the machine's cores or shared them.
pub fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may hold spaces; the fields after its `)` are space-separated,
    // utime and stime being the 12th and 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<u64> = after_name.split_whitespace().skip(11).take(2).map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(ticks.len() == 2, "no utime and stime in /proc/self/stat");
    Ok((ticks[0] + ticks[1]) as f64 / 100.0)
}

/// The machine's 1-minute load average when the run started: context for every figure, since
/// the benchmark shares 2 cores with whatever else runs.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Values recorded into one histogram.
#[derive(Debug, Default)]
pub struct Samples(Mutex<Vec<f64>>);

impl Samples {
    /// Takes what was recorded so far, leaving the histogram empty.
    pub fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(value);
    }
}

/// The store writer's per-batch histograms: appends per batch, and seconds per batch (judging,
/// encoding, hashing, inserting and the durable commit).
#[derive(Debug, Default, Clone)]
pub struct BatchMetrics {
    pub appends: Arc<Samples>,
    pub seconds: Arc<Samples>,
}

impl BatchMetrics {
    /// Installs a process-wide recorder that keeps the store's batch histograms and drops every
    /// other metric. Only the first call in a process installs it.
    pub fn install() -> anyhow::Result<Self> {
        let metrics = Self::default();
        metrics::set_global_recorder(metrics.clone())
            .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
        Ok(metrics)
    }
}

impl Recorder for BatchMetrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match key.name() {
            "credledger_store_batch_appends" => Histogram::from_arc(self.appends.clone()),
            "credledger_store_batch_seconds" => Histogram::from_arc(self.seconds.clone()),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut samples);
        let close = |value: f64, expected: f64| (value - expected).abs() < 1e-9;
        assert!(close(p.p50_ms, 50.0) && close(p.p99_ms, 99.0) && close(p.max_ms, 100.0), "{p:?}");
        let mut one = vec![Duration::from_millis(7)];
        assert!(close(Percentiles::of(&mut one).p99_ms, 7.0));
    }

    #[test]
    fn cpu_time_and_load_are_read_from_proc() {
        let spent = cpu_seconds().unwrap();
        let busy = (0..2_000_000u64).fold(0u64, |sum, n| sum.wrapping_add(n * n));
        assert!(std::hint::black_box(busy) > 0 && cpu_seconds().unwrap() >= spent);
        assert!(load_average().is_some());
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        let (rss, peak) = resident_memory().unwrap();
        assert!(rss > 0 && peak >= rss);
    }
}
