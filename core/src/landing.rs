//! What the landing page learns: macros in destinations and the campaign's click parameter.
//!
//! A destination may contain the macros `{click_id}`, `{subscriber}`, `{campaign}`,
//! `{variant}` and `{message}`. Because destinations are stored in their canonical URL form,
//! the braces may also appear percent-encoded (`%7Bclick_id%7D`, either hex case); both forms
//! are expanded. A campaign's click parameter (for example `smsclid={click_id}`) is appended to
//! the query before the fragment, then expanded like the rest. Values are percent-encoded
//! (everything except ASCII letters, digits and `-._~`), so the result stays one valid URL
//! whatever the subscriber key contains. Braces around any other name are left as they are.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The macro names, as written between braces.
pub const MACROS: [&str; 5] = ["click_id", "subscriber", "campaign", "variant", "message"];

/// The longest click parameter accepted.
pub const MAX_CLICK_PARAM: usize = 256;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
pub(crate) const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The values the macros stand for, for one click.
#[derive(Debug, Clone, Copy)]
pub struct Macros<'a> {
    pub click_id: i64,
    pub subscriber: &'a str,
    pub campaign: i64,
    pub variant: &'a str,
    pub message: i64,
}

impl Macros<'_> {
    fn value(&self, name: &str) -> Option<String> {
        let raw = match name {
            "click_id" => self.click_id.to_string(),
            "subscriber" => self.subscriber.to_string(),
            "campaign" => self.campaign.to_string(),
            "variant" => self.variant.to_string(),
            "message" => self.message.to_string(),
            _ => return None,
        };
        Some(utf8_percent_encode(&raw, VALUE).to_string())
    }
}

/// True when `url` may contain a macro, cheaply: the hot path skips expansion otherwise.
pub fn has_macro(url: &str) -> bool {
    url.contains('{') || url.contains("%7B") || url.contains("%7b")
}

/// The macro starting at `rest`, if any: (name, length of the whole macro text).
fn macro_at(rest: &str) -> Option<(&'static str, usize)> {
    let (open, close_len, body) = if let Some(b) = rest.strip_prefix('{') {
        (1, 1, b)
    } else if rest
        .as_bytes()
        .get(..3)
        .is_some_and(|b| b.eq_ignore_ascii_case(b"%7b"))
    {
        (3, 3, &rest[3..])
    } else {
        return None;
    };
    MACROS.into_iter().find_map(|name| {
        let after = body.strip_prefix(name)?;
        let closed = if close_len == 1 {
            after.starts_with('}')
        } else {
            after
                .as_bytes()
                .get(..3)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"%7d"))
        };
        closed.then_some((name, open + name.len() + close_len))
    })
}

/// Replaces every macro in `text` by its URL-encoded value.
pub fn expand(text: &str, m: &Macros<'_>) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some((name, len)) = macro_at(rest) {
            if let Some(v) = m.value(name) {
                out.push_str(&v);
                i += len;
                continue;
            }
        }
        // Copy one character (text is valid UTF-8; step over a whole char).
        let c = rest.chars().next().unwrap_or('\u{FFFD}');
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

/// Appends `param` (already checked with [`check_click_param`]) to the query of `url`, before
/// any fragment.
pub fn append_param(url: &str, param: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{param}{fragment}")
}

/// The location a click is sent to: the campaign's click parameter appended, then the macros
/// expanded.
pub fn landing_url(destination: &str, click_param: Option<&str>, m: &Macros<'_>) -> String {
    let url = match click_param {
        Some(p) if !p.is_empty() => append_param(destination, p),
        _ => destination.to_string(),
    };
    if has_macro(&url) {
        expand(&url, m)
    } else {
        url
    }
}

/// Checks a campaign's click parameter: one or more `name=value` pairs joined by `&`, names of
/// letters, digits and `-._~`, values of those characters, percent escapes and macros.
pub fn check_click_param(param: &str) -> Result<(), String> {
    if param.is_empty() || param.len() > MAX_CLICK_PARAM {
        return Err(format!(
            "a click parameter has 1 to {MAX_CLICK_PARAM} characters, such as smsclid={{click_id}}"
        ));
    }
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    for pair in param.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!(
                "{pair:?} is not name=value; write pairs such as smsclid={{click_id}} joined by &"
            ));
        };
        if name.is_empty() || !name.chars().all(unreserved) {
            return Err(format!(
                "parameter name {name:?} must be letters, digits, '-', '.', '_' or '~'"
            ));
        }
        let mut rest = value;
        while let Some(c) = rest.chars().next() {
            if let Some((_, len)) = macro_at(rest) {
                rest = &rest[len..];
            } else if c == '{' {
                return Err(format!(
                    "unknown macro in {value:?}; the macros are {}",
                    MACROS.map(|m| format!("{{{m}}}")).join(", ")
                ));
            } else if c == '%'
                && rest.len() >= 3
                && rest.as_bytes()[1].is_ascii_hexdigit()
                && rest.as_bytes()[2].is_ascii_hexdigit()
            {
                rest = &rest[3..];
            } else if unreserved(c) {
                rest = &rest[c.len_utf8()..];
            } else {
                return Err(format!(
                    "character {c:?} in {value:?} must be percent-encoded"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: Macros<'static> = Macros {
        click_id: 981,
        subscriber: "ann+1@example.com",
        campaign: 12,
        variant: "B 2",
        message: 77,
    };

    #[test]
    fn expands_every_macro_in_both_forms() {
        assert_eq!(
            expand(
                "https://shop.test/p?c={click_id}&s={subscriber}&k={campaign}&v=%7Bvariant%7D&m=%7bmessage%7d",
                &M
            ),
            "https://shop.test/p?c=981&s=ann%2B1%40example.com&k=12&v=B%202&m=77"
        );
    }

    #[test]
    fn leaves_other_braces_and_text_alone() {
        let u = "https://shop.test/{other}/é?q={click_id";
        assert_eq!(expand(u, &M), u);
        assert!(!has_macro("https://shop.test/p?x=1"));
    }

    #[test]
    fn click_param_goes_before_the_fragment() {
        let p = Some("smsclid={click_id}");
        assert_eq!(
            landing_url("https://shop.test/p", p, &M),
            "https://shop.test/p?smsclid=981"
        );
        assert_eq!(
            landing_url("https://shop.test/p?a=1#top", p, &M),
            "https://shop.test/p?a=1&smsclid=981#top"
        );
        assert_eq!(
            landing_url("https://shop.test/p?", p, &M),
            "https://shop.test/p?smsclid=981"
        );
        assert_eq!(
            landing_url("https://shop.test/p", None, &M),
            "https://shop.test/p"
        );
    }

    #[test]
    fn click_param_check() {
        for ok in [
            "smsclid={click_id}",
            "smsclid={click_id}&utm_source=sms&utm_campaign={campaign}",
            "s=%7Bsubscriber%7D",
            "x=a%20b",
        ] {
            assert_eq!(check_click_param(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "1 to"),
            ("smsclid", "name=value"),
            ("=1", "parameter name"),
            ("a b=1", "parameter name"),
            ("s={unknown}", "unknown macro"),
            ("s=a b", "percent-encoded"),
            ("s=a#b", "percent-encoded"),
        ] {
            let e = check_click_param(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    proptest! {
        /// Whatever the subscriber key holds, the expanded URL parses and carries the key back.
        #[test]
        fn expanded_urls_parse_and_round_trip(key in "\\PC{1,40}") {
            let m = Macros { subscriber: &key, ..M };
            let out = landing_url("https://shop.test/p", Some("s={subscriber}&c={click_id}"), &m);
            let url = url::Url::parse(&out).expect("valid URL");
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            prop_assert_eq!(&pairs[0], &("s".to_string(), key.clone()));
            prop_assert_eq!(&pairs[1], &("c".to_string(), "981".to_string()));
        }
    }
}
