//! The click hot path: `smslink.track_click`, one call per redirect.
//!
//! Order of work, cheapest rejection first:
//! 1. decode the token from the per-backend key ring: a forged or malformed token is answered
//!    404 without reading any table (a sequence counts it);
//! 2. one primary-key lookup joins link, domain, message and campaign;
//! 3. the host must be the link's domain (else 404, counted);
//! 4. classify the request and its device in `core`;
//! 5. for a human click, one conditional UPDATE claims the message's first click: exact under
//!    concurrency, because the row lock serialises racing clicks on the same message and the
//!    loser re-checks `first_click_at IS NULL` and finds it set;
//! 6. insert the click; answer 302 (or 410 for an expired link with no fallback).
//!
//! Statements are prepared once per backend and kept.

use crate::errors::SpiOk;
use crate::keys;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{Inet, JsonB, PgBuiltInOids, PgOid};
use smslink_core::click::{classify, device, normalize_host, ClickClass, Request};
use std::cell::OnceCell;

const LOOKUP: &str =
    "SELECT l.brand_id, l.message_id, m.campaign_id, m.variant_id, m.subscriber_id,
        l.destination, l.expires_at, coalesce(l.fallback_url, c.fallback_url, d.fallback_url),
        d.host, m.delivered_at
   FROM smslink.link l
   JOIN smslink.domain d ON d.id = l.domain_id
   JOIN smslink.message m ON m.id = l.message_id
   JOIN smslink.campaign c ON c.id = m.campaign_id
  WHERE l.id = $1";

const CLAIM_FIRST: &str = "UPDATE smslink.message SET first_click_at = $2
  WHERE id = $1 AND first_click_at IS NULL RETURNING true";

const INSERT: &str =
    "INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id,
        subscriber_id, link_id, method, ip, user_agent, referrer, headers, device, class, reasons,
        seconds_since_delivery, is_first, expired)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
 RETURNING id";

const REJECT_INVALID: &str = "SELECT nextval('smslink.rejected_invalid_token_seq')";
const REJECT_UNKNOWN: &str = "SELECT nextval('smslink.rejected_unknown_target_seq')";

struct Plans {
    lookup: OwnedPreparedStatement,
    claim_first: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    reject_invalid: OwnedPreparedStatement,
    reject_unknown: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: OnceCell<Plans> = const { OnceCell::new() };
}

fn oid(t: PgBuiltInOids) -> PgOid {
    PgOid::BuiltIn(t)
}

fn prepare(c: &SpiClient<'_>) -> Plans {
    use pgrx::pg_sys::BuiltinOid::*;
    let keep = |sql: &str, args: &[PgOid]| c.prepare_mut(sql, args).spi().keep();
    Plans {
        lookup: keep(LOOKUP, &[oid(INT8OID)]),
        claim_first: keep(CLAIM_FIRST, &[oid(INT8OID), oid(TIMESTAMPTZOID)]),
        insert: keep(
            INSERT,
            &[
                oid(TIMESTAMPTZOID),
                oid(INT8OID),
                oid(INT8OID),
                oid(INT8OID),
                oid(INT8OID),
                oid(INT8OID),
                oid(INT8OID),
                oid(TEXTOID),
                oid(INETOID),
                oid(TEXTOID),
                oid(TEXTOID),
                oid(JSONBOID),
                oid(TEXTOID),
                oid(TEXTOID),
                oid(TEXTARRAYOID),
                oid(FLOAT8OID),
                oid(BOOLOID),
                oid(BOOLOID),
            ],
        ),
        reject_invalid: keep(REJECT_INVALID, &[]),
        reject_unknown: keep(REJECT_UNKNOWN, &[]),
    }
}

fn header_pairs(headers: Option<&JsonB>) -> Vec<(String, String)> {
    match headers.map(|j| &j.0) {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

type Row = (i32, Option<String>, Option<i64>, Option<String>);

fn not_found(c: &mut SpiClient<'_>, plan: &OwnedPreparedStatement) -> Row {
    c.update(plan, None, &[]).spi();
    (404, None, None, None)
}

/// Logs one click and answers with the redirect. Never raises for a bad token or host: it
/// answers 404. Executable only by the owner and `smslink_proxy`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn track_click(
    token: Option<&str>,
    host: Option<&str>,
    method: Option<&str>,
    user_agent: Option<&str>,
    ip: Option<Inet>,
    referrer: Option<&str>,
    headers: Option<JsonB>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(status, i32),
        name!(location, Option<String>),
        name!(click_id, Option<i64>),
        name!(class, Option<String>),
    ),
> {
    let link_id = token.and_then(keys::decode);
    let at = at.unwrap_or_else(|| unsafe {
        // SAFETY: reads the transaction start time, as now() does.
        TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp())
            .unwrap_or_else(|_| crate::errors::raise(crate::errors::INVALID_PARAMETER, "no time"))
    });
    let method = method.unwrap_or("GET").to_ascii_uppercase();
    let row = Spi::connect_mut(|c| {
        PLANS.with(|cell| {
            let plans = cell.get_or_init(|| prepare(c));
            let Some(link_id) = link_id else {
                return not_found(c, &plans.reject_invalid);
            };
            let found = c.select(&plans.lookup, Some(1), &[link_id.into()]).spi();
            if found.is_empty() {
                return not_found(c, &plans.reject_unknown);
            }
            let r = found.first();
            let get_i64 = |i| r.get::<i64>(i).spi().unwrap_or_default();
            let (brand_id, message_id, campaign_id, variant_id, subscriber_id) =
                (get_i64(1), get_i64(2), get_i64(3), get_i64(4), get_i64(5));
            let destination = r.get::<String>(6).spi();
            let expires_at = r.get::<TimestampWithTimeZone>(7).spi();
            let fallback = r.get::<String>(8).spi();
            let domain_host = r.get::<String>(9).spi().unwrap_or_default();
            let delivered_at = r.get::<TimestampWithTimeZone>(10).spi();
            if host.map(normalize_host).as_deref() != Some(domain_host.as_str()) {
                return not_found(c, &plans.reject_unknown);
            }

            let pairs = header_pairs(headers.as_ref());
            let verdict = classify(&Request {
                method: &method,
                user_agent,
                headers: &pairs,
            });
            let human = verdict.class == ClickClass::Human;
            let expired = expires_at.is_some_and(|e| e <= at);
            let (status, location) = match (expired, fallback) {
                (false, _) => (302, destination),
                (true, Some(f)) => (302, Some(f)),
                (true, None) => (410, None),
            };
            let seconds = delivered_at
                .map(|d| micros(at) - micros(d))
                .map(|us| us as f64 / 1e6);
            let is_first = human
                && !c
                    .update(&plans.claim_first, Some(1), &[message_id.into(), at.into()])
                    .spi()
                    .is_empty();
            let click_id = c
                .update(
                    &plans.insert,
                    Some(1),
                    &[
                        at.into(),
                        brand_id.into(),
                        campaign_id.into(),
                        variant_id.into(),
                        message_id.into(),
                        subscriber_id.into(),
                        link_id.into(),
                        method.clone().into(),
                        ip.clone().into(),
                        user_agent.into(),
                        referrer.into(),
                        headers.as_ref().map(|j| JsonB(j.0.clone())).into(),
                        device(user_agent).as_str().into(),
                        verdict.class.as_str().into(),
                        verdict.reasons.clone().into(),
                        seconds.into(),
                        is_first.into(),
                        expired.into(),
                    ],
                )
                .spi()
                .first()
                .get_one::<i64>()
                .spi();
            (
                status,
                location,
                click_id,
                Some(verdict.class.as_str().to_string()),
            )
        })
    });
    TableIterator::once(row)
}

/// Microseconds since the Postgres epoch.
fn micros(t: TimestampWithTimeZone) -> i64 {
    let raw: pg_sys::TimestampTz = t.into();
    raw
}
