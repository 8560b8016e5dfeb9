-- Variant statistics: a two-variant campaign with 1,000 delivered messages each; A gets 100
-- unique clicks (10%), B 150 (15%); a third variant C has only 50 messages (collecting).
\pset footer off
SET client_min_messages = warning;
SELECT smslink.create_brand('Stats Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.stats.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Test', '{A,B,C}') AS c \gset
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', ARRAY(SELECT 'sa' || i FROM generate_series(1, 1000) i), 'Hi https://shop.example/a') \g /dev/null
SELECT count(*) FROM smslink.prepare_messages(:c, 'B', ARRAY(SELECT 'sb' || i FROM generate_series(1, 1000) i), 'Hi https://shop.example/b') \g /dev/null
SELECT count(*) FROM smslink.prepare_messages(:c, 'C', ARRAY(SELECT 'sc' || i FROM generate_series(1, 50) i), 'Hi https://shop.example/c') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-05-05 12:00+00')) FROM smslink.message m WHERE m.campaign_id = :c \g /dev/null
-- Clicks: the first 100 of A's messages, 150 of B's, 6 of C's; a bot hit on 50 more of A's
-- (bots never count).
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method, class)
SELECT timestamptz '2026-05-05 12:05+00', m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, 'cta', 'GET',
       CASE WHEN m.rank <= CASE v.key WHEN 'A' THEN 100 WHEN 'B' THEN 150 ELSE 6 END THEN 'human' ELSE 'bot' END
  FROM (SELECT m.*, row_number() OVER (PARTITION BY m.variant_id ORDER BY m.id) AS rank FROM smslink.message m WHERE m.campaign_id = :c) m
  JOIN smslink.variant v ON v.id = m.variant_id
  JOIN smslink.link l ON l.message_id = m.id
 WHERE m.rank <= CASE v.key WHEN 'A' THEN 150 WHEN 'B' THEN 150 ELSE 6 END;

-- Wilson 95% for 100/1000 is [0.0829, 0.1202]; for 150/1000 [0.1292, 0.1735] (statsmodels agrees).
-- Every decision is "collecting": C has 50 < 100 messages (the rule in docs/experiments.md).
SELECT variant, n, successes, round(rate::numeric, 4) AS rate, round(ci_low::numeric, 4) AS ci_low,
       round(ci_high::numeric, 4) AS ci_high, round(lift::numeric, 4) AS lift,
       round(lift_ci_low::numeric, 4) AS lift_lo, round(lift_ci_high::numeric, 4) AS lift_hi,
       round(rel_lift::numeric, 4) AS rel_lift, round(rel_lift_ci_low::numeric, 4) AS rel_lo,
       round(rel_lift_ci_high::numeric, 4) AS rel_hi
  FROM smslink.variant_stats(:c);
SELECT variant, round(p_value::numeric, 6) AS p_value, round(chi2_p_value::numeric, 6) AS chi2_p,
       round(prob_best::numeric, 6) AS prob_best, round(always_valid_p::numeric, 6) AS always_valid_p,
       round(cs_low::numeric, 4) AS cs_low, round(cs_high::numeric, 4) AS cs_high, decision
  FROM smslink.variant_stats(:c);
-- Probabilities of being best add up to 1; the same data always gives the same numbers.
SELECT round(sum(prob_best)::numeric, 9) AS total FROM smslink.variant_stats(:c);
SELECT (SELECT array_agg(prob_best ORDER BY variant) FROM smslink.variant_stats(:c))
     = (SELECT array_agg(prob_best ORDER BY variant) FROM smslink.variant_stats(:c)) AS deterministic;
-- B as the control, at 99%.
SELECT variant, round(lift::numeric, 4) AS lift, round(p_value::numeric, 6) AS p_value, decision
  FROM smslink.variant_stats(:c, control_variant => 'B', confidence => 0.99);
-- The exact column names downstream tools rely on.
SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM (SELECT unnest(proargnames[7:]) AS attname, generate_subscripts(proargnames[7:], 1) AS attnum
  FROM pg_proc WHERE proname = 'variant_stats') a;
-- Bad input.
SELECT regress.err(format($q$SELECT * FROM smslink.variant_stats(%s, 'open_rate')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.variant_stats(%s, control_variant => 'Z')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.variant_stats(%s, confidence => 1.5)$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.variant_stats(%s, include_classes => '{robot}')$q$, :c));
SELECT regress.err($q$SELECT * FROM smslink.variant_stats(NULL)$q$);
SELECT regress.err($q$SELECT * FROM smslink.variant_stats(999999)$q$);

-- Allocation. A campaign starts fixed with an equal split: about a third each, and the same
-- subscriber always gets the same variant.
SELECT v, count(*) FROM (SELECT smslink.choose_variant(:c, 'sub-' || i) AS v FROM generate_series(1, 3000) i) x GROUP BY v ORDER BY v;
SELECT smslink.choose_variant(:c, 'sub-7') = smslink.choose_variant(:c, 'sub-7') AS stable;
-- Fixed shares 60/30/10.
SELECT smslink.set_allocation(:c, 'fixed', '{"A": 6, "B": 3, "C": 1}') AS epoch;
SELECT v, round(count(*) / 100.0) * 100 AS about FROM (SELECT smslink.choose_variant(:c, 'sub-' || i) AS v FROM generate_series(1, 10000) i) x GROUP BY v ORDER BY v;
-- The bandit: weights from the clicks so far (B leads, A and C keep their 5% floors).
SELECT smslink.set_allocation(:c, 'bandit') AS epoch;
SELECT epoch, mode, variant, round(weight::numeric, 3) AS weight, buckets, trials, successes, is_current
  FROM smslink.allocation(:c) ORDER BY epoch DESC, variant;
-- Sends follow the current epoch's buckets (within sampling noise).
SELECT x.v, abs(count(*) - a.buckets) < 300 AS follows_weight
  FROM (SELECT smslink.choose_variant(:c, 'sub-' || i) AS v FROM generate_series(1, 10000) i) x
  JOIN smslink.allocation(:c) a ON a.variant = x.v AND a.is_current
 GROUP BY x.v, a.buckets ORDER BY 1;
-- A send 10 minutes later (past the 5-minute epoch) starts a new epoch, once the session's
-- one-second cache has lapsed.
SELECT pg_sleep(1.1);
SELECT smslink.choose_variant(:c, 'sub-1', now() + interval '10 minutes') IN ('A', 'B', 'C') AS chosen;
SELECT max(epoch) AS epoch, bool_and(started_at > now() + interval '9 minutes') FILTER (WHERE epoch = 4) AS started_at_send_time
  FROM smslink.allocation_log WHERE campaign_id = :c;
-- Bad input.
SELECT regress.err(format($q$SELECT smslink.set_allocation(%s, 'random')$q$, :c));
SELECT regress.err(format($q$SELECT smslink.set_allocation(%s, 'fixed', '{"Z": 1}')$q$, :c));
SELECT regress.err(format($q$SELECT smslink.set_allocation(%s, 'fixed', '{"A": -1}')$q$, :c));
SELECT regress.err(format($q$SELECT smslink.set_allocation(%s, 'bandit', '{"A": 1}')$q$, :c));
SELECT regress.err($q$SELECT smslink.set_allocation(999999, 'fixed')$q$);
SELECT regress.err($q$SELECT smslink.choose_variant(NULL, 'x')$q$);

-- The bandit goal 'conversions': A gets more clicks (40 against 20 of 200 messages each) but B
-- more conversions (10 against 2). By clicks A leads; by conversions (windowed, 24 hours after a
-- click) B does.
SELECT smslink.create_campaign(:b, 'Goal', '{A,B}') AS g \gset
SELECT count(*) FROM unnest('{A,B}'::text[]) v,
       LATERAL smslink.prepare_messages(:g, v, ARRAY(SELECT 'goal-' || v || i FROM generate_series(1, 200) i), 'Hi https://shop.example/goal') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(now() - interval '3 hours')) FROM smslink.message m WHERE m.campaign_id = :g \g /dev/null
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method)
SELECT now() - interval '2 hours', m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, 'cta', 'GET'
  FROM (SELECT m.*, row_number() OVER (PARTITION BY m.variant_id ORDER BY m.id) AS rank FROM smslink.message m WHERE m.campaign_id = :g) m
  JOIN smslink.variant v ON v.id = m.variant_id JOIN smslink.link l ON l.message_id = m.id
 WHERE m.rank <= CASE v.key WHEN 'A' THEN 40 ELSE 20 END;
INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, occurred_at, external_id)
SELECT k.brand_id, k.subscriber_id, 'purchase', 50, now() - interval '1 hour', 'goal-' || k.message_id
  FROM (SELECT k.*, row_number() OVER (PARTITION BY k.variant_id ORDER BY k.message_id) AS rank FROM smslink.click k WHERE k.campaign_id = :g) k
  JOIN smslink.variant v ON v.id = k.variant_id
 WHERE k.rank <= CASE v.key WHEN 'A' THEN 2 ELSE 10 END;
SELECT smslink.set_allocation(:g, 'bandit') AS epoch;
SELECT variant, trials, successes, weight > 0.5 AS leads FROM smslink.allocation(:g) WHERE is_current ORDER BY variant;
UPDATE smslink.campaign SET bandit_goal = 'conversions' WHERE id = :g;
SELECT smslink.set_allocation(:g, 'bandit') AS epoch;
SELECT variant, trials, successes, weight > 0.5 AS leads FROM smslink.allocation(:g) WHERE is_current ORDER BY variant;

-- The bandit simulated through SQL: three variants with true CTRs of 5%, 6% and 8%, 50,000
-- sends in 25 epochs of 2,000. Each epoch is frozen from the clicks so far (set_allocation
-- forces it, as a due epoch would), every send goes through choose_variant, and a subscriber
-- clicks when a fixed hash of their key falls below their variant's CTR (deterministic: no
-- seed to manage). Regret is the expected clicks lost against always sending C.
SELECT smslink.create_campaign(:b, 'Simulation', '{A,B,C}') AS sim \gset
INSERT INTO smslink.subscriber (brand_id, external_key) SELECT :b, 'sim-' || i FROM generate_series(1, 50000) i;
CREATE TEMP TABLE sim_ctr (key text PRIMARY KEY, ctr float8);
INSERT INTO sim_ctr VALUES ('A', 0.05), ('B', 0.06), ('C', 0.08);
DO $$
DECLARE
    c bigint := (SELECT id FROM smslink.campaign WHERE name = 'Simulation');
    e int;
BEGIN
    FOR e IN 0..24 LOOP
        PERFORM smslink.set_allocation(c, 'bandit');
        INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, sent_at, delivered_at)
        SELECT s.brand_id, c, v.id, s.id, 'delivered', now(), now()
          FROM generate_series(e * 2000 + 1, e * 2000 + 2000) i
          JOIN smslink.subscriber s ON s.external_key = 'sim-' || i
          JOIN smslink.variant v ON v.campaign_id = c AND v.key = smslink.choose_variant(c, 'sim-' || i);
        INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method)
        SELECT now(), m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, m.id, 'cta', 'GET'
          FROM smslink.message m JOIN smslink.subscriber s ON s.id = m.subscriber_id
          JOIN smslink.variant v ON v.id = m.variant_id JOIN sim_ctr t ON t.key = v.key
         WHERE m.campaign_id = c AND s.external_key IN (SELECT 'sim-' || i FROM generate_series(e * 2000 + 1, e * 2000 + 2000) i)
           AND ('x' || substr(md5(s.external_key), 1, 8))::bit(32)::bigint / 4294967296.0 < t.ctr;
    END LOOP;
END $$;
-- The allocation over epochs (every fifth), from the log.
SELECT epoch, string_agg(variant || ' ' || round(weight::numeric, 3), ', ' ORDER BY variant) AS weights
  FROM smslink.allocation(:sim) WHERE epoch % 5 = 1 GROUP BY epoch ORDER BY epoch;
SELECT v.key AS variant, count(*) AS sends, round(count(*) / 500.0, 1) AS share_pct
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id WHERE m.campaign_id = :sim GROUP BY 1 ORDER BY 1;
SELECT round(sum(0.08 - t.ctr)::numeric, 1) AS regret, round(50000 * (0.08 - (0.05 + 0.06 + 0.08) / 3)::numeric, 1) AS uniform_regret,
       count(*) FILTER (WHERE v.key = 'C') > 30000 AS best_share_above_60pct,
       sum(0.08 - t.ctr) < 0.5 * 50000 * (0.08 - (0.05 + 0.06 + 0.08) / 3) AS under_half_of_uniform
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id JOIN sim_ctr t ON t.key = v.key
 WHERE m.campaign_id = :sim;
