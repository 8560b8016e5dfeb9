//! smslink: SMS link tracking and click attribution inside PostgreSQL.
//!
//! This crate adapts `smslink-core` to Postgres: tables (in `sql/`), SPI, and SQL functions.
//! One module per capability, named as in SQL.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod attribution;
mod classify;
mod conversions;
mod edge;
mod errors;
mod experiments;
mod holdout;
mod keys;
mod landing;
mod metrics;
mod postback;
mod reclassify;
mod segments;
mod track;
mod wrap;

// The data model and the SQL-language helpers. It needs `is_http_url` for its CHECKs.
extension_sql_file!(
    "../sql/schema.sql",
    name = "schema",
    requires = [
        segments::is_http_url,
        classify::classifier_rule_check,
        landing::click_param_check,
        holdout::holdout_fraction_check
    ]
);

// The metric functions and views (SQL and PL/pgSQL over the attribution and metrics helpers).
extension_sql_file!(
    "../sql/metrics.sql",
    name = "metrics",
    requires = [
        "schema",
        attribution::attribute,
        metrics::check_classes,
        metrics::ua_os
    ]
);

// The edge click path: the link feed for the proxy's cache, click-id leases, request ids.
extension_sql_file!("../sql/edge.sql", name = "edge", requires = ["schema"]);

// Tenant isolation: row-level security by brand, over every table and view made above.
extension_sql_file!(
    "../sql/tenancy.sql",
    name = "tenancy",
    requires = ["schema", "metrics", "edge"]
);

/// How many seconds `at` lies ahead of the current transaction's start (`now()`); negative in
/// the past. The clock-skew checks of clicks and conversions read it, without a query.
pub(crate) fn seconds_ahead_of_now(at: TimestampWithTimeZone) -> f64 {
    // SAFETY: reads the current transaction's start time; no side effects.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    at.into_inner().saturating_sub(now) as f64 / 1e6
}

/// Registers the extension's settings when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // An error raised by a statement this library runs is re-raised by pgrx with a Rust
    // backtrace as its DETAIL whenever the server's environment has RUST_BACKTRACE set (as a
    // developer's shell often does). Clients must never see internal frames: RUST_LIB_BACKTRACE
    // takes precedence for captured backtraces (panic messages in the server log keep
    // RUST_BACKTRACE). A backend runs this before any thread of ours exists.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    classify::init_gucs();
    attribution::init_gucs();
}

// The privacy lifecycle: retention settings, anonymisation, the click rollup, erasure, and the
// attribution touch view (which reads the rollup).
extension_sql_file!(
    "../sql/privacy.sql",
    name = "privacy",
    requires = ["schema", "metrics", "edge", "tenancy", metrics::ua_os]
);

// The first token key is generated inside the database when the extension is created.
// track_click and track_clicks are SECURITY DEFINER: only the owner and the proxy's role may
// execute them.
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
