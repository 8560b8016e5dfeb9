//! smslink-load: a bounded load generator for the redirect proxy, on loopback only, for the
//! "faults" test tier (scripts/faults.sh).
//!
//! - `taps`: `GET /c/{token}` over N keep-alive connections, open loop at a fixed rate or closed
//!   loop, each request with a unique tag in `Referer` so that every click row can be matched
//!   to the request that made it; writes the tags answered 3xx (acknowledged clicks) and a JSON
//!   summary (counts by status and failure, latency percentiles, per-second buckets, windows).
//! - `postbacks`: a flood of unsigned postbacks at full speed.
//! - `idle`: thousands of connections that send nothing or half an HTTP/2 preface, and when the
//!   server closed them.
//! - `replay`: a fixed stream of requests, one at a time, at a fixed pace.
//!
//! Every run is bounded in time and in count; addresses must be loopback.

use clap::{Args, Parser, Subcommand};
use hyper::header::{HeaderValue, HOST, REFERER, USER_AGENT};
use hyper::Request;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod load;

use load::client::Body;
use load::stats::{self, Counts, Latency, Slice};
use load::{idle, parse, replay, run};

const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                     (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

#[derive(Parser, Debug)]
#[command(version, about = "Bounded loopback load for smslink-proxy tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Taps on links, each tagged, with a JSON summary and the list of acknowledged tags.
    Taps(Taps),
    /// Unsigned postbacks at full speed.
    Postbacks(Postbacks),
    /// Idle and half-preface connections, and when the server closed them.
    Idle(Idle),
    /// A fixed request stream, one request at a time.
    Replay(Replay),
}

/// What every HTTP run shares.
#[derive(Args, Debug)]
struct Bounds {
    /// `http://IP:PORT` of the proxy (loopback only).
    #[arg(long, value_parser = parse::url_base)]
    url_base: std::net::SocketAddr,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// Longest run, in seconds: no request is started after it.
    #[arg(long, value_parser = seconds)]
    duration_s: f64,
    /// Most requests in the run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_requests: u64,
    /// Per-request timeout, in milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
    /// Start at this time (Unix milliseconds) instead of at once, so that a test can schedule
    /// faults relative to the start. At most two minutes ahead.
    #[arg(long)]
    start_unix_ms: Option<u64>,
    /// The JSON summary (`-` for stdout).
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct Taps {
    #[command(flatten)]
    bounds: Bounds,
    /// Tokens, one a line; shuffled (see --seed), then used in turn.
    #[arg(long)]
    tokens: PathBuf,
    /// The Host header (the link domain).
    #[arg(long)]
    host: String,
    /// The path prefix before the token.
    #[arg(long, default_value = "c")]
    prefix: String,
    /// Requests per second over all connections (open loop); 0 for closed loop.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    rate: f64,
    /// Request n sends `Referer: https://load.test/{PREFIX}{n}`.
    #[arg(long, default_value = "", value_parser = parse::tag_prefix)]
    tag_prefix: String,
    /// Where to write the tag of every request answered 3xx, one a line.
    #[arg(long)]
    acked: Option<PathBuf>,
    #[arg(long, default_value = PHONE)]
    user_agent: String,
    /// Seed of the token shuffle.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A named window to summarise, `NAME=FROM_MS:TO_MS` from the start by due time (repeatable).
    #[arg(long, value_parser = parse::window)]
    window: Vec<parse::Window>,
}

#[derive(Args, Debug)]
struct Postbacks {
    #[command(flatten)]
    bounds: Bounds,
    /// The Host header; default: the address.
    #[arg(long)]
    host: Option<String>,
}

#[derive(Args, Debug)]
struct Idle {
    /// `IP:PORT` of the proxy (loopback only).
    #[arg(long, value_parser = parse::loopback_addr)]
    addr: std::net::SocketAddr,
    /// Connections that send nothing.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    connections: u32,
    /// Connections that send only `PRI * HTTP/2.0\r\n`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    preface_connections: u32,
    /// First source address; connections are spread over --bind-count consecutive addresses.
    #[arg(long, default_value = "127.0.0.2")]
    bind_from: IpAddr,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=250))]
    bind_count: u32,
    /// Longest time to hold the connections, in seconds.
    #[arg(long, value_parser = seconds)]
    hold_s: f64,
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    connect_timeout_ms: u64,
    /// Connects per second; 0 for as fast as they complete (which can overflow the server's
    /// accept queue and turn into one-second SYN retries).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    connect_rate: f64,
    /// Also count the connections closed within this many milliseconds of their connect
    /// (repeatable).
    #[arg(long)]
    within_ms: Vec<u64>,
    /// Width of the histogram buckets of close times, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    bucket_ms: u64,
    /// Written once every connect is done: the number of connections and how many were closed
    /// by then.
    #[arg(long)]
    ready: Option<PathBuf>,
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct Replay {
    #[arg(long, value_parser = parse::url_base)]
    url_base: std::net::SocketAddr,
    /// The stream: one request a line, `METHOD PATH HOST USER_AGENT X_FORWARDED_FOR REFERER
    /// EXTRA_HEADER`, tab-separated, empty for absent.
    #[arg(long)]
    stream: PathBuf,
    /// Request i is sent no earlier than i × this many milliseconds after the start.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    interval_ms: u64,
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
    #[arg(long)]
    start_unix_ms: Option<u64>,
    /// The status of every request, one a line (`connect_error`, `io_error`, `timeout` for none).
    #[arg(long)]
    codes: Option<PathBuf>,
    /// When every request was sent and answered: `NUMBER SENT_UNIX_US DONE_UNIX_US`, one a line,
    /// numbered from 1 (a server's time for request n must lie in between).
    #[arg(long)]
    times: Option<PathBuf>,
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{s:?}: seconds, more than 0 and at most 3600")),
    }
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1_000_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?}: requests per second, 0 (closed loop) to 1000000"
        )),
    }
}

#[derive(Serialize)]
struct RunSummary {
    start_unix_ms: u64,
    elapsed_s: f64,
    planned_rate: f64,
    /// Answered requests per second of the run.
    achieved_rate: f64,
    connections: u16,
    connections_opened: usize,
    reconnects: usize,
    #[serde(flatten)]
    counts: Counts,
    latency: Latency,
    seconds: Vec<Slice>,
    windows: BTreeMap<String, Slice>,
    error_samples: Vec<String>,
}

fn summarise(o: &run::Outcomes, b: &Bounds, rate: f64, windows: &[parse::Window]) -> RunSummary {
    let counts = Counts::of(&o.records);
    let answered = counts.status.values().sum::<usize>();
    let elapsed = o.elapsed.as_secs_f64();
    RunSummary {
        start_unix_ms: o.start_unix_ms,
        elapsed_s: elapsed,
        planned_rate: rate,
        achieved_rate: if elapsed > 0.0 {
            answered as f64 / elapsed
        } else {
            0.0
        },
        connections: b.connections,
        connections_opened: o.connections_opened,
        reconnects: o.reconnects,
        counts,
        latency: Latency::of(o.records.iter()),
        seconds: stats::per_second(&o.records),
        windows: windows
            .iter()
            .map(|w| (w.name.clone(), stats::slice(&o.records, w.from_ms, w.to_ms)))
            .collect(),
        error_samples: o.error_samples.clone(),
    }
}

fn write_out(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format!("JSON: {e}"))?;
    if path == Path::new("-") {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Waits for --start-unix-ms, if given and still ahead.
async fn wait_for_start(at: Option<u64>) -> Result<(), String> {
    let Some(at) = at else { return Ok(()) };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("clock: {e}"))?;
    let target = Duration::from_millis(at);
    if target > now + Duration::from_secs(120) {
        return Err(format!(
            "--start-unix-ms {at} is more than two minutes ahead"
        ));
    }
    if let Some(wait) = target.checked_sub(now) {
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

fn plan(b: &Bounds, rate: f64) -> run::Plan {
    run::Plan {
        addr: b.url_base,
        connections: usize::from(b.connections),
        rate,
        duration: Duration::from_secs_f64(b.duration_s),
        max_requests: b.max_requests,
        timeout: Duration::from_millis(b.timeout_ms),
    }
}

fn header(what: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|e| format!("{what} {value:?}: {e}"))
}

async fn taps(t: Taps) -> Result<(), String> {
    let mut tokens =
        parse::tokens(&read(&t.tokens)?).map_err(|e| format!("{}: {e}", t.tokens.display()))?;
    tokens.shuffle(&mut rand::rngs::StdRng::seed_from_u64(t.seed));
    let prefix = parse::tag_prefix(&t.prefix)
        .map_err(|_| format!("--prefix {:?}: URL-safe characters", t.prefix))?;
    let host = header("--host", &t.host)?;
    let ua = header("--user-agent", &t.user_agent)?;
    let paths: Vec<String> = tokens.iter().map(|k| format!("/{prefix}/{k}")).collect();
    let tag = t.tag_prefix.clone();
    wait_for_start(t.bounds.start_unix_ms).await?;
    let outcomes = run::run(plan(&t.bounds, t.rate), move |n| {
        let path = &paths[usize::try_from(n).unwrap_or(0) % paths.len()];
        let mut req = Request::new(Body::new());
        // Paths and tags are checked URL-safe characters: these parse.
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
        let h = req.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(USER_AGENT, ua.clone());
        if let Ok(v) = HeaderValue::from_str(&format!("https://load.test/{tag}{n}")) {
            h.insert(REFERER, v);
        }
        req
    })
    .await;
    if let Some(path) = &t.acked {
        let text: String = outcomes
            .redirected
            .iter()
            .map(|n| format!("{}{n}\n", t.tag_prefix))
            .collect();
        std::fs::write(path, text).map_err(|e| format!("--acked {}: {e}", path.display()))?;
    }
    let s = summarise(&outcomes, &t.bounds, t.rate, &t.window);
    eprintln!(
        "taps: {} requests, {} redirected, {} errors ({} connect, {} io, {} timeouts), p99 {:?} ms, {:.0}/s",
        s.counts.requests,
        s.counts.redirects,
        s.counts.errors,
        s.counts.connect_errors,
        s.counts.io_errors,
        s.counts.timeouts,
        s.latency.p99_ms,
        s.achieved_rate
    );
    write_out(&t.bounds.out, &s)
}

async fn postbacks(p: Postbacks) -> Result<(), String> {
    let host = header(
        "--host",
        &p.host
            .clone()
            .unwrap_or_else(|| p.bounds.url_base.to_string()),
    )?;
    wait_for_start(p.bounds.start_unix_ms).await?;
    let outcomes = run::run(plan(&p.bounds, 0.0), move |_| {
        let mut req = Request::new(Body::new());
        *req.uri_mut() = hyper::Uri::from_static("/p?click_id=1&sig=00");
        req.headers_mut().insert(HOST, host.clone());
        req
    })
    .await;
    let s = summarise(&outcomes, &p.bounds, 0.0, &[]);
    eprintln!(
        "postbacks: {} requests, by status {:?}, {} connect errors, {} io errors, {} timeouts, {:.0}/s",
        s.counts.requests,
        s.counts.status,
        s.counts.connect_errors,
        s.counts.io_errors,
        s.counts.timeouts,
        s.achieved_rate
    );
    write_out(&p.bounds.out, &s)
}

async fn idle(i: Idle) -> Result<(), String> {
    if !i.addr.is_ipv4() {
        return Err("--addr: IPv4 (the source addresses are 127.x.y.z)".into());
    }
    let sources = parse::bind_addresses(i.bind_from, i.bind_count)?;
    let want = u64::from(i.connections) + u64::from(i.preface_connections);
    let limit = raise_fd_limit()?;
    if limit < want + 64 {
        return Err(format!(
            "{want} connections need more file descriptors than the limit ({limit})"
        ));
    }
    let summary = idle::run(idle::Plan {
        addr: i.addr,
        plain: usize::try_from(i.connections).unwrap_or(0),
        preface: usize::try_from(i.preface_connections).unwrap_or(0),
        sources,
        hold: Duration::from_secs_f64(i.hold_s),
        connect_timeout: Duration::from_millis(i.connect_timeout_ms),
        connect_rate: i.connect_rate,
        within_ms: i.within_ms,
        bucket_ms: i.bucket_ms,
        ready: i.ready.clone(),
    })
    .await?;
    eprintln!(
        "idle: {} connected ({} errors), {} open after connect, {} closed, 99% closed by {:?} ms, all by {:?} ms",
        summary.connected,
        summary.connect_errors,
        summary.open_after_connect,
        summary.all.closed,
        summary.all.closed_p99_ms,
        summary.all.closed_all_ms
    );
    write_out(&i.out, &summary)
}

#[derive(Serialize)]
struct ReplaySummary {
    requests: usize,
    #[serde(flatten)]
    counts: Counts,
    latency: Latency,
}

async fn replay_stream(r: Replay) -> Result<(), String> {
    let stream =
        parse::stream(&read(&r.stream)?).map_err(|e| format!("{}: {e}", r.stream.display()))?;
    let requests = replay::requests(&stream)?;
    wait_for_start(r.start_unix_ms).await?;
    let (records, spans) = replay::run(
        replay::Plan {
            addr: r.url_base,
            interval: Duration::from_millis(r.interval_ms),
            timeout: Duration::from_millis(r.timeout_ms),
        },
        requests,
    )
    .await;
    if let Some(path) = &r.codes {
        let text: String = records
            .iter()
            .map(|x| match x.outcome {
                stats::Outcome::Status(s) => format!("{s}\n"),
                stats::Outcome::ConnectError => "connect_error\n".into(),
                stats::Outcome::IoError => "io_error\n".into(),
                stats::Outcome::Timeout => "timeout\n".into(),
            })
            .collect();
        std::fs::write(path, text).map_err(|e| format!("--codes {}: {e}", path.display()))?;
    }
    if let Some(path) = &r.times {
        let text: String = spans
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}\t{}\t{}\n", i + 1, s.sent_unix_us, s.done_unix_us))
            .collect();
        std::fs::write(path, text).map_err(|e| format!("--times {}: {e}", path.display()))?;
    }
    let counts = Counts::of(&records);
    eprintln!(
        "replay: {} requests, by status {:?}, {} connect errors, {} io errors, {} timeouts",
        counts.requests, counts.status, counts.connect_errors, counts.io_errors, counts.timeouts
    );
    write_out(
        &r.out,
        &ReplaySummary {
            requests: records.len(),
            latency: Latency::of(records.iter()),
            counts,
        },
    )
}

/// Raises the soft limit on open files to the hard limit (thousands of sockets); returns it.
fn raise_fd_limit() -> Result<u64, String> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| format!("RLIMIT_NOFILE: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smslink-load: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        // Many connections in every mode; failing to raise the limit is only fatal for idle,
        // which checks the limit it needs.
        let _ = raise_fd_limit();
        match cli.command {
            Command::Taps(t) => taps(t).await,
            Command::Postbacks(p) => postbacks(p).await,
            Command::Idle(i) => idle(i).await,
            Command::Replay(r) => replay_stream(r).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smslink-load: {e}");
            ExitCode::from(2)
        }
    }
}
