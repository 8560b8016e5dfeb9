//! Metrics helpers for the SQL-language metric functions in `sql/metrics.sql`: click-class
//! validation and the operating system of a User-Agent.

use crate::errors::{raise, raise_hint, INVALID_PARAMETER, NULL_VALUE};
use pgrx::prelude::*;
use smslink_core::click::{os, ClickClass};

/// The click classes a metric counts, checked: every element must be a class name (human,
/// preview, bot, scanner, suspect; case and surrounding spaces ignored). Returns them lower-cased
/// and without repeats. 22004 for NULL, 22023 naming an unknown class.
#[pg_extern(immutable, parallel_safe)]
fn check_classes(include_classes: Option<Vec<Option<String>>>) -> Vec<String> {
    let Some(classes) = include_classes else {
        raise(
            NULL_VALUE,
            "include_classes must not be NULL; pass '{human}' or a list of classes",
        );
    };
    let mut out: Vec<String> = Vec::new();
    for c in classes {
        let Some(c) = c else {
            raise(NULL_VALUE, "include_classes must not contain NULL");
        };
        let name = c.trim().to_ascii_lowercase();
        if ClickClass::parse(&name).is_none() {
            raise_hint(
                INVALID_PARAMETER,
                format!("unknown click class {c:?} in include_classes"),
                "the classes are human, preview, bot, scanner and suspect",
            );
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        raise(
            INVALID_PARAMETER,
            "include_classes is empty; pass at least one class, such as '{human}'",
        );
    }
    out
}

/// Operating-system family of a User-Agent: ios, android, windows, macos, linux, other, unknown.
#[pg_extern(immutable, parallel_safe)]
fn ua_os(user_agent: Option<&str>) -> &'static str {
    os(user_agent)
}
