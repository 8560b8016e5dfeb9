-- smslink demo, part 3 (report): how the bandit moved the sends, the variants' statistics, and
-- what the campaign added over its 10% holdout.
\pset footer off
\set QUIET on
SELECT id AS bc, brand_id AS nb FROM smslink.campaign WHERE name = 'Holiday blend 2026' \gset
\echo
\echo 'Allocation over the epochs (smslink.allocation: the weights each epoch froze, and the counts they came from)'
SELECT epoch, mode,
       string_agg(variant || ' ' || lpad(round(100 * weight)::text, 2) || '%', '  ' ORDER BY variant) AS weights,
       string_agg(variant || ' ' || successes || '/' || trials, '  ' ORDER BY variant) AS clicks_over_delivered_at_freeze
  FROM smslink.allocation(:bc) GROUP BY epoch, mode ORDER BY epoch;
\echo 'Sends per variant and wave (holdouts not counted: they were sent nothing)'
SELECT s.wave, count(*) FILTER (WHERE v.key = 'A' AND NOT m.is_holdout) AS a,
       count(*) FILTER (WHERE v.key = 'B' AND NOT m.is_holdout) AS b,
       count(*) FILTER (WHERE v.key = 'C' AND NOT m.is_holdout) AS c, count(*) FILTER (WHERE m.is_holdout) AS held_out
  FROM smslink.message m JOIN smslink.subscriber sub ON sub.id = m.subscriber_id
  JOIN demo_bandit_sub s ON s.key = sub.external_key JOIN smslink.variant v ON v.id = m.variant_id
 WHERE m.campaign_id = :bc GROUP BY s.wave ORDER BY s.wave;
SELECT round(sum(b.true_ctr)::numeric, 1) AS bandit, round(count(*) * max(b.true_ctr)::numeric, 1) AS always_best,
       round(count(*) * (SELECT avg(true_ctr) FROM demo_bandit)::numeric, 1) AS uniform
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id JOIN demo_bandit b ON b.variant = v.key
 WHERE m.campaign_id = :bc AND NOT m.is_holdout \gset expected_
\echo 'Expected clicks (from the true CTRs) and regret against always sending the best variant:'
SELECT :expected_bandit AS bandit, :expected_uniform AS uniform_split, :expected_always_best AS always_best,
       :expected_always_best - :expected_bandit AS regret_bandit, :expected_always_best - :expected_uniform AS regret_uniform_split,
       round(100 * (:expected_always_best - :expected_bandit) / (:expected_always_best - :expected_uniform), 1) AS bandit_regret_pct_of_uniform;

\echo
\echo 'smslink.variant_stats: CTR per variant against A, with Wilson, Newcombe and log-ratio intervals,'
\echo 'the z-test, chi-square, P(best), the always-valid mSPRT p-value and the decision'
SELECT variant, n, successes AS clicks, round(100 * rate::numeric, 2) AS ctr_pct,
       round(100 * ci_low::numeric, 2) || '–' || round(100 * ci_high::numeric, 2) AS ci_pct,
       round(100 * lift::numeric, 2) AS lift_pp,
       round(100 * lift_ci_low::numeric, 2) || '–' || round(100 * lift_ci_high::numeric, 2) AS lift_ci_pp,
       round(100 * rel_lift::numeric, 1) AS rel_lift_pct,
       round(p_value::numeric, 5) AS p_value, round(chi2_p_value::numeric, 5) AS chi2_p,
       round(prob_best::numeric, 4) AS prob_best, round(always_valid_p::numeric, 5) AS always_valid_p, decision
  FROM smslink.variant_stats(:bc);

-- Orders in the week after the send: everyone buys now and then (3%), and a subscriber who tapped
-- through buys more often (30%). Holdouts could not tap: their orders are the baseline.
SELECT count(smslink.record_conversion(:nb, s.external_key, 'purchase', 28.00 + (abs(hashtext(s.external_key)) % 40),
                                       'USD', now(), 'nw-order-' || s.external_key))
  FROM smslink.message m JOIN smslink.subscriber s ON s.id = m.subscriber_id
 WHERE m.campaign_id = :bc
   AND ('x' || substr(md5(s.external_key || 'buy'), 1, 8))::bit(32)::bigint / 4294967296.0
       < CASE WHEN m.first_click_at IS NOT NULL THEN 0.30 ELSE 0.03 END \gset
\echo
\echo 'smslink.incrementality: the campaign against its holdout (orders with or without a click; 7-day window)'
\x on
SELECT treatment_n, control_n, treatment_converted, control_converted,
       round(100 * treatment_rate::numeric, 2) AS treatment_rate_pct, round(100 * control_rate::numeric, 2) AS control_rate_pct,
       round(100 * lift::numeric, 2) || ' pp (' || round(100 * lift_ci_low::numeric, 2) || ' to ' || round(100 * lift_ci_high::numeric, 2) || ')' AS lift,
       round(100 * rel_lift::numeric, 1) || '% (' || round(100 * rel_lift_ci_low::numeric, 1) || '% to ' || round(100 * rel_lift_ci_high::numeric, 1) || '%)' AS relative_lift,
       round(incremental_conversions::numeric, 1) || ' (' || round(incremental_ci_low::numeric, 1) || ' to ' || round(incremental_ci_high::numeric, 1) || ')' AS incremental_orders,
       round(treatment_revenue_per_recipient::numeric, 2) AS treatment_revenue_per_recipient,
       round(control_revenue_per_recipient::numeric, 2) AS control_revenue_per_recipient,
       round(revenue_diff::numeric, 2) || ' (' || round(revenue_ci_low::numeric, 2) || ' to ' || round(revenue_ci_high::numeric, 2) || ')' AS revenue_per_recipient_diff,
       round(incremental_revenue::numeric, 2) AS incremental_revenue,
       round(p_value::numeric, 6) AS p_value, round(revenue_p_value::numeric, 6) AS revenue_p_value,
       round(100 * mde::numeric, 2) || ' pp (' || round(100 * mde_relative::numeric, 1) || '% of the control rate)' AS minimum_detectable_effect,
       window_ends, decision
  FROM smslink.incrementality(:bc);
\x off
\echo 'decision is collecting until the last subscriber''s 7-day window ends; the numbers so far stand as shown.'
