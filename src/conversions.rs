//! Recording outcomes: `smslink.record_conversion` and `smslink.record_touchpoint`, both
//! idempotent on `(brand_id, external_id)`. Validation rules live in `smslink_core::conversion`.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NULL_VALUE};
use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB, PgSqlErrorCode};
use smslink_core::conversion as rules;

/// The first column of the first row, or None for no row.
fn first_i64(t: pgrx::spi::SpiTupleTable<'_>) -> Option<i64> {
    if t.is_empty() {
        None
    } else {
        t.first().get_one::<i64>().spi()
    }
}

/// The answer to a repeat of an idempotency key `(brand_id $1, external_id $2)`: `sql` returns
/// the recorded row's id, whether the repeat carries the same content, and a description of the
/// recorded row. The same content returns the id; different content is 23505, changing nothing.
fn repeat(
    c: &pgrx::spi::SpiClient<'_>,
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
    function: &str,
    key: &str,
    what: &str,
    fields: &str,
) -> i64 {
    let row = c.select(sql, None, args).spi().first();
    let id = row.get::<i64>(1).spi().unwrap_or(0);
    if row.get::<bool>(2).spi().unwrap_or(false) {
        return id;
    }
    let was = row.get::<String>(3).spi().unwrap_or_default();
    raise_hint(
        PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
        format!("{function}: {key} is already {what} {id} ({was}), which differs"),
        format!("a repeat must carry the same {fields}; send a new external_id for a new {what}"),
    )
}

fn required<T>(v: Option<T>, name: &str, function: &str) -> T {
    v.unwrap_or_else(|| raise(NULL_VALUE, format!("{function}: {name} must not be NULL")))
}

fn check<T>(r: Result<T, String>, function: &str) -> T {
    r.unwrap_or_else(|e| raise(INVALID_PARAMETER, format!("{function}: {e}")))
}

/// Rejects a time more than the tolerance in the future.
fn not_future(at: TimestampWithTimeZone, function: &str) {
    let future = crate::seconds_ahead_of_now(at) > rules::FUTURE_TOLERANCE_SECONDS;
    if future {
        raise_hint(
            PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT,
            format!("{function}: occurred_at {at} is in the future"),
            format!(
                "send the time the event happened; up to {} s ahead is accepted for clock skew",
                rules::FUTURE_TOLERANCE_SECONDS
            ),
        );
    }
}

/// Raises 23503 unless the brand exists.
pub(crate) fn require_brand(c: &pgrx::spi::SpiClient<'_>, brand_id: i64, function: &str) {
    let brand = c
        .select(
            "SELECT 1 FROM smslink.brand WHERE id = $1",
            None,
            &[brand_id.into()],
        )
        .spi();
    if brand.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("{function}: brand {brand_id} does not exist"),
        );
    }
}

/// The subscriber's id, created if this is the first event for the key.
fn subscriber(c: &mut pgrx::spi::SpiClient<'_>, brand_id: i64, key: &str, function: &str) -> i64 {
    require_brand(c, brand_id, function);
    if key.is_empty() {
        raise(
            INVALID_PARAMETER,
            format!("{function}: subscriber_key must not be empty"),
        );
    }
    c.update(
        "INSERT INTO smslink.subscriber (brand_id, external_key) VALUES ($1, $2)
         ON CONFLICT (brand_id, external_key) DO NOTHING",
        None,
        &[brand_id.into(), key.into()],
    )
    .spi();
    c.select(
        "SELECT id FROM smslink.subscriber WHERE brand_id = $1 AND external_key = $2",
        None,
        &[brand_id.into(), key.into()],
    )
    .spi()
    .first()
    .get_one::<i64>()
    .spi()
    .unwrap_or_else(|| raise(NULL_VALUE, format!("{function}: subscriber not found")))
}

/// Records a conversion, or returns the id of the same conversion recorded before.
#[pg_extern(volatile)]
#[allow(clippy::too_many_arguments)]
fn record_conversion(
    brand_id: Option<i64>,
    subscriber_key: Option<&str>,
    event: Option<&str>,
    value: Option<AnyNumeric>,
    currency: Option<&str>,
    occurred_at: Option<TimestampWithTimeZone>,
    external_id: Option<&str>,
    click_id: default!(Option<i64>, "NULL"),
    properties: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    const F: &str = "record_conversion";
    let brand_id = required(brand_id, "brand_id", F);
    let key = required(subscriber_key, "subscriber_key", F);
    let event = check(rules::event(required(event, "event", F)), F);
    let occurred_at = required(occurred_at, "occurred_at", F);
    let external_id = check(
        rules::external_id(required(external_id, "external_id", F)),
        F,
    );
    let currency = currency.map(|c| check(rules::currency(c), F));
    if value.is_some() && currency.is_none() {
        raise(
            INVALID_PARAMETER,
            format!("{F}: a value needs a currency: pass an ISO 4217 code such as USD"),
        );
    }
    if let Some(v) = &value {
        // numeric holds NaN and ±Infinity: one of them would make every sum of the brand's
        // revenue NaN or infinite.
        let text = v.to_string();
        if matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") {
            raise_hint(
                INVALID_PARAMETER,
                format!("{F}: value {text} is not a finite number"),
                "pass the conversion's amount in the currency's units, or NULL for no value",
            );
        }
        let max = AnyNumeric::from(rules::MAX_VALUE);
        if *v > max || *v < AnyNumeric::from(-rules::MAX_VALUE) {
            raise_hint(
                INVALID_PARAMETER,
                format!("{F}: value {v} is out of range"),
                format!(
                    "values are at most {} in absolute value, in the currency's units (not cents)",
                    rules::MAX_VALUE
                ),
            );
        }
        if *v < AnyNumeric::from(0) && !rules::may_be_negative(&event) {
            raise_hint(
                INVALID_PARAMETER,
                format!("{F}: value {v} is negative for event {event:?}"),
                format!(
                    "only {} may carry a negative value",
                    rules::NEGATIVE_VALUE_EVENTS.join(", ")
                ),
            );
        }
    }
    let properties = properties.unwrap_or(JsonB(serde_json::json!({})));
    if !properties.0.is_object() {
        raise(
            INVALID_PARAMETER,
            format!("{F}: properties must be a JSON object"),
        );
    }
    Spi::connect_mut(|c| {
        not_future(occurred_at, F);
        let subscriber_id = subscriber(c, brand_id, key, F);
        if let Some(click) = click_id {
            let owner = c
                .select(
                    "SELECT subscriber_id FROM smslink.click WHERE id = $1 AND brand_id = $2 LIMIT 1",
                    None,
                    &[click.into(), brand_id.into()],
                )
                .spi();
            match first_i64(owner) {
                None if crate::edge::is_leased(c, click) => crate::edge::not_shipped_yet(F, click),
                None => raise(
                    PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                    format!("{F}: click {click} is not a click of brand {brand_id}"),
                ),
                Some(s) if s != subscriber_id => raise(
                    INVALID_PARAMETER,
                    format!("{F}: click {click} belongs to another subscriber than {key:?}"),
                ),
                Some(_) => {}
            }
        }
        let inserted = c
            .update(
                "INSERT INTO smslink.conversion (brand_id, subscriber_id, click_id, event, value,
                        currency, occurred_at, external_id, properties)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (brand_id, external_id) DO NOTHING
                 RETURNING id",
                None,
                &[
                    brand_id.into(),
                    subscriber_id.into(),
                    click_id.into(),
                    event.as_str().into(),
                    value.clone().into(),
                    currency.clone().into(),
                    occurred_at.into(),
                    external_id.into(),
                    properties.into(),
                ],
            )
            .spi();
        if let Some(id) = first_i64(inserted) {
            return id;
        }
        // A repeat: the same conversion returns its id; a different one under the same key is
        // an error that changes nothing.
        repeat(
            c,
            "SELECT k.id, k.subscriber_id IS NOT DISTINCT FROM $3 AND k.event = $4
                        AND k.value IS NOT DISTINCT FROM $5 AND k.currency IS NOT DISTINCT FROM $6,
                        format('subscriber %s, event %s, value %s %s', s.external_key, k.event,
                               coalesce(k.value::text, 'NULL'), coalesce(k.currency, ''))
                   FROM smslink.conversion k LEFT JOIN smslink.subscriber s ON s.id = k.subscriber_id
                  WHERE k.brand_id = $1 AND k.external_id = $2",
            &[
                    brand_id.into(),
                    external_id.into(),
                    subscriber_id.into(),
                    event.as_str().into(),
                    value.into(),
                    currency.into(),
                ],
            F,
            &format!("external_id {external_id:?} of brand {brand_id}"),
            "conversion",
            "subscriber, event, value and currency",
        )
    })
}

/// Records a touchpoint from another channel, or returns the id of the same one recorded before.
#[pg_extern(volatile)]
fn record_touchpoint(
    brand_id: Option<i64>,
    subscriber_key: Option<&str>,
    channel: Option<&str>,
    kind: Option<&str>,
    occurred_at: Option<TimestampWithTimeZone>,
    campaign_ref: Option<&str>,
    external_id: Option<&str>,
) -> i64 {
    const F: &str = "record_touchpoint";
    let brand_id = required(brand_id, "brand_id", F);
    let key = required(subscriber_key, "subscriber_key", F);
    let channel = check(rules::channel(required(channel, "channel", F)), F);
    if channel == "sms" {
        raise_hint(
            INVALID_PARAMETER,
            format!("{F}: channel sms is recorded by smslink itself"),
            "SMS clicks and deliveries are touchpoints already; use another channel name",
        );
    }
    let kind = check(rules::touch_kind(required(kind, "kind", F)), F);
    let occurred_at = required(occurred_at, "occurred_at", F);
    let external_id = check(
        rules::external_id(required(external_id, "external_id", F)),
        F,
    );
    Spi::connect_mut(|c| {
        not_future(occurred_at, F);
        let subscriber_id = subscriber(c, brand_id, key, F);
        let inserted = c
            .update(
                "INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at,
                        campaign_ref, external_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (brand_id, external_id) DO NOTHING
                 RETURNING id",
                None,
                &[
                    brand_id.into(),
                    subscriber_id.into(),
                    channel.as_str().into(),
                    kind.into(),
                    occurred_at.into(),
                    campaign_ref.into(),
                    external_id.into(),
                ],
            )
            .spi();
        if let Some(id) = first_i64(inserted) {
            return id;
        }
        repeat(
            c,
            "SELECT t.id, t.subscriber_id = $3 AND t.channel = $4 AND t.kind = $5
                    AND t.occurred_at = $6,
                    format('subscriber %s, channel %s, kind %s, at %s', s.external_key, t.channel,
                           t.kind, t.occurred_at)
               FROM smslink.touchpoint t JOIN smslink.subscriber s ON s.id = t.subscriber_id
              WHERE t.brand_id = $1 AND t.external_id = $2",
            &[
                brand_id.into(),
                external_id.into(),
                subscriber_id.into(),
                channel.as_str().into(),
                kind.into(),
                occurred_at.into(),
            ],
            F,
            &format!("external_id {external_id:?} of brand {brand_id}"),
            "touchpoint",
            "subscriber, channel, kind and time",
        )
    })
}
