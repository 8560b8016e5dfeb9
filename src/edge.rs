//! The edge path's database side that needs Rust: conversions that name a click an edge proxy
//! answered but has not shipped yet. The feed and lease functions are SQL (sql/edge.sql); the
//! ingestion is `smslink.ingest_clicks` in `track`, which shares the click statement with the
//! database path.

use crate::errors::{raise_hint, SpiOk};
use pgrx::spi::SpiClient;

/// Whether `click_id` lies in a block leased to an edge proxy.
pub fn is_leased(c: &SpiClient<'_>, click_id: i64) -> bool {
    c.select(
        "SELECT smslink.is_leased_click_id($1)",
        None,
        &[click_id.into()],
    )
    .spi()
    .first()
    .get_one::<bool>()
    .spi()
    .unwrap_or(false)
}

/// Raises 55000 (retry later) for a click an edge proxy answered and has not shipped yet.
pub fn not_shipped_yet(function: &str, click_id: i64) -> ! {
    raise_hint(
        crate::errors::WRONG_STATE,
        format!("{function}: click {click_id} is not recorded yet"),
        "the edge proxy that answered it ships its clicks within seconds (longer while the database was unreachable): retry later",
    )
}
