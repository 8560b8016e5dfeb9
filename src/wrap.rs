//! Link wrapping and message preparation: `wrap`, `prepare_message`, `prepare_messages`.
//!
//! The body is planned once in `core` (URLs, kinds, literal pieces); per message only the tokens
//! differ. Rows are written set-based: ids come from the sequences in one call, and messages and
//! links are inserted with one `INSERT ... SELECT FROM unnest(...)` each.

use crate::errors::{
    raise, raise_hint, SpiOk, INVALID_PARAMETER, NOT_FOUND, NULL_VALUE, WRONG_STATE,
};
use crate::holdout::HoldoutRule;
use crate::keys::{current_key, encode_with};
use crate::segments::clamp_i32;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};
use regex::Regex;
use smslink_core::segments;
use smslink_core::token::TokenKey;
use smslink_core::wrap::{plan, short_url, KindRules, LinkKind, Template, TrackedPrefix};
use std::collections::HashSet;

/// Everything about a campaign that wrapping needs, read in one query.
struct Campaign {
    id: i64,
    brand_id: i64,
    domain_id: i64,
    host: String,
    prefix: String,
    token_length: usize,
    optout: Option<Regex>,
    transactional: bool,
    tracked: Vec<TrackedPrefix>,
    holdout: HoldoutRule,
}

fn load_campaign(c: &SpiClient<'_>, campaign_id: i64) -> Campaign {
    let row = c
        .select(
            "SELECT c.brand_id, d.id, d.host, d.prefix, d.token_length,
                    coalesce(c.optout_url_pattern, b.optout_url_pattern),
                    c.purpose = 'transactional',
                    (SELECT array_agg(x.host ORDER BY x.id) FROM smslink.domain x WHERE x.brand_id = c.brand_id),
                    (SELECT array_agg(x.prefix ORDER BY x.id) FROM smslink.domain x WHERE x.brand_id = c.brand_id),
                    b.name, c.holdout_fraction, b.global_holdout_fraction
               FROM smslink.campaign c
               JOIN smslink.brand b ON b.id = c.brand_id
               LEFT JOIN smslink.domain d ON d.id = coalesce(c.domain_id,
                    (SELECT x.id FROM smslink.domain x WHERE x.brand_id = c.brand_id AND x.is_default))
              WHERE c.id = $1",
            Some(1),
            &[campaign_id.into()],
        )
        .spi();
    if row.is_empty() {
        raise(NOT_FOUND, format!("unknown campaign {campaign_id}"));
    }
    let row = row.first();
    let get_i64 = |i| row.get::<i64>(i).spi();
    let brand_id = get_i64(1).unwrap_or_default();
    let Some(domain_id) = get_i64(2) else {
        let brand = row.get::<String>(10).spi().unwrap_or_default();
        raise_hint(
            WRONG_STATE,
            format!("campaign {campaign_id} has no short domain: brand \"{brand}\" has no default domain"),
            format!("add one with SELECT smslink.add_domain({brand_id}, 'sms.example.com'), or set smslink.campaign.domain_id"),
        );
    };
    let optout = row.get::<String>(6).spi().map(|p| {
        Regex::new(&p).unwrap_or_else(|e| {
            raise(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_REGULAR_EXPRESSION,
                format!("invalid opt-out URL pattern {p:?} for campaign {campaign_id}: {e}"),
            )
        })
    });
    let hosts = row.get::<Vec<String>>(8).spi().unwrap_or_default();
    let prefixes = row.get::<Vec<String>>(9).spi().unwrap_or_default();
    let transactional = row.get::<bool>(7).spi().unwrap_or(false);
    Campaign {
        id: campaign_id,
        brand_id,
        holdout: HoldoutRule {
            campaign_id,
            brand_id,
            fraction: row.get::<f64>(11).spi().unwrap_or(0.0),
            global_fraction: row.get::<f64>(12).spi().unwrap_or(0.0),
            marketing: !transactional,
        },
        domain_id,
        host: row.get::<String>(3).spi().unwrap_or_default(),
        prefix: row.get::<String>(4).spi().unwrap_or_default(),
        token_length: row.get::<i32>(5).spi().map_or(9, |l| l as usize),
        optout,
        transactional,
        tracked: hosts
            .into_iter()
            .zip(prefixes)
            .map(|(host, prefix)| TrackedPrefix { host, prefix })
            .collect(),
    }
}

fn variant_id(c: &SpiClient<'_>, campaign_id: i64, key: &str) -> i64 {
    let t = c
        .select(
            "SELECT (SELECT v.id FROM smslink.variant v WHERE v.campaign_id = $1 AND v.key = $2),
                    (SELECT string_agg(v.key, ', ' ORDER BY v.id) FROM smslink.variant v WHERE v.campaign_id = $1)",
            Some(1),
            &[campaign_id.into(), key.into()],
        )
        .spi()
        .first();
    match t.get::<i64>(1).spi() {
        Some(id) => id,
        None => {
            let known = t.get::<String>(2).spi().unwrap_or_default();
            raise(
                NOT_FOUND,
                format!("unknown variant \"{key}\" for campaign {campaign_id} (variants: {known})"),
            )
        }
    }
}

fn parse_kinds(kinds: Option<Vec<Option<String>>>) -> Option<Vec<LinkKind>> {
    kinds.map(|ks| {
        ks.into_iter()
            .map(|k| {
                let k = k.unwrap_or_else(|| raise(NULL_VALUE, "link kinds must not contain NULL"));
                LinkKind::parse(&k).unwrap_or_else(|| {
                    raise(
                        INVALID_PARAMETER,
                        format!("unknown link kind \"{k}\" (expected cta, secondary, optout or transactional)"),
                    )
                })
            })
            .collect()
    })
}

/// Plans the body for a campaign and enforces `require_link`.
fn plan_body(
    campaign: &Campaign,
    body: &str,
    kinds: Option<&[LinkKind]>,
    require_link: bool,
) -> Template {
    let template = plan(
        body,
        &campaign.tracked,
        KindRules {
            optout: campaign.optout.as_ref(),
            transactional: campaign.transactional,
            overrides: kinds,
        },
    )
    .unwrap_or_else(|e| raise(INVALID_PARAMETER, e.to_string()));
    if require_link {
        if template.links.is_empty() {
            raise_hint(
                INVALID_PARAMETER,
                "message body has no URL to track",
                "add a link such as https://shop.example.com/sale, or pass require_link => false",
            );
        }
        if template.links.iter().all(|l| l.kind == LinkKind::Optout) {
            raise_hint(
                INVALID_PARAMETER,
                "message body has only opt-out links; a call-to-action URL is required",
                "add the offer's URL, or pass require_link => false",
            );
        }
    }
    template
}

/// `n` fresh values of an id sequence, in one round trip.
fn next_ids(c: &SpiClient<'_>, sequence: &str, n: usize) -> Vec<i64> {
    if n == 0 {
        return Vec::new();
    }
    let ids = c
        .select(
            &format!("SELECT array_agg(nextval('{sequence}')) FROM generate_series(1, $1)"),
            Some(1),
            &[(n as i64).into()],
        )
        .spi()
        .first()
        .get_one::<Vec<i64>>()
        .spi()
        .unwrap_or_default();
    if ids.len() != n {
        raise(
            pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("asked {sequence} for {n} ids, got {}", ids.len()),
        );
    }
    ids
}

/// Link rows for a batch of messages, column by column (for `unnest`).
#[derive(Default)]
struct LinkRows {
    id: Vec<i64>,
    message_id: Vec<i64>,
    position: Vec<i32>,
    kind: Vec<String>,
    destination: Vec<String>,
    token: Vec<String>,
}

/// Renders one message: a token per link, the short URLs substituted into the body.
fn render(
    campaign: &Campaign,
    template: &Template,
    key: &TokenKey,
    message_id: i64,
    link_ids: &[i64],
    rows: &mut LinkRows,
) -> String {
    let mut urls = Vec::with_capacity(link_ids.len());
    for (link, &id) in template.links.iter().zip(link_ids) {
        let token = encode_with(key, id, campaign.token_length);
        urls.push(short_url(&campaign.host, &campaign.prefix, &token));
        rows.id.push(id);
        rows.message_id.push(message_id);
        rows.position.push(link.position);
        rows.kind.push(link.kind.as_str().to_string());
        rows.destination.push(link.destination.clone());
        rows.token.push(token);
    }
    template.render(&urls)
}

fn insert_links(c: &mut SpiClient<'_>, campaign: &Campaign, rows: LinkRows) {
    if rows.id.is_empty() {
        return;
    }
    c.update(
        "INSERT INTO smslink.link (id, brand_id, message_id, domain_id, position, kind, destination, token)
         SELECT u.id, $1, u.message_id, $2, u.position, u.kind, u.destination, u.token
           FROM unnest($3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], $8::text[])
                AS u(id, message_id, position, kind, destination, token)",
        None,
        &[
            campaign.brand_id.into(),
            campaign.domain_id.into(),
            rows.id.into(),
            rows.message_id.into(),
            rows.position.into(),
            rows.kind.into(),
            rows.destination.into(),
            rows.token.into(),
        ],
    )
    .spi();
}

/// Returns the subscriber id and opt-out state per key, in input order, creating missing
/// subscribers.
fn upsert_subscribers(
    c: &mut SpiClient<'_>,
    brand_id: i64,
    keys: &[String],
) -> Vec<(i64, Option<String>)> {
    c.update(
        "INSERT INTO smslink.subscriber (brand_id, external_key)
         SELECT $1, k FROM unnest($2::text[]) AS k
         ON CONFLICT (brand_id, external_key) DO NOTHING",
        None,
        &[brand_id.into(), keys.to_vec().into()],
    )
    .spi();
    let t = c
        .select(
            "SELECT s.id, s.opted_out_at::text
               FROM unnest($2::text[]) WITH ORDINALITY AS k(key, ord)
               JOIN smslink.subscriber s ON s.brand_id = $1 AND s.external_key = k.key
              ORDER BY k.ord",
            None,
            &[brand_id.into(), keys.to_vec().into()],
        )
        .spi();
    let mut out = Vec::with_capacity(keys.len());
    for row in t {
        out.push((
            row.get::<i64>(1).spi().unwrap_or_default(),
            row.get::<String>(2).spi(),
        ));
    }
    out
}

struct Prepared {
    message_id: i64,
    subscriber_key: String,
    /// `None` for a subscriber held out of the campaign: nothing to send.
    body: Option<String>,
}

/// Shared by `prepare_message` and `prepare_messages`.
fn prepare(
    campaign_id: Option<i64>,
    variant_key: Option<&str>,
    keys: Vec<Option<String>>,
    body: Option<&str>,
    kinds: Option<Vec<Option<String>>>,
    require_link: bool,
    refuse_opted_out: bool,
) -> (Vec<Prepared>, segments::Segments) {
    let campaign_id =
        campaign_id.unwrap_or_else(|| raise(NULL_VALUE, "campaign_id must not be NULL"));
    let variant_key =
        variant_key.unwrap_or_else(|| raise(NULL_VALUE, "variant_key must not be NULL"));
    let body = body.unwrap_or_else(|| raise(NULL_VALUE, "body must not be NULL"));
    let mut seen = HashSet::with_capacity(keys.len());
    let keys: Vec<String> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| match k {
            None => raise(
                NULL_VALUE,
                format!(
                    "subscriber key {} is NULL: every message needs a subscriber",
                    i + 1
                ),
            ),
            Some(k) if k.is_empty() => raise(
                INVALID_PARAMETER,
                format!("subscriber key {} is empty", i + 1),
            ),
            Some(k) => {
                if !seen.insert(k.clone()) {
                    raise(
                        INVALID_PARAMETER,
                        format!("subscriber key \"{k}\" appears more than once in one send"),
                    );
                }
                k
            }
        })
        .collect();
    let kinds = parse_kinds(kinds);

    Spi::connect_mut(|c| {
        let campaign = load_campaign(c, campaign_id);
        let variant = variant_id(c, campaign_id, variant_key);
        let template = plan_body(&campaign, body, kinds.as_deref(), require_link);

        let subscribers = upsert_subscribers(c, campaign.brand_id, &keys);
        let mut kept: Vec<(i64, &String)> = Vec::with_capacity(keys.len());
        let mut skipped = 0usize;
        for ((id, opted_out_at), key) in subscribers.into_iter().zip(&keys) {
            match opted_out_at {
                Some(at) if refuse_opted_out => raise_hint(
                    WRONG_STATE,
                    format!("subscriber \"{key}\" opted out at {at}; no message can be prepared for them"),
                    "opted-out subscribers receive no marketing messages",
                ),
                Some(_) => skipped += 1,
                None => kept.push((id, key)),
            }
        }
        if skipped > 0 {
            pgrx::notice!("prepare_messages: skipped {skipped} opted-out subscribers");
        }
        // Holdouts get a message row (status 'holdout', no body, no links): the record of who
        // was held out, and when, for smslink.incrementality.
        let groups: Vec<Option<String>> = kept
            .iter()
            .map(|(_, k)| campaign.holdout.group(k).map(str::to_string))
            .collect();
        let sending = groups.iter().filter(|g| g.is_none()).count();
        if sending < kept.len() && keys.len() > 1 {
            pgrx::notice!(
                "prepare_messages: held out {} subscribers (status holdout, no body)",
                kept.len() - sending
            );
        }

        let per = template.links.len();
        let message_ids = next_ids(c, "smslink.message_id_seq", kept.len());
        let link_ids = next_ids(c, "smslink.link_id_seq", sending * per);
        let key = if per > 0 && sending > 0 {
            Some(current_key())
        } else {
            None
        };

        let mut links = LinkRows::default();
        let mut bodies: Vec<Option<String>> = Vec::with_capacity(kept.len());
        let mut next_link = 0usize;
        for (&message_id, group) in message_ids.iter().zip(&groups) {
            if group.is_some() {
                bodies.push(None);
                continue;
            }
            let text = match &key {
                Some(key) => render(
                    &campaign,
                    &template,
                    key,
                    message_id,
                    &link_ids[next_link * per..(next_link + 1) * per],
                    &mut links,
                ),
                None => template.render(&[]),
            };
            next_link += 1;
            bodies.push(Some(text));
        }
        // Every body differs only in its tokens, which are fixed-length and alphanumeric, so
        // all share one encoding and segment count.
        let layout = segments::count(bodies.iter().flatten().next().map_or(body, String::as_str));

        if !kept.is_empty() {
            c.update(
                "INSERT INTO smslink.message (id, brand_id, campaign_id, variant_id, subscriber_id, body, encoding,
                                              segments, status, is_holdout, holdout_group)
                 SELECT u.id, $1, $2, $3, u.subscriber_id, u.body,
                        CASE WHEN u.grp IS NULL THEN $4 END, CASE WHEN u.grp IS NULL THEN $5 END,
                        CASE WHEN u.grp IS NULL THEN 'queued' ELSE 'holdout' END, u.grp IS NOT NULL, u.grp
                   FROM unnest($6::bigint[], $7::bigint[], $8::text[], $9::text[]) AS u(id, subscriber_id, body, grp)",
                None,
                &[
                    campaign.brand_id.into(),
                    campaign.id.into(),
                    variant.into(),
                    layout.encoding.as_str().into(),
                    clamp_i32(layout.segments).into(),
                    message_ids.clone().into(),
                    kept.iter().map(|(id, _)| *id).collect::<Vec<i64>>().into(),
                    bodies.clone().into(),
                    groups.into(),
                ],
            )
            .spi();
            insert_links(c, &campaign, links);
        }
        let out = message_ids
            .into_iter()
            .zip(kept)
            .zip(bodies)
            .map(|((message_id, (_, key)), body)| Prepared {
                message_id,
                subscriber_key: key.clone(),
                body,
            })
            .collect();
        (out, layout)
    })
}

/// Creates the subscriber if missing, then the message and its tracked links, in one call.
/// Refuses an opted-out subscriber. A subscriber held out of the campaign gets a message row with
/// status `holdout` and no links: `body`, `encoding` and `segments` are NULL and `holdout` true.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn prepare_message(
    campaign_id: Option<i64>,
    variant_key: Option<&str>,
    subscriber_key: Option<String>,
    body: Option<&str>,
    kinds: default!(Option<Vec<Option<String>>>, "NULL"),
    require_link: default!(bool, true),
) -> TableIterator<
    'static,
    (
        name!(message_id, i64),
        name!(body, Option<String>),
        name!(encoding, Option<String>),
        name!(segments, Option<i32>),
        name!(holdout, bool),
    ),
> {
    if subscriber_key.is_none() {
        raise(NULL_VALUE, "subscriber_key must not be NULL");
    }
    let (rows, layout) = prepare(
        campaign_id,
        variant_key,
        vec![subscriber_key],
        body,
        kinds,
        require_link,
        true,
    );
    TableIterator::new(rows.into_iter().map(move |p| {
        let sent = p.body.is_some();
        (
            p.message_id,
            p.body,
            sent.then(|| layout.encoding.as_str().to_string()),
            sent.then(|| clamp_i32(layout.segments)),
            !sent,
        )
    }))
}

/// Prepares one message per subscriber key in one statement. Opted-out subscribers are skipped
/// (with a NOTICE) and do not appear in the result. Held-out subscribers appear with a NULL
/// body and `holdout` true: send nothing to them.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn prepare_messages(
    campaign_id: Option<i64>,
    variant_key: Option<&str>,
    subscriber_keys: Option<Vec<Option<String>>>,
    body: Option<&str>,
    kinds: default!(Option<Vec<Option<String>>>, "NULL"),
    require_link: default!(bool, true),
) -> TableIterator<
    'static,
    (
        name!(message_id, i64),
        name!(subscriber_key, String),
        name!(body, Option<String>),
        name!(encoding, Option<String>),
        name!(segments, Option<i32>),
        name!(holdout, bool),
    ),
> {
    let keys =
        subscriber_keys.unwrap_or_else(|| raise(NULL_VALUE, "subscriber_keys must not be NULL"));
    let (rows, layout) = prepare(
        campaign_id,
        variant_key,
        keys,
        body,
        kinds,
        require_link,
        false,
    );
    TableIterator::new(rows.into_iter().map(move |p| {
        let sent = p.body.is_some();
        (
            p.message_id,
            p.subscriber_key,
            p.body,
            sent.then(|| layout.encoding.as_str().to_string()),
            sent.then(|| clamp_i32(layout.segments)),
            !sent,
        )
    }))
}

/// Replaces every URL of `body` with a tracked short link of an existing message, creating one
/// link row per URL, and stores the wrapped body on the message. Idempotent: wrapping the same
/// body again returns the same result and creates nothing.
#[pg_extern(volatile)]
#[allow(clippy::type_complexity)]
fn wrap(
    message_id: Option<i64>,
    body: Option<&str>,
    kinds: default!(Option<Vec<Option<String>>>, "NULL"),
    require_link: default!(bool, true),
) -> TableIterator<
    'static,
    (
        name!(body, String),
        name!(encoding, String),
        name!(segments, i32),
        name!(characters, i32),
        name!(links, i32),
    ),
> {
    let message_id = message_id.unwrap_or_else(|| raise(NULL_VALUE, "message_id must not be NULL"));
    let body = body.unwrap_or_else(|| raise(NULL_VALUE, "body must not be NULL"));
    let kinds = parse_kinds(kinds);
    let wrapped = Spi::connect_mut(|c| {
        let message = c
            .update(
                "SELECT campaign_id, body, is_holdout FROM smslink.message WHERE id = $1 FOR UPDATE",
                Some(1),
                &[message_id.into()],
            )
            .spi();
        if message.is_empty() {
            raise(NOT_FOUND, format!("unknown message {message_id}"));
        }
        let message = message.first();
        let campaign_id = message.get::<i64>(1).spi().unwrap_or_default();
        let stored_body = message.get::<String>(2).spi();
        if message.get::<bool>(3).spi().unwrap_or(false) {
            raise_hint(
                WRONG_STATE,
                format!("message {message_id} is a holdout: its subscriber is held out of the campaign"),
                "holdout messages record who was held out; nothing is sent to them",
            );
        }
        let campaign = load_campaign(c, campaign_id);
        let template = plan_body(&campaign, body, kinds.as_deref(), require_link);

        let existing = existing_links(c, message_id)?;
        let text = if existing.is_empty() {
            let ids = next_ids(c, "smslink.link_id_seq", template.links.len());
            let mut rows = LinkRows::default();
            let text = if ids.is_empty() {
                template.render(&[])
            } else {
                render(
                    &campaign,
                    &template,
                    &current_key(),
                    message_id,
                    &ids,
                    &mut rows,
                )
            };
            insert_links(c, &campaign, rows);
            text
        } else if template.links.is_empty() && stored_body.as_deref() == Some(body) {
            // The stored, already wrapped body: its links are ours and nothing is new.
            body.to_string()
        } else {
            let same = existing.len() == template.links.len()
                && existing.iter().zip(&template.links).all(|(e, p)| {
                    e.0 == p.position && e.1 == p.destination && e.2 == p.kind.as_str()
                });
            if !same {
                raise_hint(
                    WRONG_STATE,
                    format!("message {message_id} is already wrapped with different links"),
                    "a sent message's links cannot change; prepare a new message instead",
                );
            }
            let urls: Vec<String> = existing.iter().map(|e| e.3.clone()).collect();
            template.render(&urls)
        };
        let layout = segments::count(&text);
        c.update(
            "UPDATE smslink.message SET body = $2, encoding = $3, segments = $4
              WHERE id = $1 AND body IS DISTINCT FROM $2",
            None,
            &[
                message_id.into(),
                text.clone().into(),
                layout.encoding.as_str().into(),
                clamp_i32(layout.segments).into(),
            ],
        )?;
        Ok::<_, SpiError>((text, layout, template.links.len()))
    })
    .spi();
    let (text, layout, links) = wrapped;
    TableIterator::once((
        text,
        layout.encoding.as_str().to_string(),
        clamp_i32(layout.segments),
        clamp_i32(layout.characters),
        clamp_i32(links),
    ))
}

/// (position, destination, kind, short URL) of a message's links.
fn existing_links(
    c: &SpiClient<'_>,
    message_id: i64,
) -> Result<Vec<(i32, String, String, String)>, SpiError> {
    let mut out = Vec::new();
    for row in c.select(
        "SELECT l.position, l.destination, l.kind, d.host, d.prefix, l.token
           FROM smslink.link l JOIN smslink.domain d ON d.id = l.domain_id
          WHERE l.message_id = $1 ORDER BY l.position",
        None,
        &[message_id.into()],
    )? {
        out.push((
            row.get::<i32>(1)?.unwrap_or_default(),
            row.get::<String>(2)?.unwrap_or_default(),
            row.get::<String>(3)?.unwrap_or_default(),
            short_url(
                &row.get::<String>(4)?.unwrap_or_default(),
                &row.get::<String>(5)?.unwrap_or_default(),
                &row.get::<String>(6)?.unwrap_or_default(),
            ),
        ));
    }
    Ok(out)
}
