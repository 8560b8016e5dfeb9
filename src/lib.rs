//! smslink: SMS link tracking and click attribution inside PostgreSQL.
//!
//! This crate adapts `smslink-core` to Postgres: tables (in `sql/`), SPI, and SQL functions.
//! One module per capability, named as in SQL.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod attribution;
mod classify;
mod conversions;
mod errors;
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
        landing::click_param_check
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

/// Registers the extension's settings when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    classify::init_gucs();
}

// The first token key is generated inside the database when the extension is created.
// track_click and track_clicks are SECURITY DEFINER: only the owner and the proxy's role may
// execute them.
extension_sql!(
    r#"
SELECT smslink.rotate_token_key();
REVOKE EXECUTE ON FUNCTION smslink.track_click(text, text, text, text, inet, text, jsonb, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.track_click(text, text, text, text, inet, text, jsonb, timestamptz) TO smslink_proxy;
REVOKE EXECUTE ON FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz) TO smslink_proxy;
-- Postback secrets: only the owner rotates them or signs with them; the proxy records signed
-- postbacks and nothing else.
REVOKE EXECUTE ON FUNCTION smslink.rotate_postback_secret(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.sign_postback(bigint, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.record_postback(text[], text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.record_postback(text[], text[], text) TO smslink_proxy;
-- The hot path's plans are cached per session. A month's click partition starts empty, and until
-- autovacuum analyzes it a cached plan could scan it sequentially for every click while it fills
-- at thousands of rows a second. Index scans are always right here (every lookup is by key,
-- address, message or range), so these functions never plan anything else.
ALTER FUNCTION smslink.track_click(text, text, text, text, inet, text, jsonb, timestamptz)
    SET enable_seqscan = off SET enable_bitmapscan = off;
ALTER FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz)
    SET enable_seqscan = off SET enable_bitmapscan = off;
-- Attribution is thousands of small index lookups; compiling its plans with JIT costs more than
-- it could ever save (50-70 ms per call on the benchmark history, BENCHMARKS.md).
ALTER FUNCTION smslink.attribute(text, timestamptz, timestamptz, interval, interval, text[], bigint, interval, text)
    SET jit = off;
ALTER FUNCTION smslink.markov_removal_effects(timestamptz, timestamptz, interval, text[], bigint, text)
    SET jit = off;
ALTER FUNCTION smslink.markov_transitions(timestamptz, timestamptz, interval, text[], bigint, text)
    SET jit = off;
"#,
    name = "finalize",
    finalize
);

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
