-- smslink.attribute against hand-written SQL answering the same question, over one window of
-- conversions, on a generated history (bench/history/generate.sql). scripts/bench-history.sh
-- runs it; variables (psql -v): from, to (timestamptz, default June 2026 UTC), rounds (default 5),
-- baselines_only (default false: time only a0 and b0, for when smslink.attribute is missing),
-- jit (default off).
--
--   a0  last click, hand-written: per conversion, the latest click touch of its subscriber in
--       [occurred_at - 7 days, occurred_at]: SMS human clicks on non-opt-out links, and other
--       channels' touchpoints of kind 'click'; ties broken by the later id; credit 1, or one
--       unattributed row with credit 1.
--   a   smslink.attribute('last_click', from, to)
--   b0  windowed, hand-written: the latest SMS human non-opt-out click within 7 days, else the
--       latest SMS delivery (message.delivered_at, not a holdout) within 24 hours, else
--       unattributed. SMS only: other channels' touchpoints play no part.
--   b   smslink.attribute('windowed', from, to, click_window => '7 days', view_window => '24 hours')
--   c   smslink.attribute('markov', from, to) (no baseline), then 'linear' and, when it exists,
--       smslink.attribution_summary('linear', from, to)
--
-- Every timed query reads the full rows (count, sum(credit), sum(revenue), count(channel),
-- count(subscriber_key), count(touch_at)), so that neither side can skip work. Before timing,
-- a and b are checked against a0 and b0 row by row (EXCEPT ALL both ways); a disagreement
-- fails the run: timing two different answers is worthless. Rounds are interleaved
-- (a0, a, b0, b, c, ... in each), round 0 is a warm-up and is not counted; the report gives the
-- median of the counted rounds and the ratio to the baseline of the same run.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\if :{?from} \else \set from '2026-06-01 00:00+00' \endif
\if :{?to} \else \set to '2026-07-01 00:00+00' \endif
\if :{?rounds} \else \set rounds 5 \endif
\if :{?baselines_only} \else \set baselines_only false \endif
\if :{?jit} \else \set jit off \endif
SET client_min_messages = warning;
SET TIME ZONE 'UTC';
-- JIT off by default, for both sides: compiling costs 50-70 ms per query here, half of what the
-- hand-written queries take, and would swamp the comparison (BENCH_JIT=on measures with it).
SET jit = :jit;

-- The hand-written answers, as temporary views (inlined into each query that reads them).
-- Both use the per-partition indexes click_*_subscriber_idx (subscriber_id, clicked_at),
-- touchpoint_subscriber_idx (subscriber_id, occurred_at) and message_subscriber_idx.
-- The window's conversions come first, through conversion_occurred_idx (occurred_at);
-- MATERIALIZED keeps the planner from a parallel scan of the whole table, whose
-- worker start-up costs more than the index scan on a 2-core machine.
CREATE TEMP VIEW conv_window AS
SELECT cv.* FROM smslink.conversion cv
 WHERE cv.occurred_at >= :'from' AND cv.occurred_at < :'to';

CREATE TEMP VIEW a0_rows AS
WITH cv AS MATERIALIZED (SELECT * FROM conv_window)
SELECT cv.id AS conversion_id, cv.occurred_at, s.external_key AS subscriber_key,
       t.channel, t.campaign_id, t.variant_id, t.message_id, t.click_id, t.touch_at,
       1::float8 AS credit, cv.value AS revenue
  FROM cv
  LEFT JOIN smslink.subscriber s ON s.id = cv.subscriber_id
  LEFT JOIN LATERAL (
      SELECT u.* FROM (
          (SELECT 'sms'::text AS channel, c.campaign_id, c.variant_id, c.message_id, c.id AS click_id,
                  c.clicked_at AS touch_at, c.id AS source_id
             FROM smslink.click c
            WHERE c.subscriber_id = cv.subscriber_id
              AND c.clicked_at BETWEEN cv.occurred_at - interval '7 days' AND cv.occurred_at
              AND c.class = 'human' AND c.link_kind <> 'optout'
            ORDER BY c.clicked_at DESC, c.id DESC
            LIMIT 1)
          UNION ALL
          (SELECT t.channel, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, t.occurred_at, t.id
             FROM smslink.touchpoint t
            WHERE t.subscriber_id = cv.subscriber_id
              AND t.occurred_at BETWEEN cv.occurred_at - interval '7 days' AND cv.occurred_at
              AND t.kind = 'click'
            ORDER BY t.occurred_at DESC, t.id DESC
            LIMIT 1)
      ) u
      ORDER BY u.touch_at DESC, u.source_id DESC
      LIMIT 1
  ) t ON true;

-- The view-through lookup runs only for conversions without a click in the window (its
-- qualification on k.click_id becomes a one-time filter).
CREATE TEMP VIEW b0_rows AS
WITH cv AS MATERIALIZED (SELECT * FROM conv_window)
SELECT cv.id AS conversion_id, cv.occurred_at, s.external_key AS subscriber_key,
       CASE WHEN k.click_id IS NOT NULL OR v.message_id IS NOT NULL THEN 'sms' END AS channel,
       coalesce(k.campaign_id, v.campaign_id) AS campaign_id,
       coalesce(k.variant_id, v.variant_id) AS variant_id,
       coalesce(k.message_id, v.message_id) AS message_id,
       k.click_id,
       coalesce(k.touch_at, v.touch_at) AS touch_at,
       1::float8 AS credit, cv.value AS revenue
  FROM cv
  LEFT JOIN smslink.subscriber s ON s.id = cv.subscriber_id
  LEFT JOIN LATERAL (
      SELECT c.campaign_id, c.variant_id, c.message_id, c.id AS click_id, c.clicked_at AS touch_at
        FROM smslink.click c
       WHERE c.subscriber_id = cv.subscriber_id
         AND c.clicked_at BETWEEN cv.occurred_at - interval '7 days' AND cv.occurred_at
         AND c.class = 'human' AND c.link_kind <> 'optout'
       ORDER BY c.clicked_at DESC, c.id DESC
       LIMIT 1
  ) k ON true
  LEFT JOIN LATERAL (
      SELECT m.campaign_id, m.variant_id, m.id AS message_id, m.delivered_at AS touch_at
        FROM smslink.message m
       WHERE k.click_id IS NULL
         AND m.subscriber_id = cv.subscriber_id
         AND m.delivered_at BETWEEN cv.occurred_at - interval '24 hours' AND cv.occurred_at
         AND NOT m.is_holdout
       ORDER BY m.delivered_at DESC, m.id DESC
       LIMIT 1
  ) v ON true;

CREATE TEMP TABLE bench_q (ord int, name text, label text, baseline text, sql text);
\set aggs 'count(*), sum(credit), sum(revenue), count(channel), count(subscriber_key), count(touch_at)'
INSERT INTO bench_q VALUES
    (1, 'a0', 'last click, hand-written SQL', NULL, 'SELECT ' || :'aggs' || ' FROM pg_temp.a0_rows'),
    (3, 'b0', 'windowed 7d click + 24h view, hand-written SQL', NULL, 'SELECT ' || :'aggs' || ' FROM pg_temp.b0_rows');

\if :baselines_only
\echo 'baselines only: smslink.attribute is not timed'
\else
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'smslink'::regnamespace
                                      AND proname = 'attribute') AS have_attribute \gset
\if :have_attribute
\else
\echo 'error: smslink.attribute does not exist in this database'
\echo 'hint: the database keeps the functions of its CREATE EXTENSION; regenerate it (BENCH_REGEN=1) after installing a build that has attribute(), or run with BENCH_BASELINES_ONLY=1'
DO $$ BEGIN RAISE EXCEPTION 'smslink.attribute is missing'; END $$;
\endif
INSERT INTO bench_q VALUES
    (2, 'a', 'attribute(''last_click'')', 'a0',
     format('SELECT %s FROM smslink.attribute(''last_click'', %L::timestamptz, %L::timestamptz)', :'aggs', :'from', :'to')),
    (4, 'b', 'attribute(''windowed'', 7 days, 24 hours)', 'b0',
     format('SELECT %s FROM smslink.attribute(''windowed'', %L::timestamptz, %L::timestamptz, click_window => ''7 days'', view_window => ''24 hours'')',
            :'aggs', :'from', :'to')),
    (5, 'c', 'attribute(''markov'')', NULL,
     format('SELECT %s FROM smslink.attribute(''markov'', %L::timestamptz, %L::timestamptz)', :'aggs', :'from', :'to')),
    (6, 'c2', 'attribute(''linear'')', NULL,
     format('SELECT %s FROM smslink.attribute(''linear'', %L::timestamptz, %L::timestamptz)', :'aggs', :'from', :'to'));
-- attribution_summary: timed when it exists and accepts (model, from, to); whatever it returns
-- is only counted.
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'smslink'::regnamespace
                                      AND proname = 'attribution_summary') AS have_summary \gset
\if :have_summary
INSERT INTO bench_q
SELECT 7, 'c3', 'attribution_summary(''linear'')', NULL,
       format('SELECT count(*), NULL::float8, NULL::numeric, NULL::bigint, NULL::bigint, NULL::bigint FROM smslink.attribution_summary(''linear'', %L::timestamptz, %L::timestamptz)', :'from', :'to');
\endif

\echo '==> checking that the function and the hand-written SQL give the same rows'
-- Row by row: (conversion, subscriber, channel, campaign, variant, message, click, touch time),
-- credit to 1e-9 and revenue to 1e-6. Prints up to 10 differing rows per side, then fails.
CREATE FUNCTION pg_temp.compare(model_call text, baseline text) RETURNS TABLE (side text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cols text := 'conversion_id, occurred_at, subscriber_key, channel, campaign_id, variant_id, message_id, '
                 'click_id, touch_at, round(credit::numeric, 9) AS credit, round(revenue, 6) AS revenue';
    only_f bigint; only_b bigint; r record;
BEGIN
    EXECUTE format('CREATE TEMP TABLE cmp_f AS SELECT %s FROM %s', cols, model_call);
    EXECUTE format('CREATE TEMP TABLE cmp_b AS SELECT %s FROM %s', cols, baseline);
    SELECT count(*) INTO only_f FROM (SELECT * FROM cmp_f EXCEPT ALL SELECT * FROM cmp_b) x;
    SELECT count(*) INTO only_b FROM (SELECT * FROM cmp_b EXCEPT ALL SELECT * FROM cmp_f) x;
    IF only_f + only_b > 0 THEN
        FOR r IN SELECT * FROM (
                   (SELECT 'function' AS side, * FROM (SELECT * FROM cmp_f EXCEPT ALL SELECT * FROM cmp_b) x
                     ORDER BY conversion_id LIMIT 10)
                   UNION ALL
                   (SELECT 'baseline', * FROM (SELECT * FROM cmp_b EXCEPT ALL SELECT * FROM cmp_f) x
                     ORDER BY conversion_id LIMIT 10)) z
        LOOP
            RAISE WARNING 'only in %: %', r.side, row_to_json(r);
        END LOOP;
    END IF;
    RETURN QUERY SELECT 'rows', (SELECT count(*) FROM cmp_b)
           UNION ALL SELECT 'attributed', (SELECT count(*) FROM cmp_b WHERE channel IS NOT NULL)
           UNION ALL SELECT 'only in function', only_f
           UNION ALL SELECT 'only in baseline', only_b;
    DROP TABLE cmp_f, cmp_b;
END $$;

SELECT format('smslink.attribute(''last_click'', %L::timestamptz, %L::timestamptz)', :'from', :'to') AS call_a,
       format('smslink.attribute(''windowed'', %L::timestamptz, %L::timestamptz, click_window => ''7 days'', view_window => ''24 hours'')', :'from', :'to') AS call_b \gset
SET client_min_messages = warning;
SELECT max(n) FILTER (WHERE side = 'rows') AS a_rows, max(n) FILTER (WHERE side = 'attributed') AS a_attr,
       sum(n) FILTER (WHERE side LIKE 'only%') AS a_diff
  FROM pg_temp.compare(:'call_a', 'pg_temp.a0_rows') \gset
\echo 'last click:' :a_rows 'conversions,' :a_attr 'attributed,' :a_diff 'rows differ'
SELECT max(n) FILTER (WHERE side = 'rows') AS b_rows, max(n) FILTER (WHERE side = 'attributed') AS b_attr,
       sum(n) FILTER (WHERE side LIKE 'only%') AS b_diff
  FROM pg_temp.compare(:'call_b', 'pg_temp.b0_rows') \gset
\echo 'windowed:  ' :b_rows 'conversions,' :b_attr 'attributed,' :b_diff 'rows differ'
SELECT (:a_diff + :b_diff) = 0 AS rows_agree \gset
\if :rows_agree
\else
\echo 'FAIL: smslink.attribute and the hand-written SQL disagree (rows above); not timing different answers'
DO $$ BEGIN RAISE EXCEPTION 'smslink.attribute and the hand-written SQL disagree'; END $$;
\endif
\endif

\echo '==> timing (' :rounds 'rounds after a warm-up, interleaved)'
CREATE TEMP TABLE bench_t (round int, name text, ms float8, n bigint, credit float8, revenue numeric,
                           n_channel bigint, n_key bigint, n_touch bigint);
CREATE FUNCTION pg_temp.run_bench(rounds int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    q record; t0 timestamptz; ms float8;
    n bigint; cr float8; rv numeric; nc bigint; nk bigint; nt bigint;
BEGIN
    FOR r IN 0..rounds LOOP
        FOR q IN SELECT * FROM bench_q ORDER BY ord LOOP
            t0 := clock_timestamp();
            EXECUTE q.sql INTO n, cr, rv, nc, nk, nt;
            ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
            INSERT INTO bench_t VALUES (r, q.name, ms, n, cr, rv, nc, nk, nt);
        END LOOP;
    END LOOP;
END $$;
SELECT pg_temp.run_bench(:rounds) \gset

-- Same answers in every round, and the function's aggregates equal its baseline's.
DO $$
DECLARE bad text;
BEGIN
    SELECT string_agg(DISTINCT name, ', ') INTO bad FROM (
        SELECT name FROM bench_t GROUP BY name
        HAVING count(DISTINCT (n, credit, revenue, n_channel, n_key, n_touch)) > 1) x;
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'answers changed between rounds: %', bad; END IF;
    SELECT string_agg(f.name || ' vs ' || q.baseline, ', ') INTO bad
      FROM bench_t f JOIN bench_q q ON q.name = f.name AND q.baseline IS NOT NULL
      JOIN bench_t b ON b.name = q.baseline AND b.round = f.round
     WHERE f.round = 0
       AND (f.n <> b.n OR abs(f.credit - b.credit) > 1e-6 OR abs(f.revenue - b.revenue) > 1e-6
            OR f.n_channel <> b.n_channel OR f.n_key <> b.n_key OR f.n_touch <> b.n_touch);
    IF bad IS NOT NULL THEN RAISE EXCEPTION 'aggregates disagree: %', bad; END IF;
END $$;

\echo
\pset format aligned
SELECT q.name AS id, q.label AS query, to_char(s.n, 'FM9,999,999') AS rows,
       round(s.credit::numeric, 2) AS credit, round(s.revenue, 2) AS revenue,
       to_char(s.median, 'FM999,990.0') AS "median ms", to_char(s.lo, 'FM999,990.0') AS "min ms",
       to_char(s.hi, 'FM999,990.0') AS "max ms",
       CASE WHEN q.baseline IS NOT NULL THEN to_char(s.median / b.median, 'FM990.00') || '×' END AS "vs baseline"
  FROM bench_q q
  JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ms) AS median, min(t.ms) AS lo, max(t.ms) AS hi,
                       min(t.n) AS n, min(t.credit) AS credit, min(t.revenue) AS revenue
                  FROM bench_t t WHERE t.name = q.name AND t.round > 0) s ON true
  LEFT JOIN LATERAL (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ms) AS median
                       FROM bench_t t WHERE t.name = q.baseline AND t.round > 0) b ON true
 ORDER BY q.ord;
SELECT :'from'::timestamptz AS "from", :'to'::timestamptz AS "to", :rounds AS rounds,
       (SELECT value FROM public.bench_meta WHERE key = 'scale') AS scale;
