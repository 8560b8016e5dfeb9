//! Click ids on the landing page: destination macros and the campaign's click parameter
//! (`smslink_core::landing`), in SQL. The hot path calls `expand_destination` only for rows whose
//! destination may hold a macro or whose campaign has a click parameter.

use crate::errors::{raise_hint, INVALID_PARAMETER};
use pgrx::prelude::*;
use smslink_core::landing::{check_click_param, landing_url, Macros};

/// CHECK for `campaign.click_param`: raises 22023 saying what to fix; NULL passes.
#[pg_extern(immutable, parallel_safe)]
fn click_param_check(click_param: Option<&str>) -> bool {
    if let Some(p) = click_param {
        if let Err(e) = check_click_param(p) {
            raise_hint(
                INVALID_PARAMETER,
                format!("invalid click_param {p:?}: {e}"),
                "for example smsclid={click_id} or smsclid={click_id}&utm_source=sms",
            );
        }
    }
    true
}

/// The redirect location for one click: `click_param` (if any) appended to `destination`'s
/// query, then the macros `{click_id}`, `{subscriber}`, `{campaign}`, `{variant}` and
/// `{message}` replaced by URL-encoded values (braces written plainly or percent-encoded).
#[pg_extern(immutable, parallel_safe)]
fn expand_destination(
    destination: Option<&str>,
    click_param: Option<&str>,
    click_id: Option<i64>,
    subscriber: Option<&str>,
    campaign: Option<i64>,
    variant: Option<&str>,
    message: Option<i64>,
) -> Option<String> {
    let destination = destination?;
    let m = Macros {
        click_id: click_id.unwrap_or(0),
        subscriber: subscriber.unwrap_or(""),
        campaign: campaign.unwrap_or(0),
        variant: variant.unwrap_or(""),
        message: message.unwrap_or(0),
    };
    Some(landing_url(destination, click_param, &m))
}
