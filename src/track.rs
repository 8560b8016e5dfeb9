//! The click hot path: `smslink.track_click` (one click) and `smslink.track_clicks` (a batch, as
//! the proxy sends them under load). Both run the same code: a single click is a batch of one.
//!
//! Order of work, cheapest rejection first:
//! 1. decode each token from the per-backend key ring: a forged or malformed token is answered
//!    404 without reading any table (a sequence counts it);
//! 2. one statement, prepared once per backend, does the rest for the whole batch: primary-key
//!    lookups joining link, domain, message and campaign, restricted to each request's host; the
//!    classifier's context (the IP range, the address's other messages in the last seconds, the
//!    message's earlier hits near delivery: bounded index lookups); the verdict, by calling the
//!    classifier in `core` through `smslink.classify_hit` row by row; the expiry fallback chain;
//!    the first-click claim; and the click INSERTs. No row back for an item means an unknown link
//!    or a host that is not the link's domain: 404, counted.
//!
//! `is_first` is exact under concurrency. Within a batch, the earliest human click of each
//! message is the only candidate. Across transactions, candidates lock their message rows in id
//! order and claim the first click only while `first_click_at IS NULL`, re-checked on the locked
//! row: a racing transaction waits on the row lock, re-checks, finds it set and claims nothing,
//! and a concurrent `reclassify` that takes a message's only human click away is seen. Locking
//! in id order means two batches can never deadlock on each other's messages.
//!
//! One statement per batch, and one transaction and one WAL flush per batch, is what lets the
//! proxy log clicks faster than one round trip per click (BENCHMARKS.md). Nothing is acknowledged
//! before the commit that holds it.

use crate::classify::{
    context, context_sql, judge, CONTEXT_COLUMNS, CONTEXT_MESSAGE_JOIN, CONTEXT_RANGE_JOIN,
};
use crate::errors::SpiOk;
use crate::keys;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{Inet, JsonB, PgBuiltInOids, PgOid};
use smslink_core::click::{device, normalize_host};
use std::cell::OnceCell;

/// The CLICK statement, with the classifier's database context or (`context` false, setting
/// `smslink.classifier_context = off`) with request signals only.
fn click_sql(context: bool) -> String {
    let judged = if context {
        format!(
            "SELECT x.*, x.seconds AS judged_seconds, {CONTEXT_COLUMNS}
      FROM x {CONTEXT_RANGE_JOIN} {CONTEXT_MESSAGE_JOIN}"
        )
    } else {
        "SELECT x.*, NULL::float8 AS judged_seconds, NULL::text AS range_label,
           NULL::text AS range_class, 0 AS ip_messages, 0 AS message_ips, false AS previewed
      FROM x"
            .to_string()
    };
    let sql = format!(
        "WITH input AS (
    SELECT * FROM unnest($2::int8[], $3::text[], $4::text[], $5::inet[], $6::text[], $7::text[],
                         $8::jsonb[], $9::text[])
           WITH ORDINALITY AS i(link_id, host, method, ip, user_agent, referrer, headers, device, ord)
), x AS (
    SELECT i.*, $1::timestamptz AS at, l.brand_id, l.message_id, l.kind AS link_kind,
           m.campaign_id, m.variant_id,
           m.subscriber_id, m.delivered_at,
           l.expires_at IS NOT NULL AND l.expires_at <= $1 AS expired,
           CASE WHEN l.expires_at IS NOT NULL AND l.expires_at <= $1
                THEN coalesce(l.fallback_url, c.fallback_url, d.fallback_url)
                ELSE l.destination END AS location,
           extract(epoch FROM $1 - m.delivered_at)::float8 AS seconds, c.click_param
      FROM input i
      JOIN smslink.link l ON l.id = i.link_id
      JOIN smslink.domain d ON d.id = l.domain_id AND d.host = i.host
      JOIN smslink.message m ON m.id = l.message_id
      JOIN smslink.campaign c ON c.id = m.campaign_id
), judged AS (
    {judged}
), verdict AS (
    SELECT j.*, smslink.classify_hit(j.method, j.user_agent, j.headers, j.referrer,
                                     j.judged_seconds, j.range_label, j.range_class,
                                     j.ip_messages, j.message_ips, j.previewed) AS v
      FROM judged j
), target AS MATERIALIZED (
    SELECT j.ord, nextval('smslink.click_id_seq') AS click_id, j.v[1] = 'human' AS human,
           j.link_id, j.link_kind, j.brand_id, j.message_id, j.campaign_id, j.variant_id, j.subscriber_id,
           j.method, j.ip, j.user_agent, j.referrer, j.headers, j.device, j.v[1] AS class,
           j.v[2:] AS reasons, j.expired, j.location, j.seconds, j.click_param
      FROM verdict j
     ORDER BY j.ord -- click ids follow the batch's order (nextval runs after the sort)
), candidate AS (
    SELECT message_id, min(ord) AS ord FROM target WHERE human GROUP BY message_id
), locked AS (
    -- Every candidate's message is locked, not only those without a first click in this
    -- snapshot: reclassify may be taking a message's only human click away concurrently, and
    -- the claim below must then see its result (it re-checks the latest row version).
    SELECT m.id FROM smslink.message m JOIN candidate k ON k.message_id = m.id
     ORDER BY m.id
       FOR NO KEY UPDATE OF m
), claim AS (
    UPDATE smslink.message m SET first_click_at = $1
      FROM locked
     WHERE m.id = locked.id AND m.first_click_at IS NULL
    RETURNING m.id
), logged AS (
    INSERT INTO smslink.click (id, clicked_at, brand_id, campaign_id, variant_id, message_id,
           subscriber_id, link_id, link_kind, method, ip, user_agent, referrer, headers, device, class, reasons,
           seconds_since_delivery, is_first, expired)
    SELECT t.click_id, $1, t.brand_id, t.campaign_id, t.variant_id, t.message_id, t.subscriber_id,
           t.link_id, t.link_kind, t.method, t.ip, t.user_agent, t.referrer, t.headers, t.device, t.class,
           t.reasons, t.seconds,
           EXISTS (SELECT 1 FROM claim JOIN candidate k ON k.message_id = claim.id
                    WHERE claim.id = t.message_id AND k.ord = t.ord),
           t.expired
      FROM target t
    RETURNING id
)
-- The landing URL: macros and the campaign's click parameter, looked up only when there are any.
SELECT t.ord, t.click_id,
       CASE WHEN t.click_param IS NULL AND strpos(t.location, '{{') = 0
                 AND strpos(t.location, '%7B') = 0 AND strpos(t.location, '%7b') = 0
            THEN t.location
            ELSE smslink.expand_destination(t.location, t.click_param, t.click_id,
                     (SELECT s.external_key FROM smslink.subscriber s WHERE s.id = t.subscriber_id),
                     t.campaign_id,
                     (SELECT v.key FROM smslink.variant v WHERE v.id = t.variant_id),
                     t.message_id) END,
       t.class
  FROM target t JOIN logged ON logged.id = t.click_id"
    );
    context_sql(&sql, "$1", "o.clicked_at <= $1", "$10", "$11")
}

/// The most clicks one call may carry.
const MAX_BATCH: usize = 10_000;

struct Plans {
    with_context: OwnedPreparedStatement,
    without_context: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: OnceCell<Plans> = const { OnceCell::new() };
}

/// Counts `n` rejected requests on the named sequence of the `smslink` schema. Calls `nextval`
/// directly rather than through SPI, so that a batch of forged tokens costs no statement at all.
/// The sequence is looked up in the catalog cache on every call, so a reinstalled extension is
/// never counted on a stale OID.
fn count_rejected(sequence: &std::ffi::CStr, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: catalog-cache lookups and a builtin function call with a valid OID argument; both
    // report failure through ereport, which pgrx turns into a Rust panic/ERROR.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"smslink".as_ptr(), false);
        let seq = pg_sys::get_relname_relid(sequence.as_ptr(), schema);
        if seq == pg_sys::Oid::INVALID {
            crate::errors::raise(
                crate::errors::WRONG_STATE,
                format!(
                    "smslink.{} is missing; reinstall the extension",
                    sequence.to_string_lossy()
                ),
            );
        }
        for _ in 0..n {
            pgrx::direct_function_call_as_datum(
                pg_sys::nextval_oid,
                &[Some(pg_sys::Datum::from(seq))],
            );
        }
    }
}

fn oid(t: PgBuiltInOids) -> PgOid {
    PgOid::BuiltIn(t)
}

fn prepare(c: &SpiClient<'_>) -> Plans {
    use pgrx::pg_sys::BuiltinOid::*;
    let args = [
        oid(TIMESTAMPTZOID),
        oid(INT8ARRAYOID),
        oid(TEXTARRAYOID),
        oid(TEXTARRAYOID),
        oid(INETARRAYOID),
        oid(TEXTARRAYOID),
        oid(TEXTARRAYOID),
        oid(JSONBARRAYOID),
        oid(TEXTARRAYOID),
        oid(FLOAT8OID),
        oid(FLOAT8OID),
    ];
    let keep = |context| c.prepare_mut(&click_sql(context), &args).spi().keep();
    Plans {
        with_context: keep(true),
        without_context: keep(false),
    }
}

/// The classifier's verdict on one row of the CLICK statement: `{class, reason, ...}`. Called
/// by the hot path only (it reads the session's compiled rules, which `track_click` refreshes
/// first); `smslink.classify` is the function for people.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
fn classify_hit(
    method: Option<&str>,
    user_agent: Option<&str>,
    headers: Option<JsonB>,
    referrer: Option<&str>,
    seconds_since_delivery: Option<f64>,
    range_label: Option<&str>,
    range_class: Option<&str>,
    ip_messages: Option<i32>,
    message_ips: Option<i32>,
    previewed: Option<bool>,
) -> Vec<String> {
    let ctx = context(
        seconds_since_delivery,
        range_label,
        range_class,
        ip_messages,
        message_ips,
        previewed,
    );
    let verdict = judge(
        method.unwrap_or("GET"),
        user_agent,
        headers.as_ref(),
        referrer,
        &ctx,
    );
    let mut out = Vec::with_capacity(1 + verdict.reasons.len());
    out.push(verdict.class.as_str().to_string());
    out.extend(verdict.reasons);
    out
}

/// One click request whose token decoded, as the proxy saw it.
struct Hit {
    link_id: i64,
    host: Option<String>,
    method: Option<String>,
    user_agent: Option<String>,
    ip: Option<Inet>,
    referrer: Option<String>,
    headers: Option<JsonB>,
}

/// status, location, click_id, class
type Row = (i32, Option<String>, Option<i64>, Option<String>);

/// Logs a batch of `n` requests and answers each. `hits` are the requests whose token decoded,
/// with their place in the batch; `invalid` counts the rest (forged or malformed tokens).
/// Never raises for a bad token or host.
fn log_clicks(
    n: usize,
    hits: Vec<(usize, Hit)>,
    invalid: usize,
    at: Option<TimestampWithTimeZone>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = vec![(404, None, None, None); n];
    count_rejected(c"rejected_invalid_token_seq", invalid);
    if hits.is_empty() {
        // All forged: no statement, no table, no SPI.
        return rows;
    }
    let at = at.unwrap_or_else(|| unsafe {
        // SAFETY: reads the transaction start time, as now() does.
        TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp())
            .unwrap_or_else(|_| crate::errors::raise(crate::errors::INVALID_PARAMETER, "no time"))
    });
    let candidates = hits.len();
    let index: Vec<usize> = hits.iter().map(|(i, _)| *i).collect();
    let mut link_id = Vec::with_capacity(candidates);
    let mut host = Vec::with_capacity(candidates);
    let mut method = Vec::with_capacity(candidates);
    let mut ip = Vec::with_capacity(candidates);
    let mut user_agent = Vec::with_capacity(candidates);
    let mut referrer = Vec::with_capacity(candidates);
    let mut headers = Vec::with_capacity(candidates);
    let mut devices = Vec::with_capacity(candidates);
    for (_, hit) in hits {
        link_id.push(hit.link_id);
        host.push(hit.host.as_deref().map(normalize_host));
        method.push(hit.method.as_deref().unwrap_or("GET").to_ascii_uppercase());
        ip.push(hit.ip);
        devices.push(device(hit.user_agent.as_deref()).as_str());
        user_agent.push(hit.user_agent);
        referrer.push(hit.referrer);
        headers.push(hit.headers);
    }
    // Rules are refreshed here, outside the statement; classify_hit only reads them.
    crate::classify::refresh_classifier(false);
    let t = crate::classify::thresholds();
    let mut found = 0usize;
    Spi::connect_mut(|c| {
        PLANS.with(|cell| {
            let plans = cell.get_or_init(|| prepare(c));
            let plan = if crate::classify::context_enabled() {
                &plans.with_context
            } else {
                &plans.without_context
            };
            let logged = c
                .update(
                    plan,
                    None,
                    &[
                        at.into(),
                        link_id.into(),
                        host.into(),
                        method.into(),
                        ip.into(),
                        user_agent.into(),
                        referrer.into(),
                        headers.into(),
                        devices.into(),
                        t.burst_ip_window_seconds.into(),
                        t.burst_token_window_seconds.into(),
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
                row.3 = r.get::<String>(4).spi();
                found += 1;
            }
        })
    });
    count_rejected(c"rejected_unknown_target_seq", candidates - found);
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
    let hits = match token.and_then(keys::decode) {
        None => vec![],
        Some(link_id) => vec![(
            0,
            Hit {
                link_id,
                host: host.map(str::to_string),
                method: method.map(str::to_string),
                user_agent: user_agent.map(str::to_string),
                ip,
                referrer: referrer.map(str::to_string),
                headers,
            },
        )],
    };
    let invalid = 1 - hits.len();
    TableIterator::new(log_clicks(1, hits, invalid, at))
}

type Texts<'a> = Option<Array<'a, &'a str>>;

/// Walks an optional array argument whose length was checked, in step with the batch; a NULL
/// array reads as all NULLs. Only the elements at the positions asked for are copied out.
struct Column<'a, T: pgrx::datum::UnboxDatum> {
    iter: Option<pgrx::datum::ArrayIterator<'a, T>>,
    at: usize,
}

impl<'a, T: pgrx::datum::UnboxDatum> Column<'a, T> {
    fn new(array: Option<&'a Array<'a, T>>) -> Self {
        Column {
            iter: array.map(Array::iter),
            at: 0,
        }
    }

    /// The element at `index`; indexes must be asked for in increasing order.
    fn at(&mut self, index: usize) -> Option<T::As<'a>> {
        let iter = self.iter.as_mut()?;
        let skip = index - self.at;
        self.at = index + 1;
        iter.nth(skip).flatten()
    }
}

/// Logs a batch of clicks in one transaction and answers each, in order: the `n`th row answers
/// the `n`th element of the arrays. The same rules as `track_click`, one statement for the batch.
/// `tokens` sets the batch size; every other array is NULL (all elements NULL) or as long.
/// Executable only by the owner and `smslink_proxy`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn track_clicks<'a>(
    tokens: Texts<'a>,
    hosts: Texts<'a>,
    methods: Texts<'a>,
    user_agents: Texts<'a>,
    ips: Texts<'a>,
    referrers: Texts<'a>,
    headers: Option<Array<'a, JsonB>>,
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
        ("hosts", hosts.as_ref().map(Array::len)),
        ("methods", methods.as_ref().map(Array::len)),
        ("user_agents", user_agents.as_ref().map(Array::len)),
        ("ips", ips.as_ref().map(Array::len)),
        ("referrers", referrers.as_ref().map(Array::len)),
        ("headers", headers.as_ref().map(Array::len)),
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
    // Decode first: the other arrays are only read at the positions of tokens that decoded, so
    // a batch of forged tokens never unpacks a header or parses a JSON document.
    let decoded: Vec<(usize, i64)> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.and_then(keys::decode).map(|id| (i, id)))
        .collect();
    let invalid = n - decoded.len();
    let mut hosts = Column::new(hosts.as_ref());
    let mut methods = Column::new(methods.as_ref());
    let mut user_agents = Column::new(user_agents.as_ref());
    let mut ips = Column::new(ips.as_ref());
    let mut referrers = Column::new(referrers.as_ref());
    let mut headers = Column::new(headers.as_ref());
    let hits = decoded
        .into_iter()
        .map(|(i, link_id)| {
            let hit = Hit {
                link_id,
                host: hosts.at(i).map(str::to_string),
                method: methods.at(i).map(str::to_string),
                user_agent: user_agents.at(i).map(str::to_string),
                // A string that is not an IP address is logged as NULL rather than failing
                // the batch.
                ip: ips
                    .at(i)
                    .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                    .map(|a| Inet::from(a.to_string())),
                referrer: referrers.at(i).map(str::to_string),
                headers: headers.at(i),
            };
            (i, hit)
        })
        .collect();
    let rows = log_clicks(n, hits, invalid, at);
    TableIterator::new(rows.into_iter().enumerate().map(|(i, r)| {
        let ord = i32::try_from(i + 1).unwrap_or(i32::MAX);
        (ord, r.0, r.1, r.2, r.3)
    }))
}
