-- incrementality() on a campaign of :n subscribers (default 1,000,000) with a 10% holdout and
-- conversions for about 6% of them (and an earlier campaign to the same subscribers), against hand-written SQL computing the same group counts,
-- means and variances, interleaved over :rounds rounds (make bench). The numbers are checked
-- equal before timing.
\set QUIET on
\pset footer off
\if :{?rounds} \else \set rounds 3 \endif
\if :{?n} \else \set n 1000000 \endif
SET bench.rounds = :rounds;
SELECT smslink.create_brand('Bench holdout') AS b \gset
SELECT smslink.create_campaign(:b, 'Holdout', '{A}') AS c \gset
UPDATE smslink.campaign SET holdout_fraction = 0.1 WHERE id = :c;
SELECT id AS v FROM smslink.variant WHERE campaign_id = :c \gset
INSERT INTO smslink.subscriber (brand_id, external_key) SELECT :b, 'h' || i FROM generate_series(1, :n) i;
-- Holdouts by the documented rule, written in SQL (the holdout regress test checks it against
-- smslink.in_holdout).
INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, sent_at, delivered_at,
                             is_holdout, holdout_group, created_at)
SELECT :b, :c, :v, s.id, CASE WHEN x.held THEN 'holdout' ELSE 'delivered' END,
       CASE WHEN NOT x.held THEN t END, CASE WHEN NOT x.held THEN t END, x.held,
       CASE WHEN x.held THEN 'campaign' END, t
  FROM smslink.subscriber s,
       LATERAL (SELECT ((('x' || substr(encode(sha256(convert_to('smslink.holdout.campaign', 'UTF8') || int8send(:c)
                        || convert_to(s.external_key, 'UTF8')), 'hex'), 1, 16))::bit(64) >> 11)::bigint)::float8
                        / 9007199254740992.0 < 0.1 AS held,
                       timestamptz '2026-06-01 12:00+00' + (s.id % 3600) * interval '1 second' AS t) x
 WHERE s.brand_id = :b;
-- Another campaign of the brand to the same subscribers a week earlier, so that the campaign's
-- messages are half of the table, as in a real history.
SELECT smslink.create_campaign(:b, 'Earlier', '{A}') AS e \gset
INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, sent_at, delivered_at, created_at)
SELECT :b, :e, (SELECT id FROM smslink.variant WHERE campaign_id = :e), s.id, 'delivered', t, t, t
  FROM smslink.subscriber s, LATERAL (SELECT timestamptz '2026-05-25 12:00+00' + (s.id % 3600) * interval '1 second' AS t) x
 WHERE s.brand_id = :b;
INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, currency, occurred_at, external_id)
SELECT :b, m.subscriber_id, 'purchase', 10 + (m.id % 90), 'USD',
       m.created_at + (m.id % 240) * interval '1 hour', 'bench-' || m.id || '-' || k
  FROM smslink.message m, generate_series(1, 2) k
 WHERE m.campaign_id = :c AND abs(hashtext(m.id::text)) % 1000 < CASE WHEN m.is_holdout THEN 50 ELSE 60 END
   AND (k = 1 OR m.id % 5 = 0);
ANALYZE smslink.subscriber; ANALYZE smslink.message; ANALYZE smslink.conversion;
SELECT count(*) FILTER (WHERE NOT is_holdout) AS treatment, count(*) FILTER (WHERE is_holdout) AS control,
       (SELECT count(*) FROM smslink.conversion WHERE brand_id = :b) AS conversions
  FROM smslink.message WHERE campaign_id = :c;

-- The hand-written baseline: the same per-subscriber outcomes and group statistics, written the
-- way an analyst would for a campaign that sends one message per subscriber (incrementality also
-- folds several messages of one subscriber into one member, from the first: an extra aggregate).
CREATE FUNCTION pg_temp.baseline(c bigint) RETURNS TABLE (control boolean, n bigint, converted bigint, mean float8, var float8)
LANGUAGE sql STABLE AS $$
    SELECT o.control, count(*), count(*) FILTER (WHERE o.converted), avg(o.revenue), var_samp(o.revenue)
      FROM (SELECT m.is_holdout AS control, count(v.id) > 0 AS converted, coalesce(sum(v.value), 0)::float8 AS revenue
              FROM smslink.message m
              LEFT JOIN smslink.conversion v ON v.subscriber_id = m.subscriber_id
                   AND v.occurred_at >= m.created_at AND v.occurred_at < m.created_at + interval '7 days'
             WHERE m.campaign_id = c
             GROUP BY m.subscriber_id, m.is_holdout) o
     GROUP BY o.control
$$;
SELECT (SELECT array_agg(ARRAY[n, converted] ORDER BY control) FROM pg_temp.baseline(:c))
     = (SELECT ARRAY[ARRAY[treatment_n, treatment_converted], ARRAY[control_n, control_converted]]
          FROM smslink.incrementality(:c)) AS same_counts \gset
\if :same_counts
\else
\echo 'incrementality and the baseline disagree'
SELECT * FROM pg_temp.baseline(:c);
SELECT treatment_n, treatment_converted, control_n, control_converted FROM smslink.incrementality(:c);
\quit
\endif
SET bench.c = :c;
CREATE TEMP TABLE t (round int, name text, ms float8);
DO $$
DECLARE t0 timestamptz; c bigint := current_setting('bench.c')::bigint;
BEGIN
    FOR r IN 1..current_setting('bench.rounds')::int LOOP
        t0 := clock_timestamp();
        PERFORM * FROM pg_temp.baseline(c);
        INSERT INTO t VALUES (r, 'hand-written SQL', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        PERFORM * FROM smslink.incrementality(c);
        INSERT INTO t VALUES (r, 'incrementality', 1000 * extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
END $$;
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms
  FROM t GROUP BY name ORDER BY name;
SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE name = 'incrementality')::numeric
           / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE name = 'hand-written SQL')::numeric, 2)
       AS ratio_to_hand_written;
SELECT treatment_n, control_n, round(treatment_rate::numeric, 4) AS treatment_rate, round(control_rate::numeric, 4) AS control_rate,
       round(lift::numeric, 4) AS lift, round(p_value::numeric, 6) AS p_value, round(mde::numeric, 5) AS mde, decision
  FROM smslink.incrementality(:c);
