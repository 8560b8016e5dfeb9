//! Experiments in SQL: `smslink.variant_stats`, the statistics of a campaign's variants
//! (`smslink_core::stats`), on the numbers `smslink.variant_metrics` reports.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NULL_VALUE};
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
