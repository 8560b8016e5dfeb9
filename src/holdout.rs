//! Holdouts and incrementality in SQL (`smslink_core::holdout`): the fraction CHECK, who is
//! held out (`in_holdout`, `holdout_group`, `in_global_holdout`), and the incrementality of a
//! campaign against its holdout (`incrementality`) or of all marketing against the brand's global
//! control group (`global_incrementality`).

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NOT_FOUND, NULL_VALUE};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use smslink_core::holdout::{
    check_fraction, compare, held_out, Group, Options, Scope, DEFAULT_TARGET_RELATIVE_LIFT,
};
use smslink_core::stats::{DEFAULT_CONFIDENCE, DEFAULT_POWER};

/// CHECK for `campaign.holdout_fraction` and `brand.global_holdout_fraction`: raises 22023 saying
/// what to fix.
#[pg_extern(immutable, parallel_safe)]
fn holdout_fraction_check(fraction: Option<f64>) -> bool {
    if let Some(f) = fraction {
        if let Err(e) = check_fraction(f) {
            raise_hint(
                INVALID_PARAMETER,
                e,
                "a holdout fraction is a share of subscribers: 0 for none, 0.05 for 5%",
            );
        }
    }
    true
}

/// What decides a subscriber's holdout in one campaign.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldoutRule {
    pub campaign_id: i64,
    pub brand_id: i64,
    pub fraction: f64,
    pub global_fraction: f64,
    pub marketing: bool,
}

impl HoldoutRule {
    /// The group that holds the subscriber out, if any. The global control group comes first:
    /// its members are held out of every marketing campaign. Transactional messages are never
    /// held out.
    pub fn group(&self, subscriber_key: &str) -> Option<&'static str> {
        if !self.marketing {
            None
        } else if held_out(
            Scope::Global(self.brand_id),
            subscriber_key,
            self.global_fraction,
        ) {
            Some("global")
        } else if held_out(
            Scope::Campaign(self.campaign_id),
            subscriber_key,
            self.fraction,
        ) {
            Some("campaign")
        } else {
            None
        }
    }

    pub fn load(c: &pgrx::spi::SpiClient<'_>, campaign_id: i64) -> HoldoutRule {
        let rows = c
            .select(
                "SELECT c.brand_id, c.holdout_fraction, b.global_holdout_fraction, c.purpose = 'marketing'
                   FROM smslink.campaign c JOIN smslink.brand b ON b.id = c.brand_id WHERE c.id = $1",
                Some(1),
                &[campaign_id.into()],
            )
            .spi();
        if rows.is_empty() {
            raise(NOT_FOUND, format!("unknown campaign {campaign_id}"));
        }
        let r = rows.first();
        HoldoutRule {
            campaign_id,
            brand_id: r.get::<i64>(1).spi().unwrap_or_default(),
            fraction: r.get::<f64>(2).spi().unwrap_or(0.0),
            global_fraction: r.get::<f64>(3).spi().unwrap_or(0.0),
            marketing: r.get::<bool>(4).spi().unwrap_or(true),
        }
    }
}

fn rule(f: &str, campaign_id: Option<i64>) -> HoldoutRule {
    let Some(campaign_id) = campaign_id else {
        raise(NULL_VALUE, format!("{f}: campaign_id must not be NULL"));
    };
    Spi::connect(|c| HoldoutRule::load(c, campaign_id))
}

/// Whether the subscriber is held out of the campaign: in the brand's global control group or in
/// the campaign's holdout (see `holdout_group`). NULL for a NULL key.
#[pg_extern(stable, parallel_safe)]
fn in_holdout(campaign_id: Option<i64>, subscriber_key: Option<&str>) -> Option<bool> {
    let r = rule("in_holdout", campaign_id);
    subscriber_key.map(|k| r.group(k).is_some())
}

/// `'global'` when the subscriber is in the brand's global control group, `'campaign'` when in the
/// campaign's holdout, NULL when they receive the campaign (or the key is NULL).
#[pg_extern(stable, parallel_safe)]
fn holdout_group(campaign_id: Option<i64>, subscriber_key: Option<&str>) -> Option<&'static str> {
    let r = rule("holdout_group", campaign_id);
    subscriber_key.and_then(|k| r.group(k))
}

/// Whether the subscriber is in the brand's global control group.
#[pg_extern(stable, parallel_safe)]
fn in_global_holdout(brand_id: Option<i64>, subscriber_key: Option<&str>) -> Option<bool> {
    let Some(brand_id) = brand_id else {
        raise(NULL_VALUE, "in_global_holdout: brand_id must not be NULL");
    };
    let fraction = Spi::get_one_with_args::<f64>(
        "SELECT global_holdout_fraction FROM smslink.brand WHERE id = $1",
        &[brand_id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| raise(NOT_FOUND, format!("unknown brand {brand_id}")));
    subscriber_key.map(|k| held_out(Scope::Global(brand_id), k, fraction))
}

type Row = (
    name!(treatment_n, i64),
    name!(control_n, i64),
    name!(treatment_converted, i64),
    name!(control_converted, i64),
    name!(treatment_rate, f64),
    name!(control_rate, f64),
    name!(lift, Option<f64>),
    name!(lift_ci_low, Option<f64>),
    name!(lift_ci_high, Option<f64>),
    name!(rel_lift, Option<f64>),
    name!(rel_lift_ci_low, Option<f64>),
    name!(rel_lift_ci_high, Option<f64>),
    name!(p_value, Option<f64>),
    name!(incremental_conversions, Option<f64>),
    name!(incremental_ci_low, Option<f64>),
    name!(incremental_ci_high, Option<f64>),
    name!(treatment_revenue_per_recipient, f64),
    name!(control_revenue_per_recipient, f64),
    name!(revenue_diff, Option<f64>),
    name!(revenue_ci_low, Option<f64>),
    name!(revenue_ci_high, Option<f64>),
    name!(revenue_p_value, Option<f64>),
    name!(incremental_revenue, Option<f64>),
    name!(mde, Option<f64>),
    name!(mde_relative, Option<f64>),
    name!(window_ends, Option<TimestampWithTimeZone>),
    name!(decision, String),
);

/// Per-subscriber outcomes of `members` (a query yielding `subscriber_id`, `anchor` and
/// `control`, one row per subscriber: the first message's time, and whether every message of the
/// subscriber in scope was a holdout), aggregated per group. `members` may use `$1` (the campaign
/// or brand id), `$4` and `$5` (the span's end and start). `$2` is the window, `$3` the events
/// filter and `$4` the end of the outcome span: a conversion counts when it occurred in
/// `[anchor, coalesce($4, anchor) + window)`.
const OUTCOMES: &str = "
    o AS (SELECT m.control, m.anchor, count(c.id) > 0 AS converted,
                 coalesce(sum(c.value), 0)::float8 AS revenue
            FROM members m
            LEFT JOIN smslink.conversion c
              ON c.subscriber_id = m.subscriber_id AND c.occurred_at >= m.anchor
             AND c.occurred_at < coalesce($4, m.anchor) + $2
             AND ($3::text[] IS NULL OR c.event = ANY ($3))
           GROUP BY m.subscriber_id, m.control, m.anchor)
    SELECT o.control, count(*), count(*) FILTER (WHERE o.converted),
           coalesce(avg(o.revenue), 0), coalesce(var_samp(o.revenue), 0),
           max(coalesce($4, o.anchor) + $2), max(coalesce($4, o.anchor) + $2) <= now()
      FROM o GROUP BY o.control";

#[allow(clippy::too_many_arguments)]
fn report(
    f: &str,
    members: &str,
    scope_id: i64,
    from_ts: Option<TimestampWithTimeZone>,
    window: Option<Interval>,
    events: Option<Vec<Option<String>>>,
    outcome_end: Option<TimestampWithTimeZone>,
    confidence: Option<f64>,
    power: Option<f64>,
    target: Option<f64>,
) -> TableIterator<'static, Row> {
    let window =
        window.unwrap_or_else(|| raise(NULL_VALUE, format!("{f}: window must not be NULL")));
    let positive = Spi::get_one_with_args::<bool>("SELECT $1 > interval '0'", &[window.into()])
        .ok()
        .flatten()
        .unwrap_or(false);
    if !positive {
        raise_hint(
            INVALID_PARAMETER,
            format!("{f}: window must be positive"),
            "for example interval '7 days'",
        );
    }
    if let Some(e) = &events {
        if e.iter().any(Option::is_none) {
            raise(NULL_VALUE, format!("{f}: events must not contain NULL"));
        }
    }
    let sql = format!("WITH members AS ({members}), {OUTCOMES}");
    let mut treatment = Group::default();
    let mut control = Group::default();
    let mut ends: Option<TimestampWithTimeZone> = None;
    let mut complete = true;
    Spi::connect(|c| {
        for r in c
            .select(
                &sql,
                None,
                &[
                    scope_id.into(),
                    window.into(),
                    events.into(),
                    outcome_end.into(),
                    from_ts.into(),
                ],
            )
            .spi()
        {
            let g = Group {
                n: r.get::<i64>(2).spi().unwrap_or(0).max(0) as u64,
                converted: r.get::<i64>(3).spi().unwrap_or(0).max(0) as u64,
                revenue_mean: r.get::<f64>(4).spi().unwrap_or(0.0),
                revenue_var: r.get::<f64>(5).spi().unwrap_or(0.0),
            };
            ends = match (ends, r.get::<TimestampWithTimeZone>(6).spi()) {
                (Some(e), Some(x)) => Some(if x > e { x } else { e }),
                (e, x) => e.or(x),
            };
            complete &= r.get::<bool>(7).spi().unwrap_or(false);
            if r.get::<bool>(1).spi().unwrap_or(false) {
                control = g;
            } else {
                treatment = g;
            }
        }
    });
    let o = Options {
        confidence: confidence.unwrap_or(DEFAULT_CONFIDENCE),
        power: power.unwrap_or(DEFAULT_POWER),
        target_relative_lift: target.unwrap_or(DEFAULT_TARGET_RELATIVE_LIFT),
        window_complete: complete,
    };
    let r = compare(&treatment, &control, &o)
        .unwrap_or_else(|e| raise(INVALID_PARAMETER, format!("{f}: {e}")));
    TableIterator::once((
        treatment.n as i64,
        control.n as i64,
        treatment.converted as i64,
        control.converted as i64,
        r.treatment_rate,
        r.control_rate,
        r.lift,
        r.lift_ci_low,
        r.lift_ci_high,
        r.rel_lift,
        r.rel_lift_ci_low,
        r.rel_lift_ci_high,
        r.p_value,
        r.incremental_conversions,
        r.incremental_ci_low,
        r.incremental_ci_high,
        treatment.revenue_mean,
        control.revenue_mean,
        r.revenue_diff,
        r.revenue_ci_low,
        r.revenue_ci_high,
        r.revenue_p_value,
        r.incremental_revenue,
        r.mde,
        r.mde_relative,
        ends,
        r.decision.as_str().to_string(),
    ))
}

/// A campaign's incrementality against its holdout: the treatment is every subscriber prepared a
/// message, the control every subscriber the campaign's holdout held out (global holdouts are in
/// neither; a subscriber with messages of both kinds, after a change of fraction, received the
/// campaign). Each subscriber's window starts at their first message (`created_at`), and
/// counts their conversions whether or not they clicked. docs/experiments.md has the formulas
/// and the decision rule.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn incrementality(
    campaign_id: Option<i64>,
    window: default!(Option<Interval>, "'7 days'"),
    confidence: default!(Option<f64>, "0.95"),
    power: default!(Option<f64>, "0.8"),
    target_relative_lift: default!(Option<f64>, "0.1"),
    events: default!(Option<Vec<Option<String>>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(treatment_n, i64),
        name!(control_n, i64),
        name!(treatment_converted, i64),
        name!(control_converted, i64),
        name!(treatment_rate, f64),
        name!(control_rate, f64),
        name!(lift, Option<f64>),
        name!(lift_ci_low, Option<f64>),
        name!(lift_ci_high, Option<f64>),
        name!(rel_lift, Option<f64>),
        name!(rel_lift_ci_low, Option<f64>),
        name!(rel_lift_ci_high, Option<f64>),
        name!(p_value, Option<f64>),
        name!(incremental_conversions, Option<f64>),
        name!(incremental_ci_low, Option<f64>),
        name!(incremental_ci_high, Option<f64>),
        name!(treatment_revenue_per_recipient, f64),
        name!(control_revenue_per_recipient, f64),
        name!(revenue_diff, Option<f64>),
        name!(revenue_ci_low, Option<f64>),
        name!(revenue_ci_high, Option<f64>),
        name!(revenue_p_value, Option<f64>),
        name!(incremental_revenue, Option<f64>),
        name!(mde, Option<f64>),
        name!(mde_relative, Option<f64>),
        name!(window_ends, Option<TimestampWithTimeZone>),
        name!(decision, String),
    ),
> {
    const F: &str = "incrementality";
    let r = rule(F, campaign_id);
    let members = "SELECT m.subscriber_id, min(m.created_at) AS anchor, bool_and(m.is_holdout) AS control
                     FROM smslink.message m
                    WHERE m.campaign_id = $1 AND (m.holdout_group IS NULL OR m.holdout_group <> 'global')
                    GROUP BY m.subscriber_id";
    report(
        F,
        members,
        r.campaign_id,
        None,
        window,
        events,
        None,
        confidence,
        power,
        target_relative_lift,
    )
}

/// The brand's marketing against its global control group, over the messages prepared in
/// `[from_ts, to_ts)`: the control is every subscriber of the global control group who was held
/// out in that span (every message of theirs in it a global holdout), the treatment every other
/// subscriber prepared a marketing message. A subscriber's outcome span runs from their first
/// message in the span to `to_ts + window`.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn global_incrementality(
    brand_id: Option<i64>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    window: default!(Option<Interval>, "'7 days'"),
    confidence: default!(Option<f64>, "0.95"),
    power: default!(Option<f64>, "0.8"),
    target_relative_lift: default!(Option<f64>, "0.1"),
    events: default!(Option<Vec<Option<String>>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(treatment_n, i64),
        name!(control_n, i64),
        name!(treatment_converted, i64),
        name!(control_converted, i64),
        name!(treatment_rate, f64),
        name!(control_rate, f64),
        name!(lift, Option<f64>),
        name!(lift_ci_low, Option<f64>),
        name!(lift_ci_high, Option<f64>),
        name!(rel_lift, Option<f64>),
        name!(rel_lift_ci_low, Option<f64>),
        name!(rel_lift_ci_high, Option<f64>),
        name!(p_value, Option<f64>),
        name!(incremental_conversions, Option<f64>),
        name!(incremental_ci_low, Option<f64>),
        name!(incremental_ci_high, Option<f64>),
        name!(treatment_revenue_per_recipient, f64),
        name!(control_revenue_per_recipient, f64),
        name!(revenue_diff, Option<f64>),
        name!(revenue_ci_low, Option<f64>),
        name!(revenue_ci_high, Option<f64>),
        name!(revenue_p_value, Option<f64>),
        name!(incremental_revenue, Option<f64>),
        name!(mde, Option<f64>),
        name!(mde_relative, Option<f64>),
        name!(window_ends, Option<TimestampWithTimeZone>),
        name!(decision, String),
    ),
> {
    const F: &str = "global_incrementality";
    let Some(brand_id) = brand_id else {
        raise(NULL_VALUE, format!("{F}: brand_id must not be NULL"));
    };
    let (Some(from_ts), Some(to_ts)) = (from_ts, to_ts) else {
        raise(
            NULL_VALUE,
            format!("{F}: from_ts and to_ts must not be NULL"),
        );
    };
    if from_ts >= to_ts {
        raise_hint(
            INVALID_PARAMETER,
            format!("{F}: from_ts must be before to_ts"),
            "the span is half-open: [from_ts, to_ts)",
        );
    }
    let known = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM smslink.brand WHERE id = $1)",
        &[brand_id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !known {
        raise(NOT_FOUND, format!("{F}: unknown brand {brand_id}"));
    }
    let members = "SELECT m.subscriber_id, min(m.created_at) AS anchor,
                          bool_and(coalesce(m.holdout_group = 'global', false)) AS control
                     FROM smslink.message m JOIN smslink.campaign c ON c.id = m.campaign_id
                    WHERE m.brand_id = $1 AND c.purpose = 'marketing'
                      AND m.created_at >= $5 AND m.created_at < $4
                    GROUP BY m.subscriber_id";
    report(
        F,
        members,
        brand_id,
        Some(from_ts),
        window,
        events,
        Some(to_ts),
        confidence,
        power,
        target_relative_lift,
    )
}
