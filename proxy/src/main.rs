//! smslink-proxy: adapts HTTP to one SQL call.
//!
//! `GET`/`HEAD /{prefix}/{token}` calls `smslink.track_click` once, with a statement prepared per
//! pooled connection, and answers with the status and `Location` the database chose. The
//! `Location` never comes from the request, so there is no open redirect; a header value with
//! CR/LF cannot be built, so nothing can be injected. A database that cannot be reached gives 503
//! with `Retry-After`, never a hang or a panic. `/healthz` checks the database; `/metrics` serves
//! Prometheus text (requests by route and status, latency histogram, pool use, database errors).

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ipnet::IpNet;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRACK: &str = "SELECT status, location FROM smslink.track_click($1, $2, $3, $4, $5::text::inet, $6, $7::text::jsonb)";

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
    #[arg(long, env = "SMSLINK_POOL_SIZE", default_value_t = 16)]
    pool_size: usize,
    /// Comma-separated CIDRs of load balancers whose X-Forwarded-For is believed.
    #[arg(long, env = "SMSLINK_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,
    /// Upper bound on one request's database work, in milliseconds.
    #[arg(long, env = "SMSLINK_REQUEST_TIMEOUT_MS", default_value_t = 2000)]
    request_timeout_ms: u64,
}

struct App {
    pool: Pool,
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
        registry.register(Box::new(db_errors.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool,
            db_errors,
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

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
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

fn unavailable() -> Response<Body> {
    let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, None);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn track(
    app: &App,
    token: String,
    method: &Method,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<(i32, Option<String>), String> {
    let host = text(headers, header::HOST);
    let ua = text(headers, header::USER_AGENT);
    let referrer = text(headers, header::REFERER);
    let mut fields = serde_json::Map::new();
    for name in FORWARDED_HEADERS {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            fields.insert(name.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    let json = serde_json::Value::Object(fields).to_string();
    let client = app.pool.get().await.map_err(|e| e.to_string())?;
    let stmt = client
        .prepare_cached(TRACK)
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            &stmt,
            &[
                &token,
                &host,
                &method.as_str(),
                &ua,
                &ip.to_string(),
                &referrer,
                &json,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get(0), row.get(1)))
}

async fn redirect(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((_prefix, token)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let ip = client_ip(peer.ip(), &headers, &app.trusted);
    let work = track(&app, token, &method, &headers, ip);
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
    tracing::info!("shutting down: finishing in-flight requests");
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
    let app = Arc::new(App {
        pool,
        trusted: args.trusted_proxies.clone(),
        timeout: Duration::from_millis(args.request_timeout_ms),
        metrics: Metrics::new()?,
    });
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/{prefix}/{token}", get(redirect))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "smslink-proxy listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
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
