//! Experiments in SQL: `smslink.variant_stats`, the statistics of a campaign's variants
//! (`smslink_core::stats`), on the numbers `smslink.variant_metrics` reports.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NULL_VALUE, WRONG_STATE};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use smslink_core::stats::{compare, Arm, Options};

/// What a variant's n and successes are for each metric.
const METRICS: [&str; 3] = ["ctr", "ctcr", "conversion_rate"];

/// Per variant of a campaign: n and successes for the metric (ctr: delivered and unique human
/// clicks; ctcr: unique clicks and converted clickers; conversion_rate: delivered and
/// conversions by the windowed model), the rate with a Wilson interval, lift and relative lift
/// against the control with intervals, the z-test and chi-square p-values, the Bayesian
/// probability of being best, the mSPRT always-valid p-value and confidence sequence, and a
/// decision. docs/experiments.md has every formula and the decision rule.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn variant_stats(
    campaign_id: Option<i64>,
    metric: default!(Option<&str>, "'ctr'"),
    control_variant: default!(Option<&str>, "NULL"),
    confidence: default!(Option<f64>, "0.95"),
    include_classes: default!(Option<Vec<Option<String>>>, "'{human}'"),
    mixing_tau: default!(Option<f64>, "0.02"),
) -> TableIterator<
    'static,
    (
        name!(variant, String),
        name!(n, i64),
        name!(successes, i64),
        name!(rate, f64),
        name!(ci_low, f64),
        name!(ci_high, f64),
        name!(lift, Option<f64>),
        name!(lift_ci_low, Option<f64>),
        name!(lift_ci_high, Option<f64>),
        name!(rel_lift, Option<f64>),
        name!(rel_lift_ci_low, Option<f64>),
        name!(rel_lift_ci_high, Option<f64>),
        name!(p_value, Option<f64>),
        name!(chi2_p_value, Option<f64>),
        name!(prob_best, f64),
        name!(always_valid_p, Option<f64>),
        name!(cs_low, Option<f64>),
        name!(cs_high, Option<f64>),
        name!(decision, String),
    ),
> {
    const F: &str = "variant_stats";
    let Some(campaign_id) = campaign_id else {
        raise(NULL_VALUE, format!("{F}: campaign_id must not be NULL"));
    };
    let metric = metric.unwrap_or("ctr").trim().to_ascii_lowercase();
    if !METRICS.contains(&metric.as_str()) {
        raise_hint(
            INVALID_PARAMETER,
            format!("{F}: unknown metric {metric:?}"),
            "one of ctr, ctcr, conversion_rate",
        );
    }
    let confidence = confidence.unwrap_or(0.95);
    let classes = include_classes.unwrap_or_else(|| vec![Some("human".into())]);
    let rows: Vec<(String, i64, i64)> = Spi::connect(|c| {
        let mut out = Vec::new();
        let sql = "SELECT v.variant, v.delivered, v.unique_clicks, v.clickers_converted,
                          round(v.conversions)::int8
                     FROM smslink.variant_metrics($1, include_classes => $2) v ORDER BY v.variant_id";
        for r in c
            .select(sql, None, &[campaign_id.into(), classes.into()])
            .spi()
        {
            let key = r.get::<String>(1).spi().unwrap_or_default();
            let delivered = r.get::<i64>(2).spi().unwrap_or(0);
            let clicks = r.get::<i64>(3).spi().unwrap_or(0);
            let converted = r.get::<i64>(4).spi().unwrap_or(0);
            let conversions = r.get::<i64>(5).spi().unwrap_or(0);
            out.push(match metric.as_str() {
                "ctr" => (key, delivered, clicks),
                "ctcr" => (key, clicks, converted),
                _ => (key, delivered, conversions.min(delivered)),
            });
        }
        out
    });
    if rows.len() < 2 {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "{F}: campaign {campaign_id} has {} variant(s); comparing needs at least 2",
                rows.len()
            ),
            "add variants with smslink.create_campaign(brand, name, '{A,B}')",
        );
    }
    let control = match control_variant {
        None => 0,
        Some(k) => rows.iter().position(|r| r.0 == k).unwrap_or_else(|| {
            raise_hint(
                INVALID_PARAMETER,
                format!("{F}: campaign {campaign_id} has no variant {k:?}"),
                format!(
                    "the variants are {}",
                    rows.iter()
                        .map(|r| r.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }),
    };
    let arms: Vec<Arm> = rows
        .iter()
        .map(|r| Arm {
            n: u64::try_from(r.1).unwrap_or(0),
            successes: u64::try_from(r.2).unwrap_or(0),
        })
        .collect();
    let options = Options {
        confidence,
        tau: mixing_tau.unwrap_or(0.02),
        ..Options::default()
    };
    let stats = compare(&arms, control, &options)
        .unwrap_or_else(|e| raise(INVALID_PARAMETER, format!("{F}: {e}")));
    TableIterator::new(rows.into_iter().zip(stats).map(|(r, s)| {
        (
            r.0,
            r.1,
            r.2,
            s.rate,
            s.ci_low,
            s.ci_high,
            s.lift,
            s.lift_ci_low,
            s.lift_ci_high,
            s.rel_lift,
            s.rel_lift_ci_low,
            s.rel_lift_ci_high,
            s.p_value,
            s.chi2_p_value,
            s.prob_best,
            s.always_valid_p,
            s.cs_low,
            s.cs_high,
            s.decision.to_string(),
        )
    }))
}

/// One campaign's current allocation, cached per backend.
struct Allocation {
    epoch: i32,
    variants: Vec<String>,
    bounds: Vec<u32>,
    /// When this backend last asked the table whether a newer epoch exists or one is due.
    checked: std::time::Instant,
}

thread_local! {
    static ALLOCATIONS: std::cell::RefCell<std::collections::HashMap<i64, Allocation>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// How long a backend trusts its cached epoch before looking for a newer one.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Trials and successes per variant (in `variants` order) for the campaign's bandit goal:
/// delivered messages, and unique human clicks on non-opt-out links (or converted messages by the
/// windowed model, 24 hours).
fn bandit_counts(
    c: &pgrx::spi::SpiClient<'_>,
    campaign_id: i64,
    goal: &str,
) -> Vec<(String, i64, i64)> {
    let successes = if goal == "conversions" {
        "SELECT a.variant_id, count(DISTINCT a.message_id) AS s
           FROM smslink.attribute('windowed',
                  coalesce((SELECT min(sent_at) FROM smslink.message WHERE campaign_id = $1), now()),
                  now() + interval '1 second', '24 hours') a
          WHERE a.campaign_id = $1 AND a.click_id IS NOT NULL GROUP BY 1"
    } else {
        "SELECT k.variant_id, count(DISTINCT k.message_id) AS s FROM smslink.click_fact k
          WHERE k.campaign_id = $1 AND k.class = 'human' AND k.link_kind <> 'optout' GROUP BY 1"
    };
    let sql = format!(
        "WITH s AS ({successes}),
              n AS (SELECT m.variant_id, count(*) AS n FROM smslink.message m
                     WHERE m.campaign_id = $1 AND m.status = 'delivered' GROUP BY 1)
         SELECT v.key, coalesce(n.n, 0), coalesce(s.s, 0)
           FROM smslink.variant v LEFT JOIN n ON n.variant_id = v.id LEFT JOIN s ON s.variant_id = v.id
          WHERE v.campaign_id = $1 ORDER BY v.id"
    );
    let mut out = Vec::new();
    for r in c.select(&sql, None, &[campaign_id.into()]).spi() {
        out.push((
            r.get::<String>(1).spi().unwrap_or_default(),
            r.get::<i64>(2).spi().unwrap_or(0),
            r.get::<i64>(3).spi().unwrap_or(0),
        ));
    }
    out
}

/// Freezes a new epoch for the campaign (weights from its mode) and returns it. Only one session
/// recomputes at a time (a transaction-level advisory lock taken with try: the others keep
/// using the current epoch, never waiting); `None` when another session holds the lock.
fn freeze_epoch(
    c: &mut pgrx::spi::SpiClient<'_>,
    campaign_id: i64,
    force: bool,
    at: Option<TimestampWithTimeZone>,
) -> Option<()> {
    use smslink_core::bandit::{bucket_bounds, thompson_weights};
    let got = c
        .select(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('smslink.allocation', $1))",
            None,
            &[campaign_id.into()],
        )
        .spi()
        .first()
        .get_one::<bool>()
        .spi()
        .unwrap_or(false);
    if !got {
        return None;
    }
    let row = c
        .select(
            "SELECT c.allocation, c.allocation_weights, c.bandit_goal, c.bandit_floor,
                    (SELECT max(l.epoch) FROM smslink.allocation_log l WHERE l.campaign_id = c.id),
                    (SELECT l.started_at + c.bandit_epoch <= coalesce($2, now()) FROM smslink.allocation_log l
                      WHERE l.campaign_id = c.id ORDER BY l.epoch DESC LIMIT 1),
                    (SELECT l.successes FROM smslink.allocation_log l
                      WHERE l.campaign_id = c.id ORDER BY l.epoch DESC LIMIT 1),
                    c.bandit_epoch_outcomes
               FROM smslink.campaign c WHERE c.id = $1",
            None,
            &[campaign_id.into(), at.into()],
        )
        .spi();
    if row.is_empty() {
        raise(
            pgrx::PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("unknown campaign {campaign_id}"),
        );
    }
    let row = row.first();
    let mode = row.get::<String>(1).spi().unwrap_or_else(|| "fixed".into());
    let fixed = row.get::<pgrx::JsonB>(2).spi();
    let goal = row
        .get::<String>(3)
        .spi()
        .unwrap_or_else(|| "clicks".into());
    let floor = row.get::<f64>(4).spi().unwrap_or(0.05);
    let last = row.get::<i32>(5).spi();
    let time_due = row.get::<bool>(6).spi().unwrap_or(true);
    let last_successes: i64 = row
        .get::<Vec<Option<i64>>>(7)
        .spi()
        .map(|v| v.into_iter().flatten().sum())
        .unwrap_or(0);
    let epoch_outcomes = i64::from(row.get::<i32>(8).spi().unwrap_or(500));
    let counts = bandit_counts(c, campaign_id, &goal);
    if counts.is_empty() {
        raise(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("campaign {campaign_id} has no variants"),
        );
    }
    let outcomes: i64 = counts.iter().map(|x| x.2).sum();
    let due = force
        || last.is_none()
        || (mode == "bandit" && (time_due || outcomes - last_successes >= epoch_outcomes));
    if !due {
        return Some(());
    }
    let weights: Vec<f64> = if mode == "bandit" {
        let arms: Vec<Arm> = counts
            .iter()
            .map(|x| Arm {
                n: u64::try_from(x.1.max(x.2)).unwrap_or(0),
                successes: u64::try_from(x.2).unwrap_or(0),
            })
            .collect();
        thompson_weights(&arms, floor).unwrap_or_else(|e| raise(INVALID_PARAMETER, e))
    } else {
        counts
            .iter()
            .map(|x| {
                fixed
                    .as_ref()
                    .and_then(|j| j.0.get(&x.0))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(if fixed.is_some() { 0.0 } else { 1.0 })
            })
            .collect()
    };
    let bounds = bucket_bounds(&weights).unwrap_or_else(|e| raise(INVALID_PARAMETER, e));
    let total: f64 = weights.iter().sum();
    let keys: Vec<String> = counts.iter().map(|x| x.0.clone()).collect();
    let shares: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let bounds_i: Vec<i32> = bounds.iter().map(|b| *b as i32).collect();
    let trials: Vec<i64> = counts.iter().map(|x| x.1).collect();
    let successes: Vec<i64> = counts.iter().map(|x| x.2).collect();
    c.update(
        "INSERT INTO smslink.allocation_log (campaign_id, epoch, started_at, mode, variants, weights,
                bounds, trials, successes)
         VALUES ($1, coalesce($2, 0) + 1, coalesce($9, now()), $3, $4, $5, $6, $7, $8)",
        None,
        &[
            campaign_id.into(),
            last.into(),
            mode.as_str().into(),
            keys.into(),
            shares.into(),
            bounds_i.into(),
            trials.into(),
            successes.into(),
            at.into(),
        ],
    )
    .spi();
    Some(())
}

/// The latest frozen epoch of the campaign, read from the log.
fn load_allocation(c: &pgrx::spi::SpiClient<'_>, campaign_id: i64) -> Option<Allocation> {
    let rows = c
        .select(
            "SELECT epoch, variants, bounds FROM smslink.allocation_log
              WHERE campaign_id = $1 ORDER BY epoch DESC LIMIT 1",
            None,
            &[campaign_id.into()],
        )
        .spi();
    if rows.is_empty() {
        return None;
    }
    let r = rows.first();
    Some(Allocation {
        epoch: r.get::<i32>(1).spi().unwrap_or(1),
        variants: r
            .get::<Vec<Option<String>>>(2)
            .spi()
            .unwrap_or_default()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        bounds: r
            .get::<Vec<Option<i32>>>(3)
            .spi()
            .unwrap_or_default()
            .into_iter()
            .map(|b| u32::try_from(b.unwrap_or(0)).unwrap_or(0))
            .collect(),
        checked: std::time::Instant::now(),
    })
}

/// The variant to send to this subscriber: the campaign's current epoch (fixed shares, or bandit
/// weights recomputed every epoch) and the subscriber's stable bucket among 10,000. The same
/// (campaign, subscriber, epoch) always gets the same variant. `at` is the send time: an epoch
/// falls due `bandit_epoch` after the current one started, by that clock. Epochs are re-read at most once a
/// second per session; when one is due, the one session that takes the campaign's advisory lock
/// recomputes it while the others keep using the current one.
#[pg_extern(volatile)]
fn choose_variant(
    campaign_id: Option<i64>,
    subscriber_key: Option<&str>,
    at: default!(Option<TimestampWithTimeZone>, "now()"),
) -> String {
    let (Some(campaign_id), Some(key)) = (campaign_id, subscriber_key) else {
        raise(
            NULL_VALUE,
            "choose_variant: campaign_id and subscriber_key must not be NULL",
        );
    };
    refuse_opted_out(campaign_id, key, at);
    let cached = ALLOCATIONS.with(|a| {
        a.borrow().get(&campaign_id).and_then(|x| {
            (x.checked.elapsed() < RECHECK).then(|| (x.epoch, x.variants.clone(), x.bounds.clone()))
        })
    });
    let (epoch, variants, bounds) = match cached {
        Some(x) => x,
        None => {
            let alloc = Spi::connect_mut(|c| {
                freeze_epoch(c, campaign_id, false, at);
                load_allocation(c, campaign_id)
            })
            .unwrap_or_else(|| {
                raise(
                    pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("choose_variant: campaign {campaign_id} has no allocation yet (another session is creating it); retry"),
                )
            });
            let out = (alloc.epoch, alloc.variants.clone(), alloc.bounds.clone());
            ALLOCATIONS.with(|a| a.borrow_mut().insert(campaign_id, alloc));
            out
        }
    };
    let b = smslink_core::bandit::bucket(campaign_id, i64::from(epoch), key);
    let i = smslink_core::bandit::variant_of(&bounds, b);
    variants.get(i).cloned().unwrap_or_default()
}

/// Opted-out subscribers are not targeted: a marketing campaign allocates no variant to a
/// subscriber who had opted out by the send time (their history stays in every report).
fn refuse_opted_out(campaign_id: i64, key: &str, at: Option<TimestampWithTimeZone>) {
    let opted_out: Option<String> = Spi::get_one_with_args(
        // (a scalar subquery: always one row, NULL when the subscriber may be targeted)
        "SELECT (SELECT s.opted_out_at::text FROM smslink.campaign c
                   JOIN smslink.subscriber s ON s.brand_id = c.brand_id AND s.external_key = $2
                  WHERE c.id = $1 AND c.purpose = 'marketing'
                    AND s.opted_out_at <= coalesce($3, now()))",
        &[campaign_id.into(), key.into(), at.into()],
    )
    .spi();
    if let Some(when) = opted_out {
        raise_hint(
            WRONG_STATE,
            format!("choose_variant: subscriber \"{key}\" opted out at {when}; marketing campaigns do not target them"),
            "opted-out subscribers receive no marketing messages (smslink.subscriber.opted_out_at)",
        );
    }
}

/// Switches a campaign between `fixed` shares (`weights` maps variant keys to shares; NULL is
/// an equal split) and `bandit`, and freezes a new epoch at once.
#[pg_extern(volatile)]
fn set_allocation(
    campaign_id: Option<i64>,
    mode: Option<&str>,
    weights: default!(Option<pgrx::JsonB>, "NULL"),
) -> i32 {
    const F: &str = "set_allocation";
    let (Some(campaign_id), Some(mode)) = (campaign_id, mode) else {
        raise(
            NULL_VALUE,
            format!("{F}: campaign_id and mode must not be NULL"),
        );
    };
    if !matches!(mode, "fixed" | "bandit") {
        raise_hint(
            INVALID_PARAMETER,
            format!("{F}: mode {mode:?} is not fixed or bandit"),
            "fixed: shares you give (or equal); bandit: Thompson sampling with a 5% floor",
        );
    }
    if mode == "bandit" && weights.is_some() {
        raise(
            INVALID_PARAMETER,
            format!("{F}: weights apply to fixed allocation only"),
        );
    }
    Spi::connect_mut(|c| {
        let keys: Vec<String> = c
            .select(
                "SELECT v.key FROM smslink.variant v WHERE v.campaign_id = smslink.require_campaign($1) ORDER BY v.id",
                None,
                &[campaign_id.into()],
            )
            .spi()
            .map(|r| r.get::<String>(1).spi().unwrap_or_default())
            .collect();
        if let Some(w) = &weights {
            let Some(map) = w.0.as_object() else {
                raise(
                    INVALID_PARAMETER,
                    format!("{F}: weights must be a JSON object of variant keys to shares"),
                );
            };
            for (k, v) in map {
                if !keys.contains(k) {
                    raise(
                        INVALID_PARAMETER,
                        format!("{F}: campaign {campaign_id} has no variant {k:?}"),
                    );
                }
                if !v.as_f64().is_some_and(|x| x >= 0.0 && x.is_finite()) {
                    raise(
                        INVALID_PARAMETER,
                        format!("{F}: the share of {k:?} must be a non-negative number"),
                    );
                }
            }
            if map
                .values()
                .filter_map(serde_json::Value::as_f64)
                .sum::<f64>()
                <= 0.0
            {
                raise(
                    INVALID_PARAMETER,
                    format!("{F}: the shares must add up to more than 0"),
                );
            }
        }
        c.update(
            "UPDATE smslink.campaign SET allocation = $2, allocation_weights = $3 WHERE id = $1",
            None,
            &[campaign_id.into(), mode.into(), weights.into()],
        )
        .spi();
        // Wait for a concurrent recompute rather than skipping: the switch must take effect.
        c.update(
            "SELECT pg_advisory_xact_lock(hashtextextended('smslink.allocation', $1))",
            None,
            &[campaign_id.into()],
        )
        .spi();
        freeze_epoch(c, campaign_id, true, None);
    });
    ALLOCATIONS.with(|a| a.borrow_mut().remove(&campaign_id));
    Spi::get_one_with_args::<i32>(
        "SELECT max(epoch) FROM smslink.allocation_log WHERE campaign_id = $1",
        &[campaign_id.into()],
    )
    .spi()
    .unwrap_or(1)
}
