//! SMS encoding and segment counting (3GPP TS 23.038 / GSM 03.38).
//!
//! - GSM-7 when every character is in the basic table or the extension table; extension
//!   characters take two septets (escape + character). One segment holds 160 septets; a
//!   concatenated segment holds 153 (the UDH takes the rest).
//! - Otherwise UCS-2: one segment holds 70 UTF-16 code units, a concatenated one 67. Characters
//!   outside the BMP (most emoji) take two code units.
//!
//! An escape sequence or a surrogate pair is never split across two segments, as handsets
//! and carriers do, so the count can exceed a naive `ceil(units / per_segment)`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units in a single-segment message, and per segment of a concatenated one.
    pub fn capacity(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The segment layout of one message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Length in encoding units: septets for GSM-7, UTF-16 code units for UCS-2.
    pub characters: usize,
    pub segments: usize,
}

/// GSM 03.38 basic character set (escape 0x1B excluded).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table: each costs an escape septet plus itself.
const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets for one character, or `None` when it is not in GSM-7.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c.is_ascii_alphanumeric() || c == ' ' {
        return Some(1);
    }
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs units (each 1 or 2, never split) into segments of `per` units.
fn pack(units: impl Iterator<Item = usize>, per: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for u in units {
        if used + u > per {
            segments += 1;
            used = 0;
        }
        used += u;
    }
    segments
}

/// Encoding, length and segment count of a body.
pub fn count(body: &str) -> Segments {
    let gsm: Option<Vec<usize>> = body.chars().map(gsm7_septets).collect();
    let (encoding, units): (Encoding, Vec<usize>) = match gsm {
        Some(septets) => (Encoding::Gsm7, septets),
        None => (Encoding::Ucs2, body.chars().map(char::len_utf16).collect()),
    };
    let characters: usize = units.iter().sum();
    let (single, multi) = encoding.capacity();
    let segments = if characters <= single {
        1
    } else {
        pack(units.into_iter(), multi)
    };
    Segments {
        encoding,
        characters,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(s: &str) -> (Encoding, usize, usize) {
        let r = count(s);
        (r.encoding, r.characters, r.segments)
    }

    #[test]
    fn gsm7_limits() {
        assert_eq!(seg(""), (Encoding::Gsm7, 0, 1));
        assert_eq!(seg(&"a".repeat(160)), (Encoding::Gsm7, 160, 1));
        assert_eq!(seg(&"a".repeat(161)), (Encoding::Gsm7, 161, 2));
        assert_eq!(seg(&"a".repeat(306)), (Encoding::Gsm7, 306, 2));
        assert_eq!(seg(&"a".repeat(307)), (Encoding::Gsm7, 307, 3));
        assert_eq!(seg(&"a".repeat(459)), (Encoding::Gsm7, 459, 3));
    }

    #[test]
    fn gsm7_extension_counts_two_and_is_not_split() {
        assert_eq!(seg("€"), (Encoding::Gsm7, 2, 1));
        assert_eq!(seg("{}[]~|^\\\u{000C}€"), (Encoding::Gsm7, 20, 1));
        assert_eq!(seg(&"€".repeat(80)), (Encoding::Gsm7, 160, 1));
        assert_eq!(seg(&"€".repeat(81)), (Encoding::Gsm7, 162, 2));
        // 152 plain septets, then an escape pair that would straddle the 153 boundary.
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(seg(&s), (Encoding::Gsm7, 164, 2));
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        // naive ceil(306/153) = 2, but the € moves to segment two: 152 | 2+152=154 > 153.
        assert_eq!(seg(&s), (Encoding::Gsm7, 306, 3));
    }

    #[test]
    fn gsm7_basic_table_accents_and_greek() {
        assert_eq!(
            count("Café à Ångström, ΔΦΓ £5 ¥ §¿¡").encoding,
            Encoding::Gsm7
        );
        // ç (lower case) is not in the basic table; Ç is.
        assert_eq!(count("Ç").encoding, Encoding::Gsm7);
        assert_eq!(count("ç").encoding, Encoding::Ucs2);
        assert_eq!(count("`").encoding, Encoding::Ucs2);
        assert_eq!(
            count("Sale today! https://sms.example.com/c/1AbCdEfGh").encoding,
            Encoding::Gsm7
        );
    }

    #[test]
    fn ucs2_limits_and_surrogates() {
        assert_eq!(seg(&"ж".repeat(70)), (Encoding::Ucs2, 70, 1));
        assert_eq!(seg(&"ж".repeat(71)), (Encoding::Ucs2, 71, 2));
        assert_eq!(seg(&"ж".repeat(134)), (Encoding::Ucs2, 134, 2));
        assert_eq!(seg(&"ж".repeat(135)), (Encoding::Ucs2, 135, 3));
        // An emoji is two code units.
        assert_eq!(seg("😀"), (Encoding::Ucs2, 2, 1));
        assert_eq!(seg(&"😀".repeat(35)), (Encoding::Ucs2, 70, 1));
        assert_eq!(seg(&"😀".repeat(36)), (Encoding::Ucs2, 72, 2));
        // 66 units then a pair that would straddle 67.
        let s = format!("{}😀{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(seg(&s), (Encoding::Ucs2, 134, 3));
        // One non-GSM char turns the whole message into UCS-2.
        assert_eq!(
            seg(&format!("{}😀", "a".repeat(68))),
            (Encoding::Ucs2, 70, 1)
        );
    }

    proptest! {
        #[test]
        fn segments_bound_units(s in "\\PC{0,400}") {
            let r = count(&s);
            let (single, multi) = r.encoding.capacity();
            if r.characters <= single {
                prop_assert_eq!(r.segments, 1);
            } else {
                // Never fewer than the naive count, at most one extra per boundary.
                let naive = r.characters.div_ceil(multi);
                prop_assert!(r.segments >= naive);
                prop_assert!(r.segments <= naive + naive);
            }
            if r.encoding == Encoding::Ucs2 {
                prop_assert_eq!(r.characters, s.encode_utf16().count());
            }
        }
    }
}
