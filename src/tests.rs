//! `#[pg_test]` tests: behaviour inside Postgres.
use pgrx::prelude::*;

#[pg_schema]
mod tests {}
