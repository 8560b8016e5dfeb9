//! Signed conversions from outside: server-side postbacks (`/p`) and pixels (`/px.gif`).
//!
//! A postback is a set of `name=value` parameters. The sender signs it with the brand's secret:
//!
//! ```text
//! sig = hex(HMAC-SHA256(secret, canonical))
//! canonical = every parameter except `sig`, sorted by name (bytewise), each written as
//!             name=value with RFC 3986 escaping (letters, digits and -._~ as they are, every
//!             other UTF-8 byte as %XX in upper-case hex), joined by '&'
//! ```
//!
//! Sorting and re-escaping make the signature independent of the order the sender wrote the
//! parameters in and of how its HTTP library escaped them, while any change to a name or a value
//! changes the canonical string. A parameter may appear only once, so that a tampered request
//! cannot smuggle a second value past the signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signature parameter's name.
pub const SIGNATURE: &str = "sig";
/// The most parameters one postback may carry.
pub const MAX_PARAMS: usize = 32;
/// The longest name or value accepted.
pub const MAX_LENGTH: usize = 1024;

/// The parameters that make up a conversion; every other parameter is kept as a property.
pub const FIELDS: [&str; 6] = [
    "click_id",
    "event",
    "value",
    "currency",
    "external_id",
    "occurred_at",
];

type HmacSha256 = Hmac<Sha256>;

/// The string that is signed: see the module documentation.
pub fn canonical(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != SIGNATURE).collect();
    sorted.sort();
    let escape =
        |s: &str| percent_encoding::utf8_percent_encode(s, crate::landing::VALUE).to_string();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

/// The signature of `params` (lower-case hex).
pub fn sign(secret: &str, params: &[(String, String)]) -> String {
    let mut m = mac(secret);
    m.update(canonical(params).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// True when `signature` (hex, either case) is the signature of `params` under `secret`. The
/// comparison takes the same time whatever the signature's content.
pub fn verify(secret: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(canonical(params).as_bytes());
    m.verify_slice(&given).is_ok()
}

/// Why a postback was refused, as the proxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature, or not one made with the brand's secret: HTTP 401.
    Unauthorized(String),
    /// Signed, but not a valid conversion: HTTP 400.
    Invalid(String),
}

/// A postback's parameters, checked for shape (not yet for signature).
#[derive(Debug, Clone, PartialEq)]
pub struct Postback {
    pub click_id: i64,
    pub event: String,
    pub value: Option<String>,
    pub currency: Option<String>,
    pub external_id: String,
    pub occurred_at: Option<String>,
    /// The signature as given.
    pub signature: String,
    /// Every parameter except `sig`, for verification.
    pub params: Vec<(String, String)>,
    /// Parameters other than the conversion fields, kept as the conversion's properties.
    pub extra: Vec<(String, String)>,
}

/// Reads a postback's parameters. A missing signature is `Unauthorized`; anything else wrong
/// is `Invalid`, with a message that says what to fix.
pub fn parse(params: Vec<(String, String)>) -> Result<Postback, Refusal> {
    let invalid = |m: String| Err(Refusal::Invalid(m));
    if params.len() > MAX_PARAMS + 1 {
        return invalid(format!("at most {MAX_PARAMS} parameters"));
    }
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return invalid(format!("parameter {:?} appears more than once", w[0]));
    }
    if let Some((k, _)) = params
        .iter()
        .find(|(k, v)| k.len() > MAX_LENGTH || v.len() > MAX_LENGTH || k.is_empty())
    {
        return invalid(format!(
            "parameter {:?} is empty or longer than {MAX_LENGTH} bytes",
            k.chars().take(40).collect::<String>()
        ));
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(signature) = get(SIGNATURE).filter(|s| !s.is_empty()) else {
        return Err(Refusal::Unauthorized(format!(
            "unsigned: add the {SIGNATURE} parameter (hex HMAC-SHA256 of the canonical parameters)"
        )));
    };
    let Some(click) = get("click_id") else {
        return invalid("click_id is required".into());
    };
    let Ok(click_id) = click.trim().parse::<i64>() else {
        return invalid(format!("click_id {click:?} is not a click id (an integer)"));
    };
    let Some(external_id) = get("external_id") else {
        return invalid("external_id is required (the order or event id, for idempotency)".into());
    };
    let event = get("event").unwrap_or_else(|| "purchase".to_string());
    let value = get("value").filter(|v| !v.is_empty());
    let currency = get("currency").filter(|v| !v.is_empty());
    let occurred_at = get("occurred_at").filter(|v| !v.is_empty());
    let params: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k != SIGNATURE).collect();
    let extra = params
        .iter()
        .filter(|(k, _)| !FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(Postback {
        click_id,
        event,
        value,
        currency,
        external_id,
        occurred_at,
        signature,
        params,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_sorts_escapes_and_drops_the_signature() {
        let params = p(&[
            ("value", "12.50"),
            ("sig", "abc"),
            ("event", "add to cart"),
            ("click_id", "7"),
            ("note", "a~b*c/é"),
        ]);
        assert_eq!(
            canonical(&params),
            "click_id=7&event=add%20to%20cart&note=a~b%2Ac%2F%C3%A9&value=12.50"
        );
    }

    #[test]
    fn known_signature() {
        // Checked independently with:
        // printf 'click_id=7&external_id=o-1' | openssl dgst -sha256 -hmac secret
        let params = p(&[("external_id", "o-1"), ("click_id", "7")]);
        assert_eq!(
            sign("secret", &params),
            "0d000cf9f617db688dac96b35e589d8312a0325d06475135f8cd904096960eb6"
        );
        assert!(verify("secret", &params, &sign("secret", &params)));
    }

    #[test]
    fn order_of_parameters_does_not_matter_but_content_does() {
        let a = p(&[("click_id", "7"), ("external_id", "o-1"), ("value", "10")]);
        let b = p(&[("value", "10"), ("external_id", "o-1"), ("click_id", "7")]);
        let s = sign("k".repeat(32).as_str(), &a);
        assert!(verify(&"k".repeat(32), &b, &s));
        assert!(verify(&"k".repeat(32), &b, &s.to_uppercase()));
        let tampered = p(&[("value", "100"), ("external_id", "o-1"), ("click_id", "7")]);
        assert!(!verify(&"k".repeat(32), &tampered, &s));
        assert!(!verify(&"x".repeat(32), &b, &s));
        assert!(!verify(&"k".repeat(32), &b, "not hex"));
        assert!(!verify(&"k".repeat(32), &b, ""));
    }

    #[test]
    fn parse_reads_fields_and_keeps_the_rest() {
        let pb = parse(p(&[
            ("click_id", "42"),
            ("external_id", "order-9"),
            ("value", "19.99"),
            ("currency", "EUR"),
            ("sku", "A-1"),
            ("sig", "00"),
        ]))
        .expect("valid");
        assert_eq!(pb.click_id, 42);
        assert_eq!(pb.event, "purchase");
        assert_eq!(pb.value.as_deref(), Some("19.99"));
        assert_eq!(pb.currency.as_deref(), Some("EUR"));
        assert_eq!(pb.extra, p(&[("sku", "A-1")]));
        assert_eq!(pb.params.len(), 5);
        assert_eq!(pb.signature, "00");
    }

    #[test]
    fn parse_refuses_clearly() {
        let unsigned = parse(p(&[("click_id", "1"), ("external_id", "x")]));
        assert!(matches!(unsigned, Err(Refusal::Unauthorized(_))));
        let cases = [
            (
                p(&[("external_id", "x"), ("sig", "00")]),
                "click_id is required",
            ),
            (
                p(&[("click_id", "abc"), ("external_id", "x"), ("sig", "00")]),
                "not a click id",
            ),
            (
                p(&[("click_id", "1"), ("sig", "00")]),
                "external_id is required",
            ),
            (
                p(&[
                    ("click_id", "1"),
                    ("click_id", "2"),
                    ("external_id", "x"),
                    ("sig", "00"),
                ]),
                "more than once",
            ),
        ];
        for (params, want) in cases {
            match parse(params) {
                Err(Refusal::Invalid(m)) => assert!(m.contains(want), "{m} lacks {want}"),
                other => panic!("expected Invalid({want}), got {other:?}"),
            }
        }
    }
}
