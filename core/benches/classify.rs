//! Classifier benchmark: User-Agent matching per call with the compiled rule set (one
//! `RegexSet`), against a naive loop that tries one compiled regex per rule in order over the
//! same rules and the same User-Agents, measured in the same run; and a full `classify` call.
//! The User-Agents are the evaluation corpus (core/tests/corpus). Run with `make bench` or
//! `cargo bench -p smslink-core --bench classify`.

use regex::{Regex, RegexBuilder};
use smslink_core::classify::{parse_rules, Classifier, Context, RuleKind, BUILT_IN_RULES};
use smslink_core::click::Request;
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 20;

fn corpus() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    let mut out = Vec::new();
    for name in ["browsers", "in_app", "previews", "bots", "scanners"] {
        let path = format!("{dir}/{name}.txt");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some((_, ua)) = line.split_once('\t') {
                out.push(ua.to_string());
            }
        }
    }
    out
}

fn per_call_us(calls: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6 / calls as f64
}

fn main() {
    let uas = corpus();
    let rules = parse_rules(BUILT_IN_RULES).expect("rules");
    let classifier = Classifier::built_in();
    let naive: Vec<Regex> = rules
        .iter()
        .filter(|r| r.kind == RuleKind::UserAgent)
        .map(|r| {
            RegexBuilder::new(&r.pattern)
                .case_insensitive(true)
                .build()
                .expect("rule compiles")
        })
        .collect();
    let calls = uas.len() * ROUNDS;
    // Warm both up (lazy DFA caches), then measure.
    for ua in &uas {
        black_box(classifier.match_user_agent(ua));
        black_box(naive.iter().position(|r| r.is_match(ua)));
    }
    let set = per_call_us(calls, || {
        for _ in 0..ROUNDS {
            for ua in &uas {
                black_box(classifier.match_user_agent(ua));
            }
        }
    });
    let loop_ = per_call_us(calls, || {
        for _ in 0..ROUNDS {
            for ua in &uas {
                black_box(naive.iter().position(|r| r.is_match(ua)));
            }
        }
    });
    let ctx = Context {
        seconds_since_delivery: Some(120.0),
        ..Context::default()
    };
    let full = per_call_us(calls, || {
        for _ in 0..ROUNDS {
            for ua in &uas {
                black_box(classifier.classify(
                    &Request {
                        method: "GET",
                        user_agent: Some(ua),
                        headers: &[],
                        referrer: None,
                    },
                    &ctx,
                ));
            }
        }
    });
    println!(
        "classifier: {} User-Agents x {ROUNDS} rounds, {} UA rules",
        uas.len(),
        naive.len()
    );
    println!("  RegexSet match (first rule)        {set:8.2} us/call");
    println!("  naive loop, one regex per rule     {loop_:8.2} us/call");
    println!("  full classify() call               {full:8.2} us/call");
    println!(
        "  speed-up of the RegexSet over the naive loop: {:.1}x (target >= 10x; target <= 5 us/call)",
        loop_ / set
    );
}
