//! `smslink_core::stats` against SciPy / statsmodels / mpmath reference values.
//!
//! tests/stats/reference.py writes the cases and expected values (scripts/test.sh, step
//! "stats vs scipy", runs it); these tests read the file named by SMSLINK_STATS_REFERENCE and
//! check every number of every arm ("cases"), of every Welch comparison of means
//! ("welch_cases", against statsmodels on the raw samples) and every minimum detectable effect
//! ("mde_cases", against a 40-digit mpmath solve) to 1e-9 relative error, or 1e-12 absolute
//! near 0. Without the variable they print "skipped" and pass.

use std::collections::BTreeMap;

use serde_json::Value;
use smslink_core::stats::{chi_square, compare, mde, welch, Arm, ArmStats, Options};

const REL: f64 = 1e-9;
const ABS: f64 = 1e-12;

fn field(s: &ArmStats, name: &str) -> Option<f64> {
    match name {
        "rate" => Some(s.rate),
        "ci_low" => Some(s.ci_low),
        "ci_high" => Some(s.ci_high),
        "lift" => s.lift,
        "lift_ci_low" => s.lift_ci_low,
        "lift_ci_high" => s.lift_ci_high,
        "rel_lift" => s.rel_lift,
        "rel_lift_ci_low" => s.rel_lift_ci_low,
        "rel_lift_ci_high" => s.rel_lift_ci_high,
        "p_value" => s.p_value,
        "chi2_p_value" => s.chi2_p_value,
        "prob_best" => Some(s.prob_best),
        "always_valid_p" => s.always_valid_p,
        "cs_low" => s.cs_low,
        "cs_high" => s.cs_high,
        other => panic!("reference field {other} is not an ArmStats field"),
    }
}

/// `None` when they agree, else a description of the mismatch.
fn mismatch(got: Option<f64>, want: Option<f64>) -> Option<String> {
    match (got, want) {
        (None, None) => None,
        (Some(g), Some(w)) => {
            let err = (g - w).abs();
            if err <= ABS || err <= REL * w.abs().max(g.abs()) {
                None
            } else {
                Some(format!(
                    "got {g:.17e}, want {w:.17e} (relative error {:.2e})",
                    err / w.abs().max(g.abs())
                ))
            }
        }
        (g, w) => Some(format!("got {g:?}, want {w:?}")),
    }
}

fn num(v: &Value, what: &str) -> Option<f64> {
    if v.is_null() {
        return None;
    }
    Some(
        v.as_f64()
            .unwrap_or_else(|| panic!("{what}: {v} is not a number")),
    )
}

#[test]
fn stats_match_scipy_and_statsmodels() {
    let Ok(path) = std::env::var("SMSLINK_STATS_REFERENCE") else {
        println!("skipped: set SMSLINK_STATS_REFERENCE");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases = doc["cases"].as_array().expect("a cases array");
    assert!(cases.len() >= 100, "only {} cases in {path}", cases.len());
    let mut failures = Vec::new();
    let mut checked = 0usize;
    // Largest relative error per field, over values at least 1e-12 in size.
    let mut worst: std::collections::BTreeMap<String, f64> = Default::default();
    for (ci, case) in cases.iter().enumerate() {
        let arms: Vec<Arm> = case["arms"]
            .as_array()
            .expect("arms")
            .iter()
            .map(|a| Arm {
                n: a["n"].as_u64().expect("n"),
                successes: a["successes"].as_u64().expect("successes"),
            })
            .collect();
        let control = case["control"].as_u64().expect("control") as usize;
        let o = Options {
            confidence: case["confidence"].as_f64().expect("confidence"),
            tau: case["tau"].as_f64().expect("tau"),
            ..Options::default()
        };
        let got = compare(&arms, control, &o).unwrap_or_else(|e| panic!("case {ci}: {e}"));
        let want_stat = num(&case["chi2_statistic"], "chi2_statistic");
        let got_stat = chi_square(&arms).expect("valid arms").map(|c| c.statistic);
        if let Some(m) = mismatch(got_stat, want_stat) {
            failures.push(format!("case {ci} {arms:?}: chi2 statistic: {m}"));
        }
        checked += 1;
        let expected = case["expected"].as_array().expect("expected");
        assert_eq!(expected.len(), arms.len(), "case {ci}");
        for (i, (g, w)) in got.iter().zip(expected).enumerate() {
            let w = w.as_object().expect("expected row");
            assert_eq!(
                w.len(),
                15,
                "case {ci}: the reference has every ArmStats number"
            );
            for (name, v) in w {
                checked += 1;
                if let (Some(a), Some(b)) = (field(g, name), num(v, name)) {
                    if b.abs() >= ABS {
                        let e = worst.entry(name.clone()).or_default();
                        *e = e.max((a - b).abs() / b.abs());
                    }
                }
                if let Some(m) = mismatch(field(g, name), num(v, name)) {
                    failures.push(format!(
                        "case {ci} arm {i} (control {control}, {arms:?}, confidence {}, tau {}): {name}: {m}",
                        o.confidence, o.tau
                    ));
                }
            }
        }
    }
    println!("{checked} numbers in {} cases checked", cases.len());
    for (name, e) in &worst {
        println!("  largest relative error of {name}: {e:.1e}");
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} numbers differ:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}

/// The reference document, or `None` (after printing "skipped") without SMSLINK_STATS_REFERENCE.
fn reference() -> Option<(String, Value)> {
    let Ok(path) = std::env::var("SMSLINK_STATS_REFERENCE") else {
        println!("skipped: set SMSLINK_STATS_REFERENCE");
        return None;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some((path, doc))
}

/// Counts the numbers checked, collects the mismatches and the largest relative error per
/// field (over expected values at least 1e-12 in size).
#[derive(Default)]
struct Tally {
    checked: usize,
    failures: Vec<String>,
    worst: BTreeMap<&'static str, f64>,
}

impl Tally {
    fn check(&mut self, what: &str, name: &'static str, got: Option<f64>, want: Option<f64>) {
        self.checked += 1;
        if let (Some(a), Some(b)) = (got, want) {
            if b.abs() >= ABS {
                let e = self.worst.entry(name).or_default();
                *e = e.max((a - b).abs() / b.abs());
            }
        }
        if let Some(m) = mismatch(got, want) {
            self.failures.push(format!("{what}: {name}: {m}"));
        }
    }

    /// Prints the summary (in one piece: the tests run in parallel) and fails on a mismatch.
    fn finish(self, cases: usize, kind: &str) {
        let mut out = format!("{} numbers in {cases} {kind} cases checked\n", self.checked);
        for (name, e) in &self.worst {
            out += &format!("  largest relative error of {kind} {name}: {e:.1e}\n");
        }
        print!("{out}");
        assert!(
            self.failures.is_empty(),
            "{} of {} {kind} numbers differ:\n{}",
            self.failures.len(),
            self.checked,
            self.failures[..self.failures.len().min(40)].join("\n")
        );
    }
}

/// `(mean, variance, n)` of one sample of a Welch case.
fn sample(v: &Value, what: &str) -> (f64, f64, u64) {
    (
        v["mean"].as_f64().unwrap_or_else(|| panic!("{what}: mean")),
        v["var"].as_f64().unwrap_or_else(|| panic!("{what}: var")),
        v["n"].as_u64().unwrap_or_else(|| panic!("{what}: n")),
    )
}

#[test]
fn welch_matches_statsmodels() {
    let Some((path, doc)) = reference() else {
        return;
    };
    let cases = doc["welch_cases"].as_array().expect("a welch_cases array");
    assert!(
        cases.len() >= 150,
        "only {} Welch cases in {path}",
        cases.len()
    );
    let mut tally = Tally::default();
    for (ci, case) in cases.iter().enumerate() {
        let (x1, x0) = (sample(&case["x1"], "x1"), sample(&case["x0"], "x0"));
        let confidence = case["confidence"].as_f64().expect("confidence");
        let what = format!("Welch case {ci} (x1 {x1:?}, x0 {x0:?}, confidence {confidence})");
        let got = welch(x1, x0, confidence).unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = &case["expected"];
        if want.is_null() || got.is_none() {
            tally.check(
                &what,
                "is_some",
                got.map(|_| 1.0),
                (!want.is_null()).then_some(1.0),
            );
            continue;
        }
        let got = got.expect("checked above");
        let fields: [(&'static str, f64); 5] = [
            ("difference", got.difference),
            ("ci_low", got.ci_low),
            ("ci_high", got.ci_high),
            ("p_value", got.p_value),
            ("df", got.df),
        ];
        assert_eq!(
            want.as_object().expect("expected object").len(),
            fields.len(),
            "{what}: the reference has every Welch number"
        );
        for (name, value) in fields {
            tally.check(&what, name, Some(value), num(&want[name], name));
        }
    }
    tally.finish(cases.len(), "Welch");
}

#[test]
fn mde_matches_mpmath() {
    let Some((path, doc)) = reference() else {
        return;
    };
    let cases = doc["mde_cases"].as_array().expect("an mde_cases array");
    assert!(
        cases.len() >= 150,
        "only {} MDE cases in {path}",
        cases.len()
    );
    let mut tally = Tally::default();
    for (ci, case) in cases.iter().enumerate() {
        let pooled = case["pooled"].as_f64().expect("pooled");
        let n1 = case["n1"].as_u64().expect("n1");
        let n0 = case["n0"].as_u64().expect("n0");
        let confidence = case["confidence"].as_f64().expect("confidence");
        let power = case["power"].as_f64().expect("power");
        let what = format!(
            "MDE case {ci} (pooled {pooled}, n1 {n1}, n0 {n0}, confidence {confidence}, power {power})"
        );
        let got = mde(pooled, n1, n0, confidence, power).unwrap_or_else(|e| panic!("{what}: {e}"));
        tally.check(&what, "mde", got, num(&case["expected"], "expected"));
    }
    tally.finish(cases.len(), "MDE");
}
