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
use smslink_core::click::{device, normalize_host, waves};
use std::cell::OnceCell;

/// The CLICK statement, with the classifier's database context or (`context` false, setting
/// `smslink.classifier_context = off`) with request signals only. Every row carries its own
/// request time (`ats`, the tap's time: the transaction's on the database path, the original
/// request's on the edge path), an optional request id (a replayed request id is answered
/// `duplicate` and logged nothing) and an optional click id assigned by the proxy. `$1` and `$15`
/// bound the batch's times, so that partitions are pruned when the statement starts. Every
/// click's token (`$16`) must be the stored token of the link it decoded to (or that the caller,
/// an edge proxy, resolved it to from its cache): a token that decodes to a link under a key
/// it was not made with, or after a restore without the keys, is an unknown link. A link's
/// message may come too (`$17`), which must be its own.
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
        "WITH raw AS (
    SELECT * FROM unnest($2::int8[], $3::text[], $4::text[], $5::inet[], $6::text[], $7::text[],
                         $8::jsonb[], $9::text[], $12::timestamptz[], $13::uuid[], $14::int8[],
                         $16::text[], $17::int8[])
           WITH ORDINALITY AS i(link_id, host, method, ip, user_agent, referrer, headers, device,
                                at, request_id, preset_id, token, claimed_message, ord)
), input AS (
    SELECT r.*, CASE WHEN r.request_id IS NOT NULL THEN
                     -- Within an hour either way: the same request logged by the database path
                     -- carries the database's time, the spooled copy the proxy's.
                     (SELECT o.id FROM smslink.click o
                       WHERE o.request_id = r.request_id
                         AND o.clicked_at BETWEEN r.at - interval '1 hour' AND r.at + interval '1 hour'
                       LIMIT 1) END AS dup_id
      FROM raw r
), x AS (
    SELECT i.*, l.brand_id, l.message_id, l.kind AS link_kind,
           m.campaign_id, m.variant_id,
           m.subscriber_id, m.delivered_at,
           l.expires_at IS NOT NULL AND l.expires_at <= i.at AS expired,
           CASE WHEN l.expires_at IS NOT NULL AND l.expires_at <= i.at
                THEN coalesce(l.fallback_url, c.fallback_url, d.fallback_url)
                ELSE l.destination END AS location,
           extract(epoch FROM i.at - m.delivered_at)::float8 AS seconds, c.click_param
      FROM input i
      JOIN smslink.link l ON l.id = i.link_id AND l.token = i.token
                         AND (i.claimed_message IS NULL OR l.message_id = i.claimed_message)
      JOIN smslink.domain d ON d.id = l.domain_id AND d.host = i.host
      JOIN smslink.message m ON m.id = l.message_id
      JOIN smslink.campaign c ON c.id = m.campaign_id
     WHERE i.dup_id IS NULL
), judged AS (
    {judged}
), verdict AS MATERIALIZED (
    -- Classify once per row: inlined, each use of v would call it again. And no context column
    -- besides the classifier's arguments: judged is inlined here, and each column that reads a
    -- context subquery (ip_messages) would run that subquery once more per row.
    SELECT j.ord, j.preset_id, j.at, j.request_id, j.link_id, j.link_kind, j.brand_id,
           j.message_id, j.campaign_id, j.variant_id, j.subscriber_id, j.method, j.ip,
           j.user_agent, j.referrer, j.headers, j.device, j.expired, j.location, j.seconds,
           j.click_param,
           smslink.classify_hit(j.method, j.user_agent, j.headers, j.referrer,
                                     j.judged_seconds, j.range_label, j.range_class,
                                     j.ip_messages, j.message_ips, j.previewed) AS v
      FROM judged j
), target AS MATERIALIZED (
    SELECT j.ord, coalesce(j.preset_id, nextval('smslink.click_id_seq')) AS click_id,
           j.v[1] = 'human' AS human, j.at, j.request_id,
           j.link_id, j.link_kind, j.brand_id, j.message_id, j.campaign_id, j.variant_id, j.subscriber_id,
           j.method, j.ip, j.user_agent, j.referrer, j.headers, j.device, j.v[1] AS class,
           j.v[2:] AS reasons, j.expired, j.location, j.seconds, j.click_param
      FROM verdict j
     ORDER BY j.ord -- click ids follow the batch's order (nextval runs after the sort)
), candidate AS (
    SELECT DISTINCT ON (message_id) message_id, ord, at FROM target WHERE human
     ORDER BY message_id, at, ord
), locked AS (
    -- Every candidate's message is locked, not only those without a first click in this
    -- snapshot: reclassify may be taking a message's only human click away concurrently, and
    -- the claim below must then see its result (it re-checks the latest row version).
    -- (No join of two of this statement's intermediate results anywhere below: the planner
    -- cannot size them, and a nested loop over two of them is quadratic in a large batch.
    -- Joins go to indexed tables, and membership tests are hashed IN subqueries.)
    SELECT m.id, m.first_click_at AS previous, k.at, k.ord
      FROM smslink.message m JOIN candidate k ON k.message_id = m.id
     ORDER BY m.id
       FOR NO KEY UPDATE OF m
), claim AS (
    -- The first click is the earliest human click: a click shipped late from an edge proxy
    -- with an earlier request time takes the claim over from a later one.
    UPDATE smslink.message m SET first_click_at = locked.at
      FROM locked
     WHERE m.id = locked.id AND (m.first_click_at IS NULL OR m.first_click_at > locked.at)
    RETURNING m.id, locked.previous, locked.ord
), logged AS (
    INSERT INTO smslink.click (id, clicked_at, brand_id, campaign_id, variant_id, message_id,
           subscriber_id, link_id, link_kind, method, ip, user_agent, referrer, headers, device, class, reasons,
           seconds_since_delivery, is_first, expired, request_id)
    SELECT t.click_id, t.at, t.brand_id, t.campaign_id, t.variant_id, t.message_id, t.subscriber_id,
           t.link_id, t.link_kind, t.method, t.ip, t.user_agent, t.referrer, t.headers, t.device, t.class,
           t.reasons, t.seconds, t.ord IN (SELECT claim.ord FROM claim), t.expired, t.request_id
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
  FROM target t -- every target row is inserted (the statement fails otherwise)
UNION ALL
SELECT i.ord, i.dup_id, NULL, 'duplicate' FROM input i WHERE i.dup_id IS NOT NULL
UNION ALL
-- Messages whose first click moved to an earlier one: the caller clears the later one's
-- is_first in a statement of its own, whose snapshot sees a first click committed by another
-- transaction while this one waited for the message's lock (this statement's cannot).
SELECT 0, claim.id, NULL, 'superseded' FROM claim WHERE claim.previous IS NOT NULL"
    );
    context_sql(
        &sql,
        "x.at",
        "o.clicked_at <= x.at AND o.clicked_at <= $1
               AND o.clicked_at >= $15 - make_interval(secs => greatest($10, $11)) - interval '1 day'",
        "$10",
        "$11",
    )
}

/// The most clicks one call may carry.
const MAX_BATCH: usize = 10_000;

struct Plans {
    with_context: OwnedPreparedStatement,
    without_context: OwnedPreparedStatement,
    sql_with_context: String,
    sql_without_context: String,
}

/// Batches up to this size use the kept plan; larger ones are planned for their size.
const SMALL_BATCH: usize = 64;

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
        oid(TIMESTAMPTZARRAYOID),
        oid(UUIDARRAYOID),
        oid(INT8ARRAYOID),
        oid(TIMESTAMPTZOID),
        oid(TEXTARRAYOID),
        oid(INT8ARRAYOID),
    ];
    let keep = |context| c.prepare_mut(&click_sql(context), &args).spi().keep();
    Plans {
        with_context: keep(true),
        without_context: keep(false),
        sql_with_context: click_sql(true),
        sql_without_context: click_sql(false),
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
    /// The request's own time (edge path); None: the batch's time.
    at: Option<TimestampWithTimeZone>,
    /// The id the proxy gave the request: a request id already logged is not logged again.
    request_id: Option<pgrx::Uuid>,
    /// A click id the proxy assigned from a leased block (edge path); None: the next of
    /// `smslink.click_id_seq`.
    click_id: Option<i64>,
    /// The token as presented: it must be the link's own.
    token: String,
    /// The link's message as the caller knows it (checked against the link).
    message_id: Option<i64>,
}

/// status, location, click_id, class
type Row = (i32, Option<String>, Option<i64>, Option<String>);

/// The status of a request whose id was logged before: nothing is logged again.
pub const DUPLICATE: i32 = 409;

/// The message of each link id (a link that does not exist maps to its negated id, so that it
/// conflicts with nothing; the statement answers it 404).
fn messages_of(c: &SpiClient<'_>, link_ids: &[i64]) -> std::collections::HashMap<i64, i64> {
    let rows = c
        .select(
            "SELECT id, message_id FROM smslink.link WHERE id = ANY($1)",
            None,
            &[link_ids.to_vec().into()],
        )
        .spi();
    rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<i64>(2).ok()??)))
        .collect()
}

fn transaction_start() -> TimestampWithTimeZone {
    // SAFETY: reads the transaction start time, as now() does.
    unsafe {
        TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp())
            .unwrap_or_else(|_| crate::errors::raise(crate::errors::INVALID_PARAMETER, "no time"))
    }
}

/// Logs a batch of `n` requests and answers each. `hits` are the requests whose token decoded,
/// with their place in the batch; `invalid` counts the rest (forged or malformed tokens). A hit
/// without its own time takes `at` (default: the transaction's start). Hits are logged in time
/// order, in as few statements as [`waves`] allows, so a batch gives the rows that logging its
/// clicks one by one would give. Never raises for a bad token or host.
fn log_clicks(
    n: usize,
    mut hits: Vec<(usize, Hit)>,
    invalid: usize,
    at: Option<TimestampWithTimeZone>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = vec![(404, None, None, None); n];
    count_rejected(c"rejected_invalid_token_seq", invalid);
    if hits.is_empty() {
        // All forged: no statement, no table, no SPI.
        return rows;
    }
    let default_at = at.unwrap_or_else(transaction_start);
    for (_, hit) in hits.iter_mut() {
        hit.at.get_or_insert(default_at);
    }
    let time = |h: &Hit| h.at.map_or(0, |t| t.into_inner());
    hits.sort_by_key(|(i, h)| (time(h), *i));
    // Rules are refreshed here, outside the statement; classify_hit only reads them.
    crate::classify::refresh_classifier(false);
    let t = crate::classify::thresholds();
    let candidates = hits.len();
    let mut found = 0usize;
    Spi::connect_mut(|c| {
        let wave_of = if candidates > 1 {
            // The message of each hit: as the caller gave it (checked by the statement), else
            // looked up.
            let ids: Vec<i64> = hits
                .iter()
                .filter(|(_, h)| h.message_id.is_none())
                .map(|(_, h)| h.link_id)
                .collect();
            let messages = if ids.is_empty() {
                std::collections::HashMap::new()
            } else {
                messages_of(c, &ids)
            };
            let ips: Vec<Option<String>> = hits
                .iter()
                .map(|(_, h)| h.ip.as_ref().map(|a| a.to_string()))
                .collect();
            let keys: Vec<(Option<&str>, i64, i64)> = hits
                .iter()
                .zip(&ips)
                .map(|((_, h), ip)| {
                    let message = h
                        .message_id
                        .or_else(|| messages.get(&h.link_id).copied())
                        .unwrap_or(-h.link_id);
                    (ip.as_deref(), message, time(h))
                })
                .collect();
            // The address signal looks back burst_ip_window_seconds (rounded up to the µs).
            let ip_window = (t.burst_ip_window_seconds * 1e6).ceil() as i64;
            let wave_of = waves(&keys, ip_window);
            if wave_of.iter().any(|&w| w > 0) {
                // Each wave's statement locks its candidates' messages in id order; across
                // several waves that order would not hold, and two batches could deadlock. So a
                // batch of several waves takes all its messages' locks first, in id order.
                let mut ids: Vec<i64> = keys.iter().map(|k| k.1).filter(|&m| m > 0).collect();
                ids.sort_unstable();
                ids.dedup();
                c.update(
                    "SELECT id FROM smslink.message WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
                    None,
                    &[ids.into()],
                )
                .spi();
            }
            wave_of
        } else {
            vec![0]
        };
        let last = wave_of.iter().copied().max().unwrap_or(0);
        let mut pending: Vec<Option<(usize, Hit)>> = hits.into_iter().map(Some).collect();
        for wave in 0..=last {
            let batch: Vec<(usize, Hit)> = pending
                .iter_mut()
                .zip(&wave_of)
                .filter(|(_, &w)| w == wave)
                .filter_map(|(slot, _)| slot.take())
                .collect();
            found += log_wave(c, batch, &t, &mut rows);
        }
    });
    count_rejected(c"rejected_unknown_target_seq", candidates - found);
    rows
}

/// One execution of the CLICK statement for hits that do not depend on each other; fills their
/// answers into `rows` and returns how many were found (logged or duplicate).
fn log_wave(
    c: &mut SpiClient<'_>,
    hits: Vec<(usize, Hit)>,
    t: &smslink_core::classify::Thresholds,
    rows: &mut [Row],
) -> usize {
    if hits.is_empty() {
        return 0;
    }
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
    let mut ats = Vec::with_capacity(candidates);
    let mut request_ids = Vec::with_capacity(candidates);
    let mut click_ids = Vec::with_capacity(candidates);
    let mut tokens = Vec::with_capacity(candidates);
    let mut message_ids = Vec::with_capacity(candidates);
    // A batch repeats the same few User-Agents: each is parsed for its device once.
    let mut device_of: std::collections::HashMap<Option<String>, &'static str> =
        std::collections::HashMap::new();
    for (_, hit) in hits {
        link_id.push(hit.link_id);
        host.push(hit.host.as_deref().map(normalize_host));
        method.push(hit.method.as_deref().unwrap_or("GET").to_ascii_uppercase());
        ip.push(hit.ip);
        let kind = *device_of
            .entry(hit.user_agent.clone())
            .or_insert_with(|| device(hit.user_agent.as_deref()).as_str());
        devices.push(kind);
        user_agent.push(hit.user_agent);
        referrer.push(hit.referrer);
        headers.push(hit.headers);
        ats.push(hit.at);
        request_ids.push(hit.request_id);
        click_ids.push(hit.click_id);
        tokens.push(hit.token);
        message_ids.push(hit.message_id);
    }
    let first = ats.iter().flatten().map(|a| a.into_inner()).min();
    let latest = ats.iter().flatten().map(|a| a.into_inner()).max();
    let bound = |v: Option<i64>| v.and_then(|v| TimestampWithTimeZone::try_from(v).ok());
    let mut found = 0usize;
    let args = [
        bound(latest).into(),
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
        ats.into(),
        request_ids.into(),
        click_ids.into(),
        bound(first).into(),
        tokens.into(),
        message_ids.into(),
    ];
    let context = crate::classify::context_enabled();
    let mut superseded: Vec<i64> = Vec::new();
    PLANS.with(|cell| {
        let plans = cell.get_or_init(|| prepare(c));
        // The kept plan was made for no particular batch: it expects a handful of rows, and
        // joins the statement's intermediate results by nested loops, which is right for the
        // few clicks of a database-path batch but quadratic for the thousands of an edge
        // shipment. A large batch is planned for its own size (a few milliseconds, once).
        let logged = if candidates > SMALL_BATCH {
            let sql = if context {
                &plans.sql_with_context
            } else {
                &plans.sql_without_context
            };
            c.update(sql.as_str(), None, &args).spi()
        } else {
            let plan = if context {
                &plans.with_context
            } else {
                &plans.without_context
            };
            c.update(plan, None, &args).spi()
        };
        for r in logged {
            if r.get::<String>(4).spi().as_deref() == Some("superseded") {
                superseded.extend(r.get::<i64>(2).spi());
                continue;
            }
            let ord = r.get::<i64>(1).spi().unwrap_or(0);
            let Some(&i) = usize::try_from(ord - 1).ok().and_then(|k| index.get(k)) else {
                continue;
            };
            let row = &mut rows[i];
            row.2 = r.get::<i64>(2).spi();
            row.3 = r.get::<String>(4).spi();
            if row.3.as_deref() == Some("duplicate") {
                row.0 = DUPLICATE;
            } else {
                // An expired link with no fallback anywhere is gone: 410, still logged.
                row.1 = r.get::<String>(3).spi();
                row.0 = if row.1.is_some() { 302 } else { 410 };
            }
            found += 1;
        }
    });
    if !superseded.is_empty() {
        // The message rows are locked by this transaction: nobody claims meanwhile.
        c.update(
            "UPDATE smslink.click c SET is_first = false
               FROM smslink.message m
              WHERE m.id = ANY($1) AND c.message_id = m.id AND c.is_first
                AND c.clicked_at > m.first_click_at",
            None,
            &[superseded.into()],
        )
        .spi();
    }
    found
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
    let hits = match token.and_then(|t| keys::decode(t).map(|id| (id, t))) {
        None => vec![],
        Some((link_id, token)) => vec![(
            0,
            Hit {
                link_id,
                host: host.map(str::to_string),
                method: method.map(str::to_string),
                user_agent: user_agent.map(str::to_string),
                ip,
                referrer: referrer.map(str::to_string),
                headers,
                at: None,
                request_id: None,
                click_id: None,
                token: token.to_string(),
                message_id: None,
            },
        )],
    };
    not_ahead("track_click", "at", at);
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

/// The arguments of a batch call, checked: `tokens` sets the batch size, every other array is
/// NULL (all elements NULL) or as long.
struct Batch<'a> {
    tokens: Array<'a, &'a str>,
    hosts: Texts<'a>,
    methods: Texts<'a>,
    user_agents: Texts<'a>,
    ips: Texts<'a>,
    referrers: Texts<'a>,
    headers: Option<Array<'a, JsonB>>,
    ats: Option<Array<'a, TimestampWithTimeZone>>,
    request_ids: Option<Array<'a, pgrx::Uuid>>,
    click_ids: Option<Array<'a, i64>>,
    /// Link ids the caller resolved from the tokens itself (checked against each link's token):
    /// no token is decoded for these.
    link_ids: Option<Array<'a, i64>>,
    message_ids: Option<Array<'a, i64>>,
}

impl Batch<'_> {
    /// Checks the lengths (22023 naming the argument) and the batch size (54000).
    fn check(&self, function: &str) {
        use crate::errors::{raise_hint, INVALID_PARAMETER};
        let n = self.tokens.len();
        if n > MAX_BATCH {
            raise_hint(
                pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("{function}: {n} clicks in one call; at most {MAX_BATCH}"),
                "split the batch",
            );
        }
        let lengths = [
            ("hosts", self.hosts.as_ref().map(Array::len)),
            ("methods", self.methods.as_ref().map(Array::len)),
            ("user_agents", self.user_agents.as_ref().map(Array::len)),
            ("ips", self.ips.as_ref().map(Array::len)),
            ("referrers", self.referrers.as_ref().map(Array::len)),
            ("headers", self.headers.as_ref().map(Array::len)),
            ("ats", self.ats.as_ref().map(Array::len)),
            ("request_ids", self.request_ids.as_ref().map(Array::len)),
            ("click_ids", self.click_ids.as_ref().map(Array::len)),
            ("link_ids", self.link_ids.as_ref().map(Array::len)),
            ("message_ids", self.message_ids.as_ref().map(Array::len)),
        ];
        for (name, len) in lengths {
            if let Some(len) = len.filter(|&l| l != n) {
                raise_hint(
                    INVALID_PARAMETER,
                    format!("{function}: tokens has {n} elements but {name} has {len}"),
                    "pass arrays of the same length, or NULL for an argument that is NULL throughout",
                );
            }
        }
    }

    /// Decodes the tokens and logs the batch: the answers in the batch's order.
    fn log(self, function: &str, at: Option<TimestampWithTimeZone>) -> Vec<Row> {
        self.check(function);
        let n = self.tokens.len();
        // Decode first: the other arrays are only read at the positions of tokens that decoded,
        // so a batch of forged tokens never unpacks a header or parses a JSON document.
        // A link id the caller resolved is taken as is (with its token, which the statement
        // checks against the link's): decrypting a token costs more than comparing it.
        let mut given = Column::new(self.link_ids.as_ref());
        let decoded: Vec<(usize, i64, &str)> = self
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let t = t?;
                match given.at(i) {
                    Some(id) => Some((i, id, t)),
                    None => keys::decode(t).map(|id| (i, id, t)),
                }
            })
            .collect();
        let invalid = n - decoded.len();
        let mut hosts = Column::new(self.hosts.as_ref());
        let mut methods = Column::new(self.methods.as_ref());
        let mut user_agents = Column::new(self.user_agents.as_ref());
        let mut ips = Column::new(self.ips.as_ref());
        let mut referrers = Column::new(self.referrers.as_ref());
        let mut headers = Column::new(self.headers.as_ref());
        let mut ats = Column::new(self.ats.as_ref());
        let mut request_ids = Column::new(self.request_ids.as_ref());
        let mut click_ids = Column::new(self.click_ids.as_ref());
        let mut message_ids = Column::new(self.message_ids.as_ref());
        let hits = decoded
            .into_iter()
            .map(|(i, link_id, token)| {
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
                    at: ats.at(i),
                    request_id: request_ids.at(i),
                    click_id: click_ids.at(i),
                    token: token.to_string(),
                    message_id: message_ids.at(i),
                };
                (i, hit)
            })
            .collect();
        log_clicks(n, hits, invalid, at)
    }
}

/// Logs a batch of clicks in one transaction and answers each, in order: the `n`th row answers
/// the `n`th element of the arrays. The same rules as `track_click`. `tokens` sets the batch
/// size; every other array is NULL (all elements NULL) or as long. A request id (the proxy's
/// UUID for the request) that was logged before is answered 409 and logged nothing.
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
    request_ids: default!(Option<Array<'a, pgrx::Uuid>>, "NULL"),
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
    let Some(tokens) = tokens else {
        crate::errors::raise(
            crate::errors::NULL_VALUE,
            "track_clicks: tokens must not be NULL",
        );
    };
    not_ahead("track_clicks", "at", at);
    let rows = Batch {
        tokens,
        hosts,
        methods,
        user_agents,
        ips,
        referrers,
        headers,
        ats: None,
        request_ids,
        click_ids: None,
        link_ids: None,
        message_ids: None,
    }
    .log("track_clicks", at);
    TableIterator::new(rows.into_iter().enumerate().map(|(i, r)| {
        let ord = i32::try_from(i + 1).unwrap_or(i32::MAX);
        (ord, r.0, r.1, r.2, r.3)
    }))
}

/// The edge path's ingestion: logs clicks that an edge proxy answered from its link cache and
/// spooled, each with its original request time, its request id and the click id the proxy
/// gave its landing page. Classification, `is_first`, `first_click_at`, device and timing come
/// out as they would have on the database path at that time. A request id already logged is
/// skipped, so a spool replayed after a crash never duplicates a click. `link_ids` and
/// `message_ids` (optional, element by element) are what the proxy's cache resolved the token
/// to: the token is then checked against that link's instead of being decrypted, and a link
/// whose token or message differs is unknown. Answers per click, in order: 201 logged (with its
/// class), 409 already logged, 404 forged token or unknown link. Executable only by the owner
/// and `smslink_proxy`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn ingest_clicks<'a>(
    request_ids: Option<Array<'a, pgrx::Uuid>>,
    click_ids: Option<Array<'a, i64>>,
    ats: Option<Array<'a, TimestampWithTimeZone>>,
    tokens: Texts<'a>,
    hosts: Texts<'a>,
    methods: Texts<'a>,
    user_agents: Texts<'a>,
    ips: Texts<'a>,
    referrers: Texts<'a>,
    headers: Option<Array<'a, JsonB>>,
    link_ids: default!(Option<Array<'a, i64>>, "NULL"),
    message_ids: default!(Option<Array<'a, i64>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(ord, i32),
        name!(status, i32),
        name!(click_id, Option<i64>),
        name!(class, Option<String>),
    ),
> {
    use crate::errors::{raise, raise_hint, NULL_VALUE};
    const F: &str = "ingest_clicks";
    let Some(tokens) = tokens else {
        raise(NULL_VALUE, format!("{F}: tokens must not be NULL"));
    };
    let (Some(request_ids), Some(ats)) = (request_ids, ats) else {
        raise_hint(
            NULL_VALUE,
            format!("{F}: request_ids and ats must not be NULL"),
            "every spooled click carries its request id and its request time",
        );
    };
    if let Some(i) = request_ids.iter().position(|r| r.is_none()) {
        raise(NULL_VALUE, format!("{F}: request_ids[{}] is NULL", i + 1));
    }
    if let Some(i) = ats.iter().position(|a| a.is_none_or(|a| !a.is_finite())) {
        raise_hint(
            crate::errors::INVALID_PARAMETER,
            format!("{F}: ats[{}] is NULL or not finite", i + 1),
            "pass the time each request arrived",
        );
    }
    for (i, a) in ats.iter().enumerate() {
        not_ahead(F, &format!("ats[{}]", i + 1), a);
    }
    if let Some(ids) = &click_ids {
        if let Some(i) = ids
            .iter()
            .position(|c| c.is_some_and(|c| c < EDGE_CLICK_IDS))
        {
            raise_hint(
                crate::errors::INVALID_PARAMETER,
                format!("{F}: click_ids[{}] is not a leased edge click id", i + 1),
                "assign click ids from blocks leased with smslink.edge_lease_click_ids(), or pass NULL",
            );
        }
    }
    let rows = Batch {
        tokens,
        hosts,
        methods,
        user_agents,
        ips,
        referrers,
        headers,
        ats: Some(ats),
        request_ids: Some(request_ids),
        click_ids,
        link_ids,
        message_ids,
    }
    .log(F, None);
    TableIterator::new(rows.into_iter().enumerate().map(|(i, r)| {
        let ord = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let status = if r.0 == 302 || r.0 == 410 { 201 } else { r.0 };
        (ord, status, r.2, r.3)
    }))
}

/// How far ahead of the database's clock a click's time may be (the proxy's clock drifting), in
/// seconds: the same tolerance as for conversions. A click cannot have happened in the future: a
/// time further ahead is refused, so that a wrong clock cannot put clicks into next month's
/// partition or before their delivery.
pub const CLOCK_SKEW_SECONDS: f64 = smslink_core::conversion::FUTURE_TOLERANCE_SECONDS;

/// Raises 22023 when `at` is more than [`CLOCK_SKEW_SECONDS`] ahead of the transaction's start.
fn not_ahead(function: &str, what: &str, at: Option<TimestampWithTimeZone>) {
    let Some(at) = at else { return };
    let ahead = crate::seconds_ahead_of_now(at);
    if ahead > CLOCK_SKEW_SECONDS {
        crate::errors::raise_hint(
            crate::errors::INVALID_PARAMETER,
            format!(
                "{function}: {what} is {} s ahead of the database's clock",
                ahead.trunc()
            ),
            format!(
                "pass the time the request arrived; up to {CLOCK_SKEW_SECONDS} s ahead is accepted for clock skew (synchronise the proxy's clock)"
            ),
        );
    }
}

/// The first click id of the blocks edge proxies lease (`smslink.edge_lease_click_ids`): 2^48.
pub const EDGE_CLICK_IDS: i64 = 1 << 48;
