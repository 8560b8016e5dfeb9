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

use crate::classify::{
    context_of, context_sql, header_pairs, with_classifier, CONTEXT_COLUMNS, CONTEXT_MESSAGE_JOIN,
    CONTEXT_RANGE_JOIN,
};
use crate::errors::SpiOk;
use crate::keys;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{Inet, JsonB, PgBuiltInOids, PgOid};
use smslink_core::classify::Context;
use smslink_core::click::{device, normalize_host, ClickClass, Request};
use std::cell::OnceCell;

/// The CLICK statement's input when the classifier's context is off: it looks each link up.
const TARGET_JOINED: &str = "WITH input AS (
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
";

/// The CLICK statement's input when the context statement already looked each link up: the
/// looked-up columns come in as arrays, and nothing is joined again.
const TARGET_GIVEN: &str = "WITH target AS MATERIALIZED (
    SELECT i.ord, nextval('smslink.click_id_seq') AS click_id, i.human, i.link_id, i.brand_id,
           i.message_id, i.campaign_id, i.variant_id, i.subscriber_id, i.method, i.ip,
           i.user_agent, i.referrer, i.headers, i.device, i.class, i.reasons, i.expired,
           i.location, i.seconds
      FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
                  $8::bool[], $9::text[], $10::float8[], $11::bool[], $12::text[], $13::inet[],
                  $14::text[], $15::text[], $16::jsonb[], $17::text[], $18::text[], $19::text[])
           WITH ORDINALITY AS i(link_id, brand_id, message_id, campaign_id, variant_id,
                                subscriber_id, expired, location, seconds, human, method, ip,
                                user_agent, referrer, headers, device, class, reasons, ord)
     ORDER BY i.ord -- click ids follow the batch's order (nextval runs after the sort)
";

/// Locks, first-click claims and INSERTs, after either input.
const CLICK_TAIL: &str = "), candidate AS (
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

/// What the classifier needs from the database, per hit whose link exists on the request's host:
/// seconds since delivery, the IP range, and the hits that came before (see classify.rs); and
/// the link's columns the click row needs, so that the CLICK statement does not look them up
/// again. Columns: 1 ord, 2 seconds, 3-7 context (see `context_of`), 8 link, 9 brand,
/// 10 message, 11 campaign, 12 variant, 13 subscriber, 14 expired, 15 location.
fn signals_sql() -> String {
    let template = format!(
        "WITH x AS (
    SELECT i.ord, l.id AS link_id, l.brand_id, l.message_id, m.campaign_id, m.variant_id,
           m.subscriber_id, i.ip, $1::timestamptz AS at, m.delivered_at,
           l.expires_at IS NOT NULL AND l.expires_at <= $1 AS expired,
           CASE WHEN l.expires_at IS NOT NULL AND l.expires_at <= $1
                THEN coalesce(l.fallback_url, c.fallback_url, d.fallback_url)
                ELSE l.destination END AS location
      FROM unnest($2::int8[], $3::text[], $4::inet[]) WITH ORDINALITY AS i(link_id, host, ip, ord)
      JOIN smslink.link l ON l.id = i.link_id
      JOIN smslink.domain d ON d.id = l.domain_id AND d.host = i.host
      JOIN smslink.message m ON m.id = l.message_id
      JOIN smslink.campaign c ON c.id = m.campaign_id
)
SELECT x.ord, extract(epoch FROM x.at - x.delivered_at)::float8 AS seconds, {CONTEXT_COLUMNS},
       x.link_id, x.brand_id, x.message_id, x.campaign_id, x.variant_id, x.subscriber_id,
       x.expired, x.location
  FROM x {CONTEXT_RANGE_JOIN} {CONTEXT_MESSAGE_JOIN}
 ORDER BY x.ord -- the batch's order, which click ids follow"
    );
    context_sql(&template, "$1", "o.clicked_at <= $1", "$5", "$6")
}

/// Separates reason codes inside one array element; no reason code contains it.
const REASON_SEPARATOR: char = '\u{1f}';

/// The most clicks one call may carry.
const MAX_BATCH: usize = 10_000;

struct Plans {
    signals: OwnedPreparedStatement,
    click_joined: OwnedPreparedStatement,
    click_given: OwnedPreparedStatement,
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
    let signals = c
        .prepare(
            &signals_sql(),
            &[
                oid(TIMESTAMPTZOID),
                oid(INT8ARRAYOID),
                oid(TEXTARRAYOID),
                oid(INETARRAYOID),
                oid(FLOAT8OID),
                oid(FLOAT8OID),
            ],
        )
        .spi()
        .keep();
    let text = |n: usize| vec![oid(TEXTARRAYOID); n];
    let mut joined = vec![oid(TIMESTAMPTZOID), oid(INT8ARRAYOID), oid(TEXTARRAYOID)];
    joined.extend([oid(BOOLARRAYOID), oid(TEXTARRAYOID), oid(INETARRAYOID)]);
    joined.extend(text(2));
    joined.push(oid(JSONBARRAYOID));
    joined.extend(text(3));
    let mut given = vec![oid(TIMESTAMPTZOID)];
    given.extend(vec![oid(INT8ARRAYOID); 6]);
    given.extend([oid(BOOLARRAYOID), oid(TEXTARRAYOID), oid(FLOAT8ARRAYOID)]);
    given.extend([oid(BOOLARRAYOID), oid(TEXTARRAYOID), oid(INETARRAYOID)]);
    given.extend(text(2));
    given.push(oid(JSONBARRAYOID));
    given.extend(text(3));
    let keep = |sql: String, args: &[PgOid]| c.prepare_mut(&sql, args).spi().keep();
    Plans {
        signals,
        click_joined: keep(format!("{TARGET_JOINED}{CLICK_TAIL}"), &joined),
        click_given: keep(format!("{TARGET_GIVEN}{CLICK_TAIL}"), &given),
    }
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
    /// What the context statement looked up (empty when the context is off).
    given: Given,
}

/// The link's columns, as the context statement returned them.
#[derive(Default)]
struct Given {
    brand_id: Vec<Option<i64>>,
    message_id: Vec<Option<i64>>,
    campaign_id: Vec<Option<i64>>,
    variant_id: Vec<Option<i64>>,
    subscriber_id: Vec<Option<i64>>,
    expired: Vec<Option<bool>>,
    location: Vec<Option<String>>,
    seconds: Vec<Option<f64>>,
}

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
    let mut found = 0usize;
    crate::classify::refresh_classifier(false);
    Spi::connect_mut(|c| {
        PLANS.with(|cell| {
            let plans = cell.get_or_init(|| prepare(c));
            let t = crate::classify::thresholds();
            let hosts: Vec<Option<String>> = hits
                .iter()
                .map(|(_, h)| h.host.as_deref().map(normalize_host))
                .collect();
            // The classifier's context per hit, in batch order: (position in `hits`, context
            // row) for hits whose link exists on the request's host. With the context switched
            // off, every hit goes straight to the CLICK statement with an empty context.
            let mut contexts: Vec<(usize, Option<pgrx::spi::SpiHeapTupleData<'_>>)> = Vec::new();
            let context = crate::classify::context_enabled();
            if context {
                let link_ids: Vec<i64> = hits.iter().map(|(_, h)| h.link_id).collect();
                let ips: Vec<Option<Inet>> = hits.iter().map(|(_, h)| h.ip.clone()).collect();
                let signals = c
                    .select(
                        &plans.signals,
                        None,
                        &[
                            at.into(),
                            link_ids.into(),
                            hosts.clone().into(),
                            ips.into(),
                            t.burst_ip_window_seconds.into(),
                            t.burst_token_window_seconds.into(),
                        ],
                    )
                    .spi();
                for row in signals {
                    let ord = row.get::<i64>(1).spi().unwrap_or(0);
                    if let Some(k) = usize::try_from(ord - 1).ok().filter(|&k| k < hits.len()) {
                        contexts.push((k, Some(row)));
                    }
                }
            } else {
                contexts.extend((0..hits.len()).map(|k| (k, None)));
            }
            let mut cols = Columns::default();
            let mut slots: Vec<Option<(usize, Hit)>> = hits.into_iter().map(Some).collect();
            with_classifier(|classifier| {
                for (k, row) in contexts {
                    let Some((index, hit)) = slots.get_mut(k).and_then(Option::take) else {
                        continue;
                    };
                    let mut label = None;
                    let ctx = match &row {
                        Some(row) => {
                            let seconds = row.get::<f64>(2).spi();
                            let g = &mut cols.given;
                            g.brand_id.push(row.get::<i64>(9).spi());
                            g.message_id.push(row.get::<i64>(10).spi());
                            g.campaign_id.push(row.get::<i64>(11).spi());
                            g.variant_id.push(row.get::<i64>(12).spi());
                            g.subscriber_id.push(row.get::<i64>(13).spi());
                            g.expired.push(row.get::<bool>(14).spi());
                            g.location.push(row.get::<String>(15).spi());
                            g.seconds.push(seconds);
                            context_of(row, 3, seconds, &mut label)
                        }
                        None => Context::default(),
                    };
                    let method = hit.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
                    let pairs = header_pairs(hit.headers.as_ref());
                    let verdict = classifier.classify(
                        &Request {
                            method: &method,
                            user_agent: hit.user_agent.as_deref(),
                            headers: &pairs,
                            referrer: hit.referrer.as_deref(),
                        },
                        &ctx,
                    );
                    rows[index].3 = Some(verdict.class.as_str().to_string());
                    cols.index.push(index);
                    cols.link_id.push(hit.link_id);
                    cols.host.push(hosts[k].clone());
                    cols.human.push(verdict.class == ClickClass::Human);
                    cols.method.push(method);
                    cols.ip.push(hit.ip);
                    cols.device.push(device(hit.user_agent.as_deref()).as_str());
                    cols.user_agent.push(hit.user_agent);
                    cols.referrer.push(hit.referrer);
                    cols.headers.push(hit.headers);
                    cols.class.push(verdict.class.as_str());
                    cols.reasons
                        .push(verdict.reasons.join(&REASON_SEPARATOR.to_string()));
                }
            });
            if cols.index.is_empty() {
                return;
            }
            let index = std::mem::take(&mut cols.index);
            // Both forms of the statement end with the same columns.
            let mut args: Vec<pgrx::datum::DatumWithOid> = vec![at.into(), cols.link_id.into()];
            if context {
                let g = cols.given;
                args.extend([
                    g.brand_id.into(),
                    g.message_id.into(),
                    g.campaign_id.into(),
                    g.variant_id.into(),
                    g.subscriber_id.into(),
                    g.expired.into(),
                    g.location.into(),
                    g.seconds.into(),
                ]);
            } else {
                args.push(cols.host.into());
            }
            args.extend([
                cols.human.into(),
                cols.method.into(),
                cols.ip.into(),
                cols.user_agent.into(),
                cols.referrer.into(),
                cols.headers.into(),
                cols.device.into(),
                cols.class.into(),
                cols.reasons.into(),
            ]);
            let plan = if context {
                &plans.click_given
            } else {
                &plans.click_joined
            };
            let logged = c.update(plan, None, &args).spi();
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
