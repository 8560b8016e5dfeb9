//! What a load run measured, and the pure arithmetic behind its summary: percentiles, per-second
//! buckets and named time windows. Nothing here does I/O, so all of it is unit-tested.

use serde::Serialize;
use std::collections::BTreeMap;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    /// No connection could be opened for it (refused, unreachable, connect timeout).
    ConnectError,
    /// The connection broke after the request was sent, before a complete answer.
    IoError,
    /// No complete answer within the per-request timeout.
    Timeout,
}

impl Outcome {
    /// A redirect is the only success for a tap; everything else counts as an error.
    pub fn is_redirect(self) -> bool {
        matches!(self, Outcome::Status(s) if (300..400).contains(&s))
    }

    /// Whether the request has a meaningful latency: an answer, or a timeout (whose latency is
    /// at least the timeout, which is exactly what a percentile must see). Connection failures
    /// are immediate and would make percentiles look better than the service was.
    fn has_latency(self) -> bool {
        matches!(self, Outcome::Status(_) | Outcome::Timeout)
    }
}

/// One request: when it was due (from the start of the run), how long it took from then, and
/// how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub offset_us: u64,
    pub latency_us: u64,
    pub outcome: Outcome,
}

/// The nearest-rank percentile (`q` in 0..=1) of sorted values; `None` when there are none.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    // Nearest rank: the smallest value with at least q·n values at or below it.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Latency percentiles in milliseconds over the requests that have a latency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of<'a>(records: impl Iterator<Item = &'a Record>) -> Latency {
        let mut v: Vec<u64> = records
            .filter(|r| r.outcome.has_latency())
            .map(|r| r.latency_us)
            .collect();
        v.sort_unstable();
        let p = |q| percentile(&v, q).map(ms);
        Latency {
            count: v.len(),
            p50_ms: p(0.5),
            p90_ms: p(0.9),
            p99_ms: p(0.99),
            max_ms: v.last().copied().map(ms),
        }
    }
}

/// Requests due within one second of the run (or a named window): how many, how many were not
/// a redirect, and their latency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slice {
    pub from_ms: u64,
    pub to_ms: u64,
    pub count: usize,
    pub errors: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The requests due in `[from_ms, to_ms)`.
pub fn slice(records: &[Record], from_ms: u64, to_ms: u64) -> Slice {
    let inside: Vec<&Record> = records
        .iter()
        .filter(|r| r.offset_us >= from_ms * 1000 && r.offset_us < to_ms * 1000)
        .collect();
    let lat = Latency::of(inside.iter().copied());
    Slice {
        from_ms,
        to_ms,
        count: inside.len(),
        errors: inside.iter().filter(|r| !r.outcome.is_redirect()).count(),
        p50_ms: lat.p50_ms,
        p99_ms: lat.p99_ms,
        max_ms: lat.max_ms,
    }
}

/// One slice per second, from the first second to the last one with a request.
pub fn per_second(records: &[Record]) -> Vec<Slice> {
    let last = records.iter().map(|r| r.offset_us / 1_000_000).max();
    match last {
        None => Vec::new(),
        Some(last) => (0..=last)
            .map(|s| slice(records, s * 1000, (s + 1) * 1000))
            .collect(),
    }
}

/// Counts by outcome: statuses by code, and the three kinds of failure.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    pub requests: usize,
    pub status: BTreeMap<String, usize>,
    pub redirects: usize,
    /// Requests that did not get a 3xx, for whatever reason (the failures below included).
    pub errors: usize,
    pub connect_errors: usize,
    pub io_errors: usize,
    pub timeouts: usize,
}

impl Counts {
    pub fn of(records: &[Record]) -> Counts {
        let mut c = Counts {
            requests: records.len(),
            ..Counts::default()
        };
        for r in records {
            match r.outcome {
                Outcome::Status(s) => *c.status.entry(s.to_string()).or_default() += 1,
                Outcome::ConnectError => c.connect_errors += 1,
                Outcome::IoError => c.io_errors += 1,
                Outcome::Timeout => c.timeouts += 1,
            }
            if r.outcome.is_redirect() {
                c.redirects += 1;
            } else {
                c.errors += 1;
            }
        }
        c
    }
}

/// Lifetimes of connections that a server should close: how many were closed, and by when.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Closing {
    pub connections: usize,
    pub closed: usize,
    pub still_open: usize,
    /// Time from connect by which half, 99 % and all of the connections were closed; `None`
    /// when that many were never closed.
    pub closed_p50_ms: Option<f64>,
    pub closed_p99_ms: Option<f64>,
    pub closed_all_ms: Option<f64>,
    /// For each asked bound (milliseconds), the connections closed within it of their connect.
    pub closed_within: BTreeMap<u64, usize>,
    /// Closed connections by lifetime, in buckets of `bucket_ms` (`[i·b, (i+1)·b)`).
    pub bucket_ms: u64,
    pub histogram: Vec<usize>,
}

/// `lifetimes_us`: one entry per connection, `None` for one still open at the end.
pub fn closing(lifetimes_us: &[Option<u64>], within_ms: &[u64], bucket_ms: u64) -> Closing {
    let mut closed: Vec<u64> = lifetimes_us.iter().flatten().copied().collect();
    closed.sort_unstable();
    let n = lifetimes_us.len();
    // A rank beyond the closed ones falls on a connection that never closed: no time.
    let by = |q: f64| {
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        closed.get(rank - 1).copied().map(ms)
    };
    let bucket_us = bucket_ms.max(1) * 1000;
    let mut histogram = Vec::new();
    for &t in &closed {
        let i = usize::try_from(t / bucket_us).unwrap_or(usize::MAX);
        if i >= histogram.len() {
            histogram.resize(i.saturating_add(1).min(1 << 20), 0);
        }
        if let Some(slot) = histogram.get_mut(i) {
            *slot += 1;
        }
    }
    Closing {
        connections: n,
        closed: closed.len(),
        still_open: n - closed.len(),
        closed_p50_ms: by(0.5),
        closed_p99_ms: by(0.99),
        closed_all_ms: by(1.0),
        closed_within: within_ms
            .iter()
            .map(|&w| (w, closed.iter().filter(|&&t| t <= w * 1000).count()))
            .collect(),
        bucket_ms,
        histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset_ms: u64, latency_ms: u64, outcome: Outcome) -> Record {
        Record {
            offset_us: offset_ms * 1000,
            latency_us: latency_ms * 1000,
            outcome,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.999), Some(100));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // Ten values: p90 is the 9th, p99 the 10th (a single slow request shows up in p99).
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000];
        assert_eq!(percentile(&v, 0.9), Some(9));
        assert_eq!(percentile(&v, 0.99), Some(1000));
    }

    #[test]
    fn latency_ignores_connection_failures_but_not_timeouts() {
        let r = [
            rec(0, 2, Outcome::Status(302)),
            rec(1, 4, Outcome::Status(503)),
            rec(2, 0, Outcome::ConnectError),
            rec(3, 1, Outcome::IoError),
            rec(4, 5000, Outcome::Timeout),
        ];
        let l = Latency::of(r.iter());
        assert_eq!(l.count, 3);
        assert_eq!(l.p50_ms, Some(4.0));
        assert_eq!(l.max_ms, Some(5000.0));
    }

    #[test]
    fn counts_split_statuses_and_failures() {
        let r = [
            rec(0, 1, Outcome::Status(302)),
            rec(0, 1, Outcome::Status(302)),
            rec(0, 1, Outcome::Status(301)),
            rec(0, 1, Outcome::Status(503)),
            rec(0, 1, Outcome::ConnectError),
            rec(0, 1, Outcome::Timeout),
            rec(0, 1, Outcome::IoError),
        ];
        let c = Counts::of(&r);
        assert_eq!(c.requests, 7);
        assert_eq!(c.redirects, 3);
        assert_eq!(c.errors, 4);
        assert_eq!(c.status.get("302"), Some(&2));
        assert_eq!(c.status.get("503"), Some(&1));
        assert_eq!((c.connect_errors, c.io_errors, c.timeouts), (1, 1, 1));
    }

    #[test]
    fn seconds_and_windows_go_by_due_time() {
        let r = [
            rec(10, 1, Outcome::Status(302)),
            rec(999, 3, Outcome::Status(302)),
            rec(1000, 50, Outcome::Status(503)),
            rec(2500, 2, Outcome::Status(302)),
        ];
        let s = per_second(&r);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].count, s[0].errors, s[0].p99_ms), (2, 0, Some(3.0)));
        assert_eq!((s[1].count, s[1].errors, s[1].max_ms), (1, 1, Some(50.0)));
        assert_eq!((s[2].from_ms, s[2].count), (2000, 1));
        let w = slice(&r, 900, 2600);
        assert_eq!((w.count, w.errors), (3, 1));
        assert!(per_second(&[]).is_empty());
    }

    #[test]
    fn closing_counts_never_closed_connections_as_infinitely_late() {
        let mut l: Vec<Option<u64>> = (1..=99).map(|i| Some(i * 10_000)).collect();
        l.push(None);
        let c = closing(&l, &[500, 2000], 100);
        assert_eq!((c.connections, c.closed, c.still_open), (100, 99, 1));
        assert_eq!(c.closed_p99_ms, Some(990.0));
        assert_eq!(c.closed_all_ms, None);
        assert_eq!(c.closed_within.get(&500), Some(&50));
        assert_eq!(c.closed_within.get(&2000), Some(&99));
        assert_eq!(c.histogram.iter().sum::<usize>(), 99);
        assert_eq!(c.histogram[0], 9);
        let all = closing(&[Some(1000), Some(3000)], &[], 1);
        assert_eq!(all.closed_all_ms, Some(3.0));
        assert!(all.closed_within.is_empty());
        assert_eq!(closing(&[], &[], 1).closed_p99_ms, None);
    }
}
