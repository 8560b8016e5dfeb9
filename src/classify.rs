//! The click classifier in SQL: settings, users' rules, `smslink.classify` and
//! `smslink.reclassify`. The classifier itself is `smslink_core::classify`; this module supplies
//! its rules (built in + `smslink.classifier_rule`), thresholds (GUCs) and database context.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, Inet, JsonB};
use smslink_core::classify::{parse_rules, Classifier, Context, Rule, Thresholds, BUILT_IN_RULES};
use smslink_core::click::{ClickClass, Request, Verdict};
use std::cell::RefCell;
use std::time::{Duration, Instant};

static MIN_HUMAN_SECONDS: GucSetting<f64> = GucSetting::<f64>::new(3.0);
static BEFORE_DELIVERY_TOLERANCE: GucSetting<f64> = GucSetting::<f64>::new(2.0);
static BURST_IP_MESSAGES: GucSetting<i32> = GucSetting::<i32>::new(3);
static BURST_IP_WINDOW: GucSetting<f64> = GucSetting::<f64>::new(10.0);
static BURST_TOKEN_IPS: GucSetting<i32> = GucSetting::<i32>::new(1);
static BURST_TOKEN_WINDOW: GucSetting<f64> = GucSetting::<f64>::new(60.0);
static CONTEXT: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Whether the hot path reads the classifier's database context (`smslink.classifier_context`).
pub fn context_enabled() -> bool {
    CONTEXT.get()
}

/// Registers the classifier's settings (called from `_PG_init`).
pub fn init_gucs() {
    let day = 86_400.0;
    GucRegistry::define_bool_guc(
        c"smslink.classifier_context",
        c"Whether track_click reads timing, IP-range and burst signals from the database.",
        c"Off: only request signals (User-Agent, method, headers, referrer) classify clicks; \
          reclassify can add the rest later. For measuring the classifier's cost.",
        &CONTEXT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"smslink.classifier_min_human_seconds",
        c"A click sooner than this many seconds after delivery is timing:too_fast.",
        c"See docs/classification.md for why the default is 3 seconds.",
        &MIN_HUMAN_SECONDS,
        0.0,
        day,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"smslink.classifier_before_delivery_tolerance_seconds",
        c"A click more than this many seconds before the delivery receipt is timing:before_delivery.",
        c"Allows for clock skew between the carrier's receipt and the database.",
        &BEFORE_DELIVERY_TOLERANCE,
        0.0,
        day,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"smslink.classifier_burst_ip_messages",
        c"burst:ip: an address that hit at least this many other messages within the window is a scanner (0 disables).",
        c"One fewer is a weak signal.",
        &BURST_IP_MESSAGES,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"smslink.classifier_burst_ip_window_seconds",
        c"The window of the burst:ip signal, in seconds before the click.",
        c"",
        &BURST_IP_WINDOW,
        0.0,
        day,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"smslink.classifier_burst_token_ips",
        c"burst:token: this many other addresses on the same link, near delivery, is a weak signal (0 disables).",
        c"",
        &BURST_TOKEN_IPS,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"smslink.classifier_burst_token_window_seconds",
        c"The burst:token signal looks at hits within this many seconds of delivery.",
        c"",
        &BURST_TOKEN_WINDOW,
        0.0,
        day,
        GucContext::Userset,
        GucFlags::default(),
    );
}

pub fn thresholds() -> Thresholds {
    Thresholds {
        min_human_seconds: MIN_HUMAN_SECONDS.get(),
        before_delivery_tolerance_seconds: BEFORE_DELIVERY_TOLERANCE.get(),
        burst_ip_messages: u32::try_from(BURST_IP_MESSAGES.get()).unwrap_or(0),
        burst_ip_window_seconds: BURST_IP_WINDOW.get(),
        burst_token_ips: u32::try_from(BURST_TOKEN_IPS.get()).unwrap_or(0),
        burst_token_window_seconds: BURST_TOKEN_WINDOW.get(),
    }
}

/// How often a session re-reads `smslink.classifier_rule`.
const RULES_TTL: Duration = Duration::from_secs(2);

struct Cached {
    classifier: Classifier,
    user_rules: Vec<Rule>,
    checked: Instant,
}

thread_local! {
    static CLASSIFIER: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

fn user_rules() -> Vec<Rule> {
    Spi::connect(|c| {
        let mut out = Vec::new();
        let rows = c.select(
            "SELECT kind, class, reason, pattern FROM smslink.classifier_rule WHERE enabled ORDER BY id",
            None,
            &[],
        )?;
        for r in rows {
            let (kind, class, reason, pattern) = (
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<String>(4)?.unwrap_or_default(),
            );
            // Rows were checked on the way in; a rule that no longer parses is skipped.
            if let Ok(rule) = Rule::new(&kind, &class, &reason, &pattern) {
                out.push(rule);
            }
        }
        Ok::<_, pgrx::spi::SpiError>(out)
    })
    .spi()
}

/// Makes this session's classifier current: users' rules first, then the built-in ones. Rules
/// are recompiled only when `smslink.classifier_rule` changed; the table is re-read at most every
/// 2 seconds, or at once when `fresh`. Call it outside any other SPI connection.
pub fn refresh_classifier(fresh: bool) {
    let stale = CLASSIFIER.with(|cell| {
        fresh
            || cell
                .borrow()
                .as_ref()
                .is_none_or(|c| c.checked.elapsed() >= RULES_TTL)
    });
    if !stale {
        return;
    }
    let users = user_rules();
    CLASSIFIER.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some(c) if c.user_rules == users => c.checked = Instant::now(),
            _ => {
                let mut all = users.clone();
                all.extend(parse_rules(BUILT_IN_RULES).unwrap_or_else(|e| {
                    raise(INVALID_PARAMETER, format!("built-in classifier rules: {e}"))
                }));
                let classifier = Classifier::new(&all, Thresholds::default())
                    .unwrap_or_else(|e| raise(INVALID_PARAMETER, e));
                *slot = Some(Cached {
                    classifier,
                    user_rules: users,
                    checked: Instant::now(),
                });
            }
        }
    });
}

/// Runs `f` with this session's classifier (see [`refresh_classifier`]) and current settings.
fn with_classifier<R>(f: impl FnOnce(&Classifier) -> R) -> R {
    CLASSIFIER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cached = slot.get_or_insert_with(|| Cached {
            classifier: Classifier::built_in(),
            user_rules: Vec::new(),
            checked: Instant::now() - RULES_TTL,
        });
        cached.classifier.thresholds = thresholds();
        f(&cached.classifier)
    })
}

/// Header pairs of a JSON object of header name → value (non-string values are ignored).
fn header_pairs(headers: Option<&JsonB>) -> Vec<(String, String)> {
    match headers.map(|j| &j.0) {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks a classifier rule as `smslink.classifier_rule`'s CHECK constraint: true, or an error
/// (22023) that says what to fix.
#[pg_extern(immutable, parallel_safe)]
fn classifier_rule_check(kind: &str, class: &str, reason: &str, pattern: &str) -> bool {
    if let Err(e) = Rule::new(kind, class, reason, pattern) {
        raise_hint(
            INVALID_PARAMETER,
            format!("classifier rule: {e}"),
            "see docs/classification.md for the rule format",
        );
    }
    true
}

/// The most specific loaded IP range holding `ip`: (label, class), by the hot path's own join.
fn ip_range(ip: &Inet) -> Option<(String, String)> {
    let sql =
        format!("SELECT r.label, r.class FROM (SELECT $1::inet AS ip) x {CONTEXT_RANGE_JOIN}");
    Spi::connect(|c| {
        let row = c.select(&sql, None, &[ip.clone().into()])?.first();
        Ok::<_, pgrx::spi::SpiError>(row.get::<String>(1)?.zip(row.get::<String>(2)?))
    })
    .spi()
}

/// Classifies one request with the current rules, settings and IP ranges, as `track_click`
/// would with no earlier hits: for testing rules. Burst signals need history and are not used.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn classify(
    user_agent: Option<&str>,
    method: default!(Option<&str>, "'GET'"),
    headers: default!(Option<JsonB>, "'{}'"),
    ip: default!(Option<Inet>, "NULL"),
    seconds_since_delivery: default!(Option<f64>, "NULL"),
    referrer: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(class, String), name!(reasons, Vec<String>))> {
    let method = method.unwrap_or("GET").to_ascii_uppercase();
    let range = ip.as_ref().and_then(ip_range);
    let (label, class) = range
        .as_ref()
        .map(|(l, k)| (l.as_str(), k.as_str()))
        .unzip();
    let ctx = context(seconds_since_delivery, label, class, None, None, None);
    // Always the rules as they are now: this function is how users test a rule they just added.
    refresh_classifier(true);
    let verdict = judge(&method, user_agent, headers.as_ref(), referrer, &ctx);
    TableIterator::once((verdict.class.as_str().to_string(), verdict.reasons))
}

/// Context queries shared by the hot path and `reclassify`, as SQL fragments over a row source
/// `x` that provides `ip`, `link_id`, `message_id`, `at` (click time) and `delivered_at`; BEFORE
/// stands for the filter on `o` that selects hits that came earlier. Each subquery stops after
/// 32 rows (no ORDER BY, so nothing is sorted first), so a flood of hits from one address or on
/// one message cannot make classification slower: the thresholds are far below 32, and which 32
/// of the window's rows are read hardly changes whether a threshold is reached.
pub const CONTEXT_COLUMNS: &str = "
       r.label AS range_label, r.class AS range_class,
       (SELECT count(DISTINCT s.message_id) FROM (
            SELECT o.message_id FROM smslink.click o
             WHERE x.ip IS NOT NULL AND o.ip = x.ip
               AND o.clicked_at >= $AT - make_interval(secs => $W1) AND BEFORE
             LIMIT 32) s
         WHERE s.message_id <> x.message_id)::int4 AS ip_messages,
       h.ips AS message_ips, coalesce(h.previewed, false) AS previewed";

/// The message's earlier hits up to `burst_token_window_seconds` after delivery (when preview
/// fetchers and scanners come), read once for both burst:token (other addresses whose hits are
/// not already explained as a preview, bot or scanner) and after_preview. Later hits are not read at all, nor hits more than a day before
/// the click: burst:token only matters for a click within the window of delivery, and
/// after_preview is informational.
pub const CONTEXT_MESSAGE_JOIN: &str = "
  LEFT JOIN LATERAL (
    SELECT count(DISTINCT s.ip) FILTER (WHERE s.class IN ('human', 'suspect')
                                          AND s.ip IS DISTINCT FROM x.ip)::int4 AS ips,
           bool_or(s.class = 'preview') AS previewed
      FROM (SELECT o.ip, o.class, o.clicked_at FROM smslink.click o
             WHERE o.message_id = x.message_id
               AND o.clicked_at <= x.delivered_at + make_interval(secs => $W2)
               AND o.clicked_at >= $AT - make_interval(secs => $W2) - interval '1 day' AND BEFORE
             LIMIT 32) s) h ON true";

pub const CONTEXT_RANGE_JOIN: &str = "
  LEFT JOIN LATERAL (SELECT g.label, g.class FROM smslink.ip_range g WHERE g.range >>= x.ip
                      ORDER BY masklen(g.range) DESC, g.id LIMIT 1) r ON true";

/// The classifier's context from the columns a context query returns (CONTEXT_COLUMNS).
pub fn context<'a>(
    seconds_since_delivery: Option<f64>,
    range_label: Option<&'a str>,
    range_class: Option<&str>,
    ip_messages: Option<i32>,
    message_ips: Option<i32>,
    previewed: Option<bool>,
) -> Context<'a> {
    let count = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    Context {
        seconds_since_delivery,
        ip_range: range_label.zip(range_class.and_then(ClickClass::parse)),
        ip_recent_messages: count(ip_messages),
        message_recent_ips: count(message_ips),
        previewed: previewed.unwrap_or(false),
    }
}

/// The context of one row of a context query, from column `first` on (range label, range
/// class, ip_messages, message_ips, previewed). `label` holds the label the context borrows.
pub fn context_of<'a>(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    first: usize,
    seconds: Option<f64>,
    label: &'a mut Option<String>,
) -> Context<'a> {
    *label = row.get::<String>(first).spi();
    let class = row.get::<String>(first + 1).spi();
    context(
        seconds,
        label.as_deref(),
        class.as_deref(),
        row.get::<i32>(first + 2).spi(),
        row.get::<i32>(first + 3).spi(),
        row.get::<bool>(first + 4).spi(),
    )
}

/// One verdict with this session's classifier (see [`refresh_classifier`]): a request as sent or
/// as stored (headers as a JSON object), and its context.
pub fn judge(
    method: &str,
    user_agent: Option<&str>,
    headers: Option<&JsonB>,
    referrer: Option<&str>,
    ctx: &Context<'_>,
) -> Verdict {
    let pairs = header_pairs(headers);
    with_classifier(|c| {
        c.classify(
            &Request {
                method,
                user_agent,
                headers: &pairs,
                referrer,
            },
            ctx,
        )
    })
}

/// Fills the window parameters and the earlier-hit filter into a context query.
/// (Templates use CONTEXT_COLUMNS after `FROM x` joined with CONTEXT_RANGE_JOIN and
/// CONTEXT_MESSAGE_JOIN.)
/// `at` is the click time: a parameter on the hot path, so that the time bounds let Postgres
/// prune click partitions when the statement starts instead of opening every one of them.
pub fn context_sql(template: &str, at: &str, before: &str, w1: &str, w2: &str) -> String {
    template
        .replace("$AT", at)
        .replace("BEFORE", before)
        .replace("$W1", w1)
        .replace("$W2", w2)
}

/// Re-runs the current rules over stored clicks with `clicked_at` in `[from_ts, to_ts)`, in
/// batches of 5,000 in time order, and keeps `is_first` and `message.first_click_at` exact.
/// Returns how many clicks were examined and how many changed class or reasons.
#[pg_extern(volatile)]
fn reclassify(
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
) -> TableIterator<'static, (name!(examined, i64), name!(changed, i64))> {
    crate::reclassify::run(from_ts, to_ts)
}
