//! Freshness: a node judges requests only on a view of the ledger it knows to be recent.
//!
//! On a log that other processes write too (PostgreSQL), the store reports each time it asked
//! the database how far the log reaches, with the moment it asked. This node's view is *fresh*
//! while the last answer is younger than the bound and the hot index has reached the head that
//! answer gave. A node that stalled (a long pause, a frozen VM or container) finds on resuming
//! that its last answer is old: it judges nothing until it has asked again and caught up, and
//! answers 503 `stale_view` if that takes longer than the bound. On a log only this process
//! writes (SQLite) the view is always fresh: nothing is committed that this process has not seen.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use credledger_projections::Projections;
use credledger_store::{EventStore, HeadCheck};
use tokio::sync::watch;

use crate::problem::Problem;

/// How often a stale node looks again while it waits to be fresh.
const RECHECK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Freshness {
    checks: Option<watch::Receiver<HeadCheck>>,
    bound: Duration,
}

/// How this node's view stands against the shared log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Only this process writes the log: the view is as fresh as the projections.
    SoleWriter,
    /// The last check, `age` ago, found the log at `head`; `fresh` when that is within the bound
    /// and the projections have reached `head`.
    Checked { head: u64, age: Duration, fresh: bool },
}

impl Standing {
    pub fn is_fresh(self) -> bool {
        match self {
            Self::SoleWriter => true,
            Self::Checked { fresh, .. } => fresh,
        }
    }
}

impl Freshness {
    pub fn new(store: &dyn EventStore, bound: Duration) -> Self {
        Self { checks: store.head_checks(), bound }
    }

    /// The bound this node keeps its view within.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    pub fn standing(&self, projections: &Projections) -> Standing {
        let Some(checks) = &self.checks else { return Standing::SoleWriter };
        let check = *checks.borrow();
        let age = check.asked.elapsed();
        Standing::Checked { head: check.head, age, fresh: age <= self.bound && projections.position() >= check.head }
    }

    /// Waits until the view is fresh and includes `position`, at most the bound, and returns
    /// the position the view has reached: the basis of whatever is judged on it next.
    pub async fn wait(&self, projections: &Projections, position: u64) -> Result<u64, Problem> {
        let deadline = Instant::now() + self.bound;
        loop {
            let reached = projections.position();
            if reached >= position && self.standing(projections).is_fresh() {
                return Ok(reached);
            }
            if Instant::now() >= deadline {
                metrics::counter!("credledger_stale_view_total").increment(1);
                return Err(stale(self.bound));
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

/// The answer of a node that could not bring its view up to date in time.
pub fn stale(bound: Duration) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stale_view",
        format!(
            "this node has not confirmed within {} s that its view of the ledger is current; retry",
            bound.as_secs_f64()
        ),
    )
}
