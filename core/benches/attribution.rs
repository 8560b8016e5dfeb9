//! Attribution benchmark: rule-based `credit()` calls per second (each model over a typical
//! subscriber with 8 touches of mixed kinds and channels), and `markov_fit` over 100,000 paths
//! across 12, 200 and 1,000 channel states.
//! Run with `cargo bench -p smslink-core --bench attribution`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smslink_core::attribution::{credit, markov_fit, Model, Params, Path, Touch, TouchKind};
use std::hint::black_box;
use std::time::Instant;

const HOUR: i64 = 3_600_000_000;
const CALLS: usize = 1_000_000;
const PATHS: usize = 100_000;
const CHANNELS: u32 = 12;

fn main() {
    let mut rng = SmallRng::seed_from_u64(7);
    let p = Params::new(7 * 24 * HOUR, Some(24 * HOUR), 7 * 24 * HOUR).expect("params");
    let conversion_at = 1_000 * HOUR;
    // 64 subscribers' touch lists, reused round-robin.
    let subscribers: Vec<Vec<Touch>> = (0..64)
        .map(|_| {
            let mut t: Vec<Touch> = (0..8)
                .map(|_| Touch {
                    at: conversion_at - rng.random_range(-24 * HOUR..10 * 24 * HOUR),
                    kind: if rng.random_bool(0.7) {
                        TouchKind::Click
                    } else {
                        TouchKind::View
                    },
                    sms: rng.random_bool(0.6),
                    state: rng.random_range(0..CHANNELS),
                })
                .collect();
            t.sort_by_key(|x| x.at);
            t
        })
        .collect();
    let models = [
        Model::LastClick,
        Model::FirstClick,
        Model::Windowed,
        Model::Linear,
        Model::TimeDecay,
        Model::PositionBased,
    ];
    for m in models {
        let start = Instant::now();
        let mut credited = 0usize;
        for i in 0..CALLS {
            let t = &subscribers[i % subscribers.len()];
            let got = credit(m, black_box(t), black_box(conversion_at), &p).expect("credit");
            credited += got.len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "credit({:<14}) {:>12.0} calls/s  ({:.0} ns/call, {} credited touches)",
            m.as_str(),
            CALLS as f64 / secs,
            secs * 1e9 / CALLS as f64,
            credited
        );
    }

    let paths: Vec<(Vec<u32>, bool)> = (0..PATHS)
        .map(|_| {
            let len = rng.random_range(1..=6);
            let states = (0..len).map(|_| rng.random_range(0..CHANNELS)).collect();
            (states, rng.random_bool(0.3))
        })
        .collect();
    let start = Instant::now();
    let fit = markov_fit(paths.iter().map(|(s, c)| Path {
        states: s,
        converted: *c,
    }));
    let fit_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut sum = 0.0;
    for (s, c) in &paths {
        if *c {
            sum += fit.credits(black_box(s)).iter().sum::<f64>();
        }
    }
    let credit_secs = start.elapsed().as_secs_f64();
    println!(
        "markov_fit: {PATHS} paths, {} states, {} transitions in {:.1} ms ({:.0} paths/s); P = {:.4}",
        fit.removal_effects.len(),
        fit.transitions.len(),
        fit_secs * 1e3,
        PATHS as f64 / fit_secs,
        fit.conversion_probability
    );
    println!(
        "MarkovFit::credits: {} converting paths in {:.1} ms (credit sum {:.1})",
        fit.converting_paths,
        credit_secs * 1e3,
        sum
    );

    // Many states (e.g. one per campaign): the dense inverse costs O(s³).
    for states in [200u32, 1_000] {
        let paths: Vec<(Vec<u32>, bool)> = (0..PATHS)
            .map(|_| {
                let len = rng.random_range(1..=6);
                let s = (0..len).map(|_| rng.random_range(0..states)).collect();
                (s, rng.random_bool(0.3))
            })
            .collect();
        let start = Instant::now();
        let fit = markov_fit(paths.iter().map(|(s, c)| Path {
            states: s,
            converted: *c,
        }));
        println!(
            "markov_fit: {PATHS} paths, {} states, {} transitions in {:.1} ms",
            fit.removal_effects.len(),
            fit.transitions.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
