//! Attribution maths: which touches get credit for a conversion, and how much.
//!
//! Everything here is pure: the extension reads touches and conversions from its tables, calls
//! these functions and writes the results back. Times are **microseconds since the Unix epoch**
//! (`i64`), as Postgres stores `timestamptz`; windows and half-lives are durations in
//! microseconds.
//!
//! # Touches and eligibility
//!
//! A [`Touch`] is one thing that happened to a subscriber before a conversion: a click
//! ([`TouchKind::Click`]) or a view ([`TouchKind::View`]). `sms` is true for SMS touches (clicks
//! on our links, and deliveries recorded as views); other channels' touchpoints have
//! `sms == false`.
//!
//! For a conversion at time `c` and [`Params::click_window`] `w`, a touch is an **eligible click
//! touch** when
//!
//! ```text
//! kind == Click  and  c − w ≤ at ≤ c        (both edges inclusive)
//! ```
//!
//! Touches after the conversion and touches older than the window are never eligible. Views are
//! never eligible, except in the view-through fallback of [`Model::Windowed`].
//!
//! # Rule-based models ([`credit`])
//!
//! | model | credit |
//! |---|---|
//! | `last_click` | 1 to the eligible click touch with the greatest index (ties at one instant: the later in slice order, i.e. the higher row id, wins) |
//! | `first_click` | 1 to the eligible click touch with the smallest index |
//! | `windowed` | 1 to the last eligible click touch with `sms`; if none and a view window `v` is set, 1 to the last touch with `sms`, `kind == View` and `c − v ≤ at ≤ c`; otherwise unattributed. Non-SMS touches are ignored. |
//! | `linear` | `1/n` to each of the `n` eligible click touches (a repeated channel counts once per touch) |
//! | `time_decay` | weight `2^(−(c − at)/h)` (`h` = [`Params::half_life`], `c − at` continuous), normalised to sum 1 over the eligible click touches |
//! | `position_based` | 1 touch: 1; 2 touches: ½ each; `n ≥ 3`: 0.4 to the first, 0.4 to the last, `0.2/(n−2)` to each middle one |
//!
//! "First", "last" and "greatest index" refer to the order of the slice the caller passes, which
//! should be ascending by `(at, row id)`; the functions never sort and never assume that order.
//!
//! # Data-driven model ([`markov_fit`])
//!
//! A first-order Markov chain over channel paths, with exact removal effects computed from the
//! fundamental matrix of the absorbing chain; see [`markov_fit`] for the derivation. Journeys
//! for it are cut per subscriber by [`journeys`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// An attribution model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// All credit to the last eligible click touch.
    LastClick,
    /// All credit to the first eligible click touch.
    FirstClick,
    /// All credit to the last eligible SMS click, with an optional SMS view-through fallback.
    Windowed,
    /// Equal credit to every eligible click touch.
    Linear,
    /// Credit halving with every half-life of age before the conversion.
    TimeDecay,
    /// 40 % first, 40 % last, 20 % shared by the middle touches.
    PositionBased,
    /// Removal effects of a first-order Markov chain over channel paths.
    Markov,
}

impl Model {
    /// Every model, in documentation order.
    pub const ALL: [Model; 7] = [
        Model::LastClick,
        Model::FirstClick,
        Model::Windowed,
        Model::Linear,
        Model::TimeDecay,
        Model::PositionBased,
        Model::Markov,
    ];

    /// Parses a model name: one of `last_click`, `first_click`, `windowed`, `linear`,
    /// `time_decay`, `position_based`, `markov`, exactly in lower case, after trimming ASCII
    /// whitespace. The error message lists the valid names.
    pub fn parse(s: &str) -> Result<Model, String> {
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
        Model::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == t)
            .ok_or_else(|| {
                let names: Vec<&str> = Model::ALL.iter().map(|m| m.as_str()).collect();
                format!(
                    "unknown attribution model {s:?}: use one of {}",
                    names.join(", ")
                )
            })
    }

    /// The model's SQL name, as accepted by [`Model::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Model::LastClick => "last_click",
            Model::FirstClick => "first_click",
            Model::Windowed => "windowed",
            Model::Linear => "linear",
            Model::TimeDecay => "time_decay",
            Model::PositionBased => "position_based",
            Model::Markov => "markov",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a touch was a click or only a view (for SMS: a delivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchKind {
    /// The subscriber acted: a click on a link, or another channel's click.
    Click,
    /// The subscriber was exposed: an SMS delivery or another channel's impression.
    View,
}

/// One touch of a subscriber.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Touch {
    /// When it happened, in microseconds since the Unix epoch.
    pub at: i64,
    /// Click or view.
    pub kind: TouchKind,
    /// True for SMS touches (clicks on our links, deliveries as views).
    pub sms: bool,
    /// Markov state id of the touch's channel (or campaign), chosen by the caller; ignored by
    /// every other model.
    pub state: u32,
}

/// Windows and half-life of the rule-based models, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Click look-back window `w` (> 0): a click is eligible when `c − w ≤ at ≤ c`.
    pub click_window: i64,
    /// View-through window `v` (> 0) of [`Model::Windowed`]'s fallback; `None` disables it.
    pub view_window: Option<i64>,
    /// Half-life `h` (> 0) of [`Model::TimeDecay`]: a touch `h` older than another gets half
    /// its weight.
    pub half_life: i64,
}

impl Params {
    /// Validated parameters: `click_window`, `view_window` (when given) and `half_life` must
    /// be positive. The error says which one is wrong and how to fix it.
    pub fn new(
        click_window: i64,
        view_window: Option<i64>,
        half_life: i64,
    ) -> Result<Params, String> {
        if click_window <= 0 {
            return Err(format!(
                "click window must be positive, got {click_window} microseconds: use an interval such as '7 days'"
            ));
        }
        if let Some(v) = view_window {
            if v <= 0 {
                return Err(format!(
                    "view window must be positive, got {v} microseconds: use an interval such as '1 day', or NULL to disable view-through"
                ));
            }
        }
        if half_life <= 0 {
            return Err(format!(
                "half-life must be positive, got {half_life} microseconds: use an interval such as '7 days'"
            ));
        }
        Ok(Params {
            click_window,
            view_window,
            half_life,
        })
    }
}

/// `0 ≤ c − at ≤ window`, computed without overflow.
fn within(at: i64, conversion_at: i64, window: i64) -> bool {
    let d = i128::from(conversion_at) - i128::from(at);
    d >= 0 && d <= i128::from(window)
}

/// Whether `t` is an eligible click touch for a conversion at `conversion_at`: a click with
/// `conversion_at − click_window ≤ t.at ≤ conversion_at`.
pub fn eligible(t: &Touch, conversion_at: i64, click_window: i64) -> bool {
    t.kind == TouchKind::Click && within(t.at, conversion_at, click_window)
}

/// Credits for one conversion at `conversion_at`, for every model except [`Model::Markov`]
/// (which returns an error: its credits come from [`markov_fit`] and [`MarkovFit::credits`]).
///
/// `touches` are the subscriber's touches, which the caller sorts ascending by `(at, row id)`.
/// Nothing else is assumed: the slice may hold views, non-SMS touches, touches outside the
/// window and touches after the conversion; each model picks its touches by the definitions in
/// the [module documentation](self) (eligible click touches, and SMS views for the windowed
/// fallback). Time decay uses the times; every other choice is by slice index.
///
/// Returns `(index into touches, credit)` for each credited touch, in ascending index order.
/// An empty vector means the conversion is unattributed; otherwise the credits are in `[0, 1]`
/// and sum to 1 within floating-point rounding.
///
/// Errors: `Model::Markov`, or `p` with a non-positive window or half-life (the fields are
/// public, so they are checked again here).
pub fn credit(
    model: Model,
    touches: &[Touch],
    conversion_at: i64,
    p: &Params,
) -> Result<Vec<(usize, f64)>, String> {
    Params::new(p.click_window, p.view_window, p.half_life)?;
    let eligible_idx = || {
        touches
            .iter()
            .enumerate()
            .filter(|(_, t)| eligible(t, conversion_at, p.click_window))
            .map(|(i, _)| i)
    };
    let out = match model {
        Model::LastClick => eligible_idx().next_back().map(|i| vec![(i, 1.0)]).unwrap_or_default(),
        Model::FirstClick => eligible_idx().next().map(|i| vec![(i, 1.0)]).unwrap_or_default(),
        Model::Windowed => {
            let click = eligible_idx().rfind(|&i| touches[i].sms);
            let pick = click.or_else(|| {
                let vw = p.view_window?;
                touches
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        t.sms && t.kind == TouchKind::View && within(t.at, conversion_at, vw)
                    })
                    .map(|(i, _)| i)
                    .next_back()
            });
            pick.map(|i| vec![(i, 1.0)]).unwrap_or_default()
        }
        Model::Linear => {
            let idx: Vec<usize> = eligible_idx().collect();
            let share = 1.0 / idx.len().max(1) as f64;
            idx.into_iter().map(|i| (i, share)).collect()
        }
        Model::TimeDecay => time_decay(touches, &eligible_idx().collect::<Vec<_>>(), conversion_at, p.half_life),
        Model::PositionBased => {
            let idx: Vec<usize> = eligible_idx().collect();
            let n = idx.len();
            idx.iter()
                .enumerate()
                .map(|(pos, &i)| (i, position_share(pos, n)))
                .collect()
        }
        Model::Markov => {
            return Err(
                "the markov model credits whole journeys: fit it with markov_fit and take per-touch credits from MarkovFit::credits"
                    .into(),
            )
        }
    };
    Ok(out)
}

/// Share of the touch at position `pos` (0-based) among `n` eligible touches under
/// [`Model::PositionBased`].
fn position_share(pos: usize, n: usize) -> f64 {
    match n {
        0 => 0.0,
        1 => 1.0,
        2 => 0.5,
        _ if pos == 0 || pos == n - 1 => 0.4,
        _ => 0.2 / (n - 2) as f64,
    }
}

/// Time-decay credits over the eligible indexes `idx`.
///
/// The weight `2^(−(c − at)/h)` is evaluated relative to the newest eligible touch, as
/// `2^(−(d_i − d_min)/h)` with `d = c − at`: the common factor `2^(−d_min/h)` cancels in the
/// normalisation, and this keeps the largest weight at exactly 1 so that very long windows
/// cannot underflow every weight to zero.
fn time_decay(
    touches: &[Touch],
    idx: &[usize],
    conversion_at: i64,
    half_life: i64,
) -> Vec<(usize, f64)> {
    let age = |i: usize| i128::from(conversion_at) - i128::from(touches[i].at);
    let Some(newest) = idx.iter().map(|&i| age(i)).min() else {
        return Vec::new();
    };
    let h = half_life as f64;
    // Differences are taken exactly in integers, then converted.
    let weights: Vec<f64> = idx
        .iter()
        .map(|&i| (-((age(i) - newest) as f64) / h).exp2())
        .collect();
    let total: f64 = weights.iter().sum();
    idx.iter()
        .zip(weights)
        .map(|(&i, w)| (i, w / total))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Markov
// ---------------------------------------------------------------------------------------------

/// One journey for [`markov_fit`]: its touches' `state` ids in time order, and whether it ended
/// in a conversion. Consecutive repeats need not be collapsed by the caller; the fit does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path<'a> {
    /// State ids in time order.
    pub states: &'a [u32],
    /// True when the journey ended in a conversion, false for a null journey.
    pub converted: bool,
}

/// A state of the chain. The derived order (`Start` < `Channel` by id < `Conversion` <
/// `Null`) is the order of [`MarkovFit::transitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Where every journey begins.
    Start,
    /// A channel (or campaign) state, by the caller's id.
    Channel(u32),
    /// Absorbing: the journey converted.
    Conversion,
    /// Absorbing: the journey ended without converting.
    Null,
}

/// One observed transition of the chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// Source state (`Start` or a channel).
    pub from: State,
    /// Destination state (a channel, `Conversion` or `Null`).
    pub to: State,
    /// How many times the transition was observed.
    pub count: u64,
    /// Maximum-likelihood probability: `count` divided by the number of transitions out of
    /// `from`.
    pub probability: f64,
}

/// A fitted first-order Markov chain and its removal effects; see [`markov_fit`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MarkovFit {
    /// Every observed transition with its maximum-likelihood probability, sorted by
    /// `(from, to)` in [`State`] order.
    pub transitions: Vec<Transition>,
    /// `P`: the probability of reaching `Conversion` from `Start` in the full chain.
    pub conversion_probability: f64,
    /// `(k, RE_k)` for every channel state seen, ascending by `k`, where
    /// `RE_k = 1 − P_without_k / P` (0 when `P == 0`), in `[0, 1]`.
    pub removal_effects: Vec<(u32, f64)>,
    /// Number of converted non-empty paths.
    pub converting_paths: u64,
}

/// Fits a first-order Markov chain to journeys and computes every channel's removal effect
/// exactly.
///
/// # The chain
///
/// Empty paths are ignored. In each path, consecutive repeats are collapsed (`A A B → A B`;
/// `A B A` stays, a loop). A path `s_1 … s_m` contributes the transitions
/// `Start → s_1`, `s_i → s_{i+1}`, and `s_m → Conversion` if it converted, else `s_m → Null`.
/// The probability of `i → j` is `count(i → j) / Σ_j' count(i → j')` (maximum likelihood).
/// `Conversion` and `Null` are absorbing; `Start` and the channels are transient.
///
/// # Exact solution
///
/// Order the transient states `Start, k_1, …, k_m` and let `Q` be the transient-to-transient
/// transition matrix and `r` the column of transient-to-`Conversion` probabilities. The
/// fundamental matrix `N = (I − Q)⁻¹` holds expected visit counts (`N[i, j]`: expected visits
/// to `j` starting from `i`), and `x = N r` holds the absorption probabilities into
/// `Conversion`. The conversion probability is `P = x[Start]`.
///
/// Removing channel `k` redirects every transition into `k` to `Null`. A walk of the reduced
/// chain converts exactly when the same walk of the full chain converts without ever visiting
/// `k`. By the strong Markov property at the first visit to `k`,
///
/// ```text
/// P = P(convert, never visit k) + P(visit k) · P(convert | start at k)
///   = P_without_k + h_k · x_k
/// ```
///
/// where `h_k = N[Start, k] / N[k, k]` is the probability of ever visiting `k` from `Start`
/// (expected visits = `h_k` × expected visits once there, `N[k, k]`). Hence
///
/// ```text
/// P_without_k = P − h_k · x_k,     RE_k = 1 − P_without_k / P = h_k · x_k / P
/// ```
///
/// i.e. `RE_k` is the share of conversions whose walk passes through `k`. One inverse gives
/// every removal effect; no simulation. The inverse is computed by Gauss–Jordan elimination with
/// partial pivoting: `O(s³)` time and `O(s²)` memory for `s` transient states.
///
/// `I − Q` is invertible for every chain built from paths (each transient state seen has an
/// observed path onward to absorption). Should it nevertheless be numerically singular, the fit
/// still returns its transitions, with `P = 0` and every removal effect 0; it never panics.
/// The most channel states a Markov fit takes. The fit inverts an `s × s` matrix: a thousand
/// states is 8 MB and about a second of one core; ten thousand would be 800 MB and fifteen
/// minutes, uninterruptible.
pub const MAX_MARKOV_STATES: usize = 1000;

pub fn markov_fit<'a>(paths: impl IntoIterator<Item = Path<'a>>) -> MarkovFit {
    let mut counts: HashMap<(State, State), u64> = HashMap::new();
    let mut channels: BTreeSet<u32> = BTreeSet::new();
    let mut converting_paths = 0u64;
    let mut bump = |from: State, to: State| {
        let c = counts.entry((from, to)).or_insert(0);
        *c = c.saturating_add(1);
    };
    for path in paths {
        let mut prev = State::Start;
        for &s in path.states {
            let here = State::Channel(s);
            if here != prev {
                bump(prev, here);
                channels.insert(s);
                prev = here;
            }
        }
        if prev == State::Start {
            continue; // empty path
        }
        if path.converted {
            converting_paths = converting_paths.saturating_add(1);
            bump(prev, State::Conversion);
        } else {
            bump(prev, State::Null);
        }
    }

    let mut out_count: HashMap<State, u64> = HashMap::new();
    for (&(from, _), &c) in &counts {
        let o = out_count.entry(from).or_insert(0);
        *o = o.saturating_add(c);
    }
    let mut transitions: Vec<Transition> = counts
        .iter()
        .map(|(&(from, to), &count)| {
            let total = out_count.get(&from).copied().unwrap_or(0);
            let probability = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            Transition {
                from,
                to,
                count,
                probability,
            }
        })
        .collect();
    transitions.sort_by_key(|t| (t.from, t.to));

    let channels: Vec<u32> = channels.into_iter().collect();
    let (conversion_probability, effects) = solve_chain(&channels, &transitions);
    MarkovFit {
        transitions,
        conversion_probability,
        removal_effects: channels.into_iter().zip(effects).collect(),
        converting_paths,
    }
}

/// Transient index of a state: 0 for `Start`, `1 + position` for a channel in the sorted
/// `channels`; `None` for the absorbing states.
fn transient_index(channels: &[u32], s: State) -> Option<usize> {
    match s {
        State::Start => Some(0),
        State::Channel(k) => channels.binary_search(&k).ok().map(|i| i + 1),
        State::Conversion | State::Null => None,
    }
}

/// `P` and the removal effects (in `channels` order) of the chain given by `transitions`; see
/// [`markov_fit`]. Degrades to `(0, all zeros)` when `I − Q` is singular.
fn solve_chain(channels: &[u32], transitions: &[Transition]) -> (f64, Vec<f64>) {
    let zeros = vec![0.0; channels.len()];
    if channels.is_empty() {
        return (0.0, zeros);
    }
    let s = channels.len() + 1;
    // a = I − Q (row-major), r = transient → Conversion.
    let mut a = vec![0.0; s * s];
    for i in 0..s {
        a[i * s + i] = 1.0;
    }
    let mut r = vec![0.0; s];
    for t in transitions {
        let Some(i) = transient_index(channels, t.from) else {
            continue;
        };
        match (t.to, transient_index(channels, t.to)) {
            (_, Some(j)) => a[i * s + j] -= t.probability,
            (State::Conversion, None) => r[i] += t.probability,
            _ => {}
        }
    }
    let Some(n) = invert(a, s) else {
        return (0.0, zeros);
    };
    let x: Vec<f64> = (0..s)
        .map(|i| (0..s).map(|j| n[i * s + j] * r[j]).sum())
        .collect();
    let p = x[0];
    if !p.is_finite() || p <= 0.0 {
        return (0.0, zeros);
    }
    let p = p.min(1.0);
    let effects = (1..s)
        .map(|k| {
            let nkk = n[k * s + k];
            if !(nkk.is_finite() && nkk > 0.0) {
                return 0.0;
            }
            let h = n[k] / nkk; // N[Start, k] / N[k, k]
            let re = h * x[k] / p;
            if re.is_finite() {
                re.clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    (p, effects)
}

/// Inverse of the `s × s` row-major matrix `a` (nalgebra's LU decomposition with partial
/// pivoting), row-major; `None` when the matrix is singular or the result is not finite.
fn invert(a: Vec<f64>, s: usize) -> Option<Vec<f64>> {
    let inv = nalgebra::DMatrix::from_row_slice(s, s, &a).try_inverse()?;
    // nalgebra is column-major: transpose to read it out row by row.
    let rows: Vec<f64> = inv.transpose().as_slice().to_vec();
    rows.iter().all(|v| v.is_finite()).then_some(rows)
}

impl MarkovFit {
    /// Removal effect `RE_k` of a channel state; 0 for a state the fit has not seen.
    pub fn removal_effect(&self, state: u32) -> f64 {
        self.removal_effects
            .binary_search_by_key(&state, |&(k, _)| k)
            .map(|i| self.removal_effects[i].1)
            .unwrap_or(0.0)
    }

    /// The conversions the model gives channel `state` overall:
    /// `RE_k / Σ_j RE_j × converting_paths`. 0 for an unknown state or when every removal
    /// effect is 0. Summed over the channels it equals `converting_paths` (when some effect is
    /// positive).
    pub fn conversions(&self, state: u32) -> f64 {
        let total: f64 = self.removal_effects.iter().map(|&(_, re)| re).sum();
        if !(total > 0.0 && total.is_finite()) {
            return 0.0;
        }
        self.removal_effect(state) / total * self.converting_paths as f64
    }

    /// Per-touch credits of one converting path, given its touches' states in time order
    /// (uncollapsed). Each distinct channel `k` on the path gets
    /// `RE_k / Σ_{distinct j on the path} RE_j`, split equally among that channel's touches on
    /// the path. States unknown to the fit count as `RE = 0`. If every removal effect on the
    /// path is 0, the credits fall back to linear (`1/n` per touch).
    ///
    /// The result has the same length as `states` and sums to 1 (empty input: empty output).
    pub fn credits(&self, states: &[u32]) -> Vec<f64> {
        if states.is_empty() {
            return Vec::new();
        }
        // Distinct states on the path with their touch count and removal effect.
        let mut distinct: Vec<(u32, usize, f64)> = Vec::new();
        for &s in states {
            match distinct.iter_mut().find(|(k, _, _)| *k == s) {
                Some(d) => d.1 += 1,
                None => distinct.push((s, 1, self.removal_effect(s))),
            }
        }
        let total: f64 = distinct.iter().map(|d| d.2).sum();
        if !(total > 0.0 && total.is_finite()) {
            let share = 1.0 / states.len() as f64;
            return vec![share; states.len()];
        }
        states
            .iter()
            .map(|s| {
                distinct
                    .iter()
                    .find(|d| d.0 == *s)
                    .map(|&(_, n, re)| re / total / n as f64)
                    .unwrap_or(0.0)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Journeys
// ---------------------------------------------------------------------------------------------

/// One journey cut by [`journeys`]: the touches on one conversion's path, or a null path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journey {
    /// Indexes into the `touch_at` slice, ascending.
    pub touches: Vec<usize>,
    /// Index into the `conversion_at` slice, or `None` for a null path.
    pub conversion: Option<usize>,
}

/// Cuts one subscriber's click touches into journeys for [`markov_fit`].
///
/// `touch_at`: the subscriber's click touches' times, ascending. `conversion_at`: the
/// subscriber's conversion times, ascending. `click_window` in microseconds.
///
/// - Each touch goes to the **first conversion at or after it** (`touch_at ≤ conversion_at`; a
///   touch at the same instant as a conversion goes to that conversion, and among conversions
///   at one instant, to the first in slice order).
/// - If that conversion is within the window (`conversion_at − touch_at ≤ click_window`), the
///   touch is on that conversion's path. Otherwise (no later conversion, or the touch is older
///   than the window) it is a **null touch**.
/// - Null touches with no conversion between them (the same next conversion, or none) form one
///   null path (`conversion: None`).
/// - Every conversion gets a journey, possibly with no touches.
///
/// Output is in time order: for each conversion, first the null path of the too-old touches
/// before it (all older than that conversion's path touches), then the conversion's journey;
/// finally the null path of the touches after the last conversion.
///
/// Unsorted input never panics, but the grouping is then only meaningful for sorted input.
pub fn journeys(touch_at: &[i64], conversion_at: &[i64], click_window: i64) -> Vec<Journey> {
    let c = conversion_at.len();
    // Slot 2j: null touches before conversion j; slot 2j+1: conversion j's path;
    // slot 2c: null touches after the last conversion.
    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); 2 * c + 1];
    for (i, &t) in touch_at.iter().enumerate() {
        let j = conversion_at.partition_point(|&conv| conv < t);
        let slot = match conversion_at.get(j) {
            Some(&conv) if within(t, conv, click_window) => 2 * j + 1,
            _ => 2 * j,
        };
        slots[slot].push(i);
    }
    slots
        .into_iter()
        .enumerate()
        .filter_map(|(slot, touches)| {
            if slot % 2 == 1 {
                Some(Journey {
                    touches,
                    conversion: Some(slot / 2),
                })
            } else if touches.is_empty() {
                None
            } else {
                Some(Journey {
                    touches,
                    conversion: None,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_matches_hand_inverse() {
        // [[2, 1], [1, 1]]⁻¹ = [[1, −1], [−1, 2]]; the zero top-left pivot forces a swap in the
        // second matrix: [[0, 1], [1, 0]]⁻¹ = itself.
        let inv = invert(vec![2.0, 1.0, 1.0, 1.0], 2).expect("invertible");
        for (got, want) in inv.iter().zip([1.0, -1.0, -1.0, 2.0]) {
            assert!((got - want).abs() < 1e-12, "{inv:?}");
        }
        let inv = invert(vec![0.0, 1.0, 1.0, 0.0], 2).expect("invertible");
        assert_eq!(inv, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn singular_chain_degrades_cleanly() {
        // A channel that only loops to itself (never absorbed): I − Q is singular.
        let t = |from, to, probability| Transition {
            from,
            to,
            count: 1,
            probability,
        };
        let transitions = [
            t(State::Start, State::Channel(1), 1.0),
            t(State::Channel(1), State::Channel(1), 1.0),
        ];
        assert!(invert(vec![1.0, -1.0, 0.0, 0.0], 2).is_none());
        assert_eq!(solve_chain(&[1], &transitions), (0.0, vec![0.0]));
    }

    #[test]
    fn within_does_not_overflow() {
        assert!(!within(i64::MIN, i64::MAX, i64::MAX));
        assert!(within(0, i64::MAX, i64::MAX));
        assert!(!within(i64::MAX, i64::MIN, 1));
    }

    #[test]
    fn time_decay_survives_huge_ages() {
        // Ages of ~1e18 µs with a 1 µs half-life would underflow every raw weight to 0.
        let touches = [
            Touch {
                at: -1_000_000_000_000_000_000,
                kind: TouchKind::Click,
                sms: true,
                state: 0,
            },
            Touch {
                at: -999_999_999_999_999_999,
                kind: TouchKind::Click,
                sms: true,
                state: 0,
            },
        ];
        let got = time_decay(&touches, &[0, 1], 0, 1);
        assert_eq!(got, vec![(0, 1.0 / 3.0), (1, 2.0 / 3.0)]);
    }
}
