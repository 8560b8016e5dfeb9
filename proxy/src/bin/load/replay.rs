//! A fixed click stream, sent one request at a time on one keep-alive connection, request `i`
//! no earlier than `i × interval` after the start: the same stream through two proxies then
//! has the same order and, within the pacing's jitter, the same relative timing.

use super::client::{self, Body, Failure};
use super::parse::StreamRequest;
use super::stats::{Outcome, Record};
use hyper::header::{HeaderName, HeaderValue};
use hyper::Request;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Builds every request first, so that a bad header value stops the run before anything is
/// sent (a half-sent stream would make the comparison meaningless).
pub fn requests(stream: &[StreamRequest]) -> Result<Vec<Request<Body>>, String> {
    stream
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |e: String| format!("stream line {}: {e}", i + 1);
            let mut b = Request::builder()
                .method(s.method.as_str())
                .uri(s.path.as_str())
                .header(hyper::header::HOST, s.host.as_str());
            let mut add = |name: &str, value: &Option<String>| -> Result<(), String> {
                if let Some(v) = value {
                    let n = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| at(format!("header name {name:?}: {e}")))?;
                    let v =
                        HeaderValue::from_str(v).map_err(|e| at(format!("header {name}: {e}")))?;
                    b = std::mem::take(&mut b).header(n, v);
                }
                Ok(())
            };
            add("user-agent", &s.user_agent)?;
            add("x-forwarded-for", &s.forwarded_for)?;
            add("referer", &s.referer)?;
            if let Some((n, v)) = &s.extra {
                add(n, &Some(v.clone()))?;
            }
            b.body(Body::new()).map_err(|e| at(e.to_string()))
        })
        .collect()
}

/// When one request was sent and when its answer (or failure) was complete, in microseconds
/// since the Unix epoch: whatever time a server gives the request must lie in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub sent_unix_us: u64,
    pub done_unix_us: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sends the requests in order; one record each (latency from the request's due time), and
/// the span of each.
pub async fn run(plan: Plan, requests: Vec<Request<Body>>) -> (Vec<Record>, Vec<Span>) {
    let start = Instant::now();
    let mut conn: Option<client::Conn> = None;
    let mut out = Vec::with_capacity(requests.len());
    let mut spans = Vec::with_capacity(requests.len());
    for (i, req) in requests.into_iter().enumerate() {
        let due = start
            + plan
                .interval
                .saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        tokio::time::sleep_until(due.into()).await;
        let record = |outcome| Record {
            offset_us: u64::try_from(due.duration_since(start).as_micros()).unwrap_or(u64::MAX),
            latency_us: u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX),
            outcome,
        };
        let sent_unix_us = unix_us();
        let span = || Span {
            sent_unix_us,
            done_unix_us: unix_us(),
        };
        if conn.as_ref().is_some_and(|c| c.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            match client::open(plan.addr, None, plan.timeout).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    out.push(record(Outcome::ConnectError));
                    spans.push(span());
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let outcome = match c.send(req, plan.timeout).await {
            Ok((status, close)) => {
                if close {
                    conn = None;
                }
                Outcome::Status(status)
            }
            Err(Failure::Timeout) => {
                conn = None;
                Outcome::Timeout
            }
            Err(Failure::Io(_)) => {
                conn = None;
                Outcome::IoError
            }
        };
        out.push(record(outcome));
        spans.push(span());
    }
    (out, spans)
}
