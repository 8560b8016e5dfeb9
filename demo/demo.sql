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

\echo '== 5. Click partitions ready for the next months'
SELECT string_agg(p, ', ') AS partitions_created FROM smslink.ensure_partitions('2 months') p;

\echo '== 6. Clicks through smslink.track_click, the call the redirect proxy makes per tap'
-- About 11% (A) and 14% (B) of delivered subscribers tap the CTA, after a log-normal delay
-- (median about 3 minutes); a fifth of them tap again later; some phones fetch a preview
-- (HEAD) a second after delivery; a few browsers prefetch; a few subscribers tap the opt-out link.
CREATE TEMP TABLE tap AS
WITH d AS (
    SELECT m.id, m.delivered_at, v.key, random() AS r, random() AS u1, random() AS u2
      FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id
     WHERE m.status = 'delivered'
)
SELECT l.token, d.delivered_at + (exp(ln(180) + 1.1 * sqrt(-2 * ln(d.u1)) * cos(2 * pi() * d.u2)) * interval '1 s') AS at,
       'GET' AS method, '{}'::jsonb AS headers, d.id AS message_id
  FROM d JOIN smslink.link l ON l.message_id = d.id AND l.kind = 'cta'
 WHERE d.r < CASE d.key WHEN 'A' THEN 0.11 ELSE 0.14 END
UNION ALL
SELECT l.token, d.delivered_at + (3600 * d.u1 + 600) * interval '1 s', 'GET', '{}', d.id
  FROM d JOIN smslink.link l ON l.message_id = d.id AND l.kind = 'cta'
 WHERE d.r < CASE d.key WHEN 'A' THEN 0.11 ELSE 0.14 END AND d.u2 < 0.2
UNION ALL
SELECT l.token, d.delivered_at + interval '1 s', 'HEAD', '{}', d.id
  FROM d JOIN smslink.link l ON l.message_id = d.id AND l.kind = 'cta'
 WHERE d.u1 < 0.06
UNION ALL
SELECT l.token, d.delivered_at + interval '2 s', 'GET', '{"Sec-Purpose": "prefetch"}', d.id
  FROM d JOIN smslink.link l ON l.message_id = d.id AND l.kind = 'cta'
 WHERE d.u2 < 0.02
UNION ALL
SELECT l.token, d.delivered_at + interval '5 min', 'GET', '{}', d.id
  FROM d JOIN smslink.link l ON l.message_id = d.id AND l.kind = 'optout'
 WHERE d.r > 0.996;
-- Forged tokens, as a scanner would send: rejected without touching a table.
INSERT INTO tap SELECT '1' || substr(md5(i::text), 1, 8), now(), 'GET', '{}', NULL FROM generate_series(1, 500) i;
\timing on
SELECT t.status, count(*) AS requests
  FROM tap, LATERAL smslink.track_click(tap.token, 'sms.example.com', tap.method,
       'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
       '203.0.113.10', NULL, tap.headers, tap.at) t
 GROUP BY 1 ORDER BY 1;
\timing off
SELECT class, count(*) AS hits, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct
  FROM smslink.click GROUP BY class ORDER BY class;
SELECT * FROM smslink.rejected_requests();
\echo 'CTR = unique human clicks on non-opt-out links / delivered messages'
SELECT v.key AS variant,
       count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(DISTINCT k.message_id) AS unique_clicks,
       count(k.id) AS total_clicks,
       round(100.0 * count(DISTINCT k.message_id) / count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered'), 2) AS ctr_pct,
       round(count(k.id)::numeric / nullif(count(DISTINCT k.message_id), 0), 2) AS repeat_click_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY k.seconds_since_delivery) FILTER (WHERE k.is_first))::numeric / 60, 1) AS time_to_click_p50_min
  FROM smslink.message m
  JOIN smslink.variant v ON v.id = m.variant_id
  LEFT JOIN smslink.click k ON k.message_id = m.id AND k.class = 'human'
        AND k.link_id IN (SELECT id FROM smslink.link WHERE message_id = m.id AND kind <> 'optout')
 GROUP BY v.key ORDER BY v.key;

\echo '== 7. Totals'
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
