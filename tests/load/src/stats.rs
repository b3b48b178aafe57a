//! Latency samples and percentiles.
//!
//! Every sample is kept (a run produces at most a few million), so percentiles are exact
//! (nearest-rank) rather than bucketed.

/// Latency samples in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<u64>,
    sorted: bool,
}

impl Samples {
    pub fn new() -> Self {
        Samples::default()
    }

    pub fn record(&mut self, nanos: u64) {
        self.values.push(nanos);
        self.sorted = false;
    }

    pub fn extend(&mut self, other: &Samples) {
        self.values.extend_from_slice(&other.values);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[u64] {
        &self.values
    }

    pub fn from_values(values: Vec<u64>) -> Self {
        Samples {
            values,
            sorted: false,
        }
    }

    /// Nearest-rank percentile (`p` in 0..=100) in nanoseconds; 0 when empty.
    pub fn percentile(&mut self, p: f64) -> u64 {
        if self.values.is_empty() {
            return 0;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let n = self.values.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.values[rank.clamp(1, n) - 1]
    }

    /// Percentile in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        self.percentile(p) as f64 / 1e6
    }

    pub fn max(&self) -> u64 {
        self.values.iter().copied().max().unwrap_or(0)
    }
}

/// Rounds for display and JSON: 3 significant decimals are plenty for noisy figures.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::from_values((1..=100).rev().collect());
        assert_eq!(s.percentile(50.0), 50);
        assert_eq!(s.percentile(99.0), 99);
        assert_eq!(s.percentile(99.9), 100);
        assert_eq!(s.percentile(100.0), 100);
        assert_eq!(s.percentile(0.0), 1);
        let mut one = Samples::new();
        one.record(7);
        assert_eq!(one.percentile(50.0), 7);
        assert_eq!(one.percentile(99.9), 7);
        assert_eq!(Samples::new().percentile(50.0), 0);
    }

    #[test]
    fn extend_and_resort() {
        let mut a = Samples::from_values(vec![5, 1]);
        assert_eq!(a.percentile(100.0), 5);
        a.extend(&Samples::from_values(vec![9]));
        assert_eq!(a.percentile(100.0), 9);
        assert_eq!(a.len(), 3);
        assert_eq!(a.max(), 9);
        assert_eq!(a.percentile_ms(50.0), 5e-6);
    }
}
