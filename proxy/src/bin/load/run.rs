//! The request loop shared by `taps` and `postbacks`: N keep-alive connections take request
//! numbers in order from one counter, each sends its request when it is due (open loop) or at
//! once (closed loop), and records how it ended. Bounded by time and by count.

use super::client::{self, Body, Failure};
use super::parse;
use super::stats::{Outcome, Record};
use hyper::Request;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How a run is bounded and paced.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub connections: usize,
    /// Requests per second over all connections; 0 sends as fast as answers come back.
    pub rate: f64,
    pub duration: Duration,
    pub max_requests: u64,
    pub timeout: Duration,
}

/// Everything a run measured.
pub struct Outcomes {
    /// One record per request, in request-number order.
    pub records: Vec<Record>,
    /// Numbers of the requests answered with a redirect, ascending.
    pub redirected: Vec<u64>,
    pub connections_opened: usize,
    pub reconnects: usize,
    /// The first few failure messages, to say what went wrong.
    pub error_samples: Vec<String>,
    pub start_unix_ms: u64,
    pub elapsed: Duration,
}

/// A failed connect is retried on the next request, after this pause, so that a server that is
/// down is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);

struct Worker {
    records: Vec<(u64, Record)>,
    redirected: Vec<u64>,
    opened: usize,
    errors: Vec<String>,
}

/// Failure messages kept per connection.
const SAMPLES: usize = 3;

impl Worker {
    fn failed(&mut self, what: String) {
        if self.errors.len() < SAMPLES {
            self.errors.push(what);
        }
    }
}

pub async fn run<F>(plan: Plan, build: F) -> Outcomes
where
    F: Fn(u64) -> Request<Body> + Send + Sync + 'static,
{
    let build = Arc::new(build);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let total = if plan.rate > 0.0 {
        parse::planned(plan.rate, plan.duration, plan.max_requests)
    } else {
        plan.max_requests
    };
    let mut tasks = Vec::new();
    for _ in 0..plan.connections.max(1) {
        let (plan, build, next) = (plan.clone(), build.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = Worker {
                records: Vec::new(),
                redirected: Vec::new(),
                opened: 0,
                errors: Vec::new(),
            };
            let mut conn: Option<client::Conn> = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let due = if plan.rate > 0.0 {
                    let at = start + parse::due(n, plan.rate);
                    tokio::time::sleep_until(at.into()).await;
                    at
                } else {
                    if start.elapsed() >= plan.duration {
                        break;
                    }
                    Instant::now()
                };
                let offset_us =
                    u64::try_from(due.duration_since(start).as_micros()).unwrap_or(u64::MAX);
                let record = |outcome| Record {
                    offset_us,
                    latency_us: u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX),
                    outcome,
                };
                if conn.as_ref().is_some_and(|c| c.is_closed()) {
                    conn = None;
                }
                if conn.is_none() {
                    match client::open(plan.addr, None, plan.timeout).await {
                        Ok(c) => {
                            w.opened += 1;
                            conn = Some(c);
                        }
                        Err(e) => {
                            w.failed(e);
                            w.records.push((n, record(Outcome::ConnectError)));
                            tokio::time::sleep(CONNECT_BACKOFF).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match c.send(build(n), plan.timeout).await {
                    Ok((status, close)) => {
                        let r = record(Outcome::Status(status));
                        if r.outcome.is_redirect() {
                            w.redirected.push(n);
                        }
                        w.records.push((n, r));
                        if close {
                            conn = None;
                        }
                    }
                    Err(Failure::Timeout) => {
                        w.failed(format!("request {n}: timed out"));
                        w.records.push((n, record(Outcome::Timeout)));
                        conn = None;
                    }
                    Err(Failure::Io(e)) => {
                        w.failed(format!("request {n}: {e}"));
                        w.records.push((n, record(Outcome::IoError)));
                        conn = None;
                    }
                }
            }
            w
        }));
    }
    let mut all = Vec::new();
    let mut redirected = Vec::new();
    let (mut opened, mut reconnects) = (0, 0);
    let mut error_samples = Vec::new();
    for t in tasks {
        // A worker that panicked loses its records; the counts then fall short of the plan,
        // which the caller sees in `requests`.
        if let Ok(w) = t.await {
            all.extend(w.records);
            redirected.extend(w.redirected);
            opened += w.opened;
            error_samples.extend(w.errors);
            reconnects += w.opened.saturating_sub(1);
        }
    }
    all.sort_by_key(|(n, _)| *n);
    redirected.sort_unstable();
    Outcomes {
        records: all.into_iter().map(|(_, r)| r).collect(),
        redirected,
        connections_opened: opened,
        reconnects,
        error_samples: error_samples.into_iter().take(10).collect(),
        start_unix_ms,
        elapsed: start.elapsed(),
    }
}
