//! SMS segment maths and URL validation, exposed in SQL.

use pgrx::prelude::*;
use smslink_core::{segments, wrap::validate_destination};

/// Encoding (GSM-7 or UCS-2), length in encoding units and segment count of an SMS body.
#[pg_extern(immutable, strict, parallel_safe)]
fn sms_segments(
    body: &str,
) -> TableIterator<
    'static,
    (
        name!(encoding, String),
        name!(characters, i32),
        name!(segments, i32),
    ),
> {
    let s = segments::count(body);
    TableIterator::once((
        s.encoding.as_str().to_string(),
        clamp_i32(s.characters),
        clamp_i32(s.segments),
    ))
}

/// True when `url` is an http(s) URL with a host and no credentials or control characters:
/// the rule for every destination and fallback URL (used in CHECK constraints).
#[pg_extern(immutable, strict, parallel_safe)]
pub fn is_http_url(url: &str) -> bool {
    validate_destination(url).is_ok()
}

pub fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
