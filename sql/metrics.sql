-- Metrics for data teams and BI tools (docs/metrics.md has every formula).
--
-- One engine, smslink.metrics_by, computes the core rates grouped by a dimension; the named
-- functions and the views are thin layers over it. Message-level dimensions (campaign, variant,
-- segment, hour_of_day, day_of_week, day) split the messages; click-level dimensions (device,
-- os, link_kind) split the clicks, against the whole scope's sends.
--
-- Work is done per aggregate, each on its own index: message counts (message_campaign_idx, an
-- index-only scan), clicks grouped per message (click_*_campaign_idx), attributed conversions
-- (smslink.attribute over the time span the scope's conversions can fall in), and opt-outs
-- (from the few opted-out subscribers backwards to the message they answered).

CREATE FUNCTION smslink.metrics_by(
    dimension text,
    campaign_ids bigint[] DEFAULT NULL,
    from_ts timestamptz DEFAULT NULL,
    to_ts timestamptz DEFAULT NULL,
    attribution_model text DEFAULT 'windowed',
    click_window interval DEFAULT '24 hours',
    include_classes text[] DEFAULT '{human}',
    time_zone text DEFAULT 'UTC')
RETURNS TABLE (
    key text, sent bigint, delivered bigint, failed bigint, delivery_rate float8,
    unique_clicks bigint, total_clicks bigint, ctr float8, repeat_click_rate float8,
    clickers_converted bigint, ctcr float8, conversions float8, revenue numeric, rpm numeric,
    opt_outs bigint, opt_out_rate float8,
    human_hits bigint, preview_hits bigint, bot_hits bigint, scanner_hits bigint, suspect_hits bigint,
    bot_share float8, ttc_p50_seconds float8, ttc_p90_seconds float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
    msg_key text;       -- the group key of a message (aliases m, s, seg)
    msg_from text := '';    -- extra FROM items it needs
    click_key text;     -- for click-level dimensions, the group key of a click (alias c)
    scope text;         -- WHERE clause selecting the scope's messages (alias m)
    camps bigint[];
BEGIN
    IF dimension IS NULL THEN
        RAISE EXCEPTION 'metrics: dimension must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF attribution_model IS NULL OR click_window IS NULL OR time_zone IS NULL THEN
        RAISE EXCEPTION 'metrics: attribution_model, click_window and time_zone must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF from_ts > to_ts THEN
        RAISE EXCEPTION 'metrics: from_ts % is after to_ts %', from_ts, to_ts USING ERRCODE = '22023',
            HINT = 'the range [from_ts, to_ts) selects messages by the time they were sent';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = time_zone)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs WHERE abbrev = time_zone) THEN
        RAISE EXCEPTION 'metrics: unknown time zone "%"', time_zone USING ERRCODE = '22023',
            HINT = 'use an IANA name such as America/New_York, or UTC';
    END IF;
    CASE lower(dimension)
        WHEN 'campaign' THEN msg_key := 'm.campaign_id::text';
        WHEN 'variant' THEN msg_key := 'm.variant_id::text';
        WHEN 'segment' THEN
            msg_key := 'seg.name';
            msg_from := 'JOIN smslink.subscriber s ON s.id = m.subscriber_id
                         CROSS JOIN LATERAL unnest(CASE WHEN cardinality(s.segments) > 0 THEN s.segments
                                                        ELSE ARRAY[''(none)''] END) seg(name)';
        WHEN 'hour_of_day' THEN
            msg_key := format('lpad(extract(hour FROM coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L)::int::text, 2, ''0'')', time_zone);
        WHEN 'day_of_week' THEN
            msg_key := format('to_char(coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L, ''ID Dy'')', time_zone);
        WHEN 'day' THEN
            msg_key := format('((coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L)::date)::text', time_zone);
        WHEN 'device' THEN click_key := 'c.device';
        WHEN 'os' THEN click_key := 'c.os';
        WHEN 'link_kind' THEN click_key := 'c.link_kind';
        ELSE
            RAISE EXCEPTION 'metrics: unknown dimension "%"', dimension USING ERRCODE = '22023',
                HINT = 'one of variant, segment, device, os, hour_of_day, day_of_week, link_kind (and campaign, day)';
    END CASE;
    IF click_key IS NOT NULL THEN
        msg_key := '''(all)''';
    END IF;

    -- Time dimensions place a message at its delivery (or failure, or send) time; messages
    -- still queued have none and are left out of them.
    scope := format('NOT m.is_holdout%s%s%s%s',
        CASE WHEN lower(dimension) IN ('hour_of_day', 'day_of_week', 'day')
             THEN ' AND coalesce(m.delivered_at, m.failed_at, m.sent_at) IS NOT NULL' ELSE '' END,
        CASE WHEN campaign_ids IS NOT NULL THEN format(' AND m.campaign_id = ANY(%L::bigint[])', campaign_ids) ELSE '' END,
        CASE WHEN from_ts IS NOT NULL THEN format(' AND m.sent_at >= %L::timestamptz', from_ts) ELSE '' END,
        CASE WHEN to_ts IS NOT NULL THEN format(' AND m.sent_at < %L::timestamptz', to_ts) ELSE '' END);
    -- The campaigns in scope (the click lookups go by campaign).
    IF campaign_ids IS NOT NULL AND from_ts IS NULL AND to_ts IS NULL THEN
        camps := campaign_ids;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT m.campaign_id) FROM smslink.message m WHERE %s', scope) INTO camps;
    END IF;
    camps := coalesce(camps, '{}');
    RETURN QUERY EXECUTE format($q$
WITH msg_c AS (
    SELECT %1$s AS g, m.campaign_id,
           count(*) FILTER (WHERE m.status <> 'queued') AS sent,
           count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
           count(*) FILTER (WHERE m.status IN ('failed', 'undelivered')) AS failed,
           min(m.sent_at) AS lo, max(greatest(m.delivered_at, m.sent_at)) AS hi
      FROM smslink.message m %2$s
     WHERE %3$s
     GROUP BY 1, 2
), msg AS (
    SELECT g, sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered, sum(failed)::bigint AS failed,
           min(lo) AS lo, max(hi) AS hi
      FROM msg_c GROUP BY g
), span AS (
    -- The time span the scope's conversions can fall in: from the first send to the last
    -- delivery or click plus the click window (read in the same pass as the counts).
    SELECT coalesce(min(msg.lo), now()) AS lo,
           coalesce(greatest(max(msg.hi), (SELECT max(c.last_at) FROM smslink.click_fact c WHERE c.campaign_id = ANY(%9$s)))
                    + $4 + interval '1 microsecond', now()) AS hi
      FROM msg
), per_message AS (
    -- One row per clicked message (per click group for click-level dimensions), from click
    -- rows and from the rollup of clicks past retention alike.
    SELECT c.message_id, %4$s AS cg,
           sum(c.hits) FILTER (WHERE c.class = ANY($1) AND c.link_kind <> 'optout') AS clicks,
           min(c.first_at) FILTER (WHERE c.class = ANY($1) AND c.link_kind <> 'optout') AS first_at,
           sum(c.hits) FILTER (WHERE c.class = 'human') AS human,
           sum(c.hits) FILTER (WHERE c.class = 'preview') AS preview,
           sum(c.hits) FILTER (WHERE c.class = 'bot') AS bot,
           sum(c.hits) FILTER (WHERE c.class = 'scanner') AS scanner,
           sum(c.hits) FILTER (WHERE c.class = 'suspect') AS suspect
      FROM smslink.click_fact c
     WHERE c.campaign_id = ANY(%9$s)
     GROUP BY 1, 2
), clk AS (
    SELECT coalesce(pm.cg, %1$s) AS g,
           count(*) FILTER (WHERE pm.clicks > 0) AS unique_clicks,
           sum(pm.clicks) AS total_clicks,
           sum(pm.human) AS human, sum(pm.preview) AS preview, sum(pm.bot) AS bot,
           sum(pm.scanner) AS scanner, sum(pm.suspect) AS suspect,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p90
      FROM per_message pm
      JOIN smslink.message m ON m.id = pm.message_id %2$s
     WHERE %3$s
     GROUP BY 1
), att AS (
    SELECT coalesce(%5$s, %1$s) AS g,
           count(DISTINCT a.message_id) FILTER (WHERE a.click_id IS NOT NULL) AS clickers_converted,
           sum(a.credit) AS conversions, sum(a.revenue) AS revenue
      FROM smslink.attribute($3, (SELECT span.lo FROM span), (SELECT span.hi FROM span), $4) a
      JOIN smslink.message m ON m.id = a.message_id %2$s %6$s
     WHERE a.campaign_id = ANY(%9$s) AND %3$s
     GROUP BY 1
), opt AS (
    -- An opt-out answers the last message delivered to the subscriber before it, within 7 days
    -- (message-level dimensions only).
    SELECT %1$s AS g, count(*) AS opt_outs
      FROM smslink.subscriber o
      CROSS JOIN LATERAL (
          SELECT m0.id FROM smslink.message m0
           WHERE m0.subscriber_id = o.id AND m0.delivered_at <= o.opted_out_at
             AND m0.delivered_at > o.opted_out_at - interval '7 days'
           ORDER BY m0.delivered_at DESC LIMIT 1) last
      JOIN smslink.message m ON m.id = last.id %2$s
     WHERE %7$s AND o.opted_out_at IS NOT NULL AND o.opted_out_at >= (SELECT span.lo FROM span) AND %3$s
     GROUP BY 1
), keys AS (
    SELECT g FROM msg WHERE %7$s UNION SELECT g FROM clk UNION SELECT g FROM att UNION SELECT g FROM opt
)
SELECT k.g,
       coalesce(t.sent, 0)::bigint, coalesce(t.delivered, 0)::bigint, coalesce(t.failed, 0)::bigint,
       t.delivered::float8 / nullif(t.sent, 0),
       coalesce(clk.unique_clicks, 0)::bigint, coalesce(clk.total_clicks, 0)::bigint,
       coalesce(clk.unique_clicks, 0)::float8 / nullif(t.delivered, 0),
       clk.total_clicks::float8 / nullif(clk.unique_clicks, 0),
       coalesce(att.clickers_converted, 0)::bigint,
       coalesce(att.clickers_converted, 0)::float8 / nullif(clk.unique_clicks, 0),
       coalesce(att.conversions, 0)::float8, coalesce(att.revenue, 0),
       coalesce(att.revenue, 0) / nullif(t.delivered, 0),
       coalesce(opt.opt_outs, 0)::bigint,
       coalesce(opt.opt_outs, 0)::float8 / nullif(t.delivered, 0),
       coalesce(clk.human, 0)::bigint, coalesce(clk.preview, 0)::bigint, coalesce(clk.bot, 0)::bigint,
       coalesce(clk.scanner, 0)::bigint, coalesce(clk.suspect, 0)::bigint,
       (coalesce(clk.preview, 0) + coalesce(clk.bot, 0) + coalesce(clk.scanner, 0) + coalesce(clk.suspect, 0))::float8
           / nullif(coalesce(clk.human, 0) + coalesce(clk.preview, 0) + coalesce(clk.bot, 0)
                    + coalesce(clk.scanner, 0) + coalesce(clk.suspect, 0), 0),
       clk.p50, clk.p90
  FROM keys k
  LEFT JOIN msg t ON %8$s
  LEFT JOIN clk ON clk.g = k.g
  LEFT JOIN att ON att.g = k.g
  LEFT JOIN opt ON opt.g = k.g
 ORDER BY k.g
$q$,
        msg_key,                                              -- 1
        msg_from,                                             -- 2
        scope,                                                -- 3
        coalesce(click_key, 'NULL::text'),                    -- 4
        CASE WHEN click_key IS NULL THEN 'NULL::text'
             ELSE format('coalesce(%s, ''(view-through)'')', click_key) END,                  -- 5
        -- the credited click's group (device, OS, link kind), from its row or its rollup group
        CASE WHEN click_key IS NULL THEN ''
             ELSE 'LEFT JOIN LATERAL (
                       SELECT k.device, coalesce(k.os, smslink.ua_os(k.user_agent)) AS os, k.link_kind
                         FROM smslink.click k WHERE k.id = a.click_id AND k.clicked_at = a.touch_at
                       UNION ALL
                       SELECT r.device, r.os, r.link_kind FROM smslink.click_rollup r
                        WHERE r.message_id = a.message_id AND a.click_id = ANY (r.touch_ids)
                       LIMIT 1) c ON true' END,                                                -- 6
        CASE WHEN click_key IS NULL THEN 'true' ELSE 'false' END,                              -- 7
        CASE WHEN click_key IS NULL THEN 't.g = k.g' ELSE 'true' END,                          -- 8
        '$2')                                                                                  -- 9
    USING classes, camps, attribution_model, click_window;
END
$fn$;

CREATE FUNCTION smslink.campaign_metrics(
    campaign_ids bigint[] DEFAULT NULL, from_ts timestamptz DEFAULT NULL, to_ts timestamptz DEFAULT NULL,
    attribution_model text DEFAULT 'windowed', click_window interval DEFAULT '24 hours',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    campaign_id bigint, campaign text, sent bigint, delivered bigint, failed bigint, delivery_rate float8,
    unique_clicks bigint, total_clicks bigint, ctr float8, repeat_click_rate float8,
    clickers_converted bigint, ctcr float8, conversions float8, revenue numeric, rpm numeric,
    opt_outs bigint, opt_out_rate float8,
    human_hits bigint, preview_hits bigint, bot_hits bigint, scanner_hits bigint, suspect_hits bigint,
    bot_share float8, ttc_p50_seconds float8, ttc_p90_seconds float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT c.id, c.name, k.sent, k.delivered, k.failed, k.delivery_rate, k.unique_clicks, k.total_clicks,
           k.ctr, k.repeat_click_rate, k.clickers_converted, k.ctcr, k.conversions, k.revenue, k.rpm,
           k.opt_outs, k.opt_out_rate, k.human_hits, k.preview_hits, k.bot_hits, k.scanner_hits,
           k.suspect_hits, k.bot_share, k.ttc_p50_seconds, k.ttc_p90_seconds
      FROM smslink.metrics_by('campaign', campaign_ids, from_ts, to_ts, attribution_model, click_window,
                              include_classes) k
      JOIN smslink.campaign c ON c.id = k.key::bigint
     ORDER BY c.id
$$;

CREATE FUNCTION smslink.variant_metrics(
    campaign_id bigint, from_ts timestamptz DEFAULT NULL, to_ts timestamptz DEFAULT NULL,
    attribution_model text DEFAULT 'windowed', click_window interval DEFAULT '24 hours',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    variant_id bigint, variant text, sent bigint, delivered bigint, failed bigint, delivery_rate float8,
    unique_clicks bigint, total_clicks bigint, ctr float8, repeat_click_rate float8,
    clickers_converted bigint, ctcr float8, conversions float8, revenue numeric, rpm numeric,
    opt_outs bigint, opt_out_rate float8,
    human_hits bigint, preview_hits bigint, bot_hits bigint, scanner_hits bigint, suspect_hits bigint,
    bot_share float8, ttc_p50_seconds float8, ttc_p90_seconds float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    PERFORM smslink.require_campaign(variant_metrics.campaign_id);
    RETURN QUERY
    SELECT v.id, v.key, k.sent, k.delivered, k.failed, k.delivery_rate, k.unique_clicks, k.total_clicks,
           k.ctr, k.repeat_click_rate, k.clickers_converted, k.ctcr, k.conversions, k.revenue, k.rpm,
           k.opt_outs, k.opt_out_rate, k.human_hits, k.preview_hits, k.bot_hits, k.scanner_hits,
           k.suspect_hits, k.bot_share, k.ttc_p50_seconds, k.ttc_p90_seconds
      FROM smslink.variant v
      LEFT JOIN smslink.metrics_by('variant', ARRAY[variant_metrics.campaign_id], from_ts, to_ts,
                                   attribution_model, click_window, include_classes) k ON k.key::bigint = v.id
     WHERE v.campaign_id = variant_metrics.campaign_id
     ORDER BY v.id;
END $$;

-- Raises P0002 unless the campaign exists; returns its id.
CREATE FUNCTION smslink.require_campaign(campaign_id bigint) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF campaign_id IS NULL THEN
        RAISE EXCEPTION 'campaign_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM smslink.campaign c WHERE c.id = require_campaign.campaign_id) THEN
        RAISE EXCEPTION 'unknown campaign %', campaign_id USING ERRCODE = 'P0002';
    END IF;
    RETURN campaign_id;
END $$;

CREATE FUNCTION smslink.breakdown(
    campaign_id bigint, dimension text, time_zone text DEFAULT 'UTC',
    from_ts timestamptz DEFAULT NULL, to_ts timestamptz DEFAULT NULL,
    attribution_model text DEFAULT 'windowed', click_window interval DEFAULT '24 hours',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    key text, sent bigint, delivered bigint, failed bigint, delivery_rate float8,
    unique_clicks bigint, total_clicks bigint, ctr float8, repeat_click_rate float8,
    clickers_converted bigint, ctcr float8, conversions float8, revenue numeric, rpm numeric,
    opt_outs bigint, opt_out_rate float8,
    human_hits bigint, preview_hits bigint, bot_hits bigint, scanner_hits bigint, suspect_hits bigint,
    bot_share float8, ttc_p50_seconds float8, ttc_p90_seconds float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF lower(dimension) NOT IN ('variant', 'segment', 'device', 'os', 'hour_of_day', 'day_of_week', 'link_kind') THEN
        RAISE EXCEPTION 'breakdown: unknown dimension "%"', dimension USING ERRCODE = '22023',
            HINT = 'one of variant, segment, device, os, hour_of_day, day_of_week, link_kind';
    END IF;
    RETURN QUERY
    SELECT CASE WHEN lower(dimension) = 'variant'
                THEN (SELECT v.key FROM smslink.variant v WHERE v.id = k.key::bigint) ELSE k.key END,
           k.sent, k.delivered, k.failed, k.delivery_rate, k.unique_clicks, k.total_clicks,
           k.ctr, k.repeat_click_rate, k.clickers_converted, k.ctcr, k.conversions, k.revenue, k.rpm,
           k.opt_outs, k.opt_out_rate, k.human_hits, k.preview_hits, k.bot_hits, k.scanner_hits,
           k.suspect_hits, k.bot_share, k.ttc_p50_seconds, k.ttc_p90_seconds
      FROM smslink.metrics_by(dimension, ARRAY[smslink.require_campaign(campaign_id)], from_ts, to_ts,
                              attribution_model, click_window, include_classes, time_zone) k;
END $$;

CREATE FUNCTION smslink.link_metrics(
    campaign_id bigint, include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    "position" int, kind text, destination text, messages bigint, delivered bigint,
    unique_clicks bigint, total_clicks bigint, ctr float8, hits bigint, bot_share float8,
    counts_as_engagement boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
BEGIN
    PERFORM smslink.require_campaign(campaign_id);
    RETURN QUERY
    WITH links AS (
        SELECT l.position, l.kind, min(l.destination) AS destination, count(*) AS messages,
               count(*) FILTER (WHERE m.status = 'delivered') AS delivered
          FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id
         WHERE m.campaign_id = link_metrics.campaign_id AND NOT m.is_holdout
         GROUP BY 1, 2
    ), clicks AS (
        SELECT l.position, l.kind,
               count(DISTINCT c.message_id) FILTER (WHERE c.class = ANY(classes)) AS unique_clicks,
               coalesce(sum(c.hits) FILTER (WHERE c.class = ANY(classes)), 0)::bigint AS total_clicks,
               sum(c.hits)::bigint AS hits,
               coalesce(sum(c.hits) FILTER (WHERE c.class <> 'human'), 0)::bigint AS non_human
          FROM smslink.click_fact c JOIN smslink.link l ON l.id = c.link_id
         WHERE c.campaign_id = link_metrics.campaign_id
         GROUP BY 1, 2
    )
    SELECT k.position, k.kind, k.destination, k.messages, k.delivered,
           coalesce(c.unique_clicks, 0), coalesce(c.total_clicks, 0),
           coalesce(c.unique_clicks, 0)::float8 / nullif(k.delivered, 0),
           coalesce(c.hits, 0), c.non_human::float8 / nullif(c.hits, 0),
           k.kind <> 'optout'
      FROM links k LEFT JOIN clicks c ON c.position = k.position AND c.kind = k.kind
     ORDER BY k.position, k.kind;
END $$;

CREATE FUNCTION smslink.time_to_click(
    campaign_id bigint, bucket interval DEFAULT '1 minute', max_age interval DEFAULT '7 days',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (bucket_start interval, bucket_end interval, clicks bigint, share float8, cumulative_share float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
    width float8 := extract(epoch FROM bucket);
    buckets bigint;
BEGIN
    PERFORM smslink.require_campaign(campaign_id);
    IF bucket IS NULL OR max_age IS NULL THEN
        RAISE EXCEPTION 'time_to_click: bucket and max_age must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF width <= 0 THEN
        RAISE EXCEPTION 'time_to_click: bucket must be positive, not %', bucket USING ERRCODE = '22023';
    END IF;
    IF max_age <= interval '0' THEN
        RAISE EXCEPTION 'time_to_click: max_age must be positive, not %', max_age USING ERRCODE = '22023';
    END IF;
    buckets := ceil(extract(epoch FROM max_age) / width);
    IF buckets > 100000 THEN
        RAISE EXCEPTION 'time_to_click: % buckets of % up to %; at most 100,000', buckets, bucket, max_age
            USING ERRCODE = '54000', HINT = 'use a wider bucket or a shorter max_age';
    END IF;
    RETURN QUERY
    WITH first AS (
        -- Each message's first counted click on a non-opt-out link, against its delivery.
        SELECT greatest(0, extract(epoch FROM min(c.first_at) - min(m.delivered_at)))::float8 AS s
          FROM smslink.click_fact c JOIN smslink.message m ON m.id = c.message_id
         WHERE c.campaign_id = time_to_click.campaign_id AND c.class = ANY(classes)
           AND c.link_kind <> 'optout' AND m.delivered_at IS NOT NULL
         GROUP BY c.message_id
    ), counted AS (
        SELECT floor(f.s / width)::bigint AS b, count(*) AS n FROM first f GROUP BY 1
    ), total AS (SELECT count(*)::float8 AS n FROM first)
    SELECT g * bucket, (g + 1) * bucket, coalesce(k.n, 0),
           coalesce(k.n, 0) / nullif(t.n, 0),
           sum(coalesce(k.n, 0)) OVER (ORDER BY g) / nullif(t.n, 0)
      FROM generate_series(0, buckets - 1) g
      CROSS JOIN total t
      LEFT JOIN counted k ON k.b = g
     ORDER BY g;
END $$;

CREATE FUNCTION smslink.daily_metrics(
    from_ts timestamptz, to_ts timestamptz, brand_id bigint DEFAULT NULL, time_zone text DEFAULT 'UTC',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    day date, sent bigint, delivered bigint, delivery_rate float8, unique_clicks bigint, total_clicks bigint,
    ctr float8, conversions float8, revenue numeric, opt_outs bigint, bot_share float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL THEN
        RAISE EXCEPTION 'daily_metrics: from_ts and to_ts must not be NULL' USING ERRCODE = '22004';
    END IF;
    RETURN QUERY
    SELECT k.key::date, k.sent, k.delivered, k.delivery_rate, k.unique_clicks, k.total_clicks, k.ctr,
           k.conversions, k.revenue, k.opt_outs, k.bot_share
      FROM smslink.metrics_by('day',
               CASE WHEN brand_id IS NULL THEN NULL
                    ELSE ARRAY(SELECT c.id FROM smslink.campaign c WHERE c.brand_id = daily_metrics.brand_id) END,
               from_ts, to_ts, 'windowed', '24 hours', include_classes, time_zone) k
     ORDER BY 1;
END $$;

-- Rejected-request counters over time, for anomalies: the counters are sequences (no row per
-- rejection), so a flood shows as the growth between two snapshots. Schedule
-- smslink.snapshot_rejections() every few minutes (pg_cron or any scheduler).
CREATE TABLE smslink.rejection_snapshot (
    taken_at       timestamptz PRIMARY KEY DEFAULT now(),
    invalid_token  bigint NOT NULL,
    unknown_target bigint NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('smslink.rejection_snapshot', '');

CREATE FUNCTION smslink.snapshot_rejections() RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    INSERT INTO smslink.rejection_snapshot (taken_at, invalid_token, unknown_target)
    SELECT now(), max(r.count) FILTER (WHERE r.reason = 'invalid_token'),
           max(r.count) FILTER (WHERE r.reason = 'unknown_target')
      FROM smslink.rejected_requests() r
    ON CONFLICT (taken_at) DO UPDATE SET invalid_token = excluded.invalid_token,
                                         unknown_target = excluded.unknown_target
    RETURNING taken_at
$$;

CREATE FUNCTION smslink.anomalies(
    from_ts timestamptz, to_ts timestamptz, no_click_after interval DEFAULT '6 hours')
RETURNS TABLE (kind text, subject text, observed float8, expected float8, message text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    base_bot float8;
    base_delivery float8;
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL OR no_click_after IS NULL THEN
        RAISE EXCEPTION 'anomalies: from_ts, to_ts and no_click_after must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF from_ts > to_ts THEN
        RAISE EXCEPTION 'anomalies: from_ts % is after to_ts %', from_ts, to_ts USING ERRCODE = '22023';
    END IF;
    -- Baselines: the 30 days before the range.
    SELECT count(*) FILTER (WHERE c.class <> 'human')::float8 / nullif(count(*), 0) INTO base_bot
      FROM smslink.click c WHERE c.clicked_at >= from_ts - interval '30 days' AND c.clicked_at < from_ts;
    SELECT CASE WHEN count(*) FILTER (WHERE m.status <> 'queued') >= 100
                THEN count(*) FILTER (WHERE m.status = 'delivered')::float8 / count(*) FILTER (WHERE m.status <> 'queued') END
      INTO base_delivery
      FROM smslink.message m WHERE m.sent_at >= from_ts - interval '30 days' AND m.sent_at < from_ts AND NOT m.is_holdout;
    RETURN QUERY
    WITH cur AS (
        SELECT m.campaign_id, count(*) FILTER (WHERE m.status <> 'queued') AS sent,
               count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
               min(m.delivered_at) AS first_delivered
          FROM smslink.message m
         WHERE m.sent_at >= from_ts AND m.sent_at < to_ts AND NOT m.is_holdout
         GROUP BY 1
    ), hits AS (
        SELECT c.campaign_id, count(*) AS hits, count(*) FILTER (WHERE c.class <> 'human') AS non_human,
               count(*) FILTER (WHERE c.class = 'human' AND c.link_kind <> 'optout') AS human_clicks,
               count(*) FILTER (WHERE c.expired AND c.clicked_at >= from_ts AND c.clicked_at < to_ts) AS expired
          FROM smslink.click c WHERE c.campaign_id IN (SELECT cur.campaign_id FROM cur)
         GROUP BY 1
    ), camp AS (
        SELECT cur.*, coalesce(h.hits, 0) AS hits, coalesce(h.non_human, 0) AS non_human,
               coalesce(h.human_clicks, 0) AS human_clicks, coalesce(h.expired, 0) AS expired, c.name
          FROM cur LEFT JOIN hits h USING (campaign_id) JOIN smslink.campaign c ON c.id = cur.campaign_id
    ), snaps AS (
        SELECT (SELECT s.invalid_token + s.unknown_target FROM smslink.rejection_snapshot s
                 WHERE s.taken_at <= from_ts ORDER BY s.taken_at DESC LIMIT 1) AS before,
               (SELECT s.invalid_token + s.unknown_target FROM smslink.rejection_snapshot s
                 WHERE s.taken_at <= to_ts ORDER BY s.taken_at DESC LIMIT 1) AS after,
               (SELECT count(*) FROM smslink.click c WHERE c.clicked_at >= from_ts AND c.clicked_at < to_ts
                   AND c.class = 'human') AS human
    )
    SELECT 'bot_share_spike', format('campaign %s %s', camp.campaign_id, camp.name),
           camp.non_human::float8 / camp.hits, coalesce(base_bot, 0.25),
           format('%s%% of the campaign''s %s hits are not human, against %s%% in the 30 days before',
                  round(100.0 * camp.non_human / camp.hits, 1), camp.hits, round(100 * coalesce(base_bot, 0.25)::numeric, 1))
      FROM camp
     WHERE camp.hits >= 20
       AND camp.non_human::float8 / camp.hits > greatest(2 * coalesce(base_bot, 0.25), coalesce(base_bot, 0.25) + 0.2)
    UNION ALL
    SELECT 'tracking_failure', format('campaign %s %s', camp.campaign_id, camp.name), 0, NULL,
           format('%s messages delivered since %s and not one human click: check the links, the domain and the proxy',
                  camp.delivered, camp.first_delivered)
      FROM camp
     WHERE camp.delivered >= 50 AND camp.human_clicks = 0
       AND camp.first_delivered <= least(to_ts, now()) - no_click_after
    UNION ALL
    SELECT 'delivery_rate_drop', format('campaign %s %s', camp.campaign_id, camp.name),
           camp.delivered::float8 / camp.sent, coalesce(base_delivery, 0.95),
           format('%s%% of %s messages delivered, against %s%% expected', round(100.0 * camp.delivered / camp.sent, 1),
                  camp.sent, round(100 * coalesce(base_delivery, 0.95)::numeric, 1))
      FROM camp
     WHERE camp.sent >= 100 AND camp.delivered::float8 / camp.sent < coalesce(base_delivery, 0.95) - 0.10
    UNION ALL
    SELECT 'rejected_token_flood', 'track_click', (snaps.after - snaps.before)::float8,
           greatest(1000, 10 * snaps.human)::float8,
           format('%s requests with forged or unknown tokens between the snapshots of the range, against %s human clicks',
                  snaps.after - snaps.before, snaps.human)
      FROM snaps
     WHERE snaps.after - snaps.before > greatest(1000, 10 * snaps.human)
    UNION ALL
    SELECT 'expired_link_clicks', format('campaign %s %s', camp.campaign_id, camp.name), camp.expired, 0,
           format('%s clicks on expired links in the range: extend the expiry or check the fallback', camp.expired)
      FROM camp
     WHERE camp.expired > 0;
END $$;

-- Views for BI tools that browse tables: every campaign, and every variant, over all time.
CREATE VIEW smslink.campaign_report AS SELECT * FROM smslink.campaign_metrics();
CREATE VIEW smslink.variant_report AS
SELECT c.id AS campaign_id, c.name AS campaign, v.*
  FROM smslink.campaign c CROSS JOIN LATERAL smslink.variant_metrics(c.id) v;

-- Descriptions that BI tools show: every metric column of the views, and the functions.
DO $$
DECLARE
    d jsonb := '{
      "campaign_id": "Campaign id.",
      "campaign": "Campaign name.",
      "variant_id": "Variant id.",
      "variant": "Variant key.",
      "sent": "Messages handed to the carrier (status sent, delivered, undelivered or failed); holdouts excluded.",
      "delivered": "Messages with status delivered: the denominator of every rate.",
      "failed": "Messages with status failed or undelivered.",
      "delivery_rate": "delivered / sent.",
      "unique_clicks": "Distinct messages with at least one click of the included classes (default human) on a link that is not an opt-out link.",
      "total_clicks": "Clicks of the included classes on links that are not opt-out links.",
      "ctr": "Click-through rate: unique_clicks / delivered.",
      "repeat_click_rate": "total_clicks / unique_clicks.",
      "clickers_converted": "Clicked messages credited with a conversion by the attribution model (default windowed, 24-hour click window).",
      "ctcr": "Click-to-conversion rate: clickers_converted / unique_clicks.",
      "conversions": "Conversions credited to the messages by the attribution model (fractional for multi-touch models).",
      "revenue": "Revenue credited to the messages by the attribution model.",
      "rpm": "Revenue per delivered message: revenue / delivered.",
      "opt_outs": "Opt-outs charged to the messages: each opt-out answers the last message delivered to the subscriber in the 7 days before it.",
      "opt_out_rate": "opt_outs / delivered.",
      "human_hits": "Hits classified human, on every link kind.",
      "preview_hits": "Link-preview fetches (messaging apps, prefetch).",
      "bot_hits": "Declared bots and HTTP libraries.",
      "scanner_hits": "Security scanners.",
      "suspect_hits": "Hits with one weak signal of automation.",
      "bot_share": "Non-human hits / all hits.",
      "ttc_p50_seconds": "Median time to click: first counted click on a non-opt-out link minus delivered_at, in seconds.",
      "ttc_p90_seconds": "90th percentile of the time to click, in seconds."
    }';
    v text;
    col text;
BEGIN
    FOREACH v IN ARRAY ARRAY['campaign_report', 'variant_report'] LOOP
        FOR col IN SELECT a.attname FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = format('smslink.%I', v)::regclass AND a.attnum > 0 LOOP
            EXECUTE format('COMMENT ON COLUMN smslink.%I.%I IS %L', v, col, coalesce(d->>col, col));
        END LOOP;
    END LOOP;
END $$;
COMMENT ON VIEW smslink.campaign_report IS 'Every campaign over all time: sends, delivery, clicks (human, non-opt-out), conversions and revenue (windowed, 24 h), opt-outs, hits by class, time to click. smslink.campaign_metrics() takes a range, a model and classes.';
COMMENT ON VIEW smslink.variant_report IS 'Every variant of every campaign over all time, with the columns of campaign_report. smslink.variant_metrics(campaign_id) takes a range, a model and classes.';
COMMENT ON FUNCTION smslink.metrics_by(text, bigint[], timestamptz, timestamptz, text, interval, text[], text) IS 'The metrics engine: core rates grouped by a dimension (campaign, variant, segment, hour_of_day, day_of_week, day, device, os, link_kind). docs/metrics.md.';
COMMENT ON FUNCTION smslink.campaign_metrics(bigint[], timestamptz, timestamptz, text, interval, text[]) IS 'One row per campaign: sent, delivered, failed, rates, clicks, conversions, revenue, RPM, opt-outs, hits by class, bot share, time-to-click p50/p90. Messages are selected by sent_at in [from_ts, to_ts).';
COMMENT ON FUNCTION smslink.variant_metrics(bigint, timestamptz, timestamptz, text, interval, text[]) IS 'The campaign_metrics columns per variant of one campaign.';
COMMENT ON FUNCTION smslink.breakdown(bigint, text, text, timestamptz, timestamptz, text, interval, text[]) IS 'Core rates of one campaign by variant, segment, device, os, hour_of_day, day_of_week or link_kind (hours and days in the given time zone).';
COMMENT ON FUNCTION smslink.link_metrics(bigint, text[]) IS 'Per link position and kind: messages, delivered, clicks, CTR, hits and bot share; opt-out links are reported apart and never count as engagement.';
COMMENT ON FUNCTION smslink.time_to_click(bigint, interval, interval, text[]) IS 'Histogram of time from delivery to first click: count, share and cumulative share per bucket (the engagement-velocity curve).';
COMMENT ON FUNCTION smslink.daily_metrics(timestamptz, timestamptz, bigint, text, text[]) IS 'A daily series (by delivery day in the time zone) of sends, clicks, CTR, conversions, revenue, opt-outs and bot share.';
COMMENT ON FUNCTION smslink.anomalies(timestamptz, timestamptz, interval) IS 'Findings in a range: bot-share spikes, campaigns with no clicks (tracking failure), delivery-rate drops, floods of rejected tokens, clicks on expired links.';
COMMENT ON FUNCTION smslink.snapshot_rejections() IS 'Records the rejected-request counters now, for anomalies; schedule it every few minutes.';
COMMENT ON FUNCTION smslink.require_campaign(bigint) IS 'Returns the campaign id, or raises P0002 for an unknown campaign (22004 for NULL).';
COMMENT ON TABLE smslink.rejection_snapshot IS 'Rejected-request counters over time (smslink.snapshot_rejections).';

-- The allocation of a campaign's sends, epoch by epoch (newest first): every variant's share,
-- bucket range and the counts the bandit weights came from.
CREATE FUNCTION smslink.allocation(campaign_id bigint)
RETURNS TABLE (epoch int, started_at timestamptz, mode text, variant text, weight float8,
               buckets int, trials bigint, successes bigint, is_current boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT l.epoch, l.started_at, l.mode, u.variant, u.weight,
           u.bound - coalesce(lag(u.bound) OVER (PARTITION BY l.epoch ORDER BY u.ord), 0),
           u.trials, u.successes,
           l.epoch = max(l.epoch) OVER ()
      FROM smslink.allocation_log l
      CROSS JOIN LATERAL unnest(l.variants, l.weights, l.bounds, l.trials, l.successes)
           WITH ORDINALITY u(variant, weight, bound, trials, successes, ord)
     WHERE l.campaign_id = smslink.require_campaign(allocation.campaign_id)
     ORDER BY l.epoch DESC, u.ord
$$;
COMMENT ON FUNCTION smslink.allocation(bigint) IS 'A campaign''s allocation epochs (newest first): each variant''s weight, buckets of 10,000 and the counts behind bandit weights.';
