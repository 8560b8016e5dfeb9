//! Attribution maths: hand-computed cases for every model, property tests, exact Markov removal
//! effects (hand-solved chains and a Monte Carlo cross-check) and journey cutting.

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smslink_core::attribution::{
    credit, journeys, markov_fit, Journey, MarkovFit, Model, Params, Path, State, Touch, TouchKind,
};

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

fn click(at: i64, sms: bool) -> Touch {
    Touch {
        at,
        kind: TouchKind::Click,
        sms,
        state: 0,
    }
}

fn view(at: i64, sms: bool) -> Touch {
    Touch {
        at,
        kind: TouchKind::View,
        sms,
        state: 0,
    }
}

fn params() -> Params {
    Params::new(7 * DAY, Some(DAY), DAY).expect("valid params")
}

fn run(model: Model, touches: &[Touch], at: i64) -> Vec<(usize, f64)> {
    credit(model, touches, at, &params()).expect("credit")
}

fn assert_credits(got: &[(usize, f64)], want: &[(usize, f64)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "got {got:?}, want {want:?}");
        assert!((g.1 - w.1).abs() < 1e-12, "got {got:?}, want {want:?}");
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

const RULE_MODELS: [Model; 6] = [
    Model::LastClick,
    Model::FirstClick,
    Model::Windowed,
    Model::Linear,
    Model::TimeDecay,
    Model::PositionBased,
];

// ----------------------------------------------------------------------------- names, params

#[test]
fn model_names_round_trip_and_trim() {
    for m in Model::ALL {
        assert_eq!(Model::parse(m.as_str()), Ok(m));
        assert_eq!(Model::parse(&format!(" \t{}\n", m.as_str())), Ok(m));
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(Model::parse("time_decay"), Ok(Model::TimeDecay));
    let err = Model::parse("Last_Click").expect_err("case matters");
    assert!(
        err.contains("last_click") && err.contains("markov"),
        "{err}"
    );
    assert!(Model::parse("").is_err());
    assert!(Model::parse("linear2").is_err());
    // Non-ASCII whitespace is not trimmed.
    assert!(Model::parse("\u{a0}linear").is_err());
}

#[test]
fn params_validation_names_the_bad_field() {
    assert!(Params::new(1, None, 1).is_ok());
    assert!(Params::new(0, None, 1)
        .expect_err("click")
        .contains("click window"));
    assert!(Params::new(-5, None, 1)
        .expect_err("click")
        .contains("click window"));
    assert!(Params::new(1, Some(0), 1)
        .expect_err("view")
        .contains("view window"));
    assert!(Params::new(1, None, 0)
        .expect_err("half")
        .contains("half-life"));
    // credit() checks again, since the fields are public.
    let bad = Params {
        click_window: 0,
        view_window: None,
        half_life: 1,
    };
    assert!(credit(Model::Linear, &[click(0, true)], 0, &bad).is_err());
}

#[test]
fn markov_is_rejected_by_credit() {
    let err = credit(Model::Markov, &[click(0, true)], 0, &params()).expect_err("markov");
    assert!(err.contains("markov_fit"), "{err}");
}

// ----------------------------------------------------------------------------- rule models

#[test]
fn last_and_first_click_with_a_tie() {
    let c = 10 * DAY;
    // 0: too old; 1, 2: same instant; 3: a view; 4: after the conversion.
    let t = [
        click(c - 8 * DAY, true),
        click(c - HOUR, true),
        click(c - HOUR, false),
        view(c - 1, true),
        click(c + 1, true),
    ];
    assert_credits(&run(Model::LastClick, &t, c), &[(2, 1.0)]);
    assert_credits(&run(Model::FirstClick, &t, c), &[(1, 1.0)]);
}

#[test]
fn window_edges_are_inclusive() {
    let c = 100 * DAY;
    let w = params().click_window;
    // Exactly at c − w and exactly at c are in; one microsecond outside either edge is out.
    let t = [
        click(c - w - 1, true),
        click(c - w, true),
        click(c, true),
        click(c + 1, true),
    ];
    assert_credits(&run(Model::FirstClick, &t, c), &[(1, 1.0)]);
    assert_credits(&run(Model::LastClick, &t, c), &[(2, 1.0)]);
    assert_credits(&run(Model::Linear, &t, c), &[(1, 0.5), (2, 0.5)]);
    // Only the out-of-window ones: unattributed for every model.
    let out = [click(c - w - 1, true), click(c + 1, true)];
    for m in RULE_MODELS {
        assert!(run(m, &out, c).is_empty(), "{m}");
    }
}

#[test]
fn conversion_before_any_touch_is_unattributed() {
    let t = [click(5 * DAY, true), view(5 * DAY, true)];
    for m in RULE_MODELS {
        assert!(run(m, &t, 5 * DAY - 1).is_empty(), "{m}");
        assert!(run(m, &[], 5 * DAY).is_empty(), "{m}");
    }
}

#[test]
fn touches_after_the_conversion_are_ignored() {
    let c = 3 * DAY;
    let t = [
        click(c - DAY, true),
        click(c + HOUR, true),
        click(c + DAY, false),
    ];
    for m in RULE_MODELS {
        assert_credits(&run(m, &t, c), &[(0, 1.0)]);
    }
}

#[test]
fn windowed_prefers_the_last_sms_click_and_ignores_other_channels() {
    let c = 10 * DAY;
    let t = [
        click(c - 3 * DAY, true),
        click(c - 2 * DAY, true),
        click(c - DAY, false), // email click: later, but not SMS
        view(c - HOUR, true),  // SMS view: only a fallback
    ];
    assert_credits(&run(Model::Windowed, &t, c), &[(1, 1.0)]);
    // last_click does count the other channel.
    assert_credits(&run(Model::LastClick, &t, c), &[(2, 1.0)]);
}

#[test]
fn windowed_view_through_fallback_and_its_edge() {
    let c = 10 * DAY;
    let vw = DAY;
    // No SMS click in the window (one too old, one non-SMS): falls back to SMS views.
    let t = [
        click(c - 8 * DAY, true),
        click(c - HOUR, false),
        view(c - vw - 1, true), // one microsecond outside the view window
        view(c - vw, true),     // exactly on the edge: in
        view(c - 10, false),    // non-SMS view: ignored
        view(c + 1, true),      // after the conversion
    ];
    assert_credits(&run(Model::Windowed, &t, c), &[(3, 1.0)]);
    // Without the edge view, the one outside is not taken.
    let t2 = [t[0], t[1], t[2], t[4], t[5]];
    assert!(run(Model::Windowed, &t2, c).is_empty());
    // With no view window, no fallback.
    let p = Params::new(7 * DAY, None, DAY).expect("params");
    assert!(credit(Model::Windowed, &t, c, &p)
        .expect("credit")
        .is_empty());
    // Two SMS views in the window: the last one wins; views never count for other models.
    let t3 = [view(c - 2 * HOUR, true), view(c - HOUR, true)];
    assert_credits(&run(Model::Windowed, &t3, c), &[(1, 1.0)]);
    for m in [Model::LastClick, Model::Linear, Model::TimeDecay] {
        assert!(run(m, &t3, c).is_empty(), "{m}");
    }
}

#[test]
fn linear_counts_each_touch_of_a_repeated_channel() {
    let c = 10 * DAY;
    let t = [
        click(c - 3 * DAY, true),
        view(c - 2 * DAY, true),
        click(c - 2 * DAY, false),
        click(c - DAY, true),
    ];
    let third = 1.0 / 3.0;
    assert_credits(
        &run(Model::Linear, &t, c),
        &[(0, third), (2, third), (3, third)],
    );
}

#[test]
fn time_decay_hand_computed() {
    let c = 10 * DAY;
    // Ages 0, 1 and 2 half-lives: weights 1, 1/2, 1/4; total 7/4 → 4/7, 2/7, 1/7.
    let t = [
        click(c - 2 * DAY, true),
        click(c - DAY, false),
        click(c, true),
    ];
    assert_credits(
        &run(Model::TimeDecay, &t, c),
        &[(0, 1.0 / 7.0), (1, 2.0 / 7.0), (2, 4.0 / 7.0)],
    );
    // Continuous Δt: ages 0 and half a half-life: weights 1 and 2^(−1/2).
    let t = [click(c - DAY / 2, true), click(c, true)];
    let w = 0.5f64.sqrt();
    assert_credits(
        &run(Model::TimeDecay, &t, c),
        &[(0, w / (1.0 + w)), (1, 1.0 / (1.0 + w))],
    );
    // A tie gets equal weight.
    let t = [click(c - HOUR, true), click(c - HOUR, true)];
    assert_credits(&run(Model::TimeDecay, &t, c), &[(0, 0.5), (1, 0.5)]);
}

#[test]
fn position_based_hand_computed() {
    let c = 10 * DAY;
    let clicks = |n: i64| -> Vec<Touch> {
        (0..n)
            .map(|i| click(c - (n - i) * HOUR, i % 2 == 0))
            .collect()
    };
    assert_credits(&run(Model::PositionBased, &clicks(1), c), &[(0, 1.0)]);
    assert_credits(
        &run(Model::PositionBased, &clicks(2), c),
        &[(0, 0.5), (1, 0.5)],
    );
    assert_credits(
        &run(Model::PositionBased, &clicks(3), c),
        &[(0, 0.4), (1, 0.2), (2, 0.4)],
    );
    assert_credits(
        &run(Model::PositionBased, &clicks(5), c),
        &[
            (0, 0.4),
            (1, 0.2 / 3.0),
            (2, 0.2 / 3.0),
            (3, 0.2 / 3.0),
            (4, 0.4),
        ],
    );
    // Ineligible touches do not take a position: a view first and a too-old click.
    let mut t = vec![click(c - 30 * DAY, true), view(c - 6 * DAY, true)];
    t.extend(clicks(3));
    assert_credits(
        &run(Model::PositionBased, &t, c),
        &[(2, 0.4), (3, 0.2), (4, 0.4)],
    );
}

#[test]
fn several_channels_every_model() {
    // Channels by state id: 1 = sms, 2 = email, 3 = push.
    let c = 20 * DAY;
    let mut t = vec![
        Touch {
            at: c - 9 * DAY,
            kind: TouchKind::Click,
            sms: true,
            state: 1,
        }, // too old
        Touch {
            at: c - 6 * DAY,
            kind: TouchKind::Click,
            sms: false,
            state: 2,
        },
        Touch {
            at: c - 4 * DAY,
            kind: TouchKind::Click,
            sms: true,
            state: 1,
        },
        Touch {
            at: c - 2 * DAY,
            kind: TouchKind::View,
            sms: false,
            state: 3,
        },
        Touch {
            at: c - 2 * DAY,
            kind: TouchKind::Click,
            sms: false,
            state: 3,
        },
    ];
    assert_credits(&run(Model::LastClick, &t, c), &[(4, 1.0)]);
    assert_credits(&run(Model::FirstClick, &t, c), &[(1, 1.0)]);
    assert_credits(&run(Model::Windowed, &t, c), &[(2, 1.0)]);
    assert_credits(
        &run(Model::Linear, &t, c),
        &[(1, 1.0 / 3.0), (2, 1.0 / 3.0), (4, 1.0 / 3.0)],
    );
    // Ages 6, 4, 2 days with a 1-day half-life: weights 1/16, 1/4, 1 (relative) → /(21/16).
    assert_credits(
        &run(Model::TimeDecay, &t, c),
        &[(1, 1.0 / 21.0), (2, 4.0 / 21.0), (4, 16.0 / 21.0)],
    );
    assert_credits(
        &run(Model::PositionBased, &t, c),
        &[(1, 0.4), (2, 0.2), (4, 0.4)],
    );
    // Drop the SMS click: windowed has no SMS click and no SMS view → unattributed.
    t.remove(2);
    assert!(run(Model::Windowed, &t, c).is_empty());
}

// ----------------------------------------------------------------------------- properties

fn arb_touch() -> impl Strategy<Value = Touch> {
    (-20 * DAY..20 * DAY, any::<bool>(), any::<bool>(), 0u32..4).prop_map(
        |(at, is_click, sms, state)| Touch {
            at,
            kind: if is_click {
                TouchKind::Click
            } else {
                TouchKind::View
            },
            sms,
            state,
        },
    )
}

fn arb_case() -> impl Strategy<Value = (Vec<Touch>, i64, Params)> {
    (
        prop::collection::vec(arb_touch(), 0..24),
        -10 * DAY..10 * DAY,
        1..15 * DAY,
        prop::option::of(1..5 * DAY),
        1..5 * DAY,
    )
        .prop_map(|(mut touches, c, cw, vw, h)| {
            touches.sort_by_key(|t| t.at);
            (
                touches,
                c,
                Params::new(cw, vw, h).expect("positive by construction"),
            )
        })
}

fn eligible_indexes(t: &[Touch], c: i64, p: &Params) -> Vec<usize> {
    t.iter()
        .enumerate()
        .filter(|(_, x)| x.kind == TouchKind::Click && c - p.click_window <= x.at && x.at <= c)
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #[test]
    fn credits_are_a_distribution((t, c, p) in arb_case()) {
        for m in RULE_MODELS {
            let got = credit(m, &t, c, &p).expect("credit");
            if !got.is_empty() {
                let sum: f64 = got.iter().map(|x| x.1).sum();
                prop_assert!((sum - 1.0).abs() < 1e-9, "{m}: sum {sum}");
            }
            prop_assert!(got.iter().all(|x| (0.0..=1.0).contains(&x.1)), "{m}: {got:?}");
            prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{m}: not ascending {got:?}");
            prop_assert!(got.iter().all(|x| x.0 < t.len()));
        }
    }

    #[test]
    fn click_models_credit_exactly_the_eligible_clicks((t, c, p) in arb_case()) {
        let e = eligible_indexes(&t, c, &p);
        let n = e.len();
        let last = credit(Model::LastClick, &t, c, &p).expect("credit");
        let first = credit(Model::FirstClick, &t, c, &p).expect("credit");
        prop_assert_eq!(last, e.last().map(|&i| vec![(i, 1.0)]).unwrap_or_default());
        prop_assert_eq!(first, e.first().map(|&i| vec![(i, 1.0)]).unwrap_or_default());
        let linear = credit(Model::Linear, &t, c, &p).expect("credit");
        prop_assert_eq!(linear.iter().map(|x| x.0).collect::<Vec<_>>(), e.clone());
        prop_assert!(linear.iter().all(|x| close(x.1, 1.0 / n as f64)));
        for m in [Model::TimeDecay, Model::PositionBased] {
            let got = credit(m, &t, c, &p).expect("credit");
            prop_assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), e.clone());
        }
    }

    #[test]
    fn position_based_known_cases((t, c, p) in arb_case()) {
        let got = credit(Model::PositionBased, &t, c, &p).expect("credit");
        let n = got.len();
        for (pos, &(_, v)) in got.iter().enumerate() {
            let want = match n {
                1 => 1.0,
                2 => 0.5,
                _ if pos == 0 || pos == n - 1 => 0.4,
                _ => 0.2 / (n - 2) as f64,
            };
            prop_assert!(close(v, want), "n={} pos={} got {}", n, pos, v);
        }
    }

    #[test]
    fn time_decay_never_favours_an_older_touch((t, c, p) in arb_case()) {
        let got = credit(Model::TimeDecay, &t, c, &p).expect("credit");
        for a in &got {
            for b in &got {
                if t[a.0].at < t[b.0].at {
                    prop_assert!(a.1 <= b.1, "older {:?} got more than newer {:?}", a, b);
                }
                if t[a.0].at == t[b.0].at {
                    prop_assert!(close(a.1, b.1));
                }
            }
            // Exact ratio to the newest credited touch: 2^(−Δ/h).
            if let Some(newest) = got.iter().max_by_key(|x| t[x.0].at) {
                let dt = (t[newest.0].at - t[a.0].at) as f64;
                let want = newest.1 * (-dt / p.half_life as f64).exp2();
                prop_assert!((a.1 - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn markov_credits_are_a_distribution(
        paths in prop::collection::vec((prop::collection::vec(0u32..5, 0..6), any::<bool>()), 0..30),
        probe in prop::collection::vec(0u32..7, 0..8),
    ) {
        let fit = markov_fit(paths.iter().map(|(s, c)| Path { states: s, converted: *c }));
        let credits = fit.credits(&probe);
        prop_assert_eq!(credits.len(), probe.len());
        if !probe.is_empty() {
            prop_assert!((credits.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        prop_assert!(credits.iter().all(|v| (0.0..=1.0 + 1e-12).contains(v)));
        prop_assert!((0.0..=1.0).contains(&fit.conversion_probability));
        prop_assert!(fit.removal_effects.iter().all(|&(_, re)| (0.0..=1.0).contains(&re)));
        let total: f64 = fit.removal_effects.iter().map(|&(k, _)| fit.conversions(k)).sum();
        if fit.removal_effects.iter().any(|&(_, re)| re > 0.0) {
            prop_assert!((total - fit.converting_paths as f64).abs() < 1e-9 * (1.0 + total));
        } else {
            prop_assert_eq!(total, 0.0);
        }
        // Every channel state's outgoing probabilities sum to 1.
        for &(k, _) in &fit.removal_effects {
            let out: f64 = fit.transitions.iter().filter(|t| t.from == State::Channel(k)).map(|t| t.probability).sum();
            prop_assert!((out - 1.0).abs() < 1e-12);
        }
    }
}

// ----------------------------------------------------------------------------- Markov

const A: u32 = 1;
const B: u32 = 2;

fn prob(fit: &MarkovFit, from: State, to: State) -> Option<(u64, f64)> {
    fit.transitions
        .iter()
        .find(|t| t.from == from && t.to == to)
        .map(|t| (t.count, t.probability))
}

fn approx(got: Option<(u64, f64)>, count: u64, p: f64) {
    let (c, q) = got.expect("transition present");
    assert_eq!(c, count);
    assert!(close(q, p), "probability {q}, want {p}");
}

#[test]
fn markov_hand_solved_chain() {
    // Paths: A → conv, A → B → conv, B → null.
    //
    // Transitions: Start→A 2, Start→B 1 (2/3, 1/3); A→Conv 1, A→B 1 (1/2, 1/2);
    //              B→Conv 1, B→Null 1 (1/2, 1/2).
    // Absorption into Conv: x_B = 1/2; x_A = 1/2 + 1/2·x_B = 3/4.
    // P = 2/3·3/4 + 1/3·1/2 = 1/2 + 1/6 = 2/3.
    // Without A: only Start→B→Conv = 1/3·1/2 = 1/6 → RE_A = 1 − (1/6)/(2/3) = 3/4.
    // Without B: only Start→A→Conv = 2/3·1/2 = 1/3 → RE_B = 1 − (1/3)/(2/3) = 1/2.
    // converting_paths = 2; ΣRE = 5/4 → conversions(A) = 3/5·2 = 6/5, conversions(B) = 4/5.
    let fit = markov_fit([
        Path {
            states: &[A],
            converted: true,
        },
        Path {
            states: &[A, B],
            converted: true,
        },
        Path {
            states: &[B],
            converted: false,
        },
        Path {
            states: &[],
            converted: true,
        }, // ignored
    ]);
    assert_eq!(fit.transitions.len(), 6);
    approx(prob(&fit, State::Start, State::Channel(A)), 2, 2.0 / 3.0);
    approx(prob(&fit, State::Start, State::Channel(B)), 1, 1.0 / 3.0);
    approx(prob(&fit, State::Channel(A), State::Conversion), 1, 0.5);
    approx(prob(&fit, State::Channel(A), State::Channel(B)), 1, 0.5);
    approx(prob(&fit, State::Channel(B), State::Conversion), 1, 0.5);
    approx(prob(&fit, State::Channel(B), State::Null), 1, 0.5);
    // Sorted by (from, to).
    assert_eq!(fit.transitions[0].from, State::Start);
    assert_eq!(fit.transitions[5].to, State::Null);
    assert!(close(fit.conversion_probability, 2.0 / 3.0));
    assert_eq!(fit.converting_paths, 2);
    assert_eq!(fit.removal_effects.len(), 2);
    assert_eq!(fit.removal_effects[0].0, A);
    assert!(close(fit.removal_effects[0].1, 0.75));
    assert_eq!(fit.removal_effects[1].0, B);
    assert!(close(fit.removal_effects[1].1, 0.5));
    assert!(close(fit.conversions(A), 1.2));
    assert!(close(fit.conversions(B), 0.8));
    assert_eq!(fit.conversions(99), 0.0);
    // Per-touch: A gets 0.75/1.25 = 0.6, B 0.4; a repeated A splits its 0.6.
    let c = fit.credits(&[A, B]);
    assert!(close(c[0], 0.6) && close(c[1], 0.4), "{c:?}");
    let c = fit.credits(&[A, A, B]);
    assert!(
        close(c[0], 0.3) && close(c[1], 0.3) && close(c[2], 0.4),
        "{c:?}"
    );
    // A single channel takes everything; an unknown state next to a known one gets 0.
    assert_eq!(fit.credits(&[B]), vec![1.0]);
    assert_eq!(fit.credits(&[7, A]), vec![0.0, 1.0]);
    // Only unknown states: linear fallback. Empty: empty.
    assert_eq!(fit.credits(&[7, 8, 7, 9]), vec![0.25; 4]);
    assert!(fit.credits(&[]).is_empty());
}

#[test]
fn markov_collapses_repeats() {
    // A A B → A B: the same chain as one path A B.
    let one = markov_fit([Path {
        states: &[A, A, B, B],
        converted: true,
    }]);
    let two = markov_fit([Path {
        states: &[A, B],
        converted: true,
    }]);
    assert_eq!(one, two);
    assert_eq!(one.transitions.len(), 3);
    assert!(prob(&one, State::Channel(A), State::Channel(A)).is_none());
    // Single path through both: each removal kills every conversion.
    assert!(close(one.conversion_probability, 1.0));
    assert_eq!(one.removal_effects, vec![(A, 1.0), (B, 1.0)]);
    assert!(close(one.conversions(A), 0.5));
}

#[test]
fn markov_chain_with_a_loop() {
    // Paths: A → B → A → conv, A → null, B → conv.
    //
    // Transitions: Start→A 2, Start→B 1 (2/3, 1/3); A→B, A→Conv, A→Null 1 each (1/3 each);
    //              B→A 1, B→Conv 1 (1/2 each).
    // x_A = 1/3·x_B + 1/3, x_B = 1/2·x_A + 1/2 → x_A = 1/6·x_A + 1/2 → x_A = 3/5, x_B = 4/5.
    // P = 2/3·3/5 + 1/3·4/5 = 6/15 + 4/15 = 2/3.
    // Without A: Start→B→Conv = 1/3·1/2 = 1/6 → RE_A = 1 − (1/6)/(2/3) = 3/4.
    // Without B: Start→A→Conv = 2/3·1/3 = 2/9 → RE_B = 1 − (2/9)/(2/3) = 2/3.
    // (Check by the formula: h_A = 2/3 + 1/3·1/2 = 5/6, h_A·x_A = 1/2, P − 1/2 = 1/6;
    //  h_B = 1/3 + 2/3·1/3 = 5/9, h_B·x_B = 4/9, P − 4/9 = 2/9.)
    // ΣRE = 17/12, converting_paths = 2 → conversions(A) = 9/17·2 = 18/17, (B) = 16/17.
    let fit = markov_fit([
        Path {
            states: &[A, B, A],
            converted: true,
        },
        Path {
            states: &[A],
            converted: false,
        },
        Path {
            states: &[B],
            converted: true,
        },
    ]);
    approx(
        prob(&fit, State::Channel(A), State::Channel(B)),
        1,
        1.0 / 3.0,
    );
    approx(prob(&fit, State::Channel(B), State::Channel(A)), 1, 0.5);
    approx(prob(&fit, State::Channel(A), State::Null), 1, 1.0 / 3.0);
    assert!(close(fit.conversion_probability, 2.0 / 3.0));
    assert!(
        close(fit.removal_effects[0].1, 0.75),
        "{:?}",
        fit.removal_effects
    );
    assert!(
        close(fit.removal_effects[1].1, 2.0 / 3.0),
        "{:?}",
        fit.removal_effects
    );
    assert!(close(fit.conversions(A), 18.0 / 17.0));
    assert!(close(fit.conversions(B), 16.0 / 17.0));
    // Uncollapsed A B A: A's 9/17 split over two touches.
    let c = fit.credits(&[A, B, A]);
    assert!(
        close(c[0], 9.0 / 34.0) && close(c[1], 8.0 / 17.0) && close(c[2], 9.0 / 34.0),
        "{c:?}"
    );
}

#[test]
fn markov_without_conversions_has_zero_effects() {
    let fit = markov_fit([
        Path {
            states: &[A, B],
            converted: false,
        },
        Path {
            states: &[B],
            converted: false,
        },
    ]);
    assert_eq!(fit.conversion_probability, 0.0);
    assert_eq!(fit.removal_effects, vec![(A, 0.0), (B, 0.0)]);
    assert_eq!(fit.converting_paths, 0);
    assert_eq!(fit.conversions(A), 0.0);
    assert_eq!(fit.credits(&[A, B]), vec![0.5, 0.5]);
    let empty = markov_fit(std::iter::empty());
    assert_eq!(empty, MarkovFit::default());
}

/// Walks the fitted chain from Start; returns (converted, visited-state bitmask over ids < 64).
fn walk(fit: &MarkovFit, rng: &mut SmallRng) -> (bool, u64) {
    let mut at = State::Start;
    let mut seen = 0u64;
    loop {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let out: Vec<_> = fit.transitions.iter().filter(|t| t.from == at).collect();
        let mut next = out.last().expect("transient state has out-transitions").to;
        for t in &out {
            acc += t.probability;
            if u < acc {
                next = t.to;
                break;
            }
        }
        match next {
            State::Conversion => return (true, seen),
            State::Null => return (false, seen),
            State::Channel(k) => seen |= 1 << k,
            State::Start => unreachable!("nothing goes back to Start"),
        }
        at = next;
    }
}

#[test]
fn markov_exact_matches_monte_carlo() {
    // A chain with loops over four channels.
    let (a, b, c, d) = (1, 2, 3, 4);
    let data: Vec<(Vec<u32>, bool)> = vec![
        (vec![a, b, a], true),
        (vec![a, c], false),
        (vec![b, c, d], true),
        (vec![c, a, b, c], true),
        (vec![d], false),
        (vec![d, a], true),
        (vec![b], false),
        (vec![a, d, b], false),
        (vec![c], true),
        (vec![b, a, c, a], false),
    ];
    let fit = markov_fit(data.iter().map(|(s, conv)| Path {
        states: s,
        converted: *conv,
    }));
    let p = fit.conversion_probability;
    assert!(p > 0.1 && p < 0.9, "P = {p}");

    let n = 200_000usize;
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut converted = 0usize;
    let mut converted_through = [0usize; 5];
    for _ in 0..n {
        let (conv, seen) = walk(&fit, &mut rng);
        if conv {
            converted += 1;
            for (k, slot) in converted_through.iter_mut().enumerate() {
                if seen & (1 << k) != 0 {
                    *slot += 1;
                }
            }
        }
    }
    let se = |q: f64, m: usize| (q * (1.0 - q) / m as f64).sqrt();
    let p_hat = converted as f64 / n as f64;
    assert!(
        (p_hat - p).abs() < 4.0 * se(p, n),
        "P exact {p}, simulated {p_hat}"
    );
    for &(k, re) in &fit.removal_effects {
        // Removing k: a walk converts iff it converts without visiting k.
        let without_hat = (converted - converted_through[k as usize]) as f64 / n as f64;
        let without = p * (1.0 - re);
        assert!(
            (without_hat - without).abs() < 4.0 * se(without, n).max(1e-9),
            "channel {k}: P_without exact {without}, simulated {without_hat}"
        );
        // RE_k is the share of converting walks that pass through k.
        let re_hat = converted_through[k as usize] as f64 / converted as f64;
        assert!(
            (re_hat - re).abs() < 4.0 * se(re, converted).max(1e-9),
            "channel {k}: RE exact {re}, simulated {re_hat}"
        );
    }
    // Normalisation over channels.
    let total: f64 = fit
        .removal_effects
        .iter()
        .map(|&(k, _)| fit.conversions(k))
        .sum();
    assert!((total - fit.converting_paths as f64).abs() < 1e-9);
    assert_eq!(fit.converting_paths, 5);
}

// ----------------------------------------------------------------------------- journeys

fn j(touches: &[usize], conversion: Option<usize>) -> Journey {
    Journey {
        touches: touches.to_vec(),
        conversion,
    }
}

#[test]
fn journeys_touch_at_the_conversion_instant_goes_to_it() {
    assert_eq!(
        journeys(&[5, 10], &[10, 20], 100),
        vec![j(&[0, 1], Some(0)), j(&[], Some(1))]
    );
    // A touch one microsecond after goes to the next conversion.
    assert_eq!(
        journeys(&[11], &[10, 20], 100),
        vec![j(&[], Some(0)), j(&[0], Some(1))]
    );
}

#[test]
fn journeys_too_old_touch_is_null() {
    // Window 10: touch at 0 is 11 before the conversion → null; at 1 → exactly 10 → on path.
    assert_eq!(
        journeys(&[-5, 0, 1, 7], &[11], 10),
        vec![j(&[0, 1], None), j(&[2, 3], Some(0))]
    );
}

#[test]
fn journeys_touches_after_the_last_conversion_are_null() {
    assert_eq!(
        journeys(&[1, 50, 60], &[10], 100),
        vec![j(&[0], Some(0)), j(&[1, 2], None)]
    );
    // No conversions at all: one null path; no touches: nothing.
    assert_eq!(journeys(&[1, 2, 3], &[], 100), vec![j(&[0, 1, 2], None)]);
    assert!(journeys(&[], &[], 100).is_empty());
}

#[test]
fn journeys_conversion_without_touches() {
    assert_eq!(
        journeys(&[], &[3, 4], 100),
        vec![j(&[], Some(0)), j(&[], Some(1))]
    );
    // The only touch is too old: a null path, then the empty conversion.
    assert_eq!(
        journeys(&[0], &[500], 100),
        vec![j(&[0], None), j(&[], Some(0))]
    );
}

#[test]
fn journeys_two_conversions_with_null_paths_between() {
    // Window 10. Conversions at 100 and 200.
    // 50: too old for 100 → null (before 100); 95, 100: path of 100;
    // 120, 130: too old for 200 → one null path (no conversion between them); 195: path of 200;
    // 250: after the last → its own null path, separated from 120/130 by the conversion at 200.
    let got = journeys(&[50, 95, 100, 120, 130, 195, 250], &[100, 200], 10);
    assert_eq!(
        got,
        vec![
            j(&[0], None),
            j(&[1, 2], Some(0)),
            j(&[3, 4], None),
            j(&[5], Some(1)),
            j(&[6], None),
        ]
    );
    // Two conversions at one instant: the touch goes to the first.
    assert_eq!(
        journeys(&[7], &[9, 9], 10),
        vec![j(&[0], Some(0)), j(&[], Some(1))]
    );
}

#[test]
fn journeys_feed_markov_fit() {
    // Each touch is on exactly one journey, and every conversion has exactly one journey.
    let touch_at = [0, 5, 40, 41, 90, 150];
    let conv_at = [6, 45, 100];
    let js = journeys(&touch_at, &conv_at, 10);
    let mut seen: Vec<usize> = js.iter().flat_map(|j| j.touches.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..touch_at.len()).collect::<Vec<_>>());
    let convs: Vec<usize> = js.iter().filter_map(|j| j.conversion).collect();
    assert_eq!(convs, vec![0, 1, 2]);
    assert_eq!(
        js,
        vec![
            j(&[0, 1], Some(0)),
            j(&[2, 3], Some(1)),
            j(&[4], Some(2)),
            j(&[5], None)
        ]
    );
}
