//! Statistics for comparing the proportions (click-through or conversion rates) of A/B variants.
//!
//! Every arm `i` has `n_i` trials (messages, clicks, ...) and `s_i ≤ n_i` successes; its rate is
//! `p_i = s_i / n_i`. One arm is the control `c`. [`compare`] computes, for every arm, the
//! quantities below; each is also a public function of its own. `α = 1 − confidence` and
//! `z = Φ⁻¹(1 − α/2)` (the two-sided standard normal quantile; `Φ` is the standard normal CDF).
//! The normal, chi-square and beta distributions come from the `statrs` crate.
//!
//! | quantity | formula | function |
//! | --- | --- | --- |
//! | rate and its interval | Wilson score interval | [`wilson`] |
//! | lift `p_i − p_c` and its interval | Newcombe's hybrid score interval (his method 10) | [`newcombe`] |
//! | relative lift `p_i / p_c − 1` and its interval | log risk ratio (Katz) | [`log_ratio_ci`] |
//! | p-value against the control | two-sided two-proportion z-test, pooled variance | [`two_proportion_z`] |
//! | p-value across all arms | Pearson chi-square test of independence, k×2, no continuity correction | [`chi_square`] |
//! | probability of being best | independent `Beta(1 + s, 1 + n − s)` posteriors, numerical quadrature | [`prob_best`] |
//! | always-valid p-value and confidence sequence | mSPRT with a normal mixture (Johari et al. 2017) | [`msprt`] |
//! | decision | the rule documented on [`ArmStats::decision`] | [`compare`] |
//!
//! For holdout tests ([`crate::holdout`]) there are also Welch's test and interval for a
//! difference of means (revenue per recipient, [`welch`]) and the minimum detectable effect of
//! the two-proportion test at given sizes ([`mde`]).
//!
//! Conventions for empty or degenerate data (rather than NaN):
//! - an arm with `n = 0` has rate 0 and Wilson interval `(0, 1)`: nothing is known;
//! - every comparison with an arm that has `n = 0` is `None`;
//! - when both arms of a z-test have rate 0 (or both 1), the pooled variance is 0 and the
//!   observed difference is exactly 0: the p-value is 1.

use std::sync::OnceLock;

use statrs::distribution::{Beta, ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// Default confidence level: 95 %.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// Default standard deviation `τ` of the mSPRT's normal mixture prior on the difference of rates.
///
/// `τ = 0.02`: a difference of 2 percentage points. The mixture `N(0, τ²)` spends its power on
/// differences of the order of `τ`: a much smaller `τ` makes the test slow to confirm large
/// differences, a much larger one slow to confirm small ones (Johari et al. 2017, section 4,
/// who recommend fitting `τ` to the effects seen in past experiments). SMS link click-through
/// rates are typically 5–30 % and copy or offer variants move them by about 1–3 points, so
/// 2 points is the middle of the range of differences worth detecting. To choose another:
/// take the root mean square of the absolute lifts (`p_i − p_c`) observed in your past
/// experiments, or, without history, the smallest difference you would act on, times 1.5–2.
pub const DEFAULT_TAU: f64 = 0.02;

/// Default smallest number of trials every arm needs before a decision other than "collecting".
pub const DEFAULT_MIN_N: u64 = 100;

/// Default smallest number of successes every arm needs before a decision other than
/// "collecting".
pub const DEFAULT_MIN_SUCCESSES: u64 = 10;

/// Largest half-width of the confidence sequences for "no_difference": 0.005. "no_difference"
/// needs every confidence-sequence interval for `p_i − p_c` to contain 0 and be at most
/// `2 × 0.005` wide, so every variant is then known to be within 1 percentage point of the
/// control.
pub const NO_DIFFERENCE_HALF_WIDTH: f64 = 0.005;

/// One variant: `n` trials, `successes` of them successful (`successes ≤ n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    pub n: u64,
    pub successes: u64,
}

/// The statistics of one arm, as [`compare`] returns them (one per arm, in the arms' order).
#[derive(Debug, Clone, PartialEq)]
pub struct ArmStats {
    /// `p = s / n`; 0 when `n = 0`.
    pub rate: f64,
    /// Wilson score interval of the rate at the confidence level ([`wilson`]); `(0, 1)` when
    /// `n = 0`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// `p_i − p_c`. `None` for the control and when either arm has `n = 0`.
    pub lift: Option<f64>,
    /// Newcombe's hybrid score interval of the lift ([`newcombe`]); `None` like `lift`.
    pub lift_ci_low: Option<f64>,
    pub lift_ci_high: Option<f64>,
    /// `p_i / p_c − 1`. `None` for the control, when `n_i = 0`, or when `s_c = 0` (the ratio is
    /// undefined).
    pub rel_lift: Option<f64>,
    /// Katz log risk-ratio interval of the relative lift ([`log_ratio_ci`]); `None` for the
    /// control and when `s_i = 0` or `s_c = 0` (the log ratio's variance is undefined).
    pub rel_lift_ci_low: Option<f64>,
    pub rel_lift_ci_high: Option<f64>,
    /// Two-sided pooled two-proportion z-test against the control ([`two_proportion_z`]);
    /// `None` for the control and when either arm has `n = 0`.
    pub p_value: Option<f64>,
    /// Pearson chi-square test of independence over all arms ([`chi_square`]), the same on
    /// every row; `None` when it is undefined.
    pub chi2_p_value: Option<f64>,
    /// Posterior probability that this arm has the highest rate ([`prob_best`]).
    pub prob_best: f64,
    /// mSPRT always-valid p-value against the control ([`msprt`]); `None` for the control,
    /// when either arm has `n = 0`, and when the variance `V` is 0.
    pub always_valid_p: Option<f64>,
    /// mSPRT confidence sequence for `p_i − p_c` ([`msprt`]); `None` like `always_valid_p`.
    pub cs_low: Option<f64>,
    pub cs_high: Option<f64>,
    /// `"collecting"`, `"leader"`, `"winner"` or `"no_difference"`, by this rule, with
    /// `α = 1 − confidence`, applied in order:
    ///
    /// 1. **collecting**: while any arm has `n < min_n` or fewer than `min_successes`
    ///    successes, every arm is "collecting".
    /// 2. **winner**: let `b` be the arm with the highest `prob_best` (the first one on a tie).
    ///    If `b` is not the control, `b` is the "winner" when its always-valid p-value against
    ///    the control is below `α`, its lift is positive, and `prob_best(b) ≥ confidence`.
    ///    If `b` is the control, it is the "winner" when every other arm's always-valid
    ///    p-value is below `α` with a negative lift (every other arm is significantly worse)
    ///    and `prob_best(b) ≥ confidence`. The other arms are then "collecting" (the experiment
    ///    is decided by the winner's row; there is no "loser" state).
    /// 3. **no_difference**: otherwise, when every non-control arm's confidence sequence
    ///    exists, contains 0, and has half-width `(cs_high − cs_low) / 2 ≤`
    ///    [`NO_DIFFERENCE_HALF_WIDTH`], every arm is "no_difference".
    /// 4. **leader**: otherwise arm `b` is the "leader" and every other arm "collecting".
    ///
    /// The always-valid p-value and confidence sequence are valid however often the data are
    /// looked at, so the decision may be polled as the experiment runs.
    pub decision: &'static str,
}

/// Parameters of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Confidence level of every interval and of the decision, in (0, 1); `α = 1 − confidence`.
    pub confidence: f64,
    /// Standard deviation of the mSPRT mixture prior on `p_i − p_c`, > 0 (see [`DEFAULT_TAU`]).
    pub tau: f64,
    /// Trials every arm needs before a decision (see [`ArmStats::decision`]).
    pub min_n: u64,
    /// Successes every arm needs before a decision.
    pub min_successes: u64,
}

impl Default for Options {
    /// Confidence 0.95, `τ = 0.02`, `min_n = 100`, `min_successes = 10`.
    fn default() -> Self {
        Options {
            confidence: DEFAULT_CONFIDENCE,
            tau: DEFAULT_TAU,
            min_n: DEFAULT_MIN_N,
            min_successes: DEFAULT_MIN_SUCCESSES,
        }
    }
}

/// Result of the Pearson chi-square test of independence ([`chi_square`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// `X² = Σ_i (s_i·N − n_i·S)² / (n_i·S·F)`.
    pub statistic: f64,
    /// Degrees of freedom: (number of arms with `n > 0`) − 1.
    pub df: u64,
    /// `P(χ²_df ≥ X²)`.
    pub p_value: f64,
}

/// Result of the mSPRT ([`msprt`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Msprt {
    /// `min(1, 1/Λ)`.
    pub always_valid_p: f64,
    /// `θ̂ − r` and `θ̂ + r`, the confidence sequence for `θ = p_1 − p_0`.
    pub cs_low: f64,
    pub cs_high: f64,
}

fn check_arm(s: u64, n: u64) -> Result<(), String> {
    if s > n {
        return Err(format!(
            "successes ({s}) exceed n ({n}): an arm's successes must be at most its trials"
        ));
    }
    Ok(())
}

fn check_confidence(confidence: f64) -> Result<(), String> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(format!(
            "confidence ({confidence}) must be strictly between 0 and 1, e.g. 0.95"
        ));
    }
    Ok(())
}

fn std_normal() -> Result<Normal, String> {
    Normal::new(0.0, 1.0).map_err(|e| format!("standard normal: {e}"))
}

/// `z = Φ⁻¹(1 − α/2)` with `α = 1 − confidence`: the two-sided standard normal quantile
/// (1.959963984540054 at 95 %).
pub fn z_quantile(confidence: f64) -> Result<f64, String> {
    check_confidence(confidence)?;
    let alpha = 1.0 - confidence;
    Ok(std_normal()?.inverse_cdf(1.0 - alpha / 2.0))
}

/// `s / n`, and 0 when `n = 0`.
fn rate(s: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        s as f64 / n as f64
    }
}

/// `p_1 − p_0 = (s_1·n_0 − s_0·n_1) / (n_1·n_0)`, with the numerator formed exactly in
/// integers so that equal rates give exactly 0. Both `n` must be > 0.
fn difference(s1: u64, n1: u64, s0: u64, n0: u64) -> f64 {
    let num = i128::from(s1) * i128::from(n0) - i128::from(s0) * i128::from(n1);
    num as f64 / (n1 as f64 * n0 as f64)
}

/// Wilson score interval of the proportion `s / n` at `confidence`.
///
/// With `p = s/n` and `z = Φ⁻¹(1 − α/2)`:
///
/// ```text
/// centre = (p + z²/(2n)) / (1 + z²/n)
/// half   = z / (1 + z²/n) · sqrt(p(1 − p)/n + z²/(4n²))
/// (low, high) = (centre − half, centre + half)
/// ```
///
/// The bounds are exactly 0 when `s = 0` and exactly 1 when `s = n` (where the formula gives
/// them up to rounding), and `(0, 1)` when `n = 0`. Errors when `s > n` or the confidence is
/// not in (0, 1).
pub fn wilson(s: u64, n: u64, confidence: f64) -> Result<(f64, f64), String> {
    check_arm(s, n)?;
    let z = z_quantile(confidence)?;
    Ok(wilson_z(s, n, z))
}

fn wilson_z(s: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let nf = n as f64;
    let p = s as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    let low = if s == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if s == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

/// Newcombe's hybrid score interval (Newcombe 1998, method 10) for `θ = p_1 − p_0`, arm 1
/// against arm 0, from the two Wilson intervals `(l_1, u_1)` and `(l_0, u_0)` ([`wilson`]):
///
/// ```text
/// θ̂ = p_1 − p_0
/// low  = θ̂ − sqrt((p_1 − l_1)² + (u_0 − p_0)²)
/// high = θ̂ + sqrt((u_1 − p_1)² + (p_0 − l_0)²)
/// ```
///
/// `None` when either `n` is 0.
pub fn newcombe(
    s1: u64,
    n1: u64,
    s0: u64,
    n0: u64,
    confidence: f64,
) -> Result<Option<(f64, f64)>, String> {
    let z = pair_z(s1, n1, s0, n0, confidence)?;
    Ok(newcombe_z(s1, n1, s0, n0, z))
}

/// Checks two arms and returns the two-sided normal quantile of `confidence`.
fn pair_z(s1: u64, n1: u64, s0: u64, n0: u64, confidence: f64) -> Result<f64, String> {
    check_arm(s1, n1)?;
    check_arm(s0, n0)?;
    z_quantile(confidence)
}

fn newcombe_z(s1: u64, n1: u64, s0: u64, n0: u64, z: f64) -> Option<(f64, f64)> {
    if n1 == 0 || n0 == 0 {
        return None;
    }
    let (p1, p0) = (rate(s1, n1), rate(s0, n0));
    let (l1, u1) = wilson_z(s1, n1, z);
    let (l0, u0) = wilson_z(s0, n0, z);
    let d = difference(s1, n1, s0, n0);
    let delta = ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt();
    let eps = ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt();
    Some((d - delta, d + eps))
}

/// Relative lift `p_1 / p_0 − 1`, computed as `(s_1·n_0 − s_0·n_1) / (s_0·n_1)` so that equal
/// rates give exactly 0. `None` when `n_1 = 0` or `s_0 = 0`.
pub fn relative_lift(s1: u64, n1: u64, s0: u64, n0: u64) -> Result<Option<f64>, String> {
    check_arm(s1, n1)?;
    check_arm(s0, n0)?;
    Ok(relative_lift_unchecked(s1, n1, s0, n0))
}

fn relative_lift_unchecked(s1: u64, n1: u64, s0: u64, n0: u64) -> Option<f64> {
    if n1 == 0 || s0 == 0 {
        return None;
    }
    let num = i128::from(s1) * i128::from(n0) - i128::from(s0) * i128::from(n1);
    Some(num as f64 / (s0 as f64 * n1 as f64))
}

/// Interval for the relative lift `RR − 1`, `RR = p_1 / p_0`, from the log risk ratio (Katz et
/// al. 1978):
///
/// ```text
/// se = sqrt(1/s_1 − 1/n_1 + 1/s_0 − 1/n_0)
/// (low, high) = (exp(ln RR − z·se) − 1, exp(ln RR + z·se) − 1)
/// ```
///
/// (computed with `exp_m1` for accuracy near 0). `None` when `s_1 = 0` or `s_0 = 0`, where
/// `ln RR` or `se` is undefined.
pub fn log_ratio_ci(
    s1: u64,
    n1: u64,
    s0: u64,
    n0: u64,
    confidence: f64,
) -> Result<Option<(f64, f64)>, String> {
    let z = pair_z(s1, n1, s0, n0, confidence)?;
    Ok(log_ratio_ci_z(s1, n1, s0, n0, z))
}

fn log_ratio_ci_z(s1: u64, n1: u64, s0: u64, n0: u64, z: f64) -> Option<(f64, f64)> {
    if s1 == 0 || s0 == 0 {
        return None;
    }
    let (s1f, n1f, s0f, n0f) = (s1 as f64, n1 as f64, s0 as f64, n0 as f64);
    // ln RR = ln(s_1·n_0 / (s_0·n_1)); the products are exact below 2^53.
    let ln_rr = ((s1f * n0f) / (s0f * n1f)).ln();
    let se = (1.0 / s1f - 1.0 / n1f + 1.0 / s0f - 1.0 / n0f)
        .max(0.0)
        .sqrt();
    Some(((ln_rr - z * se).exp_m1(), (ln_rr + z * se).exp_m1()))
}

/// Two-sided two-proportion z-test of `p_1 = p_0`, with the pooled variance:
///
/// ```text
/// P = (s_1 + s_0) / (n_1 + n_0)
/// z = (p_1 − p_0) / sqrt(P(1 − P)(1/n_1 + 1/n_0))
/// p-value = 2·(1 − Φ(|z|))
/// ```
///
/// `None` when either `n` is 0. When `P` is 0 or 1 both rates are equal (all failures or all
/// successes) and the p-value is 1.
pub fn two_proportion_z(s1: u64, n1: u64, s0: u64, n0: u64) -> Result<Option<f64>, String> {
    check_arm(s1, n1)?;
    check_arm(s0, n0)?;
    if n1 == 0 || n0 == 0 {
        return Ok(None);
    }
    let (s, n) = (s1 + s0, n1 + n0);
    if s == 0 || s == n {
        return Ok(Some(1.0));
    }
    let pooled = s as f64 / n as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n0 as f64)).sqrt();
    let z = difference(s1, n1, s0, n0) / se;
    Ok(Some((2.0 * std_normal()?.sf(z.abs())).min(1.0)))
}

/// Pearson chi-square test of independence on the k×2 table of successes and failures, without
/// continuity correction. With `S = Σ s_i`, `F = Σ (n_i − s_i)`, `N = S + F`, the expected
/// counts are `n_i·S/N` and `n_i·F/N`, and the statistic reduces to
///
/// ```text
/// X² = Σ_i (s_i − n_i·S/N)² · (N/(n_i·S) + N/(n_i·F)) = Σ_i (s_i·N − n_i·S)² / (n_i·S·F)
/// df = k' − 1,  p-value = P(χ²_df ≥ X²)
/// ```
///
/// Arms with `n = 0` have no observed or expected counts and are left out; `k'` counts the
/// others. `None` when fewer than 2 arms have `n > 0`, or when `S = 0` or `F = 0` (a column of
/// zeros: the expected counts in it are 0).
pub fn chi_square(arms: &[Arm]) -> Result<Option<ChiSquare>, String> {
    for a in arms {
        check_arm(a.successes, a.n)?;
    }
    let rows: Vec<&Arm> = arms.iter().filter(|a| a.n > 0).collect();
    if rows.len() < 2 {
        return Ok(None);
    }
    let s: u128 = rows.iter().map(|a| u128::from(a.successes)).sum();
    let n: u128 = rows.iter().map(|a| u128::from(a.n)).sum();
    let f = n - s;
    if s == 0 || f == 0 {
        return Ok(None);
    }
    let (sf, ff, nf) = (s as f64, f as f64, n as f64);
    let statistic: f64 = rows
        .iter()
        .map(|a| {
            let d = i128::from(a.successes) as f64 * nf - a.n as f64 * sf;
            d * d / (a.n as f64 * sf * ff)
        })
        .sum();
    let df = rows.len() as u64 - 1;
    let dist = ChiSquared::new(df as f64).map_err(|e| format!("chi-square({df}): {e}"))?;
    Ok(Some(ChiSquare {
        statistic,
        df,
        p_value: dist.sf(statistic),
    }))
}

/// Always-valid inference by the mixture sequential probability ratio test (mSPRT; Johari,
/// Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests") for `θ = p_1 − p_0`, with a normal
/// mixture `N(0, τ²)` over `θ` and the normal approximation `θ̂ ~ N(θ, V)`:
///
/// ```text
/// θ̂ = p_1 − p_0
/// V = p_1(1 − p_1)/n_1 + p_0(1 − p_0)/n_0
/// Λ = sqrt(V/(V + τ²)) · exp(τ²θ̂² / (2V(V + τ²)))
/// always-valid p = min(1, 1/Λ)
/// r = sqrt(V(V + τ²)/τ² · (ln((V + τ²)/V) + 2·ln(1/α))),  α = 1 − confidence
/// confidence sequence = (θ̂ − r, θ̂ + r)
/// ```
///
/// The interval is the set of `θ_0` for which the mixture ratio centred on `θ_0` stays below
/// `1/α`. `1/Λ` is computed in log space, so it underflows to 0 rather than overflowing. Given
/// one snapshot of the data this is `1/Λ_n` at the current sample size; a caller that keeps
/// earlier values may take their running minimum (the always-valid p-value proper), and the
/// running intersection of the intervals. See [`DEFAULT_TAU`] for choosing `τ`.
///
/// `None` when either `n` is 0 or `V = 0` (both rates 0 or 1). Errors when `τ ≤ 0` or the
/// confidence is not in (0, 1).
pub fn msprt(
    s1: u64,
    n1: u64,
    s0: u64,
    n0: u64,
    tau: f64,
    confidence: f64,
) -> Result<Option<Msprt>, String> {
    check_arm(s1, n1)?;
    check_arm(s0, n0)?;
    check_confidence(confidence)?;
    check_tau(tau)?;
    if n1 == 0 || n0 == 0 {
        return Ok(None);
    }
    let (p1, p0) = (rate(s1, n1), rate(s0, n0));
    let v = p1 * (1.0 - p1) / n1 as f64 + p0 * (1.0 - p0) / n0 as f64;
    if v <= 0.0 {
        return Ok(None);
    }
    let theta = difference(s1, n1, s0, n0);
    let t2 = tau * tau;
    let ln_inv_lambda = 0.5 * ((v + t2) / v).ln() - t2 * theta * theta / (2.0 * v * (v + t2));
    let always_valid_p = ln_inv_lambda.min(0.0).exp();
    let alpha = 1.0 - confidence;
    let r = (v * (v + t2) / t2 * (((v + t2) / v).ln() + 2.0 * (1.0 / alpha).ln())).sqrt();
    Ok(Some(Msprt {
        always_valid_p,
        cs_low: theta - r,
        cs_high: theta + r,
    }))
}

fn check_tau(tau: f64) -> Result<(), String> {
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(format!(
            "tau ({tau}) must be a positive number, e.g. 0.02 (the scale of rate differences)"
        ));
    }
    Ok(())
}

/// Gauss–Legendre order of each quadrature panel in [`prob_best`].
const GL_ORDER: usize = 20;
/// A panel is accepted when splitting it in two changes no arm's integral by more than this.
const PANEL_TOLERANCE: f64 = 1e-15;
/// Limit on the bisection depth of a panel.
const MAX_DEPTH: u32 = 30;
/// Integration range: each posterior's mean ± this many standard deviations. Beyond it a
/// `Beta(1 + s, 1 + n − s)` density holds less than `e^{-40}` of its mass (the exponential
/// tail of `Beta(1, b)` is the heaviest).
const RANGE_SDS: f64 = 40.0;
/// Panel breakpoints, in posterior standard deviations from each posterior's mean.
const BREAKPOINT_SDS: [f64; 12] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0, 28.0, 40.0,
];

/// Nodes and weights of the `GL_ORDER`-point Gauss–Legendre rule on [−1, 1], from Newton's
/// method on the Legendre polynomial `P_m` (three-term recurrence
/// `k·P_k = (2k − 1)·x·P_{k−1} − (k − 1)·P_{k−2}`; weight `2 / ((1 − x²)·P_m'(x)²)`).
fn gauss_legendre() -> &'static [(f64, f64); GL_ORDER] {
    static RULE: OnceLock<[(f64, f64); GL_ORDER]> = OnceLock::new();
    RULE.get_or_init(|| {
        let m = GL_ORDER;
        let mut rule = [(0.0, 0.0); GL_ORDER];
        for (i, slot) in rule.iter_mut().enumerate() {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
            let mut dp = 1.0;
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=m {
                    let kf = k as f64;
                    let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
                    p0 = p1;
                    p1 = p2;
                }
                // P_m'(x) = m·(x·P_m − P_{m−1}) / (x² − 1)
                dp = m as f64 * (x * p1 - p0) / (x * x - 1.0);
                let step = p1 / dp;
                x -= step;
                if step.abs() < 1e-17 {
                    break;
                }
            }
            *slot = (x, 2.0 / ((1.0 - x * x) * dp * dp));
        }
        rule
    })
}

/// Posterior probability that each arm has the highest rate.
///
/// Each arm's rate has the posterior `Beta(a_i, b_i)`, `a_i = 1 + s_i`, `b_i = 1 + n_i − s_i`
/// (uniform prior), independent across arms, with density `f_i` and CDF `F_i`. Then
///
/// ```text
/// P(arm i is best) = ∫₀¹ f_i(x) · Π_{j≠i} F_j(x) dx
/// ```
///
/// (ties have probability 0). The integral is computed deterministically, not by Monte Carlo:
/// the range is cut at every posterior's mean `μ_j` plus `±{0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 28,
/// 40}` posterior standard deviations `σ_j` (clipped to `[min_j(μ_j − 40σ_j), max_j(μ_j +
/// 40σ_j)] ∩ [0, 1]`, outside which every integrand is below `e^{-40}`), so that every panel
/// is narrow against every posterior it overlaps; each panel is integrated by 20-point
/// Gauss–Legendre and bisected adaptively until halving it changes no arm's integral by more
/// than 1e-15. Each integral is divided by `∫ f_i` over the same panels (1 in exact
/// arithmetic), which cancels the rounding error of the density's normalising constant
/// `1/B(a_i, b_i)`; results are clamped to [0, 1]. The same arms always give the same numbers;
/// they agree with SciPy's adaptive quadrature to about 1e-10 relative and sum to 1 within
/// 1e-9. With a single arm the answer is `[1]`.
pub fn prob_best(arms: &[Arm]) -> Result<Vec<f64>, String> {
    if arms.is_empty() {
        return Err("prob_best needs at least one arm".into());
    }
    for a in arms {
        check_arm(a.successes, a.n)?;
    }
    if arms.len() == 1 {
        return Ok(vec![1.0]);
    }
    let mut dists = Vec::with_capacity(arms.len());
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut moments = Vec::with_capacity(arms.len());
    for arm in arms {
        let a = 1.0 + arm.successes as f64;
        let b = 1.0 + (arm.n - arm.successes) as f64;
        dists.push(Beta::new(a, b).map_err(|e| format!("Beta({a}, {b}): {e}"))?);
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        lo = lo.min(mean - RANGE_SDS * sd);
        hi = hi.max(mean + RANGE_SDS * sd);
        moments.push((mean, sd));
    }
    let (lo, hi) = (lo.max(0.0), hi.min(1.0));
    let mut cuts = vec![lo, hi];
    for &(mean, sd) in &moments {
        for t in BREAKPOINT_SDS {
            for x in [mean - t * sd, mean + t * sd] {
                if x > lo && x < hi {
                    cuts.push(x);
                }
            }
        }
    }
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let k = arms.len();
    let mut total = vec![0.0; 2 * k];
    let mut scratch = Scratch::new(k);
    for w in cuts.windows(2) {
        let whole = panel(&dists, w[0], w[1], &mut scratch);
        adapt(&dists, w[0], w[1], whole, 0, &mut total, &mut scratch);
    }
    // Divide by ∫ f_i over the same panels, which is 1 up to the error of the density's
    // normalising constant (about 1e-10 relative for large n): that error cancels.
    Ok((0..k)
        .map(|i| {
            if total[k + i] > 0.0 {
                (total[i] / total[k + i]).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect())
}

struct Scratch {
    pdf: Vec<f64>,
    cdf: Vec<f64>,
}

impl Scratch {
    fn new(k: usize) -> Self {
        Scratch {
            pdf: vec![0.0; k],
            cdf: vec![0.0; k],
        }
    }
}

/// `∫ f_i Π_{j≠i} F_j` (at index `i`) and `∫ f_i` (at index `k + i`) over `[a, b]` for every
/// arm `i` of `k`, by the Gauss–Legendre rule.
fn panel(dists: &[Beta], a: f64, b: f64, scratch: &mut Scratch) -> Vec<f64> {
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    let k = dists.len();
    let mut out = vec![0.0; 2 * k];
    for &(t, w) in gauss_legendre() {
        let x = mid + half * t;
        for (j, d) in dists.iter().enumerate() {
            scratch.pdf[j] = d.pdf(x);
            scratch.cdf[j] = d.cdf(x);
        }
        for (o, f) in out[k..].iter_mut().zip(&scratch.pdf) {
            *o += w * f;
        }
        for (i, o) in out[..k].iter_mut().enumerate() {
            let mut g = scratch.pdf[i];
            for (j, c) in scratch.cdf.iter().enumerate() {
                if j != i {
                    g *= c;
                }
            }
            *o += w * g;
        }
    }
    for o in &mut out {
        *o *= half;
    }
    out
}

fn adapt(
    dists: &[Beta],
    a: f64,
    b: f64,
    whole: Vec<f64>,
    depth: u32,
    total: &mut [f64],
    scratch: &mut Scratch,
) {
    let mid = (a + b) / 2.0;
    let left = panel(dists, a, mid, scratch);
    let right = panel(dists, mid, b, scratch);
    let err = whole
        .iter()
        .zip(left.iter().zip(&right))
        .map(|(w, (l, r))| (l + r - w).abs())
        .fold(0.0, f64::max);
    if err <= PANEL_TOLERANCE || depth >= MAX_DEPTH || !(mid > a && mid < b) {
        for (t, (l, r)) in total.iter_mut().zip(left.iter().zip(&right)) {
            *t += l + r;
        }
        return;
    }
    adapt(dists, a, mid, left, depth + 1, total, scratch);
    adapt(dists, mid, b, right, depth + 1, total, scratch);
}

/// Every statistic of every arm against the control `arms[control]` (see the module
/// documentation and [`ArmStats`] for the formulas and the decision rule).
///
/// Errors, with a message saying what to fix: fewer than 2 arms, `control` out of range, an
/// arm with more successes than trials, a confidence not strictly between 0 and 1, `τ ≤ 0`.
pub fn compare(arms: &[Arm], control: usize, o: &Options) -> Result<Vec<ArmStats>, String> {
    if arms.len() < 2 {
        return Err(format!(
            "compare needs at least 2 arms (a control and a variant), got {}",
            arms.len()
        ));
    }
    if control >= arms.len() {
        return Err(format!(
            "control index {control} is out of range: there are {} arms (indices 0 to {})",
            arms.len(),
            arms.len() - 1
        ));
    }
    for (i, a) in arms.iter().enumerate() {
        check_arm(a.successes, a.n).map_err(|e| format!("arm {i}: {e}"))?;
    }
    check_confidence(o.confidence)?;
    check_tau(o.tau)?;
    let z = z_quantile(o.confidence)?;
    let chi2_p_value = chi_square(arms)?.map(|c| c.p_value);
    let pb = prob_best(arms)?;
    let c = arms[control];
    let mut out = Vec::with_capacity(arms.len());
    for (i, a) in arms.iter().enumerate() {
        let (ci_low, ci_high) = wilson_z(a.successes, a.n, z);
        let mut st = ArmStats {
            rate: rate(a.successes, a.n),
            ci_low,
            ci_high,
            lift: None,
            lift_ci_low: None,
            lift_ci_high: None,
            rel_lift: None,
            rel_lift_ci_low: None,
            rel_lift_ci_high: None,
            p_value: None,
            chi2_p_value,
            prob_best: pb[i],
            always_valid_p: None,
            cs_low: None,
            cs_high: None,
            decision: "collecting",
        };
        if i != control {
            let (s1, n1, s0, n0) = (a.successes, a.n, c.successes, c.n);
            if n1 > 0 && n0 > 0 {
                st.lift = Some(difference(s1, n1, s0, n0));
            }
            if let Some((l, h)) = newcombe_z(s1, n1, s0, n0, z) {
                st.lift_ci_low = Some(l);
                st.lift_ci_high = Some(h);
            }
            st.rel_lift = relative_lift_unchecked(s1, n1, s0, n0);
            if let Some((l, h)) = log_ratio_ci_z(s1, n1, s0, n0, z) {
                st.rel_lift_ci_low = Some(l);
                st.rel_lift_ci_high = Some(h);
            }
            st.p_value = two_proportion_z(s1, n1, s0, n0)?;
            if let Some(m) = msprt(s1, n1, s0, n0, o.tau, o.confidence)? {
                st.always_valid_p = Some(m.always_valid_p);
                st.cs_low = Some(m.cs_low);
                st.cs_high = Some(m.cs_high);
            }
        }
        out.push(st);
    }
    decide(arms, control, o, &mut out);
    Ok(out)
}

/// The decision rule documented on [`ArmStats::decision`].
fn decide(arms: &[Arm], control: usize, o: &Options, stats: &mut [ArmStats]) {
    let alpha = 1.0 - o.confidence;
    let collecting = arms
        .iter()
        .any(|a| a.n < o.min_n || a.successes < o.min_successes);
    for s in stats.iter_mut() {
        s.decision = "collecting";
    }
    if collecting {
        return;
    }
    // The first arm with the highest probability of being best.
    let mut best = 0;
    for (i, s) in stats.iter().enumerate() {
        if s.prob_best > stats[best].prob_best {
            best = i;
        }
    }
    let significant = |s: &ArmStats, better: bool| match (s.always_valid_p, s.lift) {
        (Some(p), Some(l)) => p < alpha && if better { l > 0.0 } else { l < 0.0 },
        _ => false,
    };
    let confident = stats[best].prob_best >= o.confidence;
    let winner = confident
        && if best == control {
            stats
                .iter()
                .enumerate()
                .all(|(i, s)| i == control || significant(s, false))
        } else {
            significant(&stats[best], true)
        };
    if winner {
        stats[best].decision = "winner";
        return;
    }
    let no_difference = stats.iter().enumerate().all(|(i, s)| {
        i == control
            || match (s.cs_low, s.cs_high) {
                (Some(l), Some(h)) => {
                    l <= 0.0 && h >= 0.0 && (h - l) / 2.0 <= NO_DIFFERENCE_HALF_WIDTH
                }
                _ => false,
            }
    });
    if no_difference {
        for s in stats.iter_mut() {
            s.decision = "no_difference";
        }
        return;
    }
    stats[best].decision = "leader";
}

/// Welch's unequal-variance comparison of two means, arm 1 against arm 0: see [`welch`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// `m_1 − m_0`.
    pub difference: f64,
    /// Two-sided confidence interval of the difference.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided p-value of `m_1 = m_0`.
    pub p_value: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
}

/// Welch's t-test and interval for the difference of two means, from each sample's mean `m`,
/// sample variance `v` (with the `n − 1` divisor) and size `n`:
///
/// ```text
/// se = sqrt(v_1/n_1 + v_0/n_0)
/// df = se⁴ / ((v_1/n_1)²/(n_1 − 1) + (v_0/n_0)²/(n_0 − 1))      (Welch–Satterthwaite)
/// t  = (m_1 − m_0) / se,   p-value = 2·P(T_df ≥ |t|)
/// interval = (m_1 − m_0) ± t_df(1 − α/2)·se
/// ```
///
/// `None` when either `n < 2` or `se = 0` (both samples constant: nothing varies to test).
/// Errors on a negative or non-finite variance or mean, or a confidence outside (0, 1).
pub fn welch(
    (m1, v1, n1): (f64, f64, u64),
    (m0, v0, n0): (f64, f64, u64),
    confidence: f64,
) -> Result<Option<Welch>, String> {
    check_confidence(confidence)?;
    for (what, x) in [
        ("mean", m1),
        ("mean", m0),
        ("variance", v1),
        ("variance", v0),
    ] {
        if !x.is_finite() || (what == "variance" && x < 0.0) {
            return Err(format!(
                "{what} {x} must be a finite{} number",
                if what == "variance" {
                    " non-negative"
                } else {
                    ""
                }
            ));
        }
    }
    if n1 < 2 || n0 < 2 {
        return Ok(None);
    }
    let (a, b) = (v1 / n1 as f64, v0 / n0 as f64);
    let se2 = a + b;
    if se2 <= 0.0 {
        return Ok(None);
    }
    let se = se2.sqrt();
    let df = se2 * se2 / (a * a / (n1 - 1) as f64 + b * b / (n0 - 1) as f64);
    let t = StudentsT::new(0.0, 1.0, df).map_err(|e| format!("Student t with {df} df: {e}"))?;
    let d = m1 - m0;
    let alpha = 1.0 - confidence;
    let q = t_quantile(&t, 1.0 - alpha / 2.0);
    Ok(Some(Welch {
        difference: d,
        ci_low: d - q * se,
        ci_high: d + q * se,
        p_value: (2.0 * t.sf((d / se).abs())).min(1.0),
        df,
    }))
}

/// The `p` quantile of a Student t distribution. statrs' inverse goes through the inverse
/// regularized beta function, which is good to about 1e-10; two Newton steps on statrs' CDF
/// make it as exact as the CDF.
fn t_quantile(t: &StudentsT, p: f64) -> f64 {
    let mut x = t.inverse_cdf(p);
    for _ in 0..2 {
        let f = t.pdf(x);
        if f > 0.0 {
            x -= (t.cdf(x) - p) / f;
        }
    }
    x
}

/// Default statistical power for the minimum detectable effect: 80 %.
pub const DEFAULT_POWER: f64 = 0.8;

/// The minimum detectable effect (MDE) of a two-sided two-proportion z-test at `confidence`
/// with `n_1` and `n_0` trials: the smallest true difference `δ` the test detects with
/// probability `power`, given the pooled rate `P` of the data. With `σ = sqrt(P(1 − P)(1/n_1 +
/// 1/n_0))` and `z = Φ⁻¹(1 − α/2)`, `δ = d·σ` where `d` solves the exact two-sided power equation
///
/// ```text
/// Φ(d − z) + Φ(−d − z) = power
/// ```
///
/// (the textbook `d = z + Φ⁻¹(power)` drops the second, tiny term; this is the equation
/// statsmodels' `NormalIndPower` solves). `None` when either `n` is 0 or `P` is 0 or 1 (with no
/// variation in the data there is no variance to plan with). Errors when the power is not in
/// (α, 1) or the confidence is not in (0, 1).
pub fn mde(
    pooled: f64,
    n1: u64,
    n0: u64,
    confidence: f64,
    power: f64,
) -> Result<Option<f64>, String> {
    let z = z_quantile(confidence)?;
    let alpha = 1.0 - confidence;
    if !(power > alpha && power < 1.0) {
        return Err(format!(
            "power ({power}) must be above 1 − confidence and below 1, e.g. 0.8"
        ));
    }
    if n1 == 0 || n0 == 0 || !(pooled > 0.0 && pooled < 1.0) {
        return Ok(None);
    }
    let sigma = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n0 as f64)).sqrt();
    Ok(Some(detectable_d(z, power)? * sigma))
}

/// Solves `Φ(d − z) + Φ(−d − z) = power` for `d ≥ 0` by Newton's method from the one-tailed
/// solution, kept inside a bisection bracket. The left side rises from `α` at 0 to 1.
fn detectable_d(z: f64, power: f64) -> Result<f64, String> {
    let nd = std_normal()?;
    let g = |d: f64| nd.cdf(d - z) + nd.cdf(-d - z) - power;
    let (mut lo, mut hi) = (0.0_f64, z + nd.inverse_cdf(power).max(0.0) + 1.0);
    let mut d = z + nd.inverse_cdf(power);
    if !(d > lo && d < hi) {
        d = 0.5 * (lo + hi);
    }
    for _ in 0..200 {
        let gd = g(d);
        if gd == 0.0 {
            break;
        }
        if gd < 0.0 {
            lo = d;
        } else {
            hi = d;
        }
        let slope = nd.pdf(d - z) - nd.pdf(d + z);
        let next = d - gd / slope;
        let next = if slope > 0.0 && next > lo && next < hi {
            next
        } else {
            0.5 * (lo + hi)
        };
        if (next - d).abs() <= 1e-15 * d.abs() {
            d = next;
            break;
        }
        d = next;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arm(n: u64, successes: u64) -> Arm {
        Arm { n, successes }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-300) || (a - b).abs() <= 1e-15
    }

    #[track_caller]
    fn assert_close(got: f64, want: f64, tol: f64) {
        assert!(close(got, want, tol), "got {got:.17e}, want {want:.17e}");
    }

    #[test]
    fn z_quantiles() {
        assert_close(z_quantile(0.95).unwrap(), 1.959963984540054, 1e-12);
        assert_close(z_quantile(0.99).unwrap(), 2.5758293035489004, 1e-12);
        assert_close(z_quantile(0.90).unwrap(), 1.6448536269514722, 1e-12);
    }

    #[test]
    fn wilson_hand_checked() {
        // 10/100 at 95 %: centre = (0.1 + 1.92073/100)/(1.0384146) etc.
        let (l, h) = wilson(10, 100, 0.95).unwrap();
        assert_close(l, 0.05522913706067509, 1e-9);
        assert_close(h, 0.1743656615049133, 1e-9);
        let (l, h) = wilson(0, 50, 0.95).unwrap();
        assert_eq!(l, 0.0);
        assert_close(h, 0.0713476, 1e-6);
        let (l, h) = wilson(50, 50, 0.95).unwrap();
        assert_close(l, 1.0 - 0.0713476, 1e-6);
        assert_eq!(h, 1.0);
        assert_eq!(wilson(0, 0, 0.95).unwrap(), (0.0, 1.0));
    }

    #[test]
    fn newcombe_hand_checked() {
        // Newcombe (1998), table II, example (a): 56/70 vs 48/80: 0.2 (0.0524, 0.3339).
        let (l, h) = newcombe(56, 70, 48, 80, 0.95).unwrap().unwrap();
        assert!((l - 0.0524).abs() < 5e-5, "{l}");
        assert!((h - 0.3339).abs() < 5e-5, "{h}");
        // Example (c): 5/56 vs 0/29: 0.0893 (−0.0381, 0.1926).
        let (l, h) = newcombe(5, 56, 0, 29, 0.95).unwrap().unwrap();
        assert!((l - -0.0381).abs() < 5e-5, "{l}");
        assert!((h - 0.1926).abs() < 5e-5, "{h}");
        assert!(newcombe(1, 0, 1, 10, 0.95).is_err());
        assert_eq!(newcombe(0, 0, 1, 10, 0.95).unwrap(), None);
    }

    #[test]
    fn log_ratio_hand_checked() {
        // 20/100 vs 10/100: RR = 2, se = sqrt(1/20 − 1/100 + 1/10 − 1/100) = sqrt(0.13).
        let (l, h) = log_ratio_ci(20, 100, 10, 100, 0.95).unwrap().unwrap();
        let se = 0.13f64.sqrt();
        let z = 1.959963984540054;
        assert_close(l, 2.0 * (-z * se).exp() - 1.0, 1e-12);
        assert_close(h, 2.0 * (z * se).exp() - 1.0, 1e-12);
        assert_eq!(relative_lift(20, 100, 10, 100).unwrap(), Some(1.0));
        assert_eq!(log_ratio_ci(0, 100, 10, 100, 0.95).unwrap(), None);
        assert_eq!(relative_lift(3, 100, 0, 100).unwrap(), None);
    }

    #[test]
    fn z_test_hand_checked() {
        // 20/100 vs 10/100: P = 0.15, se = sqrt(0.15·0.85·0.02), z = 0.1/se = 1.9802950859533.
        let p = two_proportion_z(20, 100, 10, 100).unwrap().unwrap();
        assert_close(p, 0.04767038065616141, 1e-9); // scipy.stats.norm.sf
        assert_eq!(two_proportion_z(0, 100, 0, 200).unwrap(), Some(1.0));
        assert_eq!(two_proportion_z(100, 100, 200, 200).unwrap(), Some(1.0));
        assert_eq!(two_proportion_z(0, 0, 0, 200).unwrap(), None);
        assert_eq!(two_proportion_z(10, 100, 10, 100).unwrap(), Some(1.0));
    }

    #[test]
    fn chi_square_hand_checked() {
        // 2×2: the chi-square statistic is the square of the pooled z.
        let c = chi_square(&[arm(100, 20), arm(100, 10)]).unwrap().unwrap();
        assert_close(c.statistic, 1.9802950859533487f64.powi(2), 1e-12);
        assert_eq!(c.df, 1);
        assert_close(
            c.p_value,
            two_proportion_z(20, 100, 10, 100).unwrap().unwrap(),
            1e-9,
        );
        // 3×2: 10/100, 20/100, 30/100: S = 60, F = 240, N = 300; X² = (10²+0+10²)·300/(100·60·240)
        let c = chi_square(&[arm(100, 10), arm(100, 20), arm(100, 30)])
            .unwrap()
            .unwrap();
        assert_close(c.statistic, 12.5, 1e-12);
        assert_eq!(c.df, 2);
        assert_close(c.p_value, (-12.5f64 / 2.0).exp(), 1e-9); // χ²₂ survival is e^{−x/2}
        assert_eq!(chi_square(&[arm(100, 0), arm(50, 0)]).unwrap(), None);
        assert_eq!(chi_square(&[arm(100, 100), arm(50, 50)]).unwrap(), None);
        assert_eq!(chi_square(&[arm(100, 10), arm(0, 0)]).unwrap(), None);
        // An empty arm is left out.
        let with_empty = chi_square(&[arm(100, 20), arm(0, 0), arm(100, 10)])
            .unwrap()
            .unwrap();
        assert_eq!(with_empty.df, 1);
        assert_close(with_empty.statistic, c_stat_2x2(), 1e-12);
    }

    fn c_stat_2x2() -> f64 {
        chi_square(&[arm(100, 20), arm(100, 10)])
            .unwrap()
            .unwrap()
            .statistic
    }

    #[test]
    fn prob_best_known_values() {
        // Two uniform posteriors: 1/2 each.
        let p = prob_best(&[arm(0, 0), arm(0, 0)]).unwrap();
        assert_close(p[0], 0.5, 1e-12);
        // Beta(2,1) vs Beta(1,1): P(X > Y) = ∫ 2x·x dx = 2/3.
        let p = prob_best(&[arm(1, 1), arm(0, 0)]).unwrap();
        assert_close(p[0], 2.0 / 3.0, 1e-12);
        assert_close(p[1], 1.0 / 3.0, 1e-12);
        // Beta(1,2) vs Beta(2,1): P(X > Y) = 1/6 (Evan Miller's closed form).
        let p = prob_best(&[arm(1, 0), arm(1, 1)]).unwrap();
        assert_close(p[0], 1.0 / 6.0, 1e-12);
        // Three uniforms: 1/3 each.
        let p = prob_best(&[arm(0, 0), arm(0, 0), arm(0, 0)]).unwrap();
        for x in p {
            assert_close(x, 1.0 / 3.0, 1e-12);
        }
        // Evan Miller's closed form for two Beta posteriors with integer parameters:
        // P(p_B > p_A) = Σ_{i=0}^{a_B−1} B(a_A + i, b_A + b_B) / ((b_B + i) B(1 + i, b_B) B(a_A, b_A)).
        let (sa, na, sb, nb) = (30u64, 200u64, 45u64, 210u64);
        let (aa, ba, ab, bb) = (
            1.0 + sa as f64,
            1.0 + (na - sa) as f64,
            1.0 + sb as f64,
            1.0 + (nb - sb) as f64,
        );
        use statrs::function::beta::ln_beta;
        let mut want = 0.0;
        for i in 0..(ab as u64) {
            let i = i as f64;
            want +=
                (ln_beta(aa + i, ba + bb) - (bb + i).ln() - ln_beta(1.0 + i, bb) - ln_beta(aa, ba))
                    .exp();
        }
        let p = prob_best(&[arm(na, sa), arm(nb, sb)]).unwrap();
        assert_close(p[1], want, 1e-9);
    }

    #[test]
    fn compare_errors() {
        let o = Options::default();
        assert!(compare(&[arm(10, 1)], 0, &o)
            .unwrap_err()
            .contains("at least 2 arms"));
        assert!(compare(&[arm(10, 1), arm(10, 2)], 2, &o)
            .unwrap_err()
            .contains("out of range"));
        assert!(compare(&[arm(10, 1), arm(10, 11)], 0, &o)
            .unwrap_err()
            .contains("arm 1: successes (11) exceed n (10)"));
        for c in [0.0, 1.0, -0.5, f64::NAN] {
            let bad = Options { confidence: c, ..o };
            assert!(compare(&[arm(10, 1), arm(10, 2)], 0, &bad)
                .unwrap_err()
                .contains("confidence"));
        }
        for t in [0.0, -0.01, f64::NAN] {
            let bad = Options { tau: t, ..o };
            assert!(compare(&[arm(10, 1), arm(10, 2)], 0, &bad)
                .unwrap_err()
                .contains("tau"));
        }
    }

    #[test]
    fn compare_fields_for_control_and_empty_arms() {
        let s = compare(
            &[arm(1000, 100), arm(0, 0), arm(1000, 0)],
            0,
            &Options::default(),
        )
        .unwrap();
        let c = &s[0];
        assert!(c.lift.is_none() && c.p_value.is_none() && c.always_valid_p.is_none());
        assert!(c.rel_lift.is_none() && c.lift_ci_low.is_none() && c.cs_low.is_none());
        let e = &s[1];
        assert_eq!((e.rate, e.ci_low, e.ci_high), (0.0, 0.0, 1.0));
        assert!(e.lift.is_none() && e.p_value.is_none() && e.always_valid_p.is_none());
        let z = &s[2];
        assert_eq!(z.lift, Some(-0.1));
        assert_eq!(z.rel_lift, Some(-1.0));
        assert!(z.rel_lift_ci_low.is_none());
        assert!(z.p_value.unwrap() < 1e-20);
        let chi = s[0].chi2_p_value.unwrap();
        assert!(s.iter().all(|x| x.chi2_p_value == Some(chi)));
        assert!(s.iter().all(|x| x.decision == "collecting"));
    }

    fn decisions(arms: &[Arm], control: usize) -> Vec<&'static str> {
        compare(arms, control, &Options::default())
            .unwrap()
            .into_iter()
            .map(|s| s.decision)
            .collect()
    }

    #[test]
    fn decision_rule() {
        // Too few trials or successes in some arm.
        assert_eq!(
            decisions(&[arm(99, 50), arm(5000, 50)], 0),
            ["collecting"; 2]
        );
        assert_eq!(
            decisions(&[arm(5000, 9), arm(5000, 500)], 0),
            ["collecting"; 2]
        );
        // A clearly better variant.
        assert_eq!(
            decisions(&[arm(5000, 500), arm(5000, 700)], 0),
            ["collecting", "winner"]
        );
        // A clearly better control: every other arm significantly worse.
        assert_eq!(
            decisions(&[arm(5000, 700), arm(5000, 500), arm(5000, 450)], 0),
            ["winner", "collecting", "collecting"]
        );
        // The control is best but one arm is not significantly worse: leader.
        assert_eq!(
            decisions(&[arm(5000, 700), arm(5000, 500), arm(5000, 690)], 0),
            ["leader", "collecting", "collecting"]
        );
        // Fixed-horizon significant (p ≈ 0.011) but not yet always-valid: leader.
        let s = compare(&[arm(2000, 200), arm(2000, 250)], 0, &Options::default()).unwrap();
        assert!(s[1].p_value.unwrap() < 0.05 && s[1].always_valid_p.unwrap() >= 0.05);
        assert_eq!(s[1].decision, "leader");
        assert_eq!(s[0].decision, "collecting");
        // Equal rates and a narrow confidence sequence: no difference.
        assert_eq!(
            decisions(&[arm(200_000, 20_000), arm(200_000, 20_010)], 0),
            ["no_difference"; 2]
        );
        // Equal rates but still wide: the better arm leads.
        assert_eq!(
            decisions(&[arm(1000, 100), arm(1000, 101)], 0),
            ["collecting", "leader"]
        );
    }

    #[test]
    fn confidence_sequence_hand_checked() {
        // 600/5000 vs 500/5000 with τ = 0.02, α = 0.05.
        let m = msprt(600, 5000, 500, 5000, 0.02, 0.95).unwrap().unwrap();
        let v: f64 = 0.12 * 0.88 / 5000.0 + 0.1 * 0.9 / 5000.0;
        let t2 = 0.0004;
        let lambda = (v / (v + t2)).sqrt() * (t2 * 0.02f64.powi(2) / (2.0 * v * (v + t2))).exp();
        assert_close(m.always_valid_p, (1.0 / lambda).min(1.0), 1e-10);
        let r = (v * (v + t2) / t2 * (((v + t2) / v).ln() + 2.0 * 20f64.ln())).sqrt();
        assert_close(m.cs_low, 0.02 - r, 1e-10);
        assert_close(m.cs_high, 0.02 + r, 1e-10);
        assert_eq!(msprt(0, 100, 0, 100, 0.02, 0.95).unwrap(), None);
        assert!(msprt(1, 100, 0, 100, 0.0, 0.95).is_err());
    }

    fn arms_strategy() -> impl Strategy<Value = Vec<Arm>> {
        prop::collection::vec(
            (0u64..20_000, 0.0f64..=1.0).prop_map(|(n, f)| arm(n, ((n as f64) * f) as u64)),
            2..5,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn wilson_contains_rate(n in 0u64..1_000_000, f in 0.0f64..=1.0, conf in 0.5f64..0.999) {
            let s = ((n as f64) * f) as u64;
            let (l, h) = wilson(s, n, conf).unwrap();
            let p = rate(s, n);
            prop_assert!(0.0 <= l && l <= p && p <= h && h <= 1.0, "{l} {p} {h}");
        }

        #[test]
        fn prob_best_sums_to_one_and_is_deterministic(arms in arms_strategy()) {
            let p = prob_best(&arms).unwrap();
            let sum: f64 = p.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "sum {sum}");
            prop_assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
            prop_assert_eq!(p, prob_best(&arms).unwrap());
        }

        #[test]
        fn prob_best_increases_with_successes(arms in arms_strategy(), which in 0usize..4) {
            let i = which % arms.len();
            prop_assume!(arms[i].successes < arms[i].n);
            let before = prob_best(&arms).unwrap()[i];
            let mut more = arms.clone();
            more[i].successes += 1;
            let after = prob_best(&more).unwrap()[i];
            // Up to the ~1e-10 accuracy of the beta CDFs.
            prop_assert!(after >= before - 1e-9, "{before} -> {after}");
        }

        #[test]
        fn intervals_contain_their_estimates(arms in arms_strategy()) {
            for st in compare(&arms, 0, &Options::default()).unwrap() {
                if let (Some(d), Some(l), Some(h)) = (st.lift, st.lift_ci_low, st.lift_ci_high) {
                    prop_assert!(l <= d && d <= h);
                }
                if let (Some(d), Some(l), Some(h)) = (st.rel_lift, st.rel_lift_ci_low, st.rel_lift_ci_high) {
                    prop_assert!(l <= d + 1e-12 && d <= h + 1e-12);
                }
                if let (Some(d), Some(l), Some(h)) = (st.lift, st.cs_low, st.cs_high) {
                    prop_assert!(l < d && d < h);
                }
                if let Some(p) = st.always_valid_p { prop_assert!((0.0..=1.0).contains(&p)); }
                if let Some(p) = st.p_value { prop_assert!((0.0..=1.0).contains(&p)); }
            }
        }

        /// The confidence sequence is wider than the fixed-horizon (Wald) interval
        /// `θ̂ ± z·sqrt(V)` from the same variance: its squared half-width
        /// `V(V+τ²)/τ²·(ln((V+τ²)/V) + 2 ln(1/α))` exceeds `V·2 ln(1/α) ≥ V·z²`
        /// since `erfc(x) ≤ e^{−x²}`.
        #[test]
        fn confidence_sequence_wider_than_fixed_horizon(
            n1 in 1u64..100_000, f1 in 0.0f64..=1.0, n0 in 1u64..100_000, f0 in 0.0f64..=1.0,
            tau in 0.001f64..0.5, conf in 0.5f64..0.999,
        ) {
            let (s1, s0) = (((n1 as f64) * f1) as u64, ((n0 as f64) * f0) as u64);
            if let Some(m) = msprt(s1, n1, s0, n0, tau, conf).unwrap() {
                let (p1, p0) = (rate(s1, n1), rate(s0, n0));
                let v = p1 * (1.0 - p1) / n1 as f64 + p0 * (1.0 - p0) / n0 as f64;
                let half = z_quantile(conf).unwrap() * v.sqrt();
                let d = difference(s1, n1, s0, n0);
                prop_assert!(m.cs_low < d - half && m.cs_high > d + half);
            }
        }
    }
}
