-- Holdouts and incrementality: hash-based assignment (checked against a plain-SQL SHA-256
-- reference), holdout rows from prepare_messages, the global control group, and
-- smslink.incrementality on a hand-counted history and against plain SQL.
\pset footer off
SET client_min_messages = warning;
SELECT smslink.create_brand('Holdout Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.holdout.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Spring', '{A,B}') AS c \gset

-- The fraction is checked with a message that says what to fix; transactional campaigns have none.
SELECT regress.err(format('UPDATE smslink.campaign SET holdout_fraction = 1 WHERE id = %s', :c));
SELECT regress.err(format('UPDATE smslink.campaign SET holdout_fraction = -0.1 WHERE id = %s', :c));
SELECT regress.err(format('UPDATE smslink.brand SET global_holdout_fraction = 1.5 WHERE id = %s', :b));
SELECT regress.err(format($$UPDATE smslink.campaign SET purpose = 'transactional', holdout_fraction = 0.1 WHERE id = %s$$, :c));
UPDATE smslink.campaign SET holdout_fraction = 0.1 WHERE id = :c;

-- The assignment rule, written independently in SQL: the top 53 bits of the first 8 bytes of
-- SHA-256(tag || id big-endian || key), over 2^53, below the fraction.
CREATE FUNCTION regress.holdout_position(tag text, id bigint, key text) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT ((('x' || substr(encode(sha256(convert_to(tag, 'UTF8') || int8send(id) || convert_to(key, 'UTF8')), 'hex'), 1, 16))::bit(64) >> 11)::bigint)::float8
           / 9007199254740992.0
$$;
SELECT count(*) FILTER (WHERE smslink.in_holdout(:c, 'hk' || i)) AS held_out,
       count(*) FILTER (WHERE smslink.in_holdout(:c, 'hk' || i)
                        <> (regress.holdout_position('smslink.holdout.campaign', :c, 'hk' || i) < 0.1)) AS disagree_with_sql
  FROM generate_series(1, 2000) i;
SELECT smslink.in_holdout(:c, NULL) AS null_key, smslink.holdout_group(:c, 'hk1') AS group_of_hk1;
SELECT regress.err('SELECT smslink.in_holdout(NULL, ''x'')');
SELECT regress.err('SELECT smslink.in_holdout(999999, ''x'')');

-- A send: held-out subscribers get a row with status holdout, no body and no links.
SET client_min_messages = notice;
SELECT count(*) AS prepared, count(*) FILTER (WHERE holdout) AS held_out,
       count(*) FILTER (WHERE holdout AND body IS NULL AND encoding IS NULL AND segments IS NULL) AS held_out_without_body,
       count(*) FILTER (WHERE NOT holdout AND body LIKE 'Hi https://go.holdout.example/c/%') AS with_body
  FROM smslink.prepare_messages(:c, 'A', ARRAY(SELECT 'hk' || i FROM generate_series(1, 2000) i), 'Hi https://shop.example/spring');
SET client_min_messages = warning;
SELECT m.status, m.is_holdout, m.holdout_group, count(*) AS messages, count(l.id) AS links
  FROM smslink.message m LEFT JOIN smslink.link l ON l.message_id = m.id
 WHERE m.campaign_id = :c GROUP BY 1, 2, 3 ORDER BY 1;
SELECT count(*) AS rows_disagreeing_with_in_holdout
  FROM smslink.message m JOIN smslink.subscriber s ON s.id = m.subscriber_id
 WHERE m.campaign_id = :c AND m.is_holdout <> smslink.in_holdout(:c, s.external_key);
-- One at a time: the same answer, a row to record it, nothing to send.
SELECT (SELECT min('hk' || i) FROM generate_series(2001, 2100) i WHERE smslink.in_holdout(:c, 'hk' || i)) AS hk_out \gset
SELECT body IS NULL AS no_body, holdout FROM smslink.prepare_message(:c, 'B', :'hk_out', 'Hi https://shop.example/spring');
-- Receipts for a holdout, or wrapping a body into one, are refused: nothing is sent to it.
SELECT regress.err(format($$SELECT * FROM smslink.wrap(%s, 'Hi https://shop.example/x')$$,
       (SELECT min(id) FROM smslink.message WHERE campaign_id = :c AND is_holdout)));
SELECT regress.err(format('SELECT smslink.mark_delivered(%s, now())',
       (SELECT min(id) FROM smslink.message WHERE campaign_id = :c AND is_holdout)));
-- Metrics leave holdouts out (they were never sent).
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-03-01 10:05+00'))
  FROM smslink.message m WHERE m.campaign_id = :c AND NOT m.is_holdout \g /dev/null
SELECT sent, delivered FROM smslink.campaign_metrics(ARRAY[:c::bigint]);

-- The global control group: held out of every marketing campaign, before any campaign holdout.
UPDATE smslink.brand SET global_holdout_fraction = 0.05 WHERE id = :b;
SELECT count(*) FILTER (WHERE smslink.in_global_holdout(:b, 'hk' || i)) AS global_members,
       count(*) FILTER (WHERE smslink.in_global_holdout(:b, 'hk' || i)
                        <> (regress.holdout_position('smslink.holdout.global', :b, 'hk' || i) < 0.05)) AS disagree_with_sql,
       count(*) FILTER (WHERE smslink.in_global_holdout(:b, 'hk' || i) AND smslink.holdout_group(:c, 'hk' || i) <> 'global') AS not_global_first
  FROM generate_series(1, 2000) i;
SELECT smslink.create_campaign(:b, 'Summer', '{A}') AS c2 \gset
SELECT smslink.create_campaign(:b, 'Receipts', '{A}') AS tx \gset
UPDATE smslink.campaign SET purpose = 'transactional' WHERE id = :tx;
SELECT count(*) FROM smslink.prepare_messages(:c2, 'A', ARRAY(SELECT 'hk' || i FROM generate_series(1, 2000) i), 'Hi https://shop.example/summer') \g /dev/null
SELECT holdout_group, count(*) FROM smslink.message WHERE campaign_id = :c2 GROUP BY 1 ORDER BY 1;
-- Transactional messages are never held out.
SELECT count(*) FILTER (WHERE holdout) AS transactional_held_out
  FROM smslink.prepare_messages(:tx, 'A', ARRAY(SELECT 'hk' || i FROM generate_series(1, 200) i), 'Your order https://shop.example/o');
SELECT regress.err('SELECT smslink.in_global_holdout(999999, ''x'')');

-- Incrementality by hand: tests/fixtures/holdout_hand.sql (20 treatment, 10 control, 1 global).
\i tests/fixtures/holdout_hand.sql
-- Treatment 6/20 = 0.3, control 2/10 = 0.2: lift 0.1, relative lift 0.5, 2 incremental
-- conversions; revenue per recipient 220/20 = 11 against 40/10 = 4: 7 more, 140 in all. Far too
-- small to tell: underpowered (the relative MDE is over 10%).
SELECT treatment_n, control_n, treatment_converted, control_converted, treatment_rate, control_rate,
       round(lift::numeric, 12) AS lift, round(rel_lift::numeric, 12) AS rel_lift,
       round(incremental_conversions::numeric, 9) AS incremental_conversions,
       treatment_revenue_per_recipient, control_revenue_per_recipient, revenue_diff, incremental_revenue,
       window_ends, decision
  FROM smslink.incrementality(:h);
SELECT round(lift_ci_low::numeric, 4) AS lift_lo, round(lift_ci_high::numeric, 4) AS lift_hi,
       round(rel_lift_ci_low::numeric, 4) AS rel_lo, round(rel_lift_ci_high::numeric, 4) AS rel_hi,
       round(p_value::numeric, 4) AS p_value, round(incremental_ci_low::numeric, 3) AS inc_lo,
       round(incremental_ci_high::numeric, 3) AS inc_hi, round(revenue_ci_low::numeric, 3) AS rev_lo,
       round(revenue_ci_high::numeric, 3) AS rev_hi, round(revenue_p_value::numeric, 4) AS rev_p,
       round(mde::numeric, 4) AS mde, round(mde_relative::numeric, 4) AS mde_rel
  FROM smslink.incrementality(:h);
-- Purchases only (t3's signup drops out); a 1-day window (only t2's and t6's count: t1's first
-- is exactly 1 day after, and the window is half-open); and a target lift of +1000%, which an MDE
-- of +240% can detect: no_effect.
SELECT treatment_converted, control_converted, treatment_revenue_per_recipient, decision
  FROM smslink.incrementality(:h, events => '{purchase}');
SELECT treatment_converted, control_converted, decision FROM smslink.incrementality(:h, '1 day');
SELECT decision, round(mde_relative::numeric, 3) AS mde_rel FROM smslink.incrementality(:h, target_relative_lift => 10);

-- h1, held out and then sent the campaign an hour later (say the fraction was lowered), counts
-- once, as treatment, from the first message: 21 against 9, h1's purchase on the treatment side.
INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, created_at)
SELECT :b, :h, v.id, s.id, 'queued', timestamptz '2026-03-01 11:00+00'
  FROM smslink.subscriber s, smslink.variant v WHERE s.brand_id = :b AND s.external_key = 'h1' AND v.campaign_id = :h;
SELECT treatment_n, control_n, treatment_converted, control_converted FROM smslink.incrementality(:h);
DELETE FROM smslink.message WHERE campaign_id = :h AND NOT is_holdout AND status = 'queued';

-- The prepared campaign: windows still open (collecting); with the messages moved back 10 days and
-- conversions for a pseudo-random tenth of subscribers, every count and mean equals plain SQL.
SELECT treatment_n, control_n, decision FROM smslink.incrementality(:c);
UPDATE smslink.message SET created_at = created_at - interval '10 days' WHERE campaign_id = :c;
INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, occurred_at, external_id)
SELECT :b, m.subscriber_id, 'purchase', (abs(hashtext(m.id::text)) % 100)::numeric,
       m.created_at + (abs(hashtext(m.id::text || 'at')) % 240) * interval '1 hour', 'rnd-' || m.id
  FROM smslink.message m WHERE m.campaign_id = :c AND abs(hashtext(m.id::text || 'c')) % 10 < 2;
WITH m AS (SELECT subscriber_id, min(created_at) AS anchor, bool_and(is_holdout) AS control
             FROM smslink.message WHERE campaign_id = :c AND holdout_group IS DISTINCT FROM 'global'
            GROUP BY subscriber_id),
     per AS (SELECT m.control, (SELECT coalesce(sum(v.value), 0) FROM smslink.conversion v
                                  WHERE v.subscriber_id = m.subscriber_id AND v.occurred_at >= m.anchor
                                    AND v.occurred_at < m.anchor + interval '7 days') AS revenue,
                               EXISTS (SELECT 1 FROM smslink.conversion v
                                        WHERE v.subscriber_id = m.subscriber_id AND v.occurred_at >= m.anchor
                                          AND v.occurred_at < m.anchor + interval '7 days') AS converted
               FROM m),
     ref AS (SELECT count(*) FILTER (WHERE NOT control) AS tn, count(*) FILTER (WHERE control) AS cn,
                    count(*) FILTER (WHERE NOT control AND converted) AS tc, count(*) FILTER (WHERE control AND converted) AS cc,
                    avg(revenue) FILTER (WHERE NOT control) AS tr, avg(revenue) FILTER (WHERE control) AS cr
               FROM per)
SELECT ref.tn, ref.cn, ref.tc, ref.cc,
       (i.treatment_n, i.control_n, i.treatment_converted, i.control_converted) = (ref.tn, ref.cn, ref.tc, ref.cc) AS counts_equal,
       abs(i.treatment_revenue_per_recipient - ref.tr) < 1e-9 AND abs(i.control_revenue_per_recipient - ref.cr) < 1e-9 AS revenue_equal,
       abs(i.lift - (ref.tc::float8 / ref.tn - ref.cc::float8 / ref.cn)) < 1e-12 AS lift_equal,
       i.decision
  FROM ref, smslink.incrementality(:c) i;

-- The global control group over March 2026 (only Hand's messages are in the span: the others were
-- prepared today): g1 is the control; Hand's 30 other subscribers, its campaign holdouts
-- included (they are not held out of the brand's other marketing), are the treatment.
SELECT treatment_n, control_n, control_converted, decision
  FROM smslink.global_incrementality(:b, '2026-03-01', '2026-04-01');

-- Bad input.
SELECT regress.err('SELECT * FROM smslink.incrementality(NULL)');
SELECT regress.err('SELECT * FROM smslink.incrementality(999999)');
SELECT regress.err(format($$SELECT * FROM smslink.incrementality(%s, '0 days')$$, :h));
SELECT regress.err(format($$SELECT * FROM smslink.incrementality(%s, NULL)$$, :h));
SELECT regress.err(format('SELECT * FROM smslink.incrementality(%s, confidence => 1.5)', :h));
SELECT regress.err(format('SELECT * FROM smslink.incrementality(%s, power => 0.01)', :h));
SELECT regress.err(format('SELECT * FROM smslink.incrementality(%s, target_relative_lift => 0)', :h));
SELECT regress.err(format($$SELECT * FROM smslink.incrementality(%s, events => '{purchase,NULL}')$$, :h));
SELECT regress.err(format($$SELECT * FROM smslink.global_incrementality(%s, '2026-04-01', '2026-03-01')$$, :b));
SELECT regress.err($$SELECT * FROM smslink.global_incrementality(999999, '2026-03-01', '2026-04-01')$$);
SELECT regress.err($$SELECT * FROM smslink.global_incrementality(NULL, '2026-03-01', '2026-04-01')$$);
