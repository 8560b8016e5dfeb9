//! Idle connections a server must not let pile up: some send nothing at all, some send half an
//! HTTP/2 preface (`PRI * HTTP/2.0\r\n`) and stop. Each is held open until the server closes it
//! or the hold time ends; the summary says how many were open once connecting was done and how
//! long the server took to close them (counted from each connection's own connect, since a
//! server's deadline runs from accept).

use super::parse;
use super::stats::{self, Closing};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, Semaphore};

/// Half of the 24-byte HTTP/2 client preface: enough for a server to start waiting for the rest.
const HALF_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Connects in flight at once: enough to open thousands in about a second without overflowing
/// the server's accept queue (which would only make connects slow, not fail).
const CONNECTS_IN_FLIGHT: usize = 256;

#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub plain: usize,
    pub preface: usize,
    pub sources: Vec<IpAddr>,
    pub hold: Duration,
    pub connect_timeout: Duration,
    /// Connects per second (0: as fast as they complete). A client finishes its connect when
    /// the handshake is done, before the server has accepted; unpaced, thousands of connects
    /// overflow the server's accept queue, and the kernel then retries each dropped one a
    /// second later: that measures the backlog, not the server.
    pub connect_rate: f64,
    pub within_ms: Vec<u64>,
    pub bucket_ms: u64,
    pub ready: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Preface,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub requested_plain: usize,
    pub requested_preface: usize,
    pub sources: usize,
    pub connected: usize,
    pub connect_errors: usize,
    /// One connect error, as an example of what went wrong.
    pub connect_error_sample: Option<String>,
    /// Time from the first connect to the last one done.
    pub connect_phase_ms: f64,
    /// Connections still open when the last connect was done.
    pub open_after_connect: usize,
    /// Most connections open at the same time.
    pub peak_open: usize,
    pub hold_s: f64,
    pub all: Closing,
    pub plain: Closing,
    pub preface: Closing,
}

struct Ended {
    kind: Kind,
    /// `Err` when the connect failed; `Ok(None)` when still open at the end of the hold.
    lifetime: Result<Option<Duration>, String>,
}

pub async fn run(plan: Plan) -> Result<Summary, String> {
    if plan.sources.is_empty() {
        return Err("no source addresses".into());
    }
    let mut kinds: Vec<Kind> = std::iter::repeat_n(Kind::Plain, plan.plain)
        .chain(std::iter::repeat_n(Kind::Preface, plan.preface))
        .collect();
    // Mixed, so that both kinds see the same accept queue and the same server load.
    kinds.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let total = kinds.len();
    let start = Instant::now();
    let end = start + plan.hold;
    let slots = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let closed = Arc::new(AtomicUsize::new(0));
    let open = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::with_capacity(total);
    for (i, kind) in kinds.into_iter().enumerate() {
        let source = plan.sources[i % plan.sources.len()];
        let (slots, closed, connected_tx) = (slots.clone(), closed.clone(), connected_tx.clone());
        let open = open.clone();
        let (addr, timeout) = (plan.addr, plan.connect_timeout);
        let due =
            (plan.connect_rate > 0.0).then(|| start + parse::due(i as u64, plan.connect_rate));
        tasks.push(tokio::spawn(async move {
            if let Some(at) = due {
                tokio::time::sleep_until(at.into()).await;
            }
            let stream = {
                let _permit = slots.acquire_owned().await;
                let r = connect(addr, source, timeout, kind).await;
                let _ = connected_tx.send(());
                r
            };
            let lifetime = match stream {
                Err(e) => Err(e),
                Ok((mut stream, at)) => {
                    let now_open = open.0.fetch_add(1, Ordering::Relaxed) + 1;
                    open.1.fetch_max(now_open, Ordering::Relaxed);
                    let mut buf = [0u8; 512];
                    let until_end = async {
                        loop {
                            // Whatever the server sends (an error page, a GOAWAY) is read and
                            // ignored; only the close matters.
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                    };
                    match tokio::time::timeout_at(end.into(), until_end).await {
                        Ok(()) => {
                            closed.fetch_add(1, Ordering::Relaxed);
                            open.0.fetch_sub(1, Ordering::Relaxed);
                            Ok(Some(at.elapsed()))
                        }
                        Err(_) => Ok(None),
                    }
                }
            };
            Ended { kind, lifetime }
        }));
    }
    drop(connected_tx);
    let mut done = 0;
    while done < total && connected_rx.recv().await.is_some() {
        done += 1;
    }
    let connect_phase = start.elapsed();
    // Counted now, while every connect is done and the server has had no more time.
    let closed_now = closed.load(Ordering::Relaxed);
    if let Some(path) = &plan.ready {
        // Tells a test that the connections are in place and it can probe the server now.
        std::fs::write(path, format!("{total} {closed_now}\n"))
            .map_err(|e| format!("--ready {}: {e}", path.display()))?;
    }
    let mut results = Vec::with_capacity(total);
    for t in tasks {
        match t.await {
            Ok(e) => results.push(e),
            Err(e) => return Err(format!("a connection task failed: {e}")),
        }
    }
    let mut connected: usize = 0;
    for r in &results {
        if r.lifetime.is_ok() {
            connected += 1;
        }
    }
    let open_after_connect = connected.saturating_sub(closed_now);
    let lifetimes = |want: Option<Kind>| -> Vec<Option<u64>> {
        results
            .iter()
            .filter(|r| want.is_none_or(|k| r.kind == k))
            .filter_map(|r| r.lifetime.as_ref().ok())
            .map(|l| l.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
            .collect()
    };
    let summarise = |want| stats::closing(&lifetimes(want), &plan.within_ms, plan.bucket_ms);
    let errors: Vec<&String> = results
        .iter()
        .filter_map(|r| r.lifetime.as_ref().err())
        .collect();
    Ok(Summary {
        requested_plain: plan.plain,
        requested_preface: plan.preface,
        sources: plan.sources.len(),
        connected,
        connect_errors: errors.len(),
        connect_error_sample: errors.first().map(|e| e.to_string()),
        connect_phase_ms: connect_phase.as_secs_f64() * 1000.0,
        open_after_connect,
        peak_open: open.1.load(Ordering::Relaxed),
        hold_s: plan.hold.as_secs_f64(),
        all: summarise(None),
        plain: summarise(Some(Kind::Plain)),
        preface: summarise(Some(Kind::Preface)),
    })
}

/// Connects from `source` (bound before connect, so the server sees that address) and, for a
/// preface connection, sends the half preface. Returns the stream and when it was connected.
async fn connect(
    addr: SocketAddr,
    source: IpAddr,
    timeout: Duration,
    kind: Kind,
) -> Result<(tokio::net::TcpStream, Instant), String> {
    let work = async {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let mut stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect {addr} from {source}: {e}"))?;
        let at = Instant::now();
        if kind == Kind::Preface {
            stream
                .write_all(HALF_PREFACE)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        Ok((stream, at))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("connect {addr} from {source}: timed out"))?
}
