//! Conversions over HTTP: server-side postbacks (`GET`/`POST /p`) and pixels (`GET /px.gif`).
//!
//! Both hand the request's parameters, as sent and in order, to one SQL call,
//! `smslink.record_postback(names, values, source)`, which checks the HMAC signature with the
//! brand's secret before it writes anything (the secret never leaves the database). The
//! database's SQLSTATE becomes the HTTP status: 28000 → 401 (unsigned, tampered, unknown click),
//! 22xxx → 400 (a signed but invalid conversion), 23505 → 409 (an external id repeated with
//! different content). Anything else is the proxy's or the database's fault: 503, logged.
//!
//! These routes have a budget of their own (`Budget`), apart from the clicks': their own small
//! pool of database connections and a cap on how many run at once. A request beyond the cap is
//! answered 503 with `Retry-After` at once instead of queueing, so a flood of junk postbacks
//! costs the flooder a fast refusal and never a tap's database connection. A `POST /p` body must
//! arrive within the body timeout (408 and the connection closed otherwise) and within 16 KiB
//! (413); it is read before a place in the budget is taken, so a slow sender holds no connection.

use crate::{unavailable, App};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method, Response, StatusCode, Uri, Version};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::error::SqlState;

const RECORD: &str = "SELECT smslink.record_postback($1::text[], $2::text[], $3)";

/// The largest POST body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// A transparent 1×1 GIF (GIF89a, one-colour palette, transparency extension).
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The database budget of everything that is not a click: postbacks and pixels share a small
/// pool and a cap on concurrent requests; `/healthz` has one connection of its own, so that a
/// flood of postbacks can neither starve taps nor make the health check fail (which would take
/// the proxy out of its load balancer, and the taps with it).
pub struct Budget {
    pool: Pool,
    health: Pool,
    permits: Arc<Semaphore>,
    concurrency: usize,
    body_timeout: Duration,
    timeout: Duration,
    pool_gauges: IntGaugeVec,
    in_flight: IntGauge,
    shed: IntCounter,
}

/// How `Budget::new` sizes the budget.
pub struct BudgetConfig {
    pub pool_size: usize,
    pub concurrency: usize,
    pub body_timeout: Duration,
    pub request_timeout: Duration,
}

fn pool(config: &tokio_postgres::Config, size: usize, timeout: Duration) -> Result<Pool, String> {
    let manager = Manager::from_config(
        config.clone(),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("postback pool: {e}"))
}

impl Budget {
    /// Builds the pools (connections are opened on first use) and registers the metrics.
    pub fn new(
        database: &tokio_postgres::Config,
        config: BudgetConfig,
        registry: &Registry,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let pool_gauges = IntGaugeVec::new(
            Opts::new(
                "smslink_proxy_postback_pool_connections",
                "Database pool of /p, /px.gif: connections in use, idle, and requests waiting",
            ),
            &["state"],
        )?;
        let in_flight = IntGauge::new(
            "smslink_proxy_postbacks_in_flight",
            "Postback and pixel requests holding a place in --postback-concurrency",
        )?;
        let shed = IntCounter::new(
            "smslink_proxy_postbacks_shed_total",
            "Postback and pixel requests answered 503 at once because --postback-concurrency was full",
        )?;
        registry.register(Box::new(pool_gauges.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        let concurrency = config.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        Ok(Budget {
            pool: pool(database, config.pool_size, config.request_timeout)?,
            health: pool(database, 1, config.request_timeout)?,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            body_timeout: config.body_timeout,
            timeout: config.request_timeout,
            pool_gauges,
            in_flight,
            shed,
        })
    }

    /// A place for one more postback, or `None` when the budget is full.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.shed.inc();
                None
            }
        }
    }

    /// `/healthz`: 200 when the health connection answers `SELECT 1` within the request timeout.
    pub async fn healthy(&self) -> bool {
        let check = async {
            let c = self.health.get().await.map_err(|e| e.to_string())?;
            c.simple_query("SELECT 1").await.map_err(|e| e.to_string())
        };
        matches!(tokio::time::timeout(self.timeout, check).await, Ok(Ok(_)))
    }

    /// Sets the gauges that are read rather than counted; called by `/metrics`.
    pub fn update_gauges(&self) {
        let status = self.pool.status();
        let g = &self.pool_gauges;
        g.with_label_values(&["in_use"])
            .set(status.size.saturating_sub(status.available) as i64);
        g.with_label_values(&["idle"]).set(status.available as i64);
        g.with_label_values(&["waiting"]).set(status.waiting as i64);
        let free = self.permits.available_permits();
        self.in_flight
            .set(self.concurrency.saturating_sub(free) as i64);
    }
}

/// What the database said about one postback.
enum Outcome {
    Recorded(i64),
    Refused(StatusCode, String),
    Unavailable,
}

fn params(uri: &Uri, body: Option<&[u8]>) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let query = uri.query().unwrap_or("").as_bytes();
    for part in [Some(query), body].into_iter().flatten() {
        for (k, v) in form_urlencoded::parse(part) {
            // Postgres text cannot hold NUL; such a parameter cannot be signed either.
            names.push(k.replace('\0', ""));
            values.push(v.replace('\0', ""));
        }
    }
    (names, values)
}

async fn record(budget: &Budget, names: Vec<String>, values: Vec<String>, source: &str) -> Outcome {
    let work = async {
        let client = budget.pool.get().await.map_err(|e| e.to_string())?;
        let statement = client
            .prepare_cached(RECORD)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            client
                .query_one(&statement, &[&names, &values, &source])
                .await,
        )
    };
    match tokio::time::timeout(budget.timeout, work).await {
        Ok(Ok(Ok(row))) => match row.try_get::<_, i64>(0) {
            Ok(id) => Outcome::Recorded(id),
            Err(e) => {
                tracing::warn!(error = %e, "record_postback returned no id");
                Outcome::Unavailable
            }
        },
        Ok(Ok(Err(e))) => {
            let message = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
            match e.code() {
                Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    Outcome::Refused(StatusCode::UNAUTHORIZED, message)
                }
                Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                    Outcome::Refused(StatusCode::CONFLICT, message)
                }
                Some(c) if c.code().starts_with("22") => {
                    Outcome::Refused(StatusCode::BAD_REQUEST, message)
                }
                _ => {
                    tracing::warn!(error = %e, "record_postback failed");
                    Outcome::Unavailable
                }
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "database unavailable for a postback");
            Outcome::Unavailable
        }
        Err(_) => {
            tracing::warn!("database timeout on a postback");
            Outcome::Unavailable
        }
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 408, and for HTTP/1 the connection closed: what is left of a body that came too slowly is
/// not worth reading.
fn too_slow(version: Version) -> Response<Body> {
    let mut r = json(
        StatusCode::REQUEST_TIMEOUT,
        serde_json::json!({"error": "the request body did not arrive in time"}),
    );
    // HTTP/2 forbids a Connection header; there hyper resets the stream's unread rest instead.
    if matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// `GET /p?...` or `POST /p` (form-encoded body; query parameters count too).
pub async fn postback(State(app): State<Arc<App>>, request: Request) -> Response<Body> {
    let started = Instant::now();
    let response = postback_response(&app, request).await;
    app.metrics.observe("postback", started, response.status());
    response
}

async fn postback_response(app: &App, request: Request) -> Response<Body> {
    let budget = &app.budget;
    let method = request.method().clone();
    let uri = request.uri().clone();
    let version = request.version();
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    // The body limit (DefaultBodyLimit on the route) is applied by the Bytes extractor: 413.
    let body =
        match tokio::time::timeout(budget.body_timeout, Bytes::from_request(request, &())).await {
            Ok(Ok(body)) => body,
            Ok(Err(rejection)) => {
                return json(
                    rejection.status(),
                    serde_json::json!({"error": rejection.body_text()}),
                )
            }
            Err(_) => return too_slow(version),
        };
    if method == Method::POST && !body.is_empty() && !form {
        return json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({"error": "send the parameters as application/x-www-form-urlencoded or in the query"}),
        );
    }
    let Some(_permit) = budget.admit() else {
        return unavailable();
    };
    let (names, values) = params(&uri, (method == Method::POST).then_some(&body[..]));
    match record(budget, names, values, "postback").await {
        Outcome::Recorded(id) => json(StatusCode::OK, serde_json::json!({"conversion_id": id})),
        Outcome::Refused(status, message) => json(status, serde_json::json!({"error": message})),
        Outcome::Unavailable => {
            app.metrics.db_errors.inc();
            unavailable()
        }
    }
}

/// `GET /px.gif?...`: the same signed parameters as a postback; answers a 1×1 GIF, with the
/// status saying whether the conversion was recorded.
pub async fn pixel(State(app): State<Arc<App>>, uri: Uri) -> Response<Body> {
    let started = Instant::now();
    let status = match app.budget.admit() {
        None => StatusCode::SERVICE_UNAVAILABLE,
        Some(_permit) => {
            let (names, values) = params(&uri, None);
            match record(&app.budget, names, values, "pixel").await {
                Outcome::Recorded(_) => StatusCode::OK,
                Outcome::Refused(status, message) => {
                    tracing::debug!(%status, %message, "pixel refused");
                    status
                }
                Outcome::Unavailable => {
                    app.metrics.db_errors.inc();
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }
    };
    let mut r = Response::new(Body::from(GIF));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    app.metrics.observe("pixel", started, r.status());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_is_a_one_by_one_gif() {
        assert_eq!(&GIF[..6], b"GIF89a");
        assert_eq!(u16::from_le_bytes([GIF[6], GIF[7]]), 1);
        assert_eq!(u16::from_le_bytes([GIF[8], GIF[9]]), 1);
        assert_eq!(GIF.last(), Some(&0x3b));
    }

    #[test]
    fn parameters_keep_order_and_duplicates_and_merge_the_body() {
        let uri: Uri = "/p?click_id=7&sig=ab&click_id=8".parse().expect("uri");
        let (n, v) = params(&uri, Some(b"value=1.5&note=a+b%26c"));
        assert_eq!(n, ["click_id", "sig", "click_id", "value", "note"]);
        assert_eq!(v, ["7", "ab", "8", "1.5", "a b&c"]);
    }
}
