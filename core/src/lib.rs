//! Pure logic of smslink, with no Postgres dependency.
//!
//! - [`bandit`]: Thompson allocation weights with a floor, stable subscriber buckets.
//! - [`attribution`]: attribution models (rule-based credits, Markov removal effects, journeys).
//! - [`token`]: the keyed, non-enumerable token codec (FF1 over base62, with redundancy bits).
//! - [`wrap`]: finding URLs in an SMS body and replacing them with tracked short links.
//! - [`click`]: click classes, the request and verdict types, and device type.
//! - [`classify`]: the click classifier (User-Agent rules, request, timing, IP and burst signals).
//! - [`conversion`]: validation of conversions and touchpoints (currencies, events, channels).
//! - [`holdout`]: hash-based holdout assignment and incrementality against the control group.
//! - [`landing`]: click-id macros in destinations and the campaign's click parameter.
//! - [`postback`]: signed server-side postbacks and pixels (HMAC-SHA256 over canonical params).
//! - [`segments`]: GSM-7 / UCS-2 encoding detection and SMS segment counting.
//! - [`stats`]: A/B variant comparison of proportions (intervals, tests, probability of being
//!   best, always-valid mSPRT inference, decision rule).

pub mod attribution;
pub mod bandit;
pub mod classify;
pub mod click;
pub mod conversion;
pub mod holdout;
pub mod landing;
pub mod postback;
pub mod segments;
pub mod stats;
pub mod token;
pub mod wrap;
