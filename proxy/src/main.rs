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
mod convert;
mod serve;

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
}

pub(crate) struct App {
    pool: Pool,
    queue: mpsc::Sender<batch::Click>,
    max_path: usize,
    trusted: Vec<IpNet>,
    timeout: Duration,
    metrics: Metrics,
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

/// The client address: the socket peer, or the right-most untrusted X-Forwarded-For entry when
/// the peer is a trusted proxy.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .copied()
        .unwrap_or(peer)
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

/// Queues one click for the batcher and waits for the database's answer.
async fn track(
    app: &App,
    token: String,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    ip: IpAddr,
) -> batch::Answer {
    let mut fields = serde_json::Map::new();
    for name in FORWARDED_HEADERS {
        if let Some(v) = text(headers, name) {
            fields.insert(name.to_string(), serde_json::Value::String(v));
        }
    }
    let (reply, answer) = oneshot::channel();
    let click = batch::Click {
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
    let work = track(&app, token, &method, &uri, &headers, ip);
    let response = match tokio::time::timeout(app.timeout, work).await {
        Ok(Ok((status, location))) => {
            let code = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::NOT_FOUND);
            // A location that is not a valid header value (CR/LF, control characters) is never
            // sent; the CHECK on destinations makes this unreachable in practice.
            let loc = location.and_then(|l| HeaderValue::from_str(&l).ok());
            if code.is_redirection() && loc.is_none() {
                return reply(StatusCode::BAD_GATEWAY, None);
            }
            reply(code, loc)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "database error");
            app.metrics.db_errors.inc();
            unavailable()
        }
        Err(_) => {
            tracing::warn!("database timeout");
            app.metrics.db_errors.inc();
            unavailable()
        }
    };
    app.metrics.observe("redirect", started, response.status());
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    let status = app.pool.status();
    let in_use = status.size.saturating_sub(status.available);
    let m = &app.metrics;
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
    let check = async {
        let c = app.pool.get().await.map_err(|e| e.to_string())?;
        c.simple_query("SELECT 1").await.map_err(|e| e.to_string())
    };
    let response = match tokio::time::timeout(app.timeout, check).await {
        Ok(Ok(_)) => reply(StatusCode::OK, None),
        _ => {
            app.metrics.db_errors.inc();
            unavailable()
        }
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
    let manager = Manager::from_config(
        pg,
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
    tokio::spawn(batch::run(
        pool.clone(),
        pending,
        usize::try_from(args.max_batch).unwrap_or(64),
        registry.batch_size.clone(),
    ));
    let app = Arc::new(App {
        pool,
        queue,
        max_path: usize::try_from(args.max_path_bytes).unwrap_or(usize::MAX),
        trusted: args.trusted_proxies.clone(),
        timeout: Duration::from_millis(args.request_timeout_ms),
        metrics: registry,
    });
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/p",
            get(convert::postback)
                .post(convert::postback)
                .layer(axum::extract::DefaultBodyLimit::max(convert::MAX_BODY)),
        )
        .route("/px.gif", get(convert::pixel))
        .route("/{prefix}/{token}", get(redirect))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, tls = tls.is_some(), "smslink-proxy listening");
    let limits = serve::Limits {
        max_header_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        tls_handshake_timeout: Duration::from_millis(args.header_timeout_ms),
        max_connections: args.max_connections,
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
    };
    serve::run(listener, router, tls, limits, shutdown_signal()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn client_ip_trusts_forwarded_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 10.0.0.2"),
        );
        let trusted = [net("10.0.0.0/8")];
        let lb: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(
            client_ip(lb, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(lb, &HeaderMap::new(), &trusted), lb);
        assert_eq!(client_ip(lb, &h, &[]), lb);
    }
}
