-- The metric functions against hand-written SQL giving the same numbers, on the generated history
-- (bench/history/generate.sql). scripts/bench-history.sh metrics runs it; psql variables:
-- rounds (default 5), month_from / month_to (default June 2026 UTC).
--
--   m1 / m1_0  campaign_metrics for "Black Friday 2025" (1,000,000 delivered messages)
--   m2 / m2_0  campaign_metrics for every campaign with messages sent in the month
--   m3 / m3_0  breakdown by hour of day (UTC) for Black Friday 2025
--   m4 / m4_0  time_to_click for Black Friday 2025 (1-minute buckets up to 7 days)
--
-- The hand-written queries are written for their one question, with constants inlined: message
-- counts from the campaign's messages, clicks grouped per message from the click partitions'
-- campaign index, conversions by the windowed model (24-hour click window: the last human click
-- on a non-opt-out link of the subscriber in the 24 hours before the purchase, LATERAL with LIMIT 1
-- on the subscriber index), opt-outs from opted-out subscribers back to their last delivered
-- message. Before timing, each pair's results are compared (rates and sums to 1e-9); a
-- difference fails the run. Each query is timed as md5(string_agg(row)) over its rows, so no
-- column can be skipped. Rounds are interleaved; round 0 is a warm-up.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\if :{?rounds} \else \set rounds 5 \endif
\if :{?month_from} \else \set month_from '2026-06-01 00:00+00' \endif
\if :{?month_to} \else \set month_to '2026-07-01 00:00+00' \endif
SET client_min_messages = warning;
SET TIME ZONE 'UTC';
SET jit = off;

SELECT id AS big FROM smslink.campaign WHERE name = 'Black Friday 2025' \gset
SELECT count(*) AS big_delivered FROM smslink.message WHERE campaign_id = :big AND status = 'delivered' \gset
\echo 'Black Friday 2025: campaign' :big 'with' :big_delivered 'delivered messages'

-- The columns every campaign-level query returns, rounded for comparison.
\set cols 'key, sent, delivered, failed, round(delivery_rate::numeric, 9) AS delivery_rate, unique_clicks, total_clicks, round(ctr::numeric, 9) AS ctr, round(repeat_click_rate::numeric, 9) AS repeat_click_rate, clickers_converted, round(ctcr::numeric, 9) AS ctcr, round(conversions::numeric, 9) AS conversions, round(revenue, 6) AS revenue, round(rpm, 9) AS rpm, opt_outs, round(opt_out_rate::numeric, 9) AS opt_out_rate, human_hits, preview_hits, bot_hits, scanner_hits, suspect_hits, round(bot_share::numeric, 9) AS bot_share, round(ttc_p50_seconds::numeric, 6) AS ttc_p50_seconds, round(ttc_p90_seconds::numeric, 6) AS ttc_p90_seconds'

-- Hand-written campaign metrics as a SQL template: %1$s = the messages (alias m), %2$s = the
-- group key of a message, %3$s = an array expression of the campaigns those messages belong to
-- (a constant for one campaign; for a month, computed from the month's messages, as the
-- function has to).
CREATE TEMP TABLE tmpl (name text PRIMARY KEY, sql text);
INSERT INTO tmpl VALUES ('campaign', $t$
WITH msg AS (
    SELECT %2$s AS key,
           count(*) FILTER (WHERE m.status <> 'queued') AS sent,
           count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
           count(*) FILTER (WHERE m.status IN ('failed', 'undelivered')) AS failed,
           min(m.sent_at) AS lo, max(greatest(m.delivered_at, m.sent_at)) AS hi
      FROM smslink.message m WHERE %1$s GROUP BY 1
), pm AS (
    SELECT c.message_id,
           count(*) FILTER (WHERE c.class = 'human' AND c.link_kind <> 'optout') AS clicks,
           min(c.clicked_at) FILTER (WHERE c.class = 'human' AND c.link_kind <> 'optout') AS first_at,
           count(*) FILTER (WHERE c.class = 'human') AS human, count(*) FILTER (WHERE c.class = 'preview') AS preview,
           count(*) FILTER (WHERE c.class = 'bot') AS bot, count(*) FILTER (WHERE c.class = 'scanner') AS scanner,
           count(*) FILTER (WHERE c.class = 'suspect') AS suspect
      FROM smslink.click c
     WHERE c.campaign_id = ANY(%3$s)
     GROUP BY 1
), clk AS (
    SELECT %2$s AS key, count(*) FILTER (WHERE pm.clicks > 0) AS uc, sum(pm.clicks) AS tc,
           sum(pm.human) AS human, sum(pm.preview) AS preview, sum(pm.bot) AS bot,
           sum(pm.scanner) AS scanner, sum(pm.suspect) AS suspect,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p90
      FROM pm JOIN smslink.message m ON m.id = pm.message_id WHERE %1$s GROUP BY 1
), span AS (
    SELECT min(msg.lo) AS lo,
           greatest(max(msg.hi), (SELECT max(c.clicked_at) FROM smslink.click c WHERE c.campaign_id = ANY(%3$s)))
               + interval '24 hours 1 microsecond' AS hi
      FROM msg
), att AS (
    SELECT %2$s AS key, count(DISTINCT k.message_id) AS converted, count(*) AS conversions, sum(cv.value) AS revenue
      FROM span, smslink.conversion cv
      CROSS JOIN LATERAL (
          SELECT c.message_id FROM smslink.click c
           WHERE c.subscriber_id = cv.subscriber_id AND c.class = 'human' AND c.link_kind <> 'optout'
             AND c.clicked_at >= cv.occurred_at - interval '24 hours' AND c.clicked_at <= cv.occurred_at
           ORDER BY c.clicked_at DESC, c.id DESC LIMIT 1) k
      JOIN smslink.message m ON m.id = k.message_id
     WHERE cv.occurred_at >= span.lo AND cv.occurred_at < span.hi AND %1$s
     GROUP BY 1
), opt AS (
    SELECT %2$s AS key, count(*) AS n
      FROM span, smslink.subscriber o
      CROSS JOIN LATERAL (
          SELECT m0.id FROM smslink.message m0
           WHERE m0.subscriber_id = o.id AND m0.delivered_at <= o.opted_out_at
             AND m0.delivered_at > o.opted_out_at - interval '7 days'
           ORDER BY m0.delivered_at DESC LIMIT 1) l
      JOIN smslink.message m ON m.id = l.id
     WHERE o.opted_out_at IS NOT NULL AND o.opted_out_at >= span.lo AND %1$s
     GROUP BY 1
)
SELECT msg.key, msg.sent, msg.delivered, msg.failed, msg.delivered::float8 / nullif(msg.sent, 0) AS delivery_rate,
       coalesce(clk.uc, 0) AS unique_clicks, coalesce(clk.tc, 0) AS total_clicks,
       coalesce(clk.uc, 0)::float8 / nullif(msg.delivered, 0) AS ctr, clk.tc::float8 / nullif(clk.uc, 0) AS repeat_click_rate,
       coalesce(att.converted, 0) AS clickers_converted, coalesce(att.converted, 0)::float8 / nullif(clk.uc, 0) AS ctcr,
       coalesce(att.conversions, 0)::float8 AS conversions, coalesce(att.revenue, 0) AS revenue,
       coalesce(att.revenue, 0) / nullif(msg.delivered, 0) AS rpm,
       coalesce(opt.n, 0) AS opt_outs, coalesce(opt.n, 0)::float8 / nullif(msg.delivered, 0) AS opt_out_rate,
       coalesce(clk.human, 0) AS human_hits, coalesce(clk.preview, 0) AS preview_hits, coalesce(clk.bot, 0) AS bot_hits,
       coalesce(clk.scanner, 0) AS scanner_hits, coalesce(clk.suspect, 0) AS suspect_hits,
       (coalesce(clk.preview, 0) + coalesce(clk.bot, 0) + coalesce(clk.scanner, 0) + coalesce(clk.suspect, 0))::float8
         / nullif(coalesce(clk.human, 0) + coalesce(clk.preview, 0) + coalesce(clk.bot, 0) + coalesce(clk.scanner, 0)
                  + coalesce(clk.suspect, 0), 0) AS bot_share,
       clk.p50 AS ttc_p50_seconds, clk.p90 AS ttc_p90_seconds
  FROM msg LEFT JOIN clk USING (key) LEFT JOIN att USING (key) LEFT JOIN opt USING (key)
$t$);

CREATE TEMP TABLE bench_q (ord int, name text, label text, baseline text, sql text);
INSERT INTO bench_q VALUES
 (1, 'm1_0', 'Black Friday 2025, hand-written SQL', NULL,
  format((SELECT sql FROM tmpl), format('m.campaign_id = %s AND NOT m.is_holdout', :big), 'm.campaign_id::text',
         format('ARRAY[%s]::bigint[]', :big))),
 (2, 'm1', 'campaign_metrics(Black Friday 2025)', 'm1_0',
  format('SELECT campaign_id::text AS key, * FROM smslink.campaign_metrics(ARRAY[%s]::bigint[])', :big)),
 (3, 'm2_0', 'all campaigns of the month, hand-written SQL', NULL,
  format((SELECT sql FROM tmpl),
         format('m.sent_at >= %L AND m.sent_at < %L AND NOT m.is_holdout', :'month_from', :'month_to'), 'm.campaign_id::text',
         format('ARRAY(SELECT DISTINCT m3.campaign_id FROM smslink.message m3 WHERE m3.sent_at >= %L AND m3.sent_at < %L AND NOT m3.is_holdout)',
                :'month_from', :'month_to'))),
 (4, 'm2', 'campaign_metrics(month)', 'm2_0',
  format('SELECT campaign_id::text AS key, * FROM smslink.campaign_metrics(NULL, %L, %L)', :'month_from', :'month_to')),
 (5, 'm3_0', 'Black Friday 2025 by hour, hand-written SQL', NULL,
  format((SELECT sql FROM tmpl), format('m.campaign_id = %s AND NOT m.is_holdout AND coalesce(m.delivered_at, m.failed_at, m.sent_at) IS NOT NULL', :big),
         'lpad(extract(hour FROM coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE ''UTC'')::int::text, 2, ''0'')',
         format('ARRAY[%s]::bigint[]', :big))),
 (6, 'm3', 'breakdown(Black Friday 2025, hour_of_day)', 'm3_0',
  format('SELECT * FROM smslink.breakdown(%s, ''hour_of_day'')', :big)),
 (7, 'm4_0', 'time to click, hand-written SQL', NULL,
  format($q$WITH f AS (
      SELECT greatest(0, extract(epoch FROM min(c.clicked_at) - min(m.delivered_at)))::float8 AS s
        FROM smslink.click c JOIN smslink.message m ON m.id = c.message_id
       WHERE c.campaign_id = %s AND c.class = 'human' AND c.link_kind <> 'optout' AND m.delivered_at IS NOT NULL
       GROUP BY c.message_id),
    b AS (SELECT floor(s / 60)::bigint AS b, count(*) AS n FROM f GROUP BY 1),
    t AS (SELECT count(*)::float8 AS n FROM f)
  SELECT g * interval '1 minute' AS bucket_start, (g + 1) * interval '1 minute' AS bucket_end, coalesce(b.n, 0) AS clicks,
         coalesce(b.n, 0) / nullif(t.n, 0) AS share, sum(coalesce(b.n, 0)) OVER (ORDER BY g) / nullif(t.n, 0) AS cumulative_share
    FROM generate_series(0, 10079) g CROSS JOIN t LEFT JOIN b ON b.b = g$q$, :big)),
 (8, 'm4', 'time_to_click(Black Friday 2025)', 'm4_0',
  format('SELECT * FROM smslink.time_to_click(%s)', :big));

\echo '==> checking that each function and its hand-written SQL give the same numbers'
CREATE FUNCTION pg_temp.differ(a text, b text, cols text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM ((SELECT %3$s FROM (%1$s) x EXCEPT ALL SELECT %3$s FROM (%2$s) y)
                    UNION ALL (SELECT %3$s FROM (%2$s) y EXCEPT ALL SELECT %3$s FROM (%1$s) x)) d', a, b, cols) INTO n;
    RETURN n;
END $$;
SELECT string_agg(format('%s: %s rows differ', f.name, pg_temp.differ(f.sql, b.sql,
           CASE WHEN f.name = 'm4' THEN 'bucket_start, clicks, round(share::numeric, 12) AS share, round(cumulative_share::numeric, 12) AS cs'
                ELSE :'cols' END)), '; ' ORDER BY f.ord) AS agreement
  FROM bench_q f JOIN bench_q b ON b.name = f.baseline \gset
\echo :agreement
SELECT :'agreement' !~ '[1-9][0-9]* rows differ' AS agree \gset
\if :agree
\else
DO $$ BEGIN RAISE EXCEPTION 'a metric function and its hand-written SQL disagree'; END $$;
\endif

\echo '==> timing (' :rounds 'rounds after a warm-up, interleaved)'
CREATE TEMP TABLE bench_t (round int, name text, ms float8, digest text);
CREATE FUNCTION pg_temp.run_bench(rounds int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE q record; t0 timestamptz; d text;
BEGIN
    FOR r IN 0..rounds LOOP
        FOR q IN SELECT * FROM bench_q ORDER BY ord LOOP
            t0 := clock_timestamp();
            EXECUTE format('SELECT md5(string_agg(x::text, ''|'')) FROM (%s) x', q.sql) INTO d;
            INSERT INTO bench_t VALUES (r, q.name, 1000 * extract(epoch FROM clock_timestamp() - t0), d);
        END LOOP;
    END LOOP;
END $$;
SELECT pg_temp.run_bench(:rounds) \gset
\pset format aligned
SELECT q.name AS id, q.label AS query,
       to_char(s.median, 'FM999,990.0') AS "median ms", to_char(s.lo, 'FM999,990.0') AS "min ms",
       to_char(s.hi, 'FM999,990.0') AS "max ms",
       CASE WHEN q.baseline IS NOT NULL THEN to_char(s.median / b.median, 'FM990.00') || '×' END AS "vs baseline"
  FROM bench_q q
  JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ms) AS median, min(t.ms) AS lo, max(t.ms) AS hi
                  FROM bench_t t WHERE t.name = q.name AND t.round > 0) s ON true
  LEFT JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ms) AS median
                       FROM bench_t t WHERE t.name = q.baseline AND t.round > 0) b ON true
 ORDER BY q.ord;
