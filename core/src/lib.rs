//! Pure logic of smslink, with no Postgres dependency.
//!
//! - [`token`]: the keyed, non-enumerable token codec (FF1 over base62, with redundancy bits).
//! - [`wrap`]: finding URLs in an SMS body and replacing them with tracked short links.
//! - [`click`]: click classes, the request and verdict types, and device type.
//! - [`classify`]: the click classifier (User-Agent rules, request, timing, IP and burst signals).
//! - [`conversion`]: validation of conversions and touchpoints (currencies, events, channels).
//! - [`segments`]: GSM-7 / UCS-2 encoding detection and SMS segment counting.

pub mod classify;
pub mod click;
pub mod conversion;
pub mod segments;
pub mod token;
pub mod wrap;
