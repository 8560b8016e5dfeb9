//! Tracked-link tokens.
//!
//! A token is `S || C` where `S` is one base62 character naming the key slot and `C` is
//! `len - 1` base62 characters: the FF1 encryption (NIST SP 800-38G, AES-256) of the numeral
//! string of `link_id << CHECK_BITS`. Decryption of a guessed `C` yields a pseudo-random value,
//! whose low `CHECK_BITS` bits are all zero with probability 2^-CHECK_BITS, so a guess is
//! rejected without any lookup except about one time in 8192.
//!
//! The key slot is `version mod 62`: a token says which key made it, so decoding costs one
//! decryption whatever the number of live keys, and rotating keys never raises the false
//! acceptance rate.

use aes::Aes256;
use fpe::ff1::{FlexibleNumeralString, FF1};
use std::fmt;

/// URL-safe alphabet, in ASCII order so that the mapping is easy to audit.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const RADIX: u32 = 62;
pub const MIN_LEN: usize = 7;
pub const MAX_LEN: usize = 12;
pub const DEFAULT_LEN: usize = 9;
/// Redundancy bits: a random well-formed token is accepted with probability 2^-13.
pub const CHECK_BITS: u32 = 13;
/// Number of key slots, one per first character of a token.
pub const SLOTS: usize = 62;
/// Key length in bytes (AES-256).
pub const KEY_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The key material is not `KEY_BYTES` long.
    KeyLength(usize),
    /// Requested token length outside `MIN_LEN..=MAX_LEN`.
    Length(usize),
    /// Link ids start at 1.
    IdNotPositive(i64),
    /// The id does not fit in a token of this length.
    IdTooLarge { id: i64, len: usize, max: i64 },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::KeyLength(n) => {
                write!(f, "token key is {n} bytes (must be {KEY_BYTES})")
            }
            TokenError::Length(n) => {
                write!(f, "token length {n} is out of range (must be {MIN_LEN} to {MAX_LEN})")
            }
            TokenError::IdNotPositive(id) => write!(f, "link id {id} is not positive"),
            TokenError::IdTooLarge { id, len, max } => write!(
                f,
                "link id {id} does not fit in a {len}-character token (max {max}); use a longer token length"
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// The slot (first token character index) that a key version occupies.
pub fn slot_of_version(version: i32) -> usize {
    version.rem_euclid(SLOTS as i32) as usize
}

/// 62^n as u128 (n ≤ 11 fits easily).
fn radix_pow(n: usize) -> u128 {
    (RADIX as u128).pow(n as u32)
}

/// Largest link id that a token of `len` characters can carry.
pub fn max_id(len: usize) -> Result<i64, TokenError> {
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(TokenError::Length(len));
    }
    let max = (radix_pow(len - 1) - 1) >> CHECK_BITS;
    Ok(i64::try_from(max).unwrap_or(i64::MAX))
}

/// One versioned token key.
pub struct TokenKey {
    version: i32,
    ff1: FF1<Aes256>,
}

impl TokenKey {
    pub fn new(version: i32, key: &[u8]) -> Result<Self, TokenError> {
        if key.len() != KEY_BYTES {
            return Err(TokenError::KeyLength(key.len()));
        }
        // 62 is a valid radix, so this cannot fail.
        let ff1 = FF1::<Aes256>::new(key, RADIX).map_err(|_| TokenError::KeyLength(key.len()))?;
        Ok(TokenKey { version, ff1 })
    }

    pub fn version(&self) -> i32 {
        self.version
    }

    pub fn slot(&self) -> usize {
        slot_of_version(self.version)
    }

    /// Encodes a link id as a token of `len` characters.
    pub fn encode(&self, id: i64, len: usize) -> Result<String, TokenError> {
        let max = max_id(len)?;
        if id < 1 {
            return Err(TokenError::IdNotPositive(id));
        }
        if id > max {
            return Err(TokenError::IdTooLarge { id, len, max });
        }
        let n = len - 1;
        let mut value = (id as u128) << CHECK_BITS;
        let mut digits = vec![0u16; n];
        for d in digits.iter_mut().rev() {
            *d = (value % RADIX as u128) as u16;
            value /= RADIX as u128;
        }
        let cipher: Vec<u16> = self
            .ff1
            .encrypt(&tweak(len), &FlexibleNumeralString::from(digits))
            .map_err(|_| TokenError::Length(len))?
            .into();
        let mut out = String::with_capacity(len);
        out.push(ALPHABET[self.slot()] as char);
        out.extend(cipher.iter().map(|&d| ALPHABET[d as usize] as char));
        Ok(out)
    }

    /// Decodes the body of a parsed token made with this key. `None` when the redundancy
    /// bits do not check out.
    fn decode(&self, parsed: &Parsed) -> Option<i64> {
        let plain: Vec<u16> = self
            .ff1
            .decrypt(
                &tweak(parsed.len),
                &FlexibleNumeralString::from(parsed.digits.clone()),
            )
            .ok()?
            .into();
        let value = plain
            .iter()
            .fold(0u128, |acc, &d| acc * RADIX as u128 + d as u128);
        if value & ((1u128 << CHECK_BITS) - 1) != 0 {
            return None;
        }
        let id = i64::try_from(value >> CHECK_BITS).ok()?;
        (id >= 1).then_some(id)
    }
}

/// The tweak binds a ciphertext to its length, so tokens of different lengths are unrelated.
fn tweak(len: usize) -> [u8; 1] {
    [len as u8]
}

fn digit_of(c: u8) -> Option<u16> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u16),
        b'A'..=b'Z' => Some((c - b'A') as u16 + 10),
        b'a'..=b'z' => Some((c - b'a') as u16 + 36),
        _ => None,
    }
}

/// A token that is well formed (length and alphabet), not yet authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub slot: usize,
    len: usize,
    digits: Vec<u16>,
}

/// Checks length and alphabet only; needs no key.
pub fn parse(token: &str) -> Option<Parsed> {
    let bytes = token.as_bytes();
    if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
        return None;
    }
    let slot = digit_of(bytes[0])? as usize;
    let digits = bytes[1..]
        .iter()
        .map(|&c| digit_of(c))
        .collect::<Option<Vec<u16>>>()?;
    Some(Parsed {
        slot,
        len: bytes.len(),
        digits,
    })
}

/// The outcome of decoding a token against a key ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Link(i64),
    /// Wrong length, wrong alphabet or failed redundancy check.
    Invalid,
    /// Well formed, but no key is loaded for its slot. The caller may reload keys and retry.
    UnknownSlot(usize),
}

/// All live keys, one per slot, and the current key for encoding.
#[derive(Default)]
pub struct KeyRing {
    slots: Vec<Option<TokenKey>>,
    current: Option<usize>,
}

impl KeyRing {
    pub fn new() -> Self {
        KeyRing {
            slots: (0..SLOTS).map(|_| None).collect(),
            current: None,
        }
    }

    /// Adds a key. For a slot shared by several versions the highest version wins, and the
    /// highest version overall becomes current.
    pub fn insert(&mut self, key: TokenKey) {
        if self.slots.is_empty() {
            self.slots = (0..SLOTS).map(|_| None).collect();
        }
        let slot = key.slot();
        let version = key.version();
        if self.slots[slot]
            .as_ref()
            .is_some_and(|k| k.version() > version)
        {
            return;
        }
        self.slots[slot] = Some(key);
        let newer = match self.current {
            Some(c) => self.slots[c]
                .as_ref()
                .is_none_or(|k| k.version() <= version),
            None => true,
        };
        if newer {
            self.current = Some(slot);
        }
    }

    pub fn current(&self) -> Option<&TokenKey> {
        self.current.and_then(|s| self.slots[s].as_ref())
    }

    pub fn get_version(&self, version: i32) -> Option<&TokenKey> {
        self.slots
            .get(slot_of_version(version))?
            .as_ref()
            .filter(|k| k.version() == version)
    }

    pub fn decode(&self, token: &str) -> Decoded {
        match parse(token) {
            None => Decoded::Invalid,
            Some(p) => match self.slots.get(p.slot).and_then(|k| k.as_ref()) {
                None => Decoded::UnknownSlot(p.slot),
                Some(key) => key.decode(&p).map_or(Decoded::Invalid, Decoded::Link),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    fn key(version: i32, fill: u8) -> TokenKey {
        TokenKey::new(version, &[fill; KEY_BYTES]).expect("32-byte key")
    }

    fn ring(keys: Vec<TokenKey>) -> KeyRing {
        let mut r = KeyRing::new();
        for k in keys {
            r.insert(k);
        }
        r
    }

    #[test]
    fn fixed_length_and_alphabet() {
        let k = key(1, 7);
        for len in MIN_LEN..=MAX_LEN {
            let t = k.encode(1, len).expect("encode");
            assert_eq!(t.len(), len);
            assert!(t.bytes().all(|c| ALPHABET.contains(&c)), "{t}");
            assert_eq!(t.as_bytes()[0], ALPHABET[1], "slot char names version 1");
        }
    }

    #[test]
    fn deterministic_and_key_dependent() {
        let a = key(1, 7);
        let b = key(1, 8);
        assert_eq!(a.encode(42, 9), a.encode(42, 9));
        assert_ne!(a.encode(42, 9), b.encode(42, 9));
        // Neighbouring ids give unrelated tokens: no shared suffix or prefix beyond the slot.
        let t1 = a.encode(1000, 9).expect("encode");
        let t2 = a.encode(1001, 9).expect("encode");
        let same = t1
            .bytes()
            .zip(t2.bytes())
            .skip(1)
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 4, "{t1} {t2}");
    }

    #[test]
    fn bounds_are_errors() {
        let k = key(1, 1);
        assert_eq!(k.encode(0, 9), Err(TokenError::IdNotPositive(0)));
        assert_eq!(k.encode(-5, 9), Err(TokenError::IdNotPositive(-5)));
        assert_eq!(k.encode(1, 6), Err(TokenError::Length(6)));
        assert_eq!(k.encode(1, 13), Err(TokenError::Length(13)));
        let max7 = max_id(7).expect("max");
        assert_eq!(max7, 6_933_622);
        assert!(k.encode(max7, 7).is_ok());
        assert!(matches!(
            k.encode(max7 + 1, 7),
            Err(TokenError::IdTooLarge { .. })
        ));
        assert_eq!(
            max_id(12).expect("max"),
            i64::try_from((62u128.pow(11) - 1) >> 13).expect("fits")
        );
        assert!(TokenKey::new(1, &[0; 16]).is_err());
    }

    #[test]
    fn malformed_tokens_are_invalid() {
        let r = ring(vec![key(1, 3)]);
        for t in [
            "",
            "abc",
            "1234567890123",
            "1abc-defg",
            "1abcdefg ",
            "1abcdéfg",
            "1ABCDEFG\n",
        ] {
            assert_eq!(r.decode(t), Decoded::Invalid, "{t:?}");
        }
        let good = key(1, 3).encode(77, 9).expect("encode");
        // Same body under a slot with no key.
        let other = format!("Z{}", &good[1..]);
        assert_eq!(r.decode(&other), Decoded::UnknownSlot(35));
    }

    #[test]
    fn old_keys_still_resolve_after_rotation() {
        let t1 = key(1, 1).encode(5, 9).expect("encode");
        let t2 = key(2, 2).encode(5, 9).expect("encode");
        assert_ne!(t1, t2);
        let r = ring(vec![key(1, 1), key(2, 2)]);
        assert_eq!(r.current().map(TokenKey::version), Some(2));
        assert_eq!(r.decode(&t1), Decoded::Link(5));
        assert_eq!(r.decode(&t2), Decoded::Link(5));
        // Version 63 shares slot 1 with version 1 and replaces it.
        let r = ring(vec![key(63, 9), key(1, 1)]);
        assert_eq!(r.get_version(63).map(TokenKey::version), Some(63));
        assert!(r.get_version(1).is_none());
        assert_eq!(r.current().map(TokenKey::version), Some(63));
    }

    #[test]
    fn forged_acceptance_rate_is_below_2_pow_minus_12() {
        // 1,000,000 random well-formed 9-character strings against a ring with the slot's key.
        let r = ring(vec![key(1, 42)]);
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let trials = 1_000_000u32;
        let mut accepted = 0u32;
        let mut token = [0u8; 9];
        token[0] = ALPHABET[1];
        for _ in 0..trials {
            for c in token.iter_mut().skip(1) {
                *c = ALPHABET[rng.random_range(0..62)];
            }
            let s = std::str::from_utf8(&token).expect("ascii");
            if let Decoded::Link(_) = r.decode(s) {
                accepted += 1;
            }
        }
        let rate = accepted as f64 / trials as f64;
        // Expected 1/8192 ≈ 122 per million; the contract is at most 1/4096 ≈ 244.
        assert!(rate <= 1.0 / 4096.0, "accepted {accepted} of {trials}");
        assert!(
            accepted > 60,
            "redundancy check looks broken: only {accepted} accepted"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn round_trip(id in 1i64..(1i64 << 40), len in 10usize..=MAX_LEN, version in 1i32..200) {
            let k = TokenKey::new(version, &[version as u8; KEY_BYTES]).expect("key");
            let t = k.encode(id, len).expect("encode");
            let r = ring(vec![TokenKey::new(version, &[version as u8; KEY_BYTES]).expect("key")]);
            prop_assert_eq!(r.decode(&t), Decoded::Link(id));
        }

        #[test]
        fn round_trip_default_length(id in 1i64..=26_652_844_920) {
            let k = key(2, 5);
            let t = k.encode(id, DEFAULT_LEN).expect("encode");
            prop_assert_eq!(ring(vec![key(2, 5)]).decode(&t), Decoded::Link(id));
        }

        #[test]
        fn round_trip_short(id in 1i64..=6_933_622, len in MIN_LEN..=8usize) {
            let k = key(3, 9);
            let t = k.encode(id, len).expect("encode");
            prop_assert_eq!(ring(vec![key(3, 9)]).decode(&t), Decoded::Link(id));
        }

        #[test]
        fn any_string_decodes_without_panic(s in "\\PC{0,16}") {
            let _ = ring(vec![key(1, 1)]).decode(&s);
        }
    }
}
