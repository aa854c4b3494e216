//! Min/median summaries of repeated timings.

use std::time::Duration;

/// Repeated measurements of one thing.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Records one measurement.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The latest run.
    pub fn last(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }

    /// The fastest run.
    pub fn min(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    /// The median run (lower median for even counts).
    pub fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or_default()
    }

    /// `min / median` in seconds, for a table cell.
    pub fn cell(&self) -> String {
        format!(
            "{:.3} s / {:.3} s",
            self.min().as_secs_f64(),
            self.median().as_secs_f64()
        )
    }
}

/// `a / b` of medians.
pub fn ratio(a: &Samples, b: &Samples) -> f64 {
    a.median().as_secs_f64() / b.median().as_secs_f64().max(1e-9)
}
