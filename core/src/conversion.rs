//! Rules for recorded outcomes: conversions and touchpoints from other channels.

/// How far in the future a conversion or touchpoint may be stamped (clock skew between the
/// sender and the database), in seconds.
pub const FUTURE_TOLERANCE_SECONDS: f64 = 300.0;

/// Events whose value may be negative: money going back.
/// The largest conversion value accepted, in absolute value (in the currency's units): a
/// trillion. Anything larger is a unit mistake (cents as units, a timestamp in the value
/// column) that would swamp every revenue figure of the brand.
pub const MAX_VALUE: i64 = 1_000_000_000_000;

pub const NEGATIVE_VALUE_EVENTS: [&str; 4] = ["refund", "return", "chargeback", "cancellation"];

/// An ISO 4217 currency code, upper-cased; lower case is accepted.
pub fn currency(code: &str) -> Result<String, String> {
    let upper = code.trim().to_ascii_uppercase();
    if upper.len() != 3 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "currency {code:?} is not an ISO 4217 code: use three letters, such as USD or EUR"
        ));
    }
    match iso_currency::Currency::from_code(&upper) {
        Some(_) => Ok(upper),
        None => Err(format!(
            "currency {code:?} is not an ISO 4217 currency: use a code such as USD, EUR or GBP"
        )),
    }
}

/// An event name: trimmed, 1 to 100 characters, no control characters.
pub fn event(name: &str) -> Result<String, String> {
    let t = name.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(format!(
            "event {name:?} is not a valid event name: use 1 to 100 characters, such as purchase"
        ));
    }
    Ok(t.to_string())
}

/// Whether an event may carry a negative value.
pub fn may_be_negative(event: &str) -> bool {
    NEGATIVE_VALUE_EVENTS
        .iter()
        .any(|e| e.eq_ignore_ascii_case(event))
}

/// An idempotency key: 1 to 255 characters.
pub fn external_id(id: &str) -> Result<&str, String> {
    if id.is_empty() || id.chars().count() > 255 {
        return Err("external_id must be 1 to 255 characters: the sender's id of the event".into());
    }
    Ok(id)
}

/// A channel name for touchpoints: lower-case letters, digits, `_` and `-`, 1 to 32 long.
pub fn channel(name: &str) -> Result<String, String> {
    let t = name.trim().to_ascii_lowercase();
    let ok = !t.is_empty()
        && t.len() <= 32
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(t)
    } else {
        Err(format!(
            "channel {name:?} is not valid: use 1 to 32 letters, digits, _ or -, such as email or paid_social"
        ))
    }
}

/// A touchpoint kind: `click` or `view`.
pub fn touch_kind(kind: &str) -> Result<&'static str, String> {
    match kind.trim().to_ascii_lowercase().as_str() {
        "click" => Ok("click"),
        "view" => Ok("view"),
        _ => Err(format!(
            "kind {kind:?} is not a touchpoint kind: use click or view"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies() {
        assert_eq!(currency("usd").unwrap(), "USD");
        assert_eq!(currency(" EUR ").unwrap(), "EUR");
        assert_eq!(currency("JPY").unwrap(), "JPY");
        assert!(currency("XYZ").is_err());
        assert!(currency("US").is_err());
        assert!(currency("US1").is_err());
        assert!(currency("").is_err());
    }

    #[test]
    fn events_values_ids_channels_kinds() {
        assert_eq!(event(" purchase ").unwrap(), "purchase");
        assert!(event("").is_err());
        assert!(event(&"x".repeat(101)).is_err());
        assert!(event("a\nb").is_err());
        assert!(may_be_negative("Refund"));
        assert!(!may_be_negative("purchase"));
        assert!(external_id("").is_err());
        assert!(external_id("order-1").is_ok());
        assert_eq!(channel("Paid_Social").unwrap(), "paid_social");
        assert!(channel("e mail").is_err());
        assert_eq!(touch_kind("VIEW").unwrap(), "view");
        assert!(touch_kind("open").is_err());
    }
}
