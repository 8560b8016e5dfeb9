-- smslink demo: a brand, a short domain, a two-variant campaign, 10,000 tracked messages,
-- delivery receipts with a realistic spread and a few failures, then a summary.
-- Run by `make demo` on a fresh database with the extension installed.
\pset footer off
\set QUIET on
SELECT setseed(0.42) AS seed \gset

\echo
\echo '== 1. Brand, short domain, campaign with two variants'
SELECT smslink.create_brand('Acme Outdoor') AS brand_id \gset
SELECT smslink.add_domain(:brand_id, 'sms.example.com') AS domain_id \gset
UPDATE smslink.brand SET optout_url_pattern = '/(stop|unsubscribe|optout)\b' WHERE id = :brand_id;
SELECT smslink.create_campaign(:brand_id, 'Black Friday 2026', '{A,B}') AS campaign_id \gset
SELECT b.name AS brand, d.host AS short_domain, d.prefix, d.token_length, c.name AS campaign,
       (SELECT string_agg(v.key, ', ' ORDER BY v.id) FROM smslink.variant v WHERE v.campaign_id = c.id) AS variants
  FROM smslink.campaign c JOIN smslink.brand b ON b.id = c.brand_id JOIN smslink.domain d ON d.brand_id = b.id
 WHERE c.id = :campaign_id;

\echo '== 2. Prepare 10,000 messages (5,000 per variant), each with a CTA and an opt-out link'
\timing on
SELECT count(*) AS variant_a_prepared
  FROM smslink.prepare_messages(:campaign_id, 'A',
       ARRAY(SELECT '+1555' || lpad(i::text, 7, '0') FROM generate_series(1, 5000) i),
       'Acme Outdoor: Black Friday starts now! 30% off every tent: https://acme-outdoor.example/bf?utm_source=sms Reply STOP or acme-outdoor.example/stop');
SELECT count(*) AS variant_b_prepared
  FROM smslink.prepare_messages(:campaign_id, 'B',
       ARRAY(SELECT '+1555' || lpad(i::text, 7, '0') FROM generate_series(5001, 10000) i),
       'Acme Outdoor ⛺ Black Friday: tents 30% off, today only → https://acme-outdoor.example/bf?utm_source=sms&v=b Opt out: https://acme-outdoor.example/stop');
\timing off

\echo '== 3. Sample wrapped messages'
SELECT m.id AS message_id, s.external_key AS subscriber, v.key AS variant, m.encoding, m.segments,
       length(m.body) AS chars, m.body
  FROM smslink.message m
  JOIN smslink.subscriber s ON s.id = m.subscriber_id
  JOIN smslink.variant v ON v.id = m.variant_id
 WHERE m.id IN (SELECT min(id) FROM smslink.message GROUP BY variant_id UNION SELECT max(id) FROM smslink.message)
 ORDER BY m.id;
SELECT l.message_id, l.position, l.kind, 'https://sms.example.com/c/' || l.token AS short_url,
       smslink.link_id(l.token) AS resolves_to_link, l.id AS link_id, l.destination
  FROM smslink.link l WHERE l.message_id = (SELECT min(id) FROM smslink.message)
 ORDER BY l.position;

\echo '== 4. Delivery receipts: sent over 10 minutes, delivered 2-40 s later, about 2% failures'
CREATE TEMP TABLE receipt AS
SELECT m.id,
       timestamptz '2026-11-27 14:00:00+00' + (row_number() OVER (ORDER BY m.id) * interval '60 ms') AS sent_at,
       random() AS r1, random() AS r2
  FROM smslink.message m;
UPDATE smslink.message m SET status = 'sent', sent_at = r.sent_at FROM receipt r WHERE r.id = m.id;
-- Delivery latency: log-normal around 6 s (median), capped at 40 s.
SELECT smslink.mark_delivered(array_agg(id ORDER BY id),
         array_agg(sent_at + least(40, 2 + exp(ln(4) + 0.8 * sqrt(-2 * ln(r1)) * cos(2 * pi() * r2))) * interval '1 s' ORDER BY id))
       AS delivered_receipts
  FROM receipt WHERE r1 > 0.021;
SELECT smslink.mark_failed(array_agg(id ORDER BY id), array_agg(sent_at + interval '3 s' ORDER BY id),
         array_agg(CASE WHEN r2 < 0.5 THEN 'carrier 30003: unreachable handset' ELSE 'carrier 30007: filtered' END ORDER BY id))
       AS failed_receipts
  FROM receipt WHERE r1 <= 0.021;
-- Replaying a batch of receipts is harmless.
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(m.delivered_at)) AS replayed_changes
  FROM smslink.message m WHERE m.status = 'delivered' AND m.id % 10 = 0;

\echo '== 5. Click partitions ready for the next months (clicks arrive in later demos)'
SELECT string_agg(p, ', ') AS partitions_created FROM smslink.ensure_partitions('2 months') p;

\echo '== 6. Totals'
SELECT v.key AS variant, count(*) AS messages, min(m.encoding) AS encoding, max(m.segments) AS segments,
       count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       round(100.0 * count(*) FILTER (WHERE m.status = 'delivered') / count(*), 2) AS delivery_rate_pct,
       sum(m.segments) AS billable_segments
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id
 GROUP BY v.key ORDER BY v.key;
SELECT count(*) AS links, count(*) FILTER (WHERE kind = 'cta') AS cta, count(*) FILTER (WHERE kind = 'optout') AS optout,
       count(DISTINCT token) AS distinct_tokens,
       count(*) FILTER (WHERE smslink.link_id(token) = id) AS tokens_resolving
  FROM smslink.link;
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - sent_at))::numeric, 1) AS delivery_p50_s,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - sent_at))::numeric, 1) AS delivery_p90_s,
       max(delivered_at) - min(sent_at) AS send_window
  FROM smslink.message WHERE status = 'delivered';
SELECT failure_reason, count(*) FROM smslink.message WHERE status = 'failed' GROUP BY 1 ORDER BY 1;
