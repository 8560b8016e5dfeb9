//! Holdouts and incrementality: who is held out of a campaign (or of every campaign of a brand),
//! and what the campaign added over the held-out control group.
//!
//! **Assignment.** A subscriber's position is a number in `[0, 1)` from a stable hash:
//! the first 8 bytes of `SHA-256(tag ‖ id ‖ subscriber_key)` (the id big-endian), of which the
//! top 53 bits are divided by 2⁵³. The tag is `smslink.holdout.campaign` with the campaign id,
//! or `smslink.holdout.global` with the brand id. A subscriber is held out when their position
//! is below the fraction. So the held-out set is deterministic, independent of the bandit's
//! buckets (a different tag), and nested: raising a fraction only adds subscribers to it.
//!
//! **Incrementality.** Treatment and control are compared on the share of their subscribers who
//! converted in the window ([`crate::stats`]: Newcombe interval for the lift, log ratio for the
//! relative lift, two-proportion z-test, minimum detectable effect) and on revenue per recipient
//! (Welch). [`Decision`] documents the rule.

use crate::stats::{
    log_ratio_ci, mde, newcombe, relative_lift, two_proportion_z, welch, DEFAULT_CONFIDENCE,
    DEFAULT_POWER,
};
use sha2::{Digest, Sha256};

/// Which control group a position is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Held out of one campaign (the campaign id).
    Campaign(i64),
    /// Held out of every marketing campaign of a brand (the brand id).
    Global(i64),
}

/// The subscriber's position in `[0, 1)` for `scope`: see the module documentation.
pub fn position(scope: Scope, subscriber_key: &str) -> f64 {
    let (tag, id): (&[u8], i64) = match scope {
        Scope::Campaign(id) => (b"smslink.holdout.campaign", id),
        Scope::Global(id) => (b"smslink.holdout.global", id),
    };
    let mut h = Sha256::new();
    h.update(tag);
    h.update(id.to_be_bytes());
    h.update(subscriber_key.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the subscriber is in the `fraction` of `scope` that is held out.
pub fn held_out(scope: Scope, subscriber_key: &str, fraction: f64) -> bool {
    fraction > 0.0 && position(scope, subscriber_key) < fraction
}

/// Checks a holdout fraction: a number in `[0, 1)`.
pub fn check_fraction(fraction: f64) -> Result<(), String> {
    if fraction.is_finite() && (0.0..1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(format!(
            "holdout fraction {fraction} must be at least 0 and below 1, e.g. 0.05 for 5%"
        ))
    }
}

/// One group of an incrementality test: its subscribers, how many of them converted in the
/// window, and the mean and sample variance (divisor `n − 1`) of revenue per subscriber
/// (0 for those who did not convert).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Group {
    pub n: u64,
    pub converted: u64,
    pub revenue_mean: f64,
    pub revenue_var: f64,
}

/// Default relative lift the test should be able to detect: an MDE above it is underpowered.
pub const DEFAULT_TARGET_RELATIVE_LIFT: f64 = 0.10;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub confidence: f64,
    /// Power for the minimum detectable effect.
    pub power: f64,
    /// The relative lift the team needs to detect; see [`Decision::Underpowered`].
    pub target_relative_lift: f64,
    /// Whether every subscriber's window has ended.
    pub window_complete: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            confidence: DEFAULT_CONFIDENCE,
            power: DEFAULT_POWER,
            target_relative_lift: DEFAULT_TARGET_RELATIVE_LIFT,
            window_complete: true,
        }
    }
}

/// The verdict of an incrementality test, decided in this order:
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The treatment or the control group is empty: nothing to compare.
    InsufficientData,
    /// Some subscriber's window is still open: the numbers are provisional.
    Collecting,
    /// The lift's confidence interval lies above 0: the campaign added conversions.
    Incremental,
    /// The lift's confidence interval lies below 0: the campaign cost conversions.
    Negative,
    /// No significant lift, and the test could not have detected the target relative lift: the
    /// relative MDE is above the target, or cannot be computed (no conversions in the control).
    Underpowered,
    /// No significant lift, though the test could detect the target relative lift.
    NoEffect,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::InsufficientData => "insufficient_data",
            Decision::Collecting => "collecting",
            Decision::Incremental => "incremental",
            Decision::Negative => "negative",
            Decision::Underpowered => "underpowered",
            Decision::NoEffect => "no_effect",
        }
    }
}

/// Treatment against control. Conversion numbers are about converted subscribers; `None` where
/// the quantity is undefined (an empty group, a zero control rate for relative numbers, fewer
/// than 2 subscribers or no variation for Welch).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub treatment_rate: f64,
    pub control_rate: f64,
    /// `p_t − p_c` and its Newcombe interval.
    pub lift: Option<f64>,
    pub lift_ci_low: Option<f64>,
    pub lift_ci_high: Option<f64>,
    /// `p_t / p_c − 1` and its log-ratio interval.
    pub rel_lift: Option<f64>,
    pub rel_lift_ci_low: Option<f64>,
    pub rel_lift_ci_high: Option<f64>,
    /// Two-proportion z-test of `p_t = p_c`.
    pub p_value: Option<f64>,
    /// `(p_t − p_c)·n_t`, the treatment's conversions the campaign caused, with the lift's
    /// interval scaled the same way.
    pub incremental_conversions: Option<f64>,
    pub incremental_ci_low: Option<f64>,
    pub incremental_ci_high: Option<f64>,
    /// Difference of mean revenue per recipient, its Welch interval and p-value.
    pub revenue_diff: Option<f64>,
    pub revenue_ci_low: Option<f64>,
    pub revenue_ci_high: Option<f64>,
    pub revenue_p_value: Option<f64>,
    /// `revenue_diff · n_t`.
    pub incremental_revenue: Option<f64>,
    /// Minimum detectable absolute lift at these sizes, and relative to the control rate.
    pub mde: Option<f64>,
    pub mde_relative: Option<f64>,
    pub decision: Decision,
}

fn rate(g: &Group) -> f64 {
    if g.n == 0 {
        0.0
    } else {
        g.converted as f64 / g.n as f64
    }
}

/// Compares `treatment` with `control`; errors on inconsistent groups or bad options.
pub fn compare(treatment: &Group, control: &Group, o: &Options) -> Result<Report, String> {
    if !(o.target_relative_lift.is_finite() && o.target_relative_lift > 0.0) {
        return Err(format!(
            "target relative lift ({}) must be a positive number, e.g. 0.1 for 10%",
            o.target_relative_lift
        ));
    }
    let (t, c) = (treatment, control);
    let (st, nt, sc, nc) = (t.converted, t.n, c.converted, c.n);
    let lift_ci = newcombe(st, nt, sc, nc, o.confidence)?;
    let lift = lift_ci.map(|_| rate(t) - rate(c));
    let rel_ci = log_ratio_ci(st, nt, sc, nc, o.confidence)?;
    let pooled = if nt + nc == 0 {
        0.0
    } else {
        (st + sc) as f64 / (nt + nc) as f64
    };
    let mde = mde(pooled, nt, nc, o.confidence, o.power)?;
    let mde_relative = match (mde, sc) {
        (Some(m), s) if s > 0 => Some(m / rate(c)),
        _ => None,
    };
    let w = welch(
        (t.revenue_mean, t.revenue_var, nt),
        (c.revenue_mean, c.revenue_var, nc),
        o.confidence,
    )?;
    // With fewer than 2 subscribers on a side or no variation, the difference is still known.
    let revenue_diff = (nt > 0 && nc > 0).then_some(t.revenue_mean - c.revenue_mean);
    let scale = |x: f64| x * nt as f64;
    let decision = if nt == 0 || nc == 0 {
        Decision::InsufficientData
    } else if !o.window_complete {
        Decision::Collecting
    } else {
        match lift_ci {
            Some((lo, _)) if lo > 0.0 => Decision::Incremental,
            Some((_, hi)) if hi < 0.0 => Decision::Negative,
            _ => match mde_relative {
                Some(m) if m <= o.target_relative_lift => Decision::NoEffect,
                _ => Decision::Underpowered,
            },
        }
    };
    Ok(Report {
        treatment_rate: rate(t),
        control_rate: rate(c),
        lift,
        lift_ci_low: lift_ci.map(|x| x.0),
        lift_ci_high: lift_ci.map(|x| x.1),
        rel_lift: relative_lift(st, nt, sc, nc)?,
        rel_lift_ci_low: rel_ci.map(|x| x.0),
        rel_lift_ci_high: rel_ci.map(|x| x.1),
        p_value: two_proportion_z(st, nt, sc, nc)?,
        incremental_conversions: lift.map(scale),
        incremental_ci_low: lift_ci.map(|x| scale(x.0)),
        incremental_ci_high: lift_ci.map(|x| scale(x.1)),
        revenue_diff,
        revenue_ci_low: w.map(|w| w.ci_low),
        revenue_ci_high: w.map(|w| w.ci_high),
        revenue_p_value: w.map(|w| w.p_value),
        incremental_revenue: revenue_diff.map(scale),
        mde,
        mde_relative,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: u64, converted: u64) -> Group {
        Group {
            n,
            converted,
            revenue_mean: 0.0,
            revenue_var: 0.0,
        }
    }

    #[test]
    fn position_is_pinned_and_scopes_are_independent() {
        // Pinned: a change of hash input or layout would move every subscriber.
        let p = position(Scope::Campaign(42), "+15550000001");
        assert_eq!(format!("{p:.15}"), "0.796909260578604");
        assert!((0.0..1.0).contains(&p));
        assert_ne!(p, position(Scope::Global(42), "+15550000001"));
        assert_ne!(p, position(Scope::Campaign(43), "+15550000001"));
    }

    #[test]
    fn fractions_are_met_and_nested() {
        let keys: Vec<String> = (0..100_000).map(|i| format!("+1555{i:07}")).collect();
        for fraction in [0.01, 0.05, 0.1, 0.5] {
            let held = keys
                .iter()
                .filter(|k| held_out(Scope::Campaign(7), k, fraction))
                .count() as f64;
            let sd = (fraction * (1.0 - fraction) * 1e5).sqrt();
            assert!(
                (held - fraction * 1e5).abs() < 5.0 * sd,
                "{fraction}: {held} held out"
            );
        }
        for k in &keys[..5000] {
            if held_out(Scope::Global(3), k, 0.05) {
                assert!(held_out(Scope::Global(3), k, 0.10), "{k}");
            }
        }
        assert!(!keys.iter().any(|k| held_out(Scope::Campaign(7), k, 0.0)));
    }

    #[test]
    fn campaign_and_global_holdouts_do_not_overlap_more_than_chance() {
        let keys: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
        let both = keys
            .iter()
            .filter(|k| held_out(Scope::Campaign(1), k, 0.1) && held_out(Scope::Global(1), k, 0.1))
            .count() as f64;
        // Independent: about 1% of subscribers are in both.
        assert!(
            (both - 1000.0).abs() < 5.0 * (0.01f64 * 0.99 * 1e5).sqrt(),
            "{both}"
        );
    }

    #[test]
    fn fraction_checks() {
        assert!(check_fraction(0.0).is_ok());
        assert!(check_fraction(0.999).is_ok());
        for bad in [1.0, -0.1, f64::NAN, f64::INFINITY] {
            assert!(check_fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clear_lift_is_incremental() {
        let r = compare(
            &group(90_000, 4_500),
            &group(10_000, 300),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(r.decision, Decision::Incremental);
        let lift = r.lift.unwrap();
        assert!((lift - 0.02).abs() < 1e-12);
        assert!((r.incremental_conversions.unwrap() - 1800.0).abs() < 1e-6);
        assert!(r.lift_ci_low.unwrap() > 0.0 && r.lift_ci_high.unwrap() > lift);
        assert!((r.rel_lift.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(r.p_value.unwrap() < 1e-6);
    }

    #[test]
    fn a_small_test_is_underpowered_and_a_large_null_is_no_effect() {
        let small = compare(&group(900, 45), &group(100, 5), &Options::default()).unwrap();
        assert_eq!(small.decision, Decision::Underpowered);
        assert!(small.mde_relative.unwrap() > 0.1);
        let large = compare(
            &group(2_000_000, 100_000),
            &group(1_000_000, 50_000),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(large.decision, Decision::NoEffect);
        assert!(large.mde_relative.unwrap() < 0.1);
        let open = Options {
            window_complete: false,
            ..Options::default()
        };
        assert_eq!(
            compare(&group(900, 45), &group(100, 5), &open)
                .unwrap()
                .decision,
            Decision::Collecting
        );
        let none = compare(&group(900, 45), &group(0, 0), &Options::default()).unwrap();
        assert_eq!(none.decision, Decision::InsufficientData);
        assert_eq!(none.lift, None);
        assert_eq!(none.mde, None);
        // No conversion in the control: no relative MDE, so no claim of power.
        let zero = compare(&group(900, 0), &group(100, 0), &Options::default()).unwrap();
        assert_eq!(zero.decision, Decision::Underpowered);
    }

    #[test]
    fn a_drop_is_negative() {
        let r = compare(
            &group(50_000, 1_000),
            &group(50_000, 1_400),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(r.decision, Decision::Negative);
        assert!(r.incremental_conversions.unwrap() < 0.0);
    }

    #[test]
    fn revenue_uses_welch() {
        let t = Group {
            n: 1000,
            converted: 50,
            revenue_mean: 5.0,
            revenue_var: 400.0,
        };
        let c = Group {
            n: 200,
            converted: 6,
            revenue_mean: 3.0,
            revenue_var: 300.0,
        };
        let r = compare(&t, &c, &Options::default()).unwrap();
        assert_eq!(r.revenue_diff, Some(2.0));
        assert_eq!(r.incremental_revenue, Some(2000.0));
        let (lo, hi) = (r.revenue_ci_low.unwrap(), r.revenue_ci_high.unwrap());
        assert!(lo < 2.0 && hi > 2.0 && ((lo + hi) / 2.0 - 2.0).abs() < 1e-9);
        let single = Group {
            n: 1,
            converted: 0,
            ..c
        };
        let r = compare(&t, &single, &Options::default()).unwrap();
        assert_eq!(r.revenue_diff, Some(2.0));
        assert_eq!(r.revenue_ci_low, None);
    }

    #[test]
    fn bad_options_are_errors() {
        let g = group(10, 1);
        for o in [
            Options {
                confidence: 1.0,
                ..Options::default()
            },
            Options {
                power: 1.0,
                ..Options::default()
            },
            Options {
                target_relative_lift: 0.0,
                ..Options::default()
            },
        ] {
            assert!(compare(&g, &g, &o).is_err(), "{o:?}");
        }
        assert!(compare(&group(1, 2), &g, &Options::default()).is_err());
    }
}
