//! The click hot path: `smslink.track_click` (one click) and `smslink.track_clicks` (a batch, as
//! the proxy sends them under load). Both run the same code: a single click is a batch of one.
//!
//! Order of work, cheapest rejection first:
//! 1. decode each token from the per-backend key ring: a forged or malformed token is answered
//!    404 without reading any table (a sequence counts it);
//! 2. classify each request and its device in `core` (no table needed);
//! 3. one statement, prepared once per backend, does the rest for the whole batch: primary-key
//!    lookups joining link, domain, message and campaign, restricted to each request's host; the
//!    expiry fallback chain; the first-click claim; and the click INSERTs. No row back for an item
//!    means an unknown link or a host that is not the link's domain: 404, counted.
//!
//! `is_first` is exact under concurrency. Within a batch, the earliest human click of each
//! message is the only candidate. Across transactions, candidates lock their message rows in id
//! order, and only while `first_click_at IS NULL`: a racing transaction waits on the row lock,
//! re-checks, finds it set and claims nothing. Locking in id order means two batches can never
//! deadlock on each other's messages.
//!
//! One statement per batch, and one transaction and one WAL flush per batch, is what lets the
//! proxy log clicks faster than one round trip per click (BENCHMARKS.md). Nothing is acknowledged
//! before the commit that holds it.

use crate::errors::SpiOk;
use crate::keys;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{Inet, JsonB, PgBuiltInOids, PgOid};
use smslink_core::click::{classify, device, normalize_host, ClickClass, Request};
use std::cell::OnceCell;

const CLICK: &str = "WITH input AS (
    SELECT * FROM unnest($2::int8[], $3::text[], $4::bool[], $5::text[], $6::inet[], $7::text[],
                         $8::text[], $9::jsonb[], $10::text[], $11::text[], $12::text[])
           WITH ORDINALITY AS i(link_id, host, human, method, ip, user_agent, referrer, headers,
                                device, class, reasons, ord)
), target AS MATERIALIZED (
    SELECT i.ord, nextval('smslink.click_id_seq') AS click_id, i.human,
           l.id AS link_id, l.brand_id, l.message_id, m.campaign_id, m.variant_id, m.subscriber_id,
           i.method, i.ip, i.user_agent, i.referrer, i.headers, i.device, i.class, i.reasons,
           l.expires_at IS NOT NULL AND l.expires_at <= $1 AS expired,
           CASE WHEN l.expires_at IS NOT NULL AND l.expires_at <= $1
                THEN coalesce(l.fallback_url, c.fallback_url, d.fallback_url)
                ELSE l.destination END AS location,
           extract(epoch FROM $1 - m.delivered_at)::float8 AS seconds
      FROM input i
      JOIN smslink.link l ON l.id = i.link_id
      JOIN smslink.domain d ON d.id = l.domain_id AND d.host = i.host
      JOIN smslink.message m ON m.id = l.message_id
      JOIN smslink.campaign c ON c.id = m.campaign_id
     ORDER BY i.ord -- click ids follow the batch's order (nextval runs after the sort)
), candidate AS (
    SELECT message_id, min(ord) AS ord FROM target WHERE human GROUP BY message_id
), locked AS (
    SELECT m.id FROM smslink.message m JOIN candidate k ON k.message_id = m.id
     WHERE m.first_click_at IS NULL
     ORDER BY m.id
       FOR NO KEY UPDATE OF m
), claim AS (
    UPDATE smslink.message m SET first_click_at = $1
      FROM locked
     WHERE m.id = locked.id
    RETURNING m.id
), logged AS (
    INSERT INTO smslink.click (id, clicked_at, brand_id, campaign_id, variant_id, message_id,
           subscriber_id, link_id, method, ip, user_agent, referrer, headers, device, class, reasons,
           seconds_since_delivery, is_first, expired)
    SELECT t.click_id, $1, t.brand_id, t.campaign_id, t.variant_id, t.message_id, t.subscriber_id,
           t.link_id, t.method, t.ip, t.user_agent, t.referrer, t.headers, t.device, t.class,
           coalesce(string_to_array(t.reasons, chr(31)), '{}'), t.seconds,
           EXISTS (SELECT 1 FROM claim JOIN candidate k ON k.message_id = claim.id
                    WHERE claim.id = t.message_id AND k.ord = t.ord),
           t.expired
      FROM target t
    RETURNING id
)
SELECT t.ord, t.click_id, t.location FROM target t JOIN logged ON logged.id = t.click_id";

/// Separates reason codes inside one array element; no reason code contains it.
const REASON_SEPARATOR: char = '\u{1f}';

/// The most clicks one call may carry.
const MAX_BATCH: usize = 10_000;

const REJECT: &str = "SELECT nextval('smslink.rejected_invalid_token_seq')
  FROM generate_series(1, $1)
 UNION ALL
SELECT nextval('smslink.rejected_unknown_target_seq') FROM generate_series(1, $2)";

struct Plans {
    click: OwnedPreparedStatement,
    reject: OwnedPreparedStatement,
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
        click: keep(
            CLICK,
            &[
                oid(TIMESTAMPTZOID),
                oid(INT8ARRAYOID),
                oid(TEXTARRAYOID),
                oid(BOOLARRAYOID),
                oid(TEXTARRAYOID),
                oid(INETARRAYOID),
                oid(TEXTARRAYOID),
                oid(TEXTARRAYOID),
                oid(JSONBARRAYOID),
                oid(TEXTARRAYOID),
                oid(TEXTARRAYOID),
                oid(TEXTARRAYOID),
            ],
        ),
        reject: keep(REJECT, &[oid(INT4OID), oid(INT4OID)]),
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

/// One click request, as the proxy saw it.
struct Hit {
    token: Option<String>,
    host: Option<String>,
    method: Option<String>,
    user_agent: Option<String>,
    ip: Option<Inet>,
    referrer: Option<String>,
    headers: Option<JsonB>,
}

/// status, location, click_id, class
type Row = (i32, Option<String>, Option<i64>, Option<String>);

/// The columns of one batch, as the CLICK statement takes them.
#[derive(Default)]
struct Columns {
    index: Vec<usize>,
    link_id: Vec<i64>,
    host: Vec<Option<String>>,
    human: Vec<bool>,
    method: Vec<String>,
    ip: Vec<Option<Inet>>,
    user_agent: Vec<Option<String>>,
    referrer: Vec<Option<String>>,
    headers: Vec<Option<JsonB>>,
    device: Vec<&'static str>,
    class: Vec<&'static str>,
    reasons: Vec<String>,
}

/// Logs a batch of clicks and answers each. Never raises for a bad token or host.
fn log_clicks(hits: Vec<Hit>, at: Option<TimestampWithTimeZone>) -> Vec<Row> {
    let at = at.unwrap_or_else(|| unsafe {
        // SAFETY: reads the transaction start time, as now() does.
        TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp())
            .unwrap_or_else(|_| crate::errors::raise(crate::errors::INVALID_PARAMETER, "no time"))
    });
    let mut rows: Vec<Row> = vec![(404, None, None, None); hits.len()];
    let mut cols = Columns::default();
    let mut invalid = 0i32;
    for (index, hit) in hits.into_iter().enumerate() {
        let Some(link_id) = hit.token.as_deref().and_then(keys::decode) else {
            invalid += 1;
            continue;
        };
        let method = hit.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let pairs = header_pairs(hit.headers.as_ref());
        let verdict = classify(&Request {
            method: &method,
            user_agent: hit.user_agent.as_deref(),
            headers: &pairs,
        });
        rows[index].3 = Some(verdict.class.as_str().to_string());
        cols.index.push(index);
        cols.link_id.push(link_id);
        cols.host.push(hit.host.as_deref().map(normalize_host));
        cols.human.push(verdict.class == ClickClass::Human);
        cols.method.push(method);
        cols.ip.push(hit.ip);
        cols.device.push(device(hit.user_agent.as_deref()).as_str());
        cols.user_agent.push(hit.user_agent);
        cols.referrer.push(hit.referrer);
        cols.headers.push(hit.headers);
        cols.class.push(verdict.class.as_str());
        let reasons: Vec<&str> = verdict.reasons.iter().map(String::as_str).collect();
        cols.reasons
            .push(reasons.join(&REASON_SEPARATOR.to_string()));
    }
    let candidates = cols.index.len();
    let mut found = 0usize;
    Spi::connect_mut(|c| {
        PLANS.with(|cell| {
            let plans = cell.get_or_init(|| prepare(c));
            if candidates > 0 {
                let index = std::mem::take(&mut cols.index);
                let logged = c
                    .update(
                        &plans.click,
                        None,
                        &[
                            at.into(),
                            cols.link_id.into(),
                            cols.host.into(),
                            cols.human.into(),
                            cols.method.into(),
                            cols.ip.into(),
                            cols.user_agent.into(),
                            cols.referrer.into(),
                            cols.headers.into(),
                            cols.device.into(),
                            cols.class.into(),
                            cols.reasons.into(),
                        ],
                    )
                    .spi();
                for r in logged {
                    let ord = r.get::<i64>(1).spi().unwrap_or(0);
                    let Some(&i) = usize::try_from(ord - 1).ok().and_then(|k| index.get(k)) else {
                        continue;
                    };
                    let row = &mut rows[i];
                    row.2 = r.get::<i64>(2).spi();
                    // An expired link with no fallback anywhere is gone: 410, still logged.
                    row.1 = r.get::<String>(3).spi();
                    row.0 = if row.1.is_some() { 302 } else { 410 };
                    found += 1;
                }
                // Classes only mean something for logged clicks.
                for &i in &index {
                    if rows[i].2.is_none() {
                        rows[i].3 = None;
                    }
                }
            }
            let unknown = i32::try_from(candidates - found).unwrap_or(i32::MAX);
            if invalid > 0 || unknown > 0 {
                c.update(&plans.reject, None, &[invalid.into(), unknown.into()])
                    .spi();
            }
        })
    });
    rows
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
    let hit = Hit {
        token: token.map(str::to_string),
        host: host.map(str::to_string),
        method: method.map(str::to_string),
        user_agent: user_agent.map(str::to_string),
        ip,
        referrer: referrer.map(str::to_string),
        headers,
    };
    TableIterator::new(log_clicks(vec![hit], at))
}

type Texts = Option<Vec<Option<String>>>;

/// The elements of an optional array argument whose length was checked; NULL is all NULLs.
fn column<T>(v: Option<Vec<Option<T>>>, n: usize) -> std::vec::IntoIter<Option<T>> {
    let mut v = v.unwrap_or_default();
    v.resize_with(n, || None);
    v.into_iter()
}

/// Logs a batch of clicks in one transaction and answers each, in order: the `n`th row answers
/// the `n`th element of the arrays. The same rules as `track_click`, one statement for the batch.
/// `tokens` sets the batch size; every other array is NULL (all elements NULL) or as long.
/// Executable only by the owner and `smslink_proxy`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn track_clicks(
    tokens: Texts,
    hosts: Texts,
    methods: Texts,
    user_agents: Texts,
    ips: Texts,
    referrers: Texts,
    headers: Option<Vec<Option<JsonB>>>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(ord, i32),
        name!(status, i32),
        name!(location, Option<String>),
        name!(click_id, Option<i64>),
        name!(class, Option<String>),
    ),
> {
    use crate::errors::{raise, raise_hint, INVALID_PARAMETER, NULL_VALUE};
    let Some(tokens) = tokens else {
        raise(NULL_VALUE, "track_clicks: tokens must not be NULL");
    };
    let n = tokens.len();
    if n > MAX_BATCH {
        raise_hint(
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("track_clicks: {n} clicks in one call; at most {MAX_BATCH}"),
            "split the batch",
        );
    }
    let lengths = [
        ("hosts", hosts.as_ref().map(Vec::len)),
        ("methods", methods.as_ref().map(Vec::len)),
        ("user_agents", user_agents.as_ref().map(Vec::len)),
        ("ips", ips.as_ref().map(Vec::len)),
        ("referrers", referrers.as_ref().map(Vec::len)),
        ("headers", headers.as_ref().map(Vec::len)),
    ];
    for (name, len) in lengths {
        if let Some(len) = len.filter(|&l| l != n) {
            raise_hint(
                INVALID_PARAMETER,
                format!("track_clicks: tokens has {n} elements but {name} has {len}"),
                "pass arrays of the same length, or NULL for an argument that is NULL throughout",
            );
        }
    }
    let mut hosts = column(hosts, n);
    let mut methods = column(methods, n);
    let mut user_agents = column(user_agents, n);
    let mut ips = column(ips, n);
    let mut referrers = column(referrers, n);
    let mut headers = column(headers, n);
    let hits = tokens
        .into_iter()
        .map(|token| Hit {
            token,
            host: hosts.next().flatten(),
            method: methods.next().flatten(),
            user_agent: user_agents.next().flatten(),
            // A string that is not an IP address is logged as NULL rather than failing the batch.
            ip: ips
                .next()
                .flatten()
                .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                .map(Inet::from),
            referrer: referrers.next().flatten(),
            headers: headers.next().flatten(),
        })
        .collect();
    let rows = log_clicks(hits, at);
    TableIterator::new(rows.into_iter().enumerate().map(|(i, r)| {
        let ord = i32::try_from(i + 1).unwrap_or(i32::MAX);
        (ord, r.0, r.1, r.2, r.3)
    }))
}
