//! Generated-input fuzzing of everything that parses text from outside: the token decoder, URL
//! finding and wrapping, the postback parser and canonical form, the User-Agent classifier and
//! the segment counter. Zero panics is the property; a few cheap invariants ride along.
//!
//! Inputs are built from each target's vocabulary (the tokens, schemes, separators, bot names,
//! GSM escapes and non-ASCII marks its parser cares about) mixed with arbitrary Unicode and
//! arbitrary bytes read as UTF-8, on both cores. `make test` runs a short pass; `make fuzz` runs
//! ten million inputs per target:
//!
//! - `SMSLINK_FUZZ_CASES`: inputs per target (default 100,000);
//! - `SMSLINK_FUZZ_SECONDS`: time bound per target (default 120); a target that has not done
//!   its cases by then fails, saying how far it got;
//! - `SMSLINK_FUZZ_SEED`: the base seed (default: fixed, so a failure reproduces).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smslink_core::classify::{Classifier, Context};
use smslink_core::click::{device, os, Request};
use smslink_core::postback;
use smslink_core::segments;
use smslink_core::token::{max_id, Decoded, KeyRing, TokenKey, MAX_LEN, MIN_LEN};
use smslink_core::wrap::{plan, validate_destination, KindRules, LinkKind, TrackedPrefix};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A string of 0..=max pieces, each from the vocabulary, a random char, or random bytes.
fn text(rng: &mut SmallRng, vocab: &[&str], max: usize) -> String {
    let n = rng.random_range(0..=max);
    let mut s = String::new();
    for _ in 0..n {
        match rng.random_range(0..10) {
            0..=5 => s.push_str(vocab[rng.random_range(0..vocab.len())]),
            6 => s.push(rng.random_range('\u{0}'..='\u{7f}')),
            7 => s.push(rng.random::<char>()),
            8 => {
                let bytes: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                s.push_str(&String::from_utf8_lossy(&bytes));
            }
            _ => s.push(ALNUM[rng.random_range(0..ALNUM.len())] as char),
        }
    }
    s
}

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Runs `one` on `cases` generated inputs over both cores, within the time bound. Fails with
/// the seed and input number of the first panic.
fn fuzz(name: &str, one: impl Fn(&mut SmallRng) + Sync) {
    let cases = env_u64("SMSLINK_FUZZ_CASES", 100_000);
    let bound = Duration::from_secs(env_u64("SMSLINK_FUZZ_SECONDS", 120));
    let base = env_u64("SMSLINK_FUZZ_SEED", 0x5e11_11e7);
    let threads: u64 = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (done, failed, one) = (&done, &failed, &one);
            scope.spawn(move || {
                let share = cases / threads + u64::from(t < cases % threads);
                for i in 0..share {
                    // One seed per input, so a failure names the input to replay.
                    let seed = base ^ (t << 56) ^ i;
                    let mut rng = SmallRng::seed_from_u64(seed);
                    if catch_unwind(AssertUnwindSafe(|| one(&mut rng))).is_err() {
                        eprintln!("{name}: panic on the input of seed {seed:#x}");
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    if (i & 1023) == 0
                        && (failed.load(Ordering::Relaxed) || started.elapsed() > bound)
                    {
                        return;
                    }
                }
            });
        }
    });
    let n = done.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {n} inputs in {secs:.1} s ({:.0}/s), 0 panics",
        n as f64 / secs.max(1e-9)
    );
    assert!(
        !failed.load(Ordering::Relaxed),
        "{name}: a panic (see above)"
    );
    assert!(
        n >= cases,
        "{name}: only {n} of {cases} inputs within {} s (raise SMSLINK_FUZZ_SECONDS)",
        bound.as_secs()
    );
}

#[test]
fn fuzz_token_decoder() {
    let mut ring = KeyRing::new();
    let keys: Vec<TokenKey> = (1..=3)
        .map(|v| TokenKey::new(v, &[v as u8; 32]).expect("key"))
        .collect();
    for v in 1..=3 {
        ring.insert(TokenKey::new(v, &[v as u8; 32]).expect("key"));
    }
    let vocab = ["0", "z", "Z", "-", "_", "%", " ", "é", "\u{0}", "A1b2C3d4"];
    fuzz("token", |rng| {
        let t = match rng.random_range(0..3) {
            // well-shaped: alphabet and a valid length
            0 => (0..rng.random_range(MIN_LEN..=MAX_LEN))
                .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
                .collect(),
            _ => text(rng, &vocab, 16),
        };
        let _ = ring.decode(&t);
        let _ = smslink_core::token::parse(&t);
        // A real token decodes to its id.
        let key = &keys[rng.random_range(0..keys.len())];
        let len = rng.random_range(MIN_LEN..=MAX_LEN);
        let id = rng.random_range(1..=max_id(len).expect("length"));
        let token = key.encode(id, len).expect("encode");
        assert_eq!(ring.decode(&token), Decoded::Link(id));
    });
}

#[test]
fn fuzz_url_finding_and_wrapping() {
    let tracked = [TrackedPrefix {
        host: "sms.acme.example".into(),
        prefix: "c".into(),
    }];
    let optout = regex::Regex::new(r"/(stop|unsubscribe)\b").expect("regex");
    let vocab = [
        "https://",
        "http://",
        "ftp://",
        "www.",
        "acme.example",
        "sms.acme.example/c/",
        ".com",
        ".co.uk",
        "/",
        "?",
        "#",
        "&",
        "=",
        "%",
        "%zz",
        ":",
        "@",
        "user:pw@",
        "[::1]",
        "xn--",
        " ",
        "\n",
        "(",
        ")",
        "»",
        "”",
        "。",
        "🎉",
        ".",
        ",",
        "!",
        "stop",
        "javascript:",
        "localhost",
        "127.0.0.1",
        ":8080",
        "Ünïcödé",
        "\u{200b}",
    ];
    fuzz("wrap", |rng| {
        let body = text(rng, &vocab, 24);
        let overrides: Vec<LinkKind> = (0..rng.random_range(0..3))
            .map(|_| [LinkKind::Cta, LinkKind::Secondary, LinkKind::Optout][rng.random_range(0..3)])
            .collect();
        let rules = KindRules {
            optout: rng.random_bool(0.5).then_some(&optout),
            transactional: rng.random_bool(0.2),
            overrides: rng.random_bool(0.2).then_some(overrides.as_slice()),
        };
        if let Ok(t) = plan(&body, &tracked, rules) {
            let shorts: Vec<String> = t.links.iter().map(|_| "https://s/c/x".into()).collect();
            let _ = t.render(&shorts);
        }
        let _ = validate_destination(&text(rng, &vocab, 10));
    });
}

#[test]
fn fuzz_postback_parser() {
    let keys = [
        "sig",
        "event",
        "value",
        "currency",
        "click_id",
        "cid",
        "external_id",
        "occurred_at",
        "subscriber",
        "brand",
        "ts",
        "",
        "sig ",
        "SIG",
        "é",
    ];
    let values = [
        "",
        "1",
        "-1",
        "1e400",
        "NaN",
        "Infinity",
        "USD",
        "usd",
        "2026-12-03T10:00:00Z",
        "99999999999999999999",
        "purchase",
        "%00",
        "a=b&c",
        "\u{0}",
        "🎉",
    ];
    fuzz("postback", |rng| {
        let params: Vec<(String, String)> = (0..rng.random_range(0..12))
            .map(|_| {
                let k = if rng.random_bool(0.8) {
                    keys[rng.random_range(0..keys.len())].to_string()
                } else {
                    text(rng, &keys, 3)
                };
                let v = if rng.random_bool(0.7) {
                    values[rng.random_range(0..values.len())].to_string()
                } else {
                    text(rng, &values, 4)
                };
                (k, v)
            })
            .collect();
        let canonical = postback::canonical(&params);
        // The canonical form does not depend on the parameters' order.
        let mut reversed = params.clone();
        reversed.reverse();
        assert_eq!(canonical, postback::canonical(&reversed));
        let sig = postback::sign("a-secret-of-at-least-32-characters!!", &params);
        assert!(postback::verify(
            "a-secret-of-at-least-32-characters!!",
            &params,
            &sig
        ));
        let _ = postback::parse(params);
    });
}

#[test]
fn fuzz_user_agent_classifier() {
    let classifier = Classifier::built_in();
    let vocab = [
        "Mozilla/5.0 ",
        "(iPhone; CPU iPhone OS 17_0 like Mac OS X) ",
        "AppleWebKit/605.1.15 ",
        "(KHTML, like Gecko) ",
        "Version/17.0 Mobile/15E148 Safari/604.1",
        "Chrome/120.0 ",
        "(Linux; Android 14; Pixel 8) ",
        "Googlebot/2.1",
        "facebookexternalhit/1.1",
        "WhatsApp/2.23",
        "Slackbot-LinkExpanding",
        "curl/8.0",
        "python-requests/2.31",
        "bot",
        "spider",
        "crawler",
        "; ",
        "/",
        " ",
        "(",
        ")",
        "\t",
        "\u{0}",
        "ü",
    ];
    let header_names = [
        "accept",
        "accept-language",
        "sec-fetch-mode",
        "x-purpose",
        "purpose",
        "via",
    ];
    fuzz("classifier", |rng| {
        let ua = text(rng, &vocab, 12);
        let headers: Vec<(String, String)> = (0..rng.random_range(0..4))
            .map(|_| {
                (
                    header_names[rng.random_range(0..header_names.len())].to_string(),
                    text(rng, &vocab, 3),
                )
            })
            .collect();
        let method = ["GET", "HEAD", "POST", "get", "", "OPTIONS"][rng.random_range(0..6)];
        let referrer = text(rng, &vocab, 2);
        let ctx = Context {
            seconds_since_delivery: match rng.random_range(0..4) {
                0 => None,
                1 => Some(f64::NAN),
                2 => Some(-rng.random::<f64>() * 1e6),
                _ => Some(rng.random::<f64>() * 1e6),
            },
            ip_recent_messages: rng.random_range(0..100),
            message_recent_ips: rng.random_range(0..100),
            previewed: rng.random_bool(0.2),
            ..Context::default()
        };
        let _ = classifier.classify(
            &Request {
                method,
                user_agent: rng.random_bool(0.9).then_some(ua.as_str()),
                headers: &headers,
                referrer: rng.random_bool(0.3).then_some(referrer.as_str()),
            },
            &ctx,
        );
        let _ = device(Some(&ua));
        let _ = os(Some(&ua));
    });
}

#[test]
fn fuzz_segment_counter() {
    let vocab = [
        "a",
        "Hello ",
        "€",
        "^",
        "{",
        "}",
        "[",
        "]",
        "~",
        "\\",
        "|",
        "\u{1b}",
        "é",
        "ç",
        "Ç",
        "Δ",
        "🎉",
        "👍🏽",
        "\u{fe0f}",
        "\r\n",
        "\n",
        "\u{0}",
        "日本",
        "\u{10ffff}",
    ];
    fuzz("segments", |rng| {
        let body = text(rng, &vocab, 200);
        let s = segments::count(&body);
        if body.is_empty() {
            assert_eq!(s.characters, 0);
        } else {
            assert!(s.segments >= 1 && s.characters >= 1);
        }
    });
}
