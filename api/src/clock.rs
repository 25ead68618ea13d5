//! The server's clock. Production reads the system clock; end-to-end tests shift it through a
//! file so that expiry and time windows can be tested against the real binary without waiting.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// The system clock plus a number of seconds read from this file at every call (a missing
    /// or unreadable file means no shift). Only for tests: set by a hidden `serve` flag.
    ShiftedByFile(Arc<PathBuf>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match self {
            Self::System => now,
            Self::ShiftedByFile(path) => {
                let shift = std::fs::read_to_string(path.as_ref())
                    .ok()
                    .and_then(|text| text.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                now + TimeDelta::seconds(shift)
            }
        }
    }
}
