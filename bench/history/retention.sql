-- smslink.apply_retention against hand-written SQL doing the same work, on a copy of the
-- generated history (bench/history/generate.sql: clicks from October 2025 to October 2026).
-- scripts/bench-history.sh retention runs it on a copy of the history database; psql variables
-- rounds (default 3) and at (default 2026-12-03).
--
-- Every brand's policy is set to click_retention 9 months and anonymise_after 90 days, and
-- retention runs as of :at: the clicks of October 2025 to February 2026 are folded and their
-- partitions dropped, the first days of March 2026 folded and deleted, March to early September
-- 2026 anonymised.
--
--   r1    SELECT * FROM smslink.apply_retention(:at)
--   r1_0  the same work by hand: one UPDATE anonymising the same rows, one INSERT ... SELECT
--         ... GROUP BY folding the rows past retention into a table shaped like click_rollup
--         (no merging, no touch arrays), and one DELETE of them. A bound, not the same plan:
--         the function drops whole partitions where it can, which is cheaper than a DELETE.
--   m_raw / m_folded  campaign_metrics for every campaign, before and after retention
--
-- Each round runs in a subtransaction that is rolled back, so every round sees the same
-- history; round 0 is a warm-up. Before timing, campaign_metrics over every campaign is compared
-- before and after retention (md5 of every row, float sums rounded to 1e-6: their last bits
-- follow the order rows reach the aggregate), and every click must still be a row or counted
-- in the rollup: a difference fails the run.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\if :{?rounds} \else \set rounds 3 \endif
\if :{?at} \else \set at '2026-12-03 00:00+00' \endif
SET client_min_messages = warning;
SET TIME ZONE 'UTC';
SET jit = off;

UPDATE smslink.brand SET click_retention = '9 months', anonymise_after = '90 days',
                         anonymised_through = NULL, purged_through = NULL;
SELECT count(*) AS clicks,
       count(*) FILTER (WHERE clicked_at < timestamptz :'at' - interval '9 months') AS past_retention,
       count(*) FILTER (WHERE clicked_at >= timestamptz :'at' - interval '9 months'
                          AND clicked_at < timestamptz :'at' - interval '90 days') AS to_anonymise
  FROM smslink.click \gset
\echo 'history:' :clicks 'clicks;' :past_retention 'past retention,' :to_anonymise 'to anonymise'

CREATE TEMP TABLE fold_by_hand (LIKE smslink.click_rollup);
CREATE TEMP TABLE timing (name text, round int, ms float8);
CREATE TEMP TABLE checks (same_metrics boolean, nothing_lost boolean, folded bigint, groups bigint, actions text);
SELECT set_config('bench.rounds', :'rounds', false), set_config('bench.at', :'at', false) \g /dev/null

DO $bench$
DECLARE
    rounds int := current_setting('bench.rounds')::int;
    at timestamptz := current_setting('bench.at')::timestamptz;
    names text[] := '{}';
    rs int[] := '{}';
    mss float8[] := '{}';
    t0 timestamptz;
    before text;
    after text;
    ok_same boolean;
    ok_kept boolean;
    n_folded bigint;
    n_groups bigint;
    acts text;
    total bigint := (SELECT count(*) FROM smslink.click);
BEGIN
    -- Correctness first.
    BEGIN
        SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) INTO before
          FROM (SELECT campaign_id, sent, delivered, failed, unique_clicks, total_clicks, clickers_converted, round(conversions::numeric, 6), revenue, opt_outs, human_hits, preview_hits, bot_hits, scanner_hits, suspect_hits, round(ttc_p50_seconds::numeric, 6), round(ttc_p90_seconds::numeric, 6) FROM smslink.campaign_metrics()) x;
        SELECT sum(r.rows) FILTER (WHERE r.action IN ('partition_dropped', 'rows_deleted')),
               string_agg(r.action || ' ' || r.relation || ' ' || r.rows, ', ')
          INTO n_folded, acts FROM smslink.apply_retention(at) r;
        SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) INTO after
          FROM (SELECT campaign_id, sent, delivered, failed, unique_clicks, total_clicks, clickers_converted, round(conversions::numeric, 6), revenue, opt_outs, human_hits, preview_hits, bot_hits, scanner_hits, suspect_hits, round(ttc_p50_seconds::numeric, 6), round(ttc_p90_seconds::numeric, 6) FROM smslink.campaign_metrics()) x;
        ok_same := before = after;
        ok_kept := (SELECT count(*) FROM smslink.click) + (SELECT coalesce(sum(hits), 0) FROM smslink.click_rollup) = total;
        n_groups := (SELECT count(*) FROM smslink.click_rollup);
        RAISE EXCEPTION 'roll back';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    INSERT INTO checks VALUES (ok_same, ok_kept, n_folded, n_groups, acts);
    IF NOT ok_same OR NOT ok_kept THEN
        RETURN;
    END IF;

    FOR r IN 0..rounds LOOP
        -- The function.
        BEGIN
            t0 := clock_timestamp();
            PERFORM smslink.campaign_metrics();
            names := names || 'm_raw'::text; rs := rs || r;
            mss := mss || extract(epoch FROM clock_timestamp() - t0) * 1000;
            t0 := clock_timestamp();
            PERFORM * FROM smslink.apply_retention(at);
            names := names || 'r1'::text; rs := rs || r;
            mss := mss || extract(epoch FROM clock_timestamp() - t0) * 1000;
            t0 := clock_timestamp();
            PERFORM smslink.campaign_metrics();
            names := names || 'm_folded'::text; rs := rs || r;
            mss := mss || extract(epoch FROM clock_timestamp() - t0) * 1000;
            RAISE EXCEPTION 'roll back';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
        -- By hand.
        BEGIN
            t0 := clock_timestamp();
            UPDATE smslink.click c
               SET ip = network(set_masklen(c.ip, CASE family(c.ip) WHEN 4 THEN 24 ELSE 48 END))::inet,
                   user_agent = NULL, referrer = NULL, headers = NULL
             WHERE c.clicked_at >= at - interval '9 months' AND c.clicked_at < at - interval '90 days';
            INSERT INTO fold_by_hand (brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id,
                   link_kind, class, device, os, day, hits, first_at, last_at)
            SELECT c.brand_id, c.campaign_id, c.variant_id, c.message_id, c.subscriber_id, c.link_id,
                   c.link_kind, c.class, c.device, smslink.ua_os(c.user_agent), (c.clicked_at AT TIME ZONE 'UTC')::date,
                   count(*), min(c.clicked_at), max(c.clicked_at)
              FROM smslink.click c WHERE c.clicked_at < at - interval '9 months'
             GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11;
            DELETE FROM smslink.click c WHERE c.clicked_at < at - interval '9 months';
            names := names || 'r1_0'::text; rs := rs || r;
            mss := mss || extract(epoch FROM clock_timestamp() - t0) * 1000;
            RAISE EXCEPTION 'roll back';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
    END LOOP;
    INSERT INTO timing SELECT * FROM unnest(names, rs, mss);
END
$bench$;

SELECT same_metrics, nothing_lost, folded AS clicks_folded, groups AS rollup_groups FROM checks;
SELECT actions FROM checks;
SELECT CASE WHEN same_metrics AND nothing_lost THEN 'ok' ELSE 'FAIL' END AS status FROM checks \gset
SELECT :'status' = 'ok' AS passed \gset
\if :passed
\else
  \echo 'FAIL: campaign_metrics changed or clicks were lost'
  SELECT 1 / 0;
\endif

SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round(min(ms)::numeric, 1) AS min_ms, round(max(ms)::numeric, 1) AS max_ms
  FROM timing WHERE round > 0 GROUP BY name ORDER BY name;
SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM timing WHERE name = 'r1' AND round > 0)::numeric
             / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM timing WHERE name = 'r1_0' AND round > 0)::numeric, 2)
           AS "r1 / r1_0 (apply_retention vs by hand)",
       round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM timing WHERE name = 'm_folded' AND round > 0)::numeric
             / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM timing WHERE name = 'm_raw' AND round > 0)::numeric, 2)
           AS "m_folded / m_raw (campaign_metrics after vs before)";
