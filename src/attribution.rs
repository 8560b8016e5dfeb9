//! Attribution in SQL: `smslink.attribute`, `smslink.attribution_summary`,
//! `smslink.markov_removal_effects` and `smslink.markov_transitions`.
//!
//! The database finds each conversion's touches (the `smslink.touch` view: SMS human clicks on
//! non-opt-out links, SMS deliveries, other channels' touchpoints) with index lookups per
//! conversion; the credits are computed by `smslink_core::attribution`. Nothing is stored: every
//! model runs over any window and any stretch of history, as often as wanted.

use crate::errors::{raise, raise_hint, SpiOk, INVALID_PARAMETER, NULL_VALUE};
use pgrx::datum::DatumWithOid;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, GucContext, GucFlags, GucRegistry, GucSetting, IntoDatum};
use smslink_core::attribution::{
    credit, journeys, markov_fit, MarkovFit, Model, Params, Path, State, Touch, TouchKind,
    MAX_MARKOV_STATES,
};
use std::collections::HashMap;

/// What a Markov state stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Channel,
    Campaign,
}

/// Validated arguments shared by every attribution function.
struct Options {
    model: Model,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    params: Params,
    channels: Option<Vec<String>>,
    brand_id: Option<i64>,
    by: By,
}

fn micros(ts: TimestampWithTimeZone) -> i64 {
    pg_sys::TimestampTz::from(ts)
}

/// An interval in microseconds (a month counts 30 days, as `extract(epoch ...)` does).
fn interval_micros(name: &str, i: Interval, function: &str) -> i64 {
    let us = i.as_micros();
    if us <= 0 {
        raise_hint(
            INVALID_PARAMETER,
            format!("{function}: {name} must be positive, not {i}"),
            format!("give a positive interval such as '7 days', or NULL where {name} may be NULL"),
        );
    }
    i64::try_from(us).unwrap_or(i64::MAX)
}

#[allow(clippy::too_many_arguments)]
fn options(
    function: &str,
    model: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    click_window: Option<Interval>,
    view_window: Option<Interval>,
    channels: Option<Vec<Option<String>>>,
    brand_id: Option<i64>,
    half_life: Option<Interval>,
    markov_by: Option<&str>,
) -> Options {
    let Some(model) = model else {
        raise_hint(
            NULL_VALUE,
            format!("{function}: model must not be NULL"),
            "one of last_click, first_click, windowed, linear, time_decay, position_based, markov",
        );
    };
    let model = Model::parse(model)
        .unwrap_or_else(|e| raise(INVALID_PARAMETER, format!("{function}: {e}")));
    let (Some(from), Some(to)) = (from_ts, to_ts) else {
        raise(
            NULL_VALUE,
            format!(
                "{function}: from_ts and to_ts must not be NULL (the range is [from_ts, to_ts))"
            ),
        );
    };
    if micros(from) > micros(to) {
        raise_hint(
            INVALID_PARAMETER,
            format!("{function}: from_ts {from} is after to_ts {to}"),
            "the range is half-open [from_ts, to_ts); swap the arguments",
        );
    }
    let Some(click_window) = click_window else {
        raise(
            NULL_VALUE,
            format!("{function}: click_window must not be NULL"),
        );
    };
    let Some(half_life) = half_life else {
        raise(
            NULL_VALUE,
            format!("{function}: half_life must not be NULL"),
        );
    };
    let cw = interval_micros("click_window", click_window, function);
    let vw = view_window.map(|v| interval_micros("view_window", v, function));
    let hl = interval_micros("half_life", half_life, function);
    let params = Params::new(cw, vw, hl)
        .unwrap_or_else(|e| raise(INVALID_PARAMETER, format!("{function}: {e}")));
    let channels = channels.map(|list| {
        list.into_iter()
            .map(|c| {
                c.unwrap_or_else(|| {
                    raise(
                        NULL_VALUE,
                        format!("{function}: channels must not contain NULL"),
                    )
                })
            })
            .collect::<Vec<_>>()
    });
    let by = match markov_by.unwrap_or("channel") {
        "channel" => By::Channel,
        "campaign" => By::Campaign,
        other => raise_hint(
            INVALID_PARAMETER,
            format!("{function}: markov_by {other:?} is not channel or campaign"),
            "channel: one state per channel; campaign: one per SMS campaign (and per campaign_ref of other channels)",
        ),
    };
    Options {
        model,
        from,
        to,
        params,
        channels,
        brand_id,
        by,
    }
}

/// One touch as read from `smslink.touch`.
struct TouchRow {
    channel: String,
    kind: TouchKind,
    campaign_id: Option<i64>,
    variant_id: Option<i64>,
    message_id: Option<i64>,
    click_id: Option<i64>,
    campaign_ref: Option<String>,
    at: TimestampWithTimeZone,
}

impl TouchRow {
    /// The Markov state name of this touch.
    fn state_name(&self, by: By) -> String {
        match by {
            By::Channel => self.channel.clone(),
            By::Campaign => match (self.campaign_id, &self.campaign_ref) {
                (Some(c), _) => format!("{}:{c}", self.channel),
                (None, Some(r)) => format!("{}:{r}", self.channel),
                (None, None) => self.channel.clone(),
            },
        }
    }
}

/// One conversion with the touches the model may credit.
struct ConversionRow {
    id: i64,
    occurred_at: TimestampWithTimeZone,
    subscriber_key: Option<String>,
    value: Option<AnyNumeric>,
    touches: Vec<TouchRow>,
}

/// A conversion (without its touches) read from the columns `id`, `at`, `key` and `value`.
fn conversion_at(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    id: usize,
    at: usize,
    key: usize,
    value: usize,
) -> ConversionRow {
    ConversionRow {
        id: row.get::<i64>(id).spi().unwrap_or(0),
        occurred_at: row
            .get::<TimestampWithTimeZone>(at)
            .spi()
            .unwrap_or_else(|| raise(NULL_VALUE, "conversion without a time")),
        subscriber_key: row.get::<String>(key).spi(),
        value: row.get::<AnyNumeric>(value).spi(),
        touches: Vec::new(),
    }
}

/// The columns of `smslink.touch` every query here reads, in this order, from `alias`.
fn touch_columns(alias: &str) -> String {
    [
        "channel",
        "kind",
        "campaign_id",
        "variant_id",
        "message_id",
        "click_id",
        "campaign_ref",
        "touch_at",
    ]
    .map(|c| format!("{alias}.{c}"))
    .join(", ")
}

/// Reads the touch columns starting at column `first`; None when the touch is absent (the
/// LEFT JOIN found none).
fn touch_at_column(row: &pgrx::spi::SpiHeapTupleData<'_>, first: usize) -> Option<TouchRow> {
    let channel = row.get::<String>(first).spi()?;
    let kind = match row.get::<String>(first + 1).spi().as_deref() {
        Some("view") => TouchKind::View,
        _ => TouchKind::Click,
    };
    Some(TouchRow {
        channel,
        kind,
        campaign_id: row.get::<i64>(first + 2).spi(),
        variant_id: row.get::<i64>(first + 3).spi(),
        message_id: row.get::<i64>(first + 4).spi(),
        click_id: row.get::<i64>(first + 5).spi(),
        campaign_ref: row.get::<String>(first + 6).spi(),
        at: row.get::<TimestampWithTimeZone>(first + 7).spi()?,
    })
}

/// Filters on the touches: the channel list, and for `windowed` SMS only.
fn touch_filter(o: &Options, first_param: usize) -> (String, Vec<DatumWithOid<'static>>) {
    let mut sql = String::new();
    let mut args: Vec<DatumWithOid<'static>> = Vec::new();
    if o.model == Model::Windowed {
        sql.push_str(" AND t.channel = 'sms'");
    }
    if let Some(ch) = &o.channels {
        sql.push_str(&format!(" AND t.channel = ANY(${first_param})"));
        args.push(ch.clone().into());
    }
    (sql, args)
}

fn brand_filter(o: &Options, param: usize) -> (String, Option<DatumWithOid<'static>>) {
    match o.brand_id {
        Some(b) => (format!(" AND c.brand_id = ${param}"), Some(b.into())),
        None => (String::new(), None),
    }
}

/// The most rows (conversions with their touches) one attribution call reads. Rows are read
/// through a cursor and counted, so a range too large for memory is refused (54000) before it is
/// read, instead of growing the backend without bound. Superusers can raise it.
static MAX_ROWS: GucSetting<i32> = GucSetting::<i32>::new(5_000_000);

/// Registers the attribution settings (called from `_PG_init`).
pub fn init_gucs() {
    GucRegistry::define_int_guc(
        c"smslink.attribution_max_rows",
        c"The most conversion and touch rows one attribution call reads; more is refused (54000).",
        c"Bounds the memory of attribute, attribution_summary and the Markov functions. \
          Narrow the range or the click window rather than raising it.",
        &MAX_ROWS,
        1_000,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Runs `sql` through a cursor, 10,000 rows at a time, calling `each` per row; refuses the call
/// once more than `smslink.attribution_max_rows` rows came back. Interruptible.
fn each_row(
    what: &str,
    sql: &str,
    args: &[DatumWithOid<'_>],
    mut each: impl FnMut(&pgrx::spi::SpiHeapTupleData<'_>),
) {
    let max = i64::from(MAX_ROWS.get());
    Spi::connect(|c| {
        let mut cursor = c.try_open_cursor(sql, args).spi();
        let mut n: i64 = 0;
        loop {
            let table = cursor.fetch(10_000).spi();
            if table.is_empty() {
                break;
            }
            for row in table {
                pgrx::check_for_interrupts!();
                n += 1;
                if n > max {
                    raise_hint(
                        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                        format!("{what}: more than {max} conversion and touch rows in this range"),
                        "narrow the range, the click window or the channels (or a superuser raises smslink.attribution_max_rows)",
                    );
                }
                each(&row);
            }
        }
    });
}

fn window(us: i64) -> Interval {
    Interval::new(0, 0, us).unwrap_or_else(|_| raise(INVALID_PARAMETER, "window out of range"))
}

/// Every conversion in the range with its eligible touches (clicks in the click window, and for
/// `windowed` with a view window, SMS deliveries in it), in time order.
fn conversions_with_touches(o: &Options) -> Vec<ConversionRow> {
    let mut args: Vec<DatumWithOid<'static>> = vec![
        o.from.into(),
        o.to.into(),
        window(o.params.click_window).into(),
    ];
    let (filter, filter_args) = touch_filter(o, args.len() + 1);
    args.extend(filter_args);
    let (brand, brand_arg) = brand_filter(o, args.len() + 1);
    args.extend(brand_arg);
    // windowed's view-through: looked up only for conversions without an SMS click (the
    // condition on t is a one-time filter per conversion).
    let (views, view_columns, view_order) = match (o.model, o.params.view_window) {
        (Model::Windowed, Some(vw)) => {
            args.push(window(vw).into());
            (
                format!(
                    "LEFT JOIN LATERAL (
        SELECT {}, w.source_id FROM smslink.touch w
         WHERE t.channel IS NULL AND w.subscriber_id = c.subscriber_id AND w.kind = 'view'
           AND w.channel = 'sms' AND w.touch_at >= c.occurred_at - ${}
           AND w.touch_at <= c.occurred_at{}
        OFFSET 0
  ) w ON true",
                    touch_columns("w"),
                    args.len(),
                    filter.replace("t.channel", "w.channel")
                ),
                ", w.*",
                ", w.touch_at, w.source_id",
            )
        }
        _ => (String::new(), "", ""),
    };
    let sql = format!(
        "SELECT c.id, c.occurred_at, s.external_key, c.value, t.*{view_columns}
  FROM smslink.conversion c
  LEFT JOIN smslink.subscriber s ON s.id = c.subscriber_id
  LEFT JOIN LATERAL (
        SELECT {}, t.source_id FROM smslink.touch t
         WHERE t.subscriber_id = c.subscriber_id AND t.kind = 'click'
           AND t.touch_at >= c.occurred_at - $3 AND t.touch_at <= c.occurred_at{filter}
        OFFSET 0 -- keeps the lookup per conversion, on the indexes, rather than a join of all touches
  ) t ON true
  {views}
 WHERE c.occurred_at >= $1 AND c.occurred_at < $2{brand}
 ORDER BY c.occurred_at, c.id, t.touch_at, t.channel, t.source_id{view_order}",
        touch_columns("t")
    );
    let mut out: Vec<ConversionRow> = Vec::new();
    each_row("attribute", &sql, &args, |row| {
        let id = row.get::<i64>(1).spi().unwrap_or(0);
        if out.last().is_none_or(|last| last.id != id) {
            out.push(conversion_at(row, 1, 2, 3, 4));
        }
        // Columns 5-13: a click touch; 14-22 (windowed only): a view-through touch.
        let touch = touch_at_column(row, 5).or_else(|| {
            if view_columns.is_empty() {
                None
            } else {
                touch_at_column(row, 14)
            }
        });
        if let (Some(t), Some(last)) = (touch, out.last_mut()) {
            last.touches.push(t);
        }
    });
    out
}

/// A row of `smslink.attribute`.
type Credit = (
    i64,
    TimestampWithTimeZone,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<TimestampWithTimeZone>,
    f64,
    Option<AnyNumeric>,
);

fn round6(n: AnyNumeric) -> AnyNumeric {
    // SAFETY: numeric_round(numeric, int4) is a builtin taking two non-null arguments.
    unsafe {
        pgrx::direct_function_call::<AnyNumeric>(
            pg_sys::numeric_round,
            &[n.into_datum(), 6i32.into_datum()],
        )
    }
    .unwrap_or_else(|| raise(INVALID_PARAMETER, "numeric_round returned NULL"))
}

/// Appends the credited rows of one conversion. Revenue is value × credit rounded to 6
/// decimals, except the last credited row, which gets the remainder: a conversion's revenue
/// always adds up exactly to its value. No credit: one unattributed row.
fn emit(out: &mut Vec<Credit>, conv: &ConversionRow, credits: &[(usize, f64)]) {
    if credits.is_empty() {
        out.push((
            conv.id,
            conv.occurred_at,
            conv.subscriber_key.clone(),
            None,
            None,
            None,
            None,
            None,
            None,
            1.0,
            conv.value.clone(),
        ));
        return;
    }
    let mut assigned = AnyNumeric::from(0);
    for (n, &(i, share)) in credits.iter().enumerate() {
        let t = &conv.touches[i];
        let revenue = conv.value.as_ref().map(|v| {
            if n + 1 == credits.len() {
                v.clone() - assigned.clone()
            } else {
                let r = round6(
                    v.clone()
                        * AnyNumeric::try_from(share)
                            .unwrap_or_else(|_| raise(INVALID_PARAMETER, "credit is not finite")),
                );
                assigned = assigned.clone() + r.clone();
                r
            }
        });
        out.push((
            conv.id,
            conv.occurred_at,
            conv.subscriber_key.clone(),
            Some(t.channel.clone()),
            t.campaign_id,
            t.variant_id,
            t.message_id,
            t.click_id,
            Some(t.at),
            share,
            revenue,
        ));
    }
}

fn core_touches(rows: &[TouchRow], states: &mut HashMap<String, u32>, by: By) -> Vec<Touch> {
    rows.iter()
        .map(|t| {
            let name = t.state_name(by);
            let next = u32::try_from(states.len()).unwrap_or(u32::MAX);
            let state = *states.entry(name).or_insert(next);
            Touch {
                at: micros(t.at),
                kind: t.kind,
                sms: t.channel == "sms",
                state,
            }
        })
        .collect()
}

/// Credits of a rule-based model.
fn rule_based(o: &Options) -> Vec<Credit> {
    let conversions = conversions_with_touches(o);
    let mut states = HashMap::new();
    let mut out = Vec::with_capacity(conversions.len());
    for conv in &conversions {
        pgrx::check_for_interrupts!();
        let touches = core_touches(&conv.touches, &mut states, o.by);
        let credits = credit(o.model, &touches, micros(conv.occurred_at), &o.params)
            .unwrap_or_else(|e| raise(INVALID_PARAMETER, e));
        emit(&mut out, conv, &credits);
    }
    out
}

/// One subscriber's converting and null journeys, as the Markov model sees them.
struct Markov {
    fit: MarkovFit,
    /// Conversions in the range, each with its journey's touches (may be empty).
    conversions: Vec<ConversionRow>,
    /// State names by id.
    names: Vec<String>,
}

/// Builds the Markov chain of the range. Journeys (see `smslink_core::attribution::journeys`):
/// click touches with `touch_at` in `[from_ts − click_window, to_ts)`, and the conversions in
/// `[from_ts − click_window, to_ts)` as cut points; each touch goes to the first conversion at
/// or after it if that is within the click window, otherwise it is on a null path. Journeys of
/// conversions before `from_ts` only cut (they are neither fit nor credited).
fn markov(o: &Options) -> Markov {
    let lookback = window(o.params.click_window);
    let mut args: Vec<DatumWithOid<'static>> = vec![o.from.into(), o.to.into(), lookback.into()];
    let (filter, filter_args) = touch_filter(o, args.len() + 1);
    args.extend(filter_args);
    let brand_touch = match o.brand_id {
        Some(b) => {
            args.push(b.into());
            format!(" AND t.brand_id = ${}", args.len())
        }
        None => String::new(),
    };
    let brand_conv = brand_touch.replace("t.brand_id", "c.brand_id");
    // One stream ordered by subscriber and time: conversions (kind 'conversion') and touches.
    let sql = format!(
        "SELECT * FROM (
    SELECT c.subscriber_id, c.occurred_at AS at, 0 AS tie, c.id, s.external_key, c.value,
           c.occurred_at >= $1 AS in_range,
           NULL::text AS channel, NULL::text AS kind, NULL::int8 AS campaign_id,
           NULL::int8 AS variant_id, NULL::int8 AS message_id, NULL::int8 AS click_id,
           NULL::text AS campaign_ref, NULL::timestamptz AS touch_at, 0::int8 AS source_id
      FROM smslink.conversion c LEFT JOIN smslink.subscriber s ON s.id = c.subscriber_id
     WHERE c.occurred_at >= $1 - $3 AND c.occurred_at < $2{brand_conv}
    UNION ALL
    SELECT t.subscriber_id, t.touch_at, 1, NULL, NULL, NULL, NULL, {}, t.source_id
      FROM smslink.touch t
     WHERE t.kind = 'click' AND t.touch_at >= $1 - $3 AND t.touch_at < $2{filter}{brand_touch}
) x ORDER BY x.subscriber_id NULLS FIRST, x.at, x.tie DESC, x.channel, x.source_id, x.id",
        touch_columns("t")
    );
    let mut states: HashMap<String, u32> = HashMap::new();
    let mut paths: Vec<(Vec<u32>, bool)> = Vec::new();
    let mut conversions: Vec<ConversionRow> = Vec::new();
    // The subscriber being read: its conversions (with the in-range flag) and touches.
    let mut subscriber: Option<i64> = None;
    let mut convs: Vec<(ConversionRow, bool)> = Vec::new();
    let mut touches: Vec<TouchRow> = Vec::new();
    let flush = |convs: &mut Vec<(ConversionRow, bool)>,
                 touches: &mut Vec<TouchRow>,
                 states: &mut HashMap<String, u32>,
                 paths: &mut Vec<(Vec<u32>, bool)>,
                 conversions: &mut Vec<ConversionRow>| {
        let core = core_touches(touches, states, o.by);
        if states.len() > MAX_MARKOV_STATES {
            raise_hint(
                pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "markov: more than {MAX_MARKOV_STATES} states (by {}) in this range",
                    if o.by == By::Campaign {
                        "campaign"
                    } else {
                        "channel"
                    }
                ),
                "fit by channel instead of by campaign, or narrow the range or the channels",
            );
        }
        let touch_at: Vec<i64> = core.iter().map(|t| t.at).collect();
        let conv_at: Vec<i64> = convs.iter().map(|(c, _)| micros(c.occurred_at)).collect();
        let mut taken: Vec<Option<Vec<usize>>> = vec![None; convs.len()];
        for j in journeys(&touch_at, &conv_at, o.params.click_window) {
            let path: Vec<u32> = j.touches.iter().map(|&i| core[i].state).collect();
            match j.conversion {
                None => {
                    if !path.is_empty() {
                        paths.push((path, false));
                    }
                }
                Some(k) => {
                    if convs[k].1 && !path.is_empty() {
                        paths.push((path, true));
                    }
                    taken[k] = Some(j.touches);
                }
            }
        }
        let mut owned: Vec<Option<TouchRow>> = touches.drain(..).map(Some).collect();
        for ((mut conv, in_range), idx) in convs.drain(..).zip(taken) {
            if !in_range {
                continue;
            }
            conv.touches = idx
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| owned.get_mut(i).and_then(Option::take))
                .collect();
            conversions.push(conv);
        }
    };
    each_row("markov", &sql, &args, |row| {
        let sub = row.get::<i64>(1).spi();
        if sub != subscriber {
            flush(
                &mut convs,
                &mut touches,
                &mut states,
                &mut paths,
                &mut conversions,
            );
            subscriber = sub;
        }
        let is_conversion = row.get::<i32>(3).spi() == Some(0);
        if is_conversion {
            let conv = conversion_at(row, 4, 2, 5, 6);
            let in_range = row.get::<bool>(7).spi().unwrap_or(false);
            if sub.is_none() {
                // No subscriber: no journey; unattributed if in range.
                if in_range {
                    conversions.push(conv);
                }
            } else {
                convs.push((conv, in_range));
            }
        } else if let Some(t) = touch_at_column(row, 8) {
            touches.push(t);
        }
    });
    flush(
        &mut convs,
        &mut touches,
        &mut states,
        &mut paths,
        &mut conversions,
    );
    let fit = markov_fit(paths.iter().map(|(s, converted)| Path {
        states: s,
        converted: *converted,
    }));
    let mut names = vec![String::new(); states.len()];
    for (name, id) in states {
        if let Some(slot) = names.get_mut(id as usize) {
            *slot = name;
        }
    }
    conversions.sort_by_key(|c| (micros(c.occurred_at), c.id));
    Markov {
        fit,
        conversions,
        names,
    }
}

fn markov_credits(o: &Options) -> Vec<Credit> {
    let m = markov(o);
    let index: HashMap<&str, u32> = m
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    let mut out = Vec::with_capacity(m.conversions.len());
    for conv in &m.conversions {
        let states: Vec<u32> = conv
            .touches
            .iter()
            .map(|t| {
                index
                    .get(t.state_name(o.by).as_str())
                    .copied()
                    .unwrap_or(u32::MAX)
            })
            .collect();
        let credits: Vec<(usize, f64)> = m.fit.credits(&states).into_iter().enumerate().collect();
        emit(&mut out, conv, &credits);
    }
    out
}

/// Credits of every conversion with `occurred_at` in `[from_ts, to_ts)`: one row per credited
/// touch, or one unattributed row (channel NULL, credit 1). See docs/attribution.md for each
/// model's exact definition.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn attribute(
    model: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    click_window: default!(Option<Interval>, "'7 days'"),
    view_window: default!(Option<Interval>, "NULL"),
    channels: default!(Option<Vec<Option<String>>>, "NULL"),
    brand_id: default!(Option<i64>, "NULL"),
    half_life: default!(Option<Interval>, "'7 days'"),
    markov_by: default!(Option<&str>, "'channel'"),
) -> TableIterator<
    'static,
    (
        name!(conversion_id, i64),
        name!(occurred_at, TimestampWithTimeZone),
        name!(subscriber_key, Option<String>),
        name!(channel, Option<String>),
        name!(campaign_id, Option<i64>),
        name!(variant_id, Option<i64>),
        name!(message_id, Option<i64>),
        name!(click_id, Option<i64>),
        name!(touch_at, Option<TimestampWithTimeZone>),
        name!(credit, f64),
        name!(revenue, Option<AnyNumeric>),
    ),
> {
    let o = options(
        "attribute",
        model,
        from_ts,
        to_ts,
        click_window,
        view_window,
        channels,
        brand_id,
        half_life,
        markov_by,
    );
    let rows = if o.model == Model::Markov {
        markov_credits(&o)
    } else {
        rule_based(&o)
    };
    TableIterator::new(rows)
}

/// The Markov chain of a range, for the functions that show the chain itself.
fn markov_of_range(
    function: &str,
    (from_ts, to_ts, click_window): (
        Option<TimestampWithTimeZone>,
        Option<TimestampWithTimeZone>,
        Option<Interval>,
    ),
    channels: Option<Vec<Option<String>>>,
    brand_id: Option<i64>,
    markov_by: Option<&str>,
) -> Markov {
    let o = options(
        function,
        Some("markov"),
        from_ts,
        to_ts,
        click_window,
        None,
        channels,
        brand_id,
        Some(window(1)),
        markov_by,
    );
    markov(&o)
}

fn state_name(s: State, names: &[String]) -> String {
    match s {
        State::Start => "(start)".into(),
        State::Conversion => "(conversion)".into(),
        State::Null => "(null)".into(),
        State::Channel(k) => names.get(k as usize).cloned().unwrap_or_default(),
    }
}

/// The Markov model of a range: per channel (or campaign) state, its removal effect, its share
/// of the total removal effect, the conversions it is credited with overall (share × converting
/// journeys), and its row of the transition matrix as a JSON object of probabilities.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn markov_removal_effects(
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    click_window: default!(Option<Interval>, "'7 days'"),
    channels: default!(Option<Vec<Option<String>>>, "NULL"),
    brand_id: default!(Option<i64>, "NULL"),
    markov_by: default!(Option<&str>, "'channel'"),
) -> TableIterator<
    'static,
    (
        name!(state, String),
        name!(removal_effect, Option<f64>),
        name!(share, Option<f64>),
        name!(conversions, Option<f64>),
        name!(transitions, pgrx::JsonB),
    ),
> {
    let m = markov_of_range(
        "markov_removal_effects",
        (from_ts, to_ts, click_window),
        channels,
        brand_id,
        markov_by,
    );
    let total: f64 = m.fit.removal_effects.iter().map(|(_, re)| re).sum();
    let row_of = |from: State| {
        let mut map = serde_json::Map::new();
        for t in m.fit.transitions.iter().filter(|t| t.from == from) {
            map.insert(state_name(t.to, &m.names), t.probability.into());
        }
        pgrx::JsonB(serde_json::Value::Object(map))
    };
    let mut rows = vec![(
        state_name(State::Start, &m.names),
        None,
        None,
        None,
        row_of(State::Start),
    )];
    for &(k, re) in &m.fit.removal_effects {
        rows.push((
            state_name(State::Channel(k), &m.names),
            Some(re),
            Some(if total > 0.0 { re / total } else { 0.0 }),
            Some(m.fit.conversions(k)),
            row_of(State::Channel(k)),
        ));
    }
    TableIterator::new(rows)
}

/// The Markov chain's transition matrix in long form: every observed transition with its count
/// and maximum-likelihood probability. States: (start), channels (or campaigns), (conversion),
/// (null).
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn markov_transitions(
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    click_window: default!(Option<Interval>, "'7 days'"),
    channels: default!(Option<Vec<Option<String>>>, "NULL"),
    brand_id: default!(Option<i64>, "NULL"),
    markov_by: default!(Option<&str>, "'channel'"),
) -> TableIterator<
    'static,
    (
        name!(from_state, String),
        name!(to_state, String),
        name!(count, i64),
        name!(probability, f64),
    ),
> {
    let m = markov_of_range(
        "markov_transitions",
        (from_ts, to_ts, click_window),
        channels,
        brand_id,
        markov_by,
    );
    let rows: Vec<_> = m
        .fit
        .transitions
        .iter()
        .map(|t| {
            (
                state_name(t.from, &m.names),
                state_name(t.to, &m.names),
                i64::try_from(t.count).unwrap_or(i64::MAX),
                t.probability,
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
-- Credits summed by channel, campaign and variant (unattributed conversions: channel NULL).
CREATE FUNCTION smslink.attribution_summary(
    model text, from_ts timestamptz, to_ts timestamptz,
    click_window interval DEFAULT '7 days', view_window interval DEFAULT NULL,
    channels text[] DEFAULT NULL, brand_id bigint DEFAULT NULL,
    half_life interval DEFAULT '7 days', markov_by text DEFAULT 'channel')
RETURNS TABLE (channel text, campaign_id bigint, variant_id bigint, conversions float8, revenue numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT a.channel, a.campaign_id, a.variant_id, sum(a.credit), sum(a.revenue)
      FROM smslink.attribute(model, from_ts, to_ts, click_window, view_window, channels,
                             brand_id, half_life, markov_by) a
     GROUP BY a.channel, a.campaign_id, a.variant_id
     ORDER BY a.channel NULLS LAST, a.campaign_id NULLS LAST, a.variant_id NULLS LAST
$$;
"#,
    name = "attribution_summary",
    requires = [attribute]
);
