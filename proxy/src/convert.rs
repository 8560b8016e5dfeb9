//! Conversions over HTTP: server-side postbacks (`GET`/`POST /p`) and pixels (`GET /px.gif`).
//!
//! Both hand the request's parameters, as sent and in order, to one SQL call,
//! `smslink.record_postback(names, values, source)`, which checks the HMAC signature with the
//! brand's secret before it writes anything (the secret never leaves the database). The
//! database's SQLSTATE becomes the HTTP status: 28000 → 401 (unsigned, tampered, unknown click),
//! 22xxx → 400 (a signed but invalid conversion), 23505 → 409 (an external id repeated with
//! different content). Anything else is the proxy's or the database's fault: 503, logged.

use crate::{unavailable, App};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use std::sync::Arc;
use std::time::Instant;
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

async fn record(app: &App, names: Vec<String>, values: Vec<String>, source: &str) -> Outcome {
    let work = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
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
    match tokio::time::timeout(app.timeout, work).await {
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

/// `GET /p?...` or `POST /p` (form-encoded body; query parameters count too).
pub async fn postback(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let started = Instant::now();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let response = if method == Method::POST && !body.is_empty() && !form {
        json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({"error": "send the parameters as application/x-www-form-urlencoded or in the query"}),
        )
    } else {
        let (names, values) = params(&uri, (method == Method::POST).then_some(&body[..]));
        match record(&app, names, values, "postback").await {
            Outcome::Recorded(id) => json(StatusCode::OK, serde_json::json!({"conversion_id": id})),
            Outcome::Refused(status, message) => {
                json(status, serde_json::json!({"error": message}))
            }
            Outcome::Unavailable => {
                app.metrics.db_errors.inc();
                unavailable()
            }
        }
    };
    app.metrics.observe("postback", started, response.status());
    response
}

/// `GET /px.gif?...`: the same signed parameters as a postback; answers a 1×1 GIF, with the
/// status saying whether the conversion was recorded.
pub async fn pixel(State(app): State<Arc<App>>, uri: Uri) -> Response<Body> {
    let started = Instant::now();
    let (names, values) = params(&uri, None);
    let status = match record(&app, names, values, "pixel").await {
        Outcome::Recorded(_) => StatusCode::OK,
        Outcome::Refused(status, message) => {
            tracing::debug!(%status, %message, "pixel refused");
            status
        }
        Outcome::Unavailable => {
            app.metrics.db_errors.inc();
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let mut r = Response::new(Body::from(GIF));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
