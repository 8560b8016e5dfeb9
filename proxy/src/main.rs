//! smslink-proxy: adapts HTTP to one SQL call.
//!
//! `GET`/`HEAD /{prefix}/{token}` calls `smslink.track_click` once, with a statement prepared per
//! pooled connection, and answers with the status and `Location` the database chose. The
//! `Location` never comes from the request, so there is no open redirect; a header value with
//! CR/LF cannot be built, so nothing can be injected. A database that cannot be reached gives 503
//! with `Retry-After`, never a hang or a panic. `/healthz` checks the database; `/metrics` serves
//! Prometheus text (requests by route and status, latency histogram, pool use, database errors).
//! `GET`/`POST /p` (server-side postback) and `GET /px.gif` (pixel) record signed conversions
//! through one call to `smslink.record_postback` (see `convert`).

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ipnet::IpNet;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

mod batch;
mod cache;
mod convert;
mod edge;
mod forwarded;
mod serve;
mod ship;
mod spool;

use forwarded::client_ip;

/// mimalloc rather than the system allocator: every tap allocates and frees a few small buffers
/// on whichever worker thread runs it, which glibc's per-arena malloc serves slowly (about 7% of
/// the proxy's CPU at 16k taps/s, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Request headers passed to the classifier.
const FORWARDED_HEADERS: [&str; 4] = ["purpose", "sec-purpose", "x-moz", "accept-language"];

#[derive(Parser, Debug, Clone)]
#[command(version, about = "smslink redirect proxy")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SMSLINK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Postgres connection string of a role that is a member of smslink_proxy.
    #[arg(long, env = "SMSLINK_DATABASE_URL")]
    database_url: String,
    /// Database connections in the pool.
    #[arg(long, env = "SMSLINK_POOL_SIZE", default_value_t = 4)]
    pool_size: usize,
    /// Comma-separated CIDRs of load balancers whose X-Forwarded-For is believed.
    #[arg(long, env = "SMSLINK_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,
    /// Most clicks sent to the database in one call (group commit); 1 turns batching off.
    #[arg(long, env = "SMSLINK_MAX_BATCH", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_batch: u64,
    /// Upper bound on one request's database work, in milliseconds.
    #[arg(long, env = "SMSLINK_REQUEST_TIMEOUT_MS", default_value_t = 2000)]
    request_timeout_ms: u64,
    /// Largest request head (request line plus headers) accepted, in bytes; larger gets 431.
    #[arg(long, env = "SMSLINK_MAX_HEADER_BYTES", default_value_t = 16384,
          value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    max_header_bytes: u64,
    /// Longest request path accepted, in bytes; longer gets 414 without a database call.
    #[arg(long, env = "SMSLINK_MAX_PATH_BYTES", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(16..=65_536))]
    max_path_bytes: u64,
    /// Time a client has to send a request head, from connect or from the previous response
    /// (slow-client and idle keep-alive timeout), in milliseconds.
    #[arg(long, env = "SMSLINK_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Open client connections; more wait in the kernel's accept queue.
    #[arg(long, env = "SMSLINK_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// How long SIGTERM waits for in-flight requests before closing connections, in milliseconds.
    #[arg(long, env = "SMSLINK_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// PEM certificate chain: serve HTTPS directly (with --tls-key). Default: plain HTTP behind a
    /// TLS-terminating load balancer.
    #[arg(long, env = "SMSLINK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "SMSLINK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Time from accept to the first complete request head, whatever the protocol (TLS
    /// handshake and HTTP/2 preface included), in milliseconds; a connection that has not sent
    /// one by then is closed.
    #[arg(long, env = "SMSLINK_FIRST_REQUEST_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    first_request_timeout_ms: u64,
    /// A connection with no request in flight for this long is shut down gracefully, in
    /// milliseconds (HTTP/1 connections also close after --header-timeout-ms without a request).
    #[arg(long, env = "SMSLINK_IDLE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// Interval of HTTP/2 keep-alive pings, in milliseconds; 0 sends none.
    #[arg(
        long,
        env = "SMSLINK_HTTP2_KEEP_ALIVE_INTERVAL_MS",
        default_value_t = 20_000
    )]
    http2_keep_alive_interval_ms: u64,
    /// Time an HTTP/2 keep-alive ping may go unanswered before the connection is closed, in
    /// milliseconds.
    #[arg(long, env = "SMSLINK_HTTP2_KEEP_ALIVE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    http2_keep_alive_timeout_ms: u64,
    /// Time a POST /p body has to arrive in full, counted from its request head, in
    /// milliseconds; slower gets 408 and the connection closed.
    #[arg(long, env = "SMSLINK_BODY_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// Open connections from one client address (the socket peer); more are closed at once.
    /// Peers in --trusted-proxies are exempt.
    #[arg(long, env = "SMSLINK_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_ip: u64,
    /// Database connections for /p and /px.gif, apart from the clicks' --pool-size.
    #[arg(long, env = "SMSLINK_POSTBACK_POOL_SIZE", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    postback_pool_size: u64,
    /// Postback and pixel requests served at once; more get 503 with Retry-After at once.
    #[arg(long, env = "SMSLINK_POSTBACK_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    postback_concurrency: u64,
    /// Turns the edge path on: taps on cached links are answered from the warm link cache once
    /// they are fsync'd to a spool in this directory, and shipped to the database in bulk.
    /// One directory per proxy. Without it, every tap is one database round trip.
    #[arg(long, env = "SMSLINK_SPOOL_DIR")]
    spool_dir: Option<std::path::PathBuf>,
    /// Most links the warm cache holds (the most recently created or changed are kept).
    #[arg(long, env = "SMSLINK_CACHE_MAX_LINKS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    cache_max_links: u64,
    /// How often the cache asks the database for changed links, in milliseconds: new links,
    /// expiry and destination edits reach the cache within about this long.
    #[arg(long, env = "SMSLINK_CACHE_REFRESH_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    cache_refresh_ms: u64,
    /// Most spooled clicks the shipper sends in one ingest_clicks call.
    #[arg(long, env = "SMSLINK_SHIP_BATCH", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    ship_batch: u64,
    /// Database connections the shipper commits spooled clicks on at once.
    #[arg(long, env = "SMSLINK_SHIP_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=16))]
    ship_connections: u64,
    /// Serve /metrics and /healthz on this address (plain HTTP) instead of on --listen.
    #[arg(long, env = "SMSLINK_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
}

pub(crate) struct App {
    pool: Pool,
    queue: mpsc::Sender<batch::Click>,
    max_path: usize,
    trusted: Vec<IpNet>,
    timeout: Duration,
    metrics: Metrics,
    /// Database budget of /p, /px.gif and /healthz, apart from the clicks' pool.
    budget: convert::Budget,
    /// The edge path (warm link cache, spool, shipper), when --spool-dir is set.
    edge: Option<Arc<edge::Edge>>,
}

/// Prometheus metrics served at /metrics.
struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    db_errors: IntCounter,
    batch_size: Histogram,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "smslink_proxy_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "smslink_proxy_request_duration_seconds",
                "Time from request to response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "smslink_proxy_pool_connections",
                "Database pool: connections in use, idle, and requests waiting for one",
            ),
            &["state"],
        )?;
        let db_errors = IntCounter::new(
            "smslink_proxy_database_errors_total",
            "Database calls that failed or timed out",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "smslink_proxy_batch_size",
                "Clicks per track_clicks call (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        registry.register(Box::new(db_errors.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool,
            db_errors,
            batch_size,
        })
    }

    fn observe(&self, route: &str, started: Instant, status: StatusCode) {
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A header as text. Bytes that are not UTF-8 (obs-text) are replaced, not dropped: a
/// User-Agent with Latin-1 in it is still worth logging. NUL cannot occur in a header value.
fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn reply(status: StatusCode, location: Option<HeaderValue>) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Some(l) = location {
        h.insert(header::LOCATION, l);
    }
    r
}

pub(crate) fn unavailable() -> Response<Body> {
    let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, None);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The request as both paths log it: the database path sends it to `track_clicks`, the edge
/// path spools it for `ingest_clicks`.
fn tap_record(
    token: String,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    ip: IpAddr,
) -> spool::Record {
    let mut fields = serde_json::Map::new();
    for name in FORWARDED_HEADERS {
        if let Some(v) = text(headers, name) {
            fields.insert(name.to_string(), serde_json::Value::String(v));
        }
    }
    spool::Record {
        id: uuid::Uuid::new_v4(),
        click_id: None,
        at: spool::now_micros(),
        // Postgres text cannot hold NUL; such a token is malformed, and the database says 404.
        token: if token.contains('\0') {
            String::new()
        } else {
            token
        },
        // HTTP/1.1 names the host in Host; HTTP/2 in the :authority pseudo-header (the URI).
        host: text(headers, header::HOST.as_str())
            .or_else(|| uri.authority().map(|a| a.as_str().to_string())),
        method: method.as_str().to_string(),
        user_agent: text(headers, header::USER_AGENT.as_str()),
        ip: ip.to_string(),
        referrer: text(headers, header::REFERER.as_str()),
        headers: serde_json::Value::Object(fields).to_string(),
        link_id: None,
        message_id: None,
    }
}

/// Queues one click for the batcher and waits for the database's answer.
async fn track(app: &App, record: &Arc<spool::Record>) -> batch::Answer {
    let (reply, answer) = oneshot::channel();
    let click = batch::Click {
        record: record.clone(),
        reply,
    };
    app.queue
        .send(click)
        .await
        .map_err(|_| "the click queue is closed".to_string())?;
    answer
        .await
        .map_err(|_| "the batch was dropped".to_string())?
}

/// A redirect (302 with `location`) or, with no location, 410 Gone.
fn redirect_to(location: Option<String>) -> Response<Body> {
    match location {
        None => reply(StatusCode::GONE, None),
        // A location that is not a valid header value (CR/LF, control characters) is never
        // sent; the CHECK on destinations makes this unreachable in practice.
        Some(l) => match HeaderValue::from_str(&l) {
            Ok(v) => reply(StatusCode::FOUND, Some(v)),
            Err(_) => reply(StatusCode::BAD_GATEWAY, None),
        },
    }
}

async fn redirect(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((_prefix, token)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    if uri.path().len() > app.max_path {
        let response = reply(StatusCode::URI_TOO_LONG, None);
        app.metrics.observe("redirect", started, response.status());
        return response;
    }
    let ip = client_ip(peer.ip(), &headers, &app.trusted);
    let mut record = tap_record(token, &method, &uri, &headers, ip);
    // The edge path first: a cached link is answered once the click is on disk.
    if let Some(edge) = &app.edge {
        if let edge::Answer::Spooled(location) = edge.tap(&mut record, app.timeout).await {
            let response = redirect_to(location);
            app.metrics.observe("redirect", started, response.status());
            return response;
        }
    }
    // With a spool, the database path gets three quarters of the request's time, so that a tap
    // it cannot answer can still be spooled and sent to the fallback within --request-timeout-ms.
    let budget = match app.edge {
        Some(_) => app.timeout.mul_f64(0.75),
        None => app.timeout,
    };
    let record = Arc::new(record);
    let left = budget.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, track(&app, &record)).await {
        Ok(Ok((status, location))) => {
            let code = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::NOT_FOUND);
            let response = if code.is_redirection() || code == StatusCode::GONE {
                redirect_to(location)
            } else {
                reply(code, None)
            };
            app.metrics.observe("redirect", started, response.status());
            return response;
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "database error"),
        Err(_) => tracing::warn!("database timeout"),
    }
    app.metrics.db_errors.inc();
    // The database could not answer in time: with a spool, the tap goes to its domain's
    // fallback and is logged once the database is back (its request id keeps it single even if
    // the database path committed it after all).
    let response = match &app.edge {
        Some(edge) => {
            let left = app.timeout.saturating_sub(started.elapsed());
            match edge.fallback(&record, left).await {
                Some(url) => redirect_to(Some(url)),
                None => unavailable(),
            }
        }
        None => unavailable(),
    };
    app.metrics.observe("redirect", started, response.status());
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    let status = app.pool.status();
    let in_use = status.size.saturating_sub(status.available);
    let m = &app.metrics;
    app.budget.update_gauges();
    if let Some(edge) = &app.edge {
        edge.update_gauges();
    }
    m.pool.with_label_values(&["in_use"]).set(in_use as i64);
    m.pool
        .with_label_values(&["idle"])
        .set(status.available as i64);
    m.pool
        .with_label_values(&["waiting"])
        .set(status.waiting as i64);
    let mut buf = Vec::new();
    if TextEncoder::new()
        .encode(&m.registry.gather(), &mut buf)
        .is_err()
    {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, None);
    }
    let mut r = Response::new(Body::from(buf));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn healthz(State(app): State<Arc<App>>) -> Response<Body> {
    let started = Instant::now();
    // Never the clicks' pool: a health check must not take a tap's connection.
    let response = if app.budget.healthy().await {
        reply(StatusCode::OK, None)
    } else {
        app.metrics.db_errors.inc();
        unavailable()
    };
    app.metrics.observe("healthz", started, response.status());
    response
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let pg: tokio_postgres::Config = args.database_url.parse()?;
    // A statement that stalls aborts a little before its clients give up, instead of
    // committing clicks whose clients were already told they failed.
    // With a spool, the database path has three quarters of the request's time (the rest is for
    // the fallback): its statements must give up before the tap does, so that a tap sent to the
    // fallback and spooled was never committed by the database path too.
    let db_budget = match args.spool_dir {
        Some(_) => Duration::from_millis(args.request_timeout_ms).mul_f64(0.75),
        None => Duration::from_millis(args.request_timeout_ms),
    };
    let pg = batch::with_statement_timeout(pg, db_budget);
    let manager = Manager::from_config(
        pg.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(args.pool_size)
        .wait_timeout(Some(Duration::from_millis(args.request_timeout_ms)))
        .create_timeout(Some(Duration::from_millis(args.request_timeout_ms)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls_acceptor(cert, key)?),
        _ => None,
    };
    let (queue, pending) = mpsc::channel(args.max_connections.clamp(64, 65_536));
    let registry = Metrics::new()?;
    let budget = convert::Budget::new(
        &pg,
        convert::BudgetConfig {
            pool_size: usize::try_from(args.postback_pool_size).unwrap_or(2),
            concurrency: usize::try_from(args.postback_concurrency).unwrap_or(32),
            body_timeout: Duration::from_millis(args.body_timeout_ms),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
        },
        &registry.registry,
    )?;
    tokio::spawn(batch::run(
        pool.clone(),
        pending,
        usize::try_from(args.max_batch).unwrap_or(64),
        registry.batch_size.clone(),
    ));
    // The edge path's own connections (feed, lease, shipper): bulk ingestion may take longer
    // than a tap's statement timeout, and must never wait behind taps or postbacks.
    let edge = match &args.spool_dir {
        None => None,
        Some(dir) => {
            let edge_pg: tokio_postgres::Config = args.database_url.parse()?;
            let edge_pool = Pool::builder(Manager::from_config(
                edge_pg,
                tokio_postgres::NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            ))
            // The shipper's connections, plus one for the feed and one for leases.
            .max_size(usize::try_from(args.ship_connections).unwrap_or(2) + 2)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
            let config = edge::Config {
                spool_dir: dir.clone(),
                max_links: usize::try_from(args.cache_max_links).unwrap_or(1_000_000),
                refresh: Duration::from_millis(args.cache_refresh_ms),
                ship_batch: usize::try_from(args.ship_batch).unwrap_or(2000),
                ship_connections: usize::try_from(args.ship_connections).unwrap_or(2),
            };
            Some(edge::Edge::start(&config, edge_pool, &registry.registry)?)
        }
    };
    let app = Arc::new(App {
        edge,
        pool,
        queue,
        max_path: usize::try_from(args.max_path_bytes).unwrap_or(usize::MAX),
        trusted: args.trusted_proxies.clone(),
        timeout: Duration::from_millis(args.request_timeout_ms),
        metrics: registry,
        budget,
    });
    let admin = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(app.clone());
    let public = Router::new()
        .route(
            "/p",
            get(convert::postback)
                .post(convert::postback)
                .layer(axum::extract::DefaultBodyLimit::max(convert::MAX_BODY)),
        )
        .route("/px.gif", get(convert::pixel))
        .route("/{prefix}/{token}", get(redirect))
        .with_state(app.clone());
    let limits = serve::Limits {
        max_header_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        tls_handshake_timeout: Duration::from_millis(args.header_timeout_ms),
        first_request_timeout: Duration::from_millis(args.first_request_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        h2_keep_alive_interval: (args.http2_keep_alive_interval_ms > 0)
            .then(|| Duration::from_millis(args.http2_keep_alive_interval_ms)),
        h2_keep_alive_timeout: Duration::from_millis(args.http2_keep_alive_timeout_ms),
        max_connections: args.max_connections,
        max_connections_per_ip: usize::try_from(args.max_connections_per_ip).unwrap_or(usize::MAX),
        trusted: args.trusted_proxies.clone(),
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
    };
    let connections = serve::ConnMetrics::register(&app.metrics.registry)?;
    // One signal stops every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    match args.admin_listen {
        None => {
            tracing::info!(listen = %args.listen, tls = tls.is_some(), "smslink-proxy listening");
            let router = public.merge(admin);
            serve::run(listener, router, tls, limits, connections, stopped(stop_rx)).await;
        }
        Some(admin_addr) => {
            let admin_listener = tokio::net::TcpListener::bind(admin_addr)
                .await
                .map_err(|e| format!("--admin-listen {admin_addr}: {e}"))?;
            tracing::info!(listen = %args.listen, admin = %admin_addr, tls = tls.is_some(),
                "smslink-proxy listening; /metrics and /healthz on the admin address only");
            tokio::join!(
                serve::run(
                    listener,
                    public,
                    tls,
                    limits.clone(),
                    connections.clone(),
                    stopped(stop_rx.clone()),
                ),
                serve::run(
                    admin_listener,
                    admin,
                    None,
                    limits,
                    connections,
                    stopped(stop_rx)
                ),
            );
        }
    }
    Ok(())
}
