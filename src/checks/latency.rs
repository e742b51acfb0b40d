//! Latency percentiles over a time window, in bounded memory.
//!
//! A ring of samples (8 bytes each: age in tenths of a second since the window's origin,
//! latency in microseconds) capped at `window / interval` plus slack, and never above
//! [`MAX_SAMPLES`]. Percentiles are exact over the samples held (sort of a copy at most a few
//! thousand entries long, once per run), which beats a bucketed histogram's interpolation for
//! the small counts a health check produces. When the cap binds (a very long window at a very
//! short interval) the percentiles cover the latest [`MAX_SAMPLES`] runs instead of the whole
//! window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most samples one window holds: 32 KiB.
pub(crate) const MAX_SAMPLES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Tenths of a second since `origin`.
    at: u32,
    micros: u32,
}

/// Percentiles of the samples in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub count: usize,
}

/// A bounded window of latency samples.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    origin: Instant,
    window: Duration,
    cap: usize,
    samples: VecDeque<Sample>,
}

impl LatencyWindow {
    pub(crate) fn new(window: Duration, interval: Duration) -> LatencyWindow {
        let per_window = window.as_millis() / interval.as_millis().max(1);
        let cap = usize::try_from(per_window)
            .unwrap_or(MAX_SAMPLES)
            .saturating_add(4)
            .min(MAX_SAMPLES);
        LatencyWindow {
            origin: Instant::now(),
            window,
            cap,
            // Exactly the cap, once: grown by doubling, a 304-sample window (5m at 1s) would
            // take 512 slots.
            samples: VecDeque::with_capacity(cap),
        }
    }

    fn tenths(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.origin).as_millis() / 100).unwrap_or(u32::MAX)
    }

    /// Adds one run's latency measured at `at`, dropping what fell out of the window.
    pub(crate) fn record(&mut self, at: Instant, latency: Duration) {
        self.expire(at);
        if self.samples.len() >= self.cap {
            self.samples.pop_front();
        }
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let at = self.tenths(at);
        self.samples.push_back(Sample { at, micros });
    }

    fn expire(&mut self, now: Instant) {
        let now = self.tenths(now);
        let span = u32::try_from(self.window.as_millis() / 100).unwrap_or(u32::MAX);
        while let Some(first) = self.samples.front() {
            if now.saturating_sub(first.at) > span {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// p50/p95/p99 (nearest rank) of the samples still in the window at `now`; `None` when
    /// there are none.
    pub(crate) fn percentiles(&mut self, now: Instant) -> Option<Percentiles> {
        self.expire(now);
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.samples.iter().map(|s| s.micros).collect();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let n = sorted.len();
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            Duration::from_micros(u64::from(sorted[index]))
        };
        Some(Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            count: sorted.len(),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut w = LatencyWindow::new(Duration::from_secs(300), Duration::from_secs(1));
        let now = Instant::now();
        for i in 1..=100u32 {
            w.record(now, MS * i);
        }
        let p = w.percentiles(now).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.count), (MS * 50, MS * 95, MS * 99, 100));
    }

    #[test]
    fn memory_is_bounded_by_window_over_interval() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Duration::from_secs(1));
        let now = Instant::now();
        for _ in 0..10_000 {
            w.record(now, MS);
        }
        assert_eq!(w.len(), 14);
        assert_eq!(w.samples.capacity(), 14, "the ring is allocated once, at its cap");
        let mut long = LatencyWindow::new(Duration::from_secs(86_400), Duration::from_millis(100));
        for _ in 0..10_000 {
            long.record(now, MS);
        }
        assert_eq!(long.len(), MAX_SAMPLES);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut w = LatencyWindow::new(Duration::from_secs(10), Duration::from_secs(1));
        let start = Instant::now();
        w.record(start, Duration::from_secs(5));
        w.record(start + Duration::from_secs(11), MS);
        let p = w.percentiles(start + Duration::from_secs(11)).unwrap();
        assert_eq!((p.p99, p.count), (MS, 1));
        assert!(w.percentiles(start + Duration::from_secs(30)).is_none());
    }
}
