//! `smslink.reclassify`: re-runs the current classifier rules over stored clicks.
//!
//! Clicks are read in time order in batches of [`BATCH`]; each batch is one context query (the
//! same signals the hot path uses, computed from the hits stored before each click) and one
//! UPDATE of the clicks whose verdict changed. Messages that gained or lost a human click then
//! get `is_first` and `first_click_at` recomputed under a row lock (in id order, as the hot path
//! locks), so that a click arriving meanwhile is counted exactly once. Anonymised clicks
//! (`smslink.apply_retention`, `smslink.forget_subscriber`) keep their verdict: the evidence it
//! was made from is gone.

use crate::classify::{
    context_of, context_sql, judge, refresh_classifier, thresholds, CONTEXT_COLUMNS,
    CONTEXT_MESSAGE_JOIN, CONTEXT_RANGE_JOIN,
};
use crate::errors::{raise, SpiOk, INVALID_PARAMETER};
use pgrx::prelude::*;
use pgrx::JsonB;
use smslink_core::click::ClickClass;
use std::collections::{BTreeSet, HashMap};

const BATCH: i64 = 5_000;
/// The most times one batch is re-run to reach a fixed point.
const PASSES: usize = 4;
const REASON_SEPARATOR: &str = "\u{1f}";

fn batch_sql() -> String {
    let template = format!(
        "WITH x AS (
    SELECT c.id, c.clicked_at AS at, c.link_id, c.message_id, c.ip, m.delivered_at, c.method,
           c.user_agent, c.referrer, c.headers, c.class, c.reasons
      FROM smslink.click c LEFT JOIN smslink.message m ON m.id = c.message_id
     WHERE c.clicked_at >= $1 AND c.clicked_at < $2 AND (c.clicked_at, c.id) > ($3, $4)
       AND c.anonymised_at IS NULL
     ORDER BY c.clicked_at, c.id
     LIMIT $5
)
SELECT x.id, x.at, extract(epoch FROM x.at - x.delivered_at)::float8, x.method, x.user_agent,
       x.referrer, x.headers, x.class, x.reasons, x.message_id, {CONTEXT_COLUMNS}
  FROM x {CONTEXT_RANGE_JOIN} {CONTEXT_MESSAGE_JOIN}
 ORDER BY x.at, x.id"
    );
    context_sql(
        &template,
        "x.at",
        "(o.clicked_at, o.id) < (x.at, x.id)",
        "$6",
        "$7",
    )
}

const UPDATE: &str = "UPDATE smslink.click c
   SET class = u.class, reasons = coalesce(string_to_array(u.reasons, chr(31)), '{}'),
       seconds_since_delivery = u.seconds
  FROM unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::float8[])
       AS u(id, at, class, reasons, seconds)
 WHERE c.id = u.id AND c.clicked_at = u.at";

const LOCK: &str =
    "SELECT id FROM smslink.message WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

const FIRSTS: &str = "WITH f0 AS (
    SELECT u.id AS message_id, h.id AS click_id, h.clicked_at,
           (SELECT min(r.first_at) FROM smslink.click_rollup r
             WHERE r.message_id = u.id AND r.class = 'human') AS folded_at
      FROM unnest($1::int8[]) AS u(id)
      LEFT JOIN LATERAL (SELECT c.id, c.clicked_at FROM smslink.click c
                          WHERE c.message_id = u.id AND c.class = 'human'
                          ORDER BY c.clicked_at, c.id LIMIT 1) h ON true
), f AS (
    -- A first click folded into the rollup (past retention) stays the first: no row is marked.
    SELECT message_id, CASE WHEN folded_at <= clicked_at THEN NULL ELSE click_id END AS click_id,
           least(folded_at, clicked_at) AS clicked_at
      FROM f0
), m AS (
    UPDATE smslink.message m SET first_click_at = f.clicked_at
      FROM f WHERE m.id = f.message_id AND m.first_click_at IS DISTINCT FROM f.clicked_at
    RETURNING m.id
), k AS (
    UPDATE smslink.click c SET is_first = coalesce(c.id = f.click_id, false)
      FROM f WHERE c.message_id = f.message_id
       AND c.is_first IS DISTINCT FROM coalesce(c.id = f.click_id, false)
    RETURNING c.id
)
SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM k)";

/// One click whose verdict changed.
#[derive(Default)]
struct Changes {
    id: Vec<i64>,
    at: Vec<TimestampWithTimeZone>,
    class: Vec<&'static str>,
    reasons: Vec<String>,
    seconds: Vec<Option<f64>>,
}

pub fn run(
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
) -> TableIterator<'static, (name!(examined, i64), name!(changed, i64))> {
    if from_ts >= to_ts {
        raise(
            INVALID_PARAMETER,
            "reclassify: from_ts must be before to_ts",
        );
    }
    refresh_classifier(true);
    let t = thresholds();
    let sql = batch_sql();
    let mut examined = 0i64;
    let mut changed = 0i64;
    let mut touched: BTreeSet<i64> = BTreeSet::new();
    // Keyset: (clicked_at, id) of the last click examined.
    let mut after: (TimestampWithTimeZone, i64) = (from_ts, i64::MIN);
    loop {
        // A click's context depends on the classes of earlier clicks (previews are not counted
        // in burst:token, and mark after_preview), some of which this batch may change. So a
        // batch is re-run until nothing more changes (at most PASSES times); a second run of
        // reclassify over the same range then changes nothing.
        let start = after;
        let mut original: HashMap<i64, (String, Vec<String>, i64)> = HashMap::new();
        let mut finals: HashMap<i64, (String, Vec<String>)> = HashMap::new();
        let mut rows_in_batch = 0i64;
        for _ in 0..PASSES {
            let mut changes = Changes::default();
            rows_in_batch = 0;
            let changed_in_pass = Spi::connect_mut(|c| {
                let rows = c
                    .select(
                        &sql,
                        None,
                        &[
                            from_ts.into(),
                            to_ts.into(),
                            start.0.into(),
                            start.1.into(),
                            BATCH.into(),
                            t.burst_ip_window_seconds.into(),
                            t.burst_token_window_seconds.into(),
                        ],
                    )
                    .spi();
                for row in rows {
                    rows_in_batch += 1;
                    let id = row.get::<i64>(1).spi().unwrap_or(0);
                    let Some(at) = row.get::<TimestampWithTimeZone>(2).spi() else {
                        continue;
                    };
                    after = (at, id);
                    let seconds = row.get::<f64>(3).spi();
                    let method = row.get::<String>(4).spi().unwrap_or_default();
                    let user_agent = row.get::<String>(5).spi();
                    let referrer = row.get::<String>(6).spi();
                    let headers = row.get::<JsonB>(7).spi();
                    let old_class = row.get::<String>(8).spi().unwrap_or_default();
                    let old_reasons = row.get::<Vec<String>>(9).spi().unwrap_or_default();
                    let message_id = row.get::<i64>(10).spi().unwrap_or(0);
                    let mut label = None;
                    let ctx = context_of(&row, 11, seconds, &mut label);
                    let verdict = judge(
                        &method,
                        user_agent.as_deref(),
                        headers.as_ref(),
                        referrer.as_deref(),
                        &ctx,
                    );
                    original
                        .entry(id)
                        .or_insert_with(|| (old_class.clone(), old_reasons.clone(), message_id));
                    if verdict.class.as_str() == old_class && verdict.reasons == old_reasons {
                        continue;
                    }
                    finals.insert(
                        id,
                        (verdict.class.as_str().to_string(), verdict.reasons.clone()),
                    );
                    changes.id.push(id);
                    changes.at.push(at);
                    changes.class.push(verdict.class.as_str());
                    changes.reasons.push(verdict.reasons.join(REASON_SEPARATOR));
                    changes.seconds.push(seconds);
                }
                let n = changes.id.len();
                if n > 0 {
                    c.update(
                        UPDATE,
                        None,
                        &[
                            changes.id.into(),
                            changes.at.into(),
                            changes.class.into(),
                            changes.reasons.into(),
                            changes.seconds.into(),
                        ],
                    )
                    .spi();
                }
                n
            });
            if changed_in_pass == 0 {
                break;
            }
        }
        examined += rows_in_batch;
        for (id, (class, reasons)) in &finals {
            let Some((old_class, old_reasons, message_id)) = original.get(id) else {
                continue;
            };
            if class == old_class && reasons == old_reasons {
                continue;
            }
            changed += 1;
            let human = ClickClass::Human.as_str();
            if (old_class == human) != (class == human) {
                touched.insert(*message_id);
            }
        }
        if rows_in_batch > 0 {
            pgrx::notice!(
                "reclassify: {examined} clicks examined, {changed} changed (up to {})",
                after.0
            );
        }
        if rows_in_batch < BATCH {
            break;
        }
    }
    let touched: Vec<i64> = touched.into_iter().collect();
    for chunk in touched.chunks(10_000) {
        Spi::connect_mut(|c| {
            c.update(LOCK, None, &[chunk.to_vec().into()]).spi();
            // A new statement, a new snapshot: it sees every click committed before the locks.
            c.update(FIRSTS, None, &[chunk.to_vec().into()]).spi();
        });
    }
    if !touched.is_empty() {
        pgrx::notice!(
            "reclassify: first clicks recomputed for {} messages",
            touched.len()
        );
    }
    TableIterator::once((examined, changed))
}
