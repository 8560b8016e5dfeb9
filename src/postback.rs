//! Signed conversions from outside: the proxy's `/p` postback and `/px.gif` pixel call
//! `smslink.record_postback`, which checks the HMAC signature against the brand's secret
//! (`smslink_core::postback`) before anything is written.
//!
//! Errors are the proxy's HTTP status: 28000 (unsigned, a signature that does not verify, or a
//! click id that is not known) is 401; 22xxx (a signed but invalid conversion) is 400; 23505 (a
//! repeat of an external id with different content) is 409. A refused postback writes nothing:
//! the signature is checked before the first write, and any later error aborts the statement.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NULL_VALUE};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use smslink_core::postback::{self, Refusal};

const UNAUTHORIZED: PgSqlErrorCode = PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;

/// Makes a new random postback secret for the brand and returns it (64 hex characters). The
/// previous secret stays valid until the next rotation, so senders can switch over without
/// losing postbacks. Executable only by the owner (grant it to an administrator role).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_postback_secret(brand_id: Option<i64>) -> String {
    let Some(brand_id) = brand_id else {
        raise(
            NULL_VALUE,
            "rotate_postback_secret: brand_id must not be NULL",
        );
    };
    let mut bytes = [0u8; 32];
    // SAFETY: writes exactly bytes.len() bytes into the buffer.
    if !unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) } {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not generate random bytes for a postback secret",
        );
    }
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Spi::connect_mut(|c| {
        crate::conversions::require_brand(c, brand_id, "rotate_postback_secret");
        c.update(
            "INSERT INTO smslink_secret.postback_secret AS p (brand_id, secret) VALUES ($1, $2)
             ON CONFLICT (brand_id) DO UPDATE
                SET previous_secret = p.secret, secret = excluded.secret, rotated_at = now()",
            None,
            &[brand_id.into(), secret.as_str().into()],
        )
        .spi();
    });
    secret
}

/// The parameters of a JSON object as name/value pairs (numbers and booleans as written).
fn pairs_of(params: &serde_json::Value, function: &str) -> Vec<(String, String)> {
    let Some(object) = params.as_object() else {
        raise(
            INVALID_PARAMETER,
            format!("{function}: params must be a JSON object of parameter names to values"),
        );
    };
    object
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// The brand's current secret, for signing. Raises when the brand has none.
fn current_secret(c: &pgrx::spi::SpiClient<'_>, brand_id: i64, function: &str) -> String {
    let rows = c
        .select(
            "SELECT secret FROM smslink_secret.postback_secret WHERE brand_id = $1",
            None,
            &[brand_id.into()],
        )
        .spi();
    if rows.is_empty() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{function}: brand {brand_id} has no postback secret"),
            "create one with smslink.rotate_postback_secret(brand_id)",
        );
    }
    rows.first().get_one::<String>().spi().unwrap_or_default()
}

/// The `sig` parameter for a postback or pixel with these parameters (a JSON object), signed
/// with the brand's current secret. For applications that sign through the database and for
/// tests; senders usually compute it themselves (docs/conversions.md). Owner only.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn sign_postback(brand_id: Option<i64>, params: Option<JsonB>) -> String {
    const F: &str = "sign_postback";
    let (Some(brand_id), Some(params)) = (brand_id, params) else {
        raise(
            NULL_VALUE,
            format!("{F}: brand_id and params must not be NULL"),
        );
    };
    let pairs = pairs_of(&params.0, F);
    let secret = Spi::connect(|c| current_secret(c, brand_id, F));
    postback::sign(&secret, &pairs)
}

/// Records a conversion from a signed postback or pixel and returns its id (an earlier id for a
/// repeat). `names` and `values` are the request's parameters in order; `source` is kept in the
/// conversion's properties with every parameter that is not a conversion field. Executable
/// only by the owner and `smslink_proxy`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn record_postback(
    names: Option<Vec<Option<String>>>,
    values: Option<Vec<Option<String>>>,
    source: default!(Option<&str>, "'postback'"),
) -> i64 {
    const F: &str = "record_postback";
    let (Some(names), Some(values)) = (names, values) else {
        raise(
            NULL_VALUE,
            format!("{F}: names and values must not be NULL"),
        );
    };
    if names.len() != values.len() {
        raise(
            INVALID_PARAMETER,
            format!(
                "{F}: {} names but {} values; pass one value per name",
                names.len(),
                values.len()
            ),
        );
    }
    let source = source.unwrap_or("postback");
    if !matches!(source, "postback" | "pixel") {
        raise(
            INVALID_PARAMETER,
            format!("{F}: source {source:?} is not postback or pixel"),
        );
    }
    let pairs: Vec<(String, String)> = names
        .into_iter()
        .zip(values)
        .map(|(k, v)| (k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    let pb = match postback::parse(pairs) {
        Ok(pb) => pb,
        Err(Refusal::Unauthorized(m)) => raise(UNAUTHORIZED, format!("{F}: {m}")),
        Err(Refusal::Invalid(m)) => raise(INVALID_PARAMETER, format!("{F}: {m}")),
    };
    let mut properties = serde_json::Map::new();
    for (k, v) in &pb.extra {
        properties.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    properties.insert("source".into(), source.into());
    Spi::connect_mut(|c| {
        let refused = || -> ! {
            raise_hint(
                UNAUTHORIZED,
                format!(
                    "{F}: the signature does not verify for click {} (or there is no such click)",
                    pb.click_id
                ),
                "sign the canonical parameters with the brand's current postback secret",
            )
        };
        let found = c
            .select(
                "SELECT k.brand_id, s.external_key, p.secret, p.previous_secret
                   FROM smslink.click k
                   JOIN smslink.subscriber s ON s.id = k.subscriber_id
                   JOIN smslink_secret.postback_secret p ON p.brand_id = k.brand_id
                  WHERE k.id = $1
                  LIMIT 1",
                None,
                &[pb.click_id.into()],
            )
            .spi();
        if found.is_empty() {
            if crate::edge::is_leased(c, pb.click_id) {
                crate::edge::not_shipped_yet(F, pb.click_id);
            }
            refused();
        }
        let row = found.first();
        let brand_id = row.get::<i64>(1).spi().unwrap_or(0);
        let subscriber = row.get::<String>(2).spi().unwrap_or_default();
        let secrets = [row.get::<String>(3).spi(), row.get::<String>(4).spi()];
        let verified = secrets
            .iter()
            .flatten()
            .any(|s| postback::verify(s, &pb.params, &pb.signature));
        if !verified {
            refused();
        }
        c.update(
            "SELECT smslink.record_conversion($1, $2, $3, $4::numeric, $5,
                        coalesce($6::timestamptz, now()), $7, $8, $9)",
            None,
            &[
                brand_id.into(),
                subscriber.as_str().into(),
                pb.event.as_str().into(),
                pb.value.as_deref().into(),
                pb.currency.as_deref().into(),
                pb.occurred_at.as_deref().into(),
                pb.external_id.as_str().into(),
                pb.click_id.into(),
                JsonB(serde_json::Value::Object(properties)).into(),
            ],
        )
        .spi()
        .first()
        .get_one::<i64>()
        .spi()
        .unwrap_or_else(|| raise(NULL_VALUE, format!("{F}: no conversion id")))
    })
}
