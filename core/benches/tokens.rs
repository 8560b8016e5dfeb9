//! Token codec benchmark: encode and decode rates, as ratios against a raw FF1 encryption of
//! the same numeral strings measured in the same run, plus the measured forged-token
//! acceptance rate. Run with `make bench` or `cargo bench -p smslink-core --bench tokens`.

use aes::Aes256;
use fpe::ff1::{FlexibleNumeralString, FF1};
use smslink_core::token::{Decoded, KeyRing, TokenKey, ALPHABET, DEFAULT_LEN};
use std::hint::black_box;
use std::time::Instant;

const N: u64 = 200_000;
const FORGED: u64 = 2_000_000;

fn rate(n: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let key = [0x5a; 32];
    let ff1 = FF1::<Aes256>::new(&key, 62).expect("radix 62");
    let tk = TokenKey::new(1, &key).expect("key");
    let mut ring = KeyRing::new();
    ring.insert(TokenKey::new(1, &key).expect("key"));

    let baseline = rate(N, || {
        for i in 1..=N {
            let mut v = (i as u128) << 13;
            let mut d = vec![0u16; DEFAULT_LEN - 1];
            for x in d.iter_mut().rev() {
                *x = (v % 62) as u16;
                v /= 62;
            }
            black_box(ff1.encrypt(&[9], &FlexibleNumeralString::from(d)).ok());
        }
    });
    let tokens: Vec<String> = (1..=N)
        .map(|i| tk.encode(i as i64, DEFAULT_LEN).expect("encode"))
        .collect();
    let encode = rate(N, || {
        for i in 1..=N {
            black_box(tk.encode(i as i64, DEFAULT_LEN).ok());
        }
    });
    let decode = rate(N, || {
        for t in &tokens {
            black_box(ring.decode(t));
        }
    });

    // Forged tokens: random well-formed strings under the live key slot.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut accepted = 0u64;
    let mut buf = [0u8; DEFAULT_LEN];
    buf[0] = ALPHABET[1];
    let reject = rate(FORGED, || {
        for _ in 0..FORGED {
            for c in buf.iter_mut().skip(1) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *c = ALPHABET[(state % 62) as usize];
            }
            if let Decoded::Link(_) = ring.decode(std::str::from_utf8(&buf).expect("ascii")) {
                accepted += 1;
            }
        }
    });

    println!("token codec ({DEFAULT_LEN} chars, FF1/AES-256, radix 62), {N} ids:");
    println!("  baseline raw FF1 encrypt : {baseline:>10.0} /s  (1.00x)");
    println!(
        "  encode                   : {encode:>10.0} /s  ({:.2}x of baseline)",
        encode / baseline
    );
    println!(
        "  decode                   : {decode:>10.0} /s  ({:.2}x of baseline)",
        decode / baseline
    );
    println!(
        "  forged rejection         : {reject:>10.0} /s  ({:.2}x of baseline)",
        reject / baseline
    );
    println!(
        "  forged accepted          : {accepted} of {FORGED} = {:.3e} (bound 2^-12 = {:.3e}, design 2^-13 = {:.3e})",
        accepted as f64 / FORGED as f64,
        1.0 / 4096.0,
        1.0 / 8192.0
    );
}
