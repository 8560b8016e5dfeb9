//! Postgres errors with an SQLSTATE and a message a data analyst can act on.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

pub use pgrx::PgSqlErrorCode::{
    ERRCODE_INVALID_PARAMETER_VALUE as INVALID_PARAMETER, ERRCODE_NO_DATA_FOUND as NOT_FOUND,
    ERRCODE_NULL_VALUE_NOT_ALLOWED as NULL_VALUE,
    ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE as WRONG_STATE,
};

/// Raises an ERROR; never returns.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "smslink").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises an ERROR with a hint; never returns.
pub fn raise_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "smslink")
        .set_hint(hint.into())
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps an SPI result; an SPI failure is an internal error, reported as such.
pub trait SpiOk<T> {
    fn spi(self) -> T;
}

impl<T> SpiOk<T> for Result<T, pgrx::spi::SpiError> {
    fn spi(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("smslink SPI error: {e}"),
            ),
        }
    }
}
