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
-- Landing pages learn the click id (smsclid=...), and the shop posts orders back, signed with
-- the brand's postback secret (step 8).
UPDATE smslink.campaign SET click_param = 'smsclid={click_id}' WHERE id = :campaign_id;
SELECT smslink.rotate_postback_secret(:brand_id) IS NOT NULL AS postback_secret_created \gset
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

\echo '== 4. Delivery receipts: about 2% failures, delivery 2-40 s after sending'
-- The taps in step 6 travel over real HTTP now, and the proxy stamps each click with the time it
-- arrives. So the receipts are back-dated: each subscriber's message was delivered as long ago as
-- that subscriber waits before tapping (log-normal, median about 3 minutes), and the time from
-- delivery to click that the database measures is a realistic one.
CREATE TABLE demo_plan AS
SELECT m.id, v.key, m.subscriber_id, random() AS r, random() AS u1, random() AS u2,
       random() AS z1, random() AS z2, random() AS f
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id;
ALTER TABLE demo_plan ADD COLUMN clicker boolean, ADD COLUMN age interval;
UPDATE demo_plan SET clicker = f > 0.021 AND r < CASE key WHEN 'A' THEN 0.11 ELSE 0.14 END;
UPDATE demo_plan SET age = CASE
    WHEN clicker THEN least(7200, exp(ln(180) + 1.1 * sqrt(-2 * ln(z1)) * cos(2 * pi() * z2))) * interval '1 s'
    WHEN r > 0.996 THEN interval '5 min'                      -- taps the opt-out link
    WHEN u1 < 0.10 OR u2 < 0.02 THEN interval '2 s'           -- a preview fetch right after delivery
    WHEN r BETWEEN 0.5 AND 0.52 THEN (1 + 4 * z1) * interval '1 s' -- opened by a scanner 1-5 s after delivery
    ELSE (60 + 840 * z1) * interval '1 s' END;                -- everyone else: within the last 15 min
SELECT now() AS t0 \gset
UPDATE smslink.message m
   SET status = 'sent',
       sent_at = :'t0'::timestamptz - p.age - least(40, 2 + exp(ln(4) + 0.8 * sqrt(-2 * ln(p.z2)) * cos(2 * pi() * p.z1))) * interval '1 s'
  FROM demo_plan p WHERE p.id = m.id;
SELECT smslink.mark_delivered(array_agg(p.id ORDER BY p.id), array_agg(:'t0'::timestamptz - p.age ORDER BY p.id))
       AS delivered_receipts
  FROM demo_plan p WHERE p.f > 0.021;
SELECT smslink.mark_failed(array_agg(m.id ORDER BY m.id), array_agg(m.sent_at + interval '3 s' ORDER BY m.id),
         array_agg(CASE WHEN p.r < 0.5 THEN 'carrier 30003: unreachable handset' ELSE 'carrier 30007: filtered' END ORDER BY m.id))
       AS failed_receipts
  FROM demo_plan p JOIN smslink.message m ON m.id = p.id WHERE p.f <= 0.021;
-- Replaying a batch of receipts is harmless.
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(m.delivered_at)) AS replayed_changes
  FROM smslink.message m WHERE m.status = 'delivered' AND m.id % 10 = 0;

\echo '== 5. Click partitions ready for the next months'
SELECT count(*) AS partitions_created FROM smslink.ensure_partitions('2 months') p;

-- The taps step 6 sends through the proxy, each with the truth the demo knows:
-- - humans: about 11% (A) and 14% (B) of delivered subscribers tap the CTA from their phone's
--   browser (a few from an in-app browser), a fifth of them tap again; a few tap the opt-out link;
-- - previews: iMessage (HEAD and GET), Google Messages and WhatsApp fetch the link as it lands,
--   and a few browsers prefetch;
-- - bots: a search crawler and an HTTP library that found links;
-- - a security scanner opens 2% of the messages 1-5 s after delivery from one data-centre
--   address, behind a desktop Chrome User-Agent;
-- - another scanner tries 500 forged tokens.
-- demo.sh turns each row into one HTTP request.
INSERT INTO smslink.ip_range (range, label, class) VALUES ('192.0.2.0/24', 'demo-cloud', 'suspect');
CREATE TABLE demo_tap AS
WITH ua(k, agent) AS (VALUES
    (0, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
    (1, 'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1'),
    (2, 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36'),
    (3, 'Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36'),
    (4, 'Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
    (5, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 309.0.0.28.111 (iPhone14,2; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 541635890)')),
p AS (
    SELECT p.*, l.token AS cta, o.token AS optout, u.agent,
           -- each subscriber taps from their own phone's address (IPv6 documentation prefix)
           format('2001:db8:%s::1', to_hex(p.subscriber_id)) AS ip
      FROM demo_plan p
      JOIN smslink.message m ON m.id = p.id AND m.status = 'delivered'
      JOIN smslink.link l ON l.message_id = p.id AND l.kind = 'cta'
      JOIN smslink.link o ON o.message_id = p.id AND o.kind = 'optout'
      JOIN ua u ON u.k = CASE WHEN p.subscriber_id % 20 = 0 THEN 4 WHEN p.subscriber_id % 25 = 1 THEN 5 ELSE p.subscriber_id % 4 END
)
SELECT 1 AS phase, 'preview' AS truth, cta AS token, 'HEAD' AS method, NULL AS purpose,
       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0' AS agent, ip
  FROM p WHERE u1 < 0.04
UNION ALL SELECT 1, 'preview', cta, 'GET', NULL,
       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0', ip
  FROM p WHERE u1 >= 0.04 AND u1 < 0.06
UNION ALL SELECT 1, 'preview', cta, 'GET', NULL,
       'Mozilla/5.0 (Linux; Android 11; Pixel 5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 Mobile Safari/537.36 Google-PageRenderer Google (+https://developers.google.com/+/web/snippet/)', ip
  FROM p WHERE u1 >= 0.06 AND u1 < 0.09
UNION ALL SELECT 1, 'preview', cta, 'GET', NULL, 'WhatsApp/2.23.20.0 A', ip FROM p WHERE u1 >= 0.09 AND u1 < 0.10
UNION ALL SELECT 1, 'preview', cta, 'GET', 'prefetch', agent, ip FROM p WHERE u2 < 0.02
UNION ALL SELECT 2, 'human', cta, 'GET', NULL, agent, ip FROM p WHERE clicker
UNION ALL SELECT 2, 'human', optout, 'GET', NULL, agent, ip FROM p WHERE r > 0.996
UNION ALL SELECT 3, 'human', cta, 'GET', NULL, agent, ip FROM p WHERE clicker AND u2 < 0.2
UNION ALL SELECT 2, 'scanner', cta, 'GET', NULL,
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36', '192.0.2.10'
  FROM p WHERE r BETWEEN 0.5 AND 0.52
UNION ALL SELECT 2, 'bot', cta, 'GET', NULL, 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)', '66.249.66.1'
  FROM p WHERE r > 0.9 AND u2 > 0.995
UNION ALL SELECT 2, 'bot', cta, 'GET', NULL, 'python-requests/2.31.0', '198.51.100.7'
  FROM p WHERE r > 0.9 AND u1 > 0.995
UNION ALL SELECT 2, 'forged', '1' || substr(md5(i::text), 1, 8), 'GET', NULL, 'python-requests/2.31.0', '198.51.100.7'
  FROM generate_series(1, 500) i;
SELECT truth, count(*) AS taps FROM demo_tap GROUP BY truth ORDER BY truth;
-- Whose phone each tap comes from (demo.sh matches landing URLs to buyers with it).
ALTER TABLE demo_tap ADD COLUMN who text, ADD COLUMN kind text;
UPDATE demo_tap t SET who = s.external_key, kind = l.kind
  FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
  JOIN smslink.subscriber s ON s.id = m.subscriber_id
 WHERE l.token = t.token;
-- Who buys after the send, and how (step 8):
-- - web: a third of the human clickers order on the landing page; the shop's server sends a
--   signed postback with the click id it read from the landing URL;
-- - phone: a tenth of the clickers order by phone; the call centre records the order with
--   smslink.record_conversion (no click id);
-- - store: 1.5% of delivered subscribers who never tapped buy in a store (record_conversion);
-- - emailed: 30% of buyers, and 3% of everyone else, also clicked the newsletter (touchpoints).
CREATE TABLE demo_buyer AS
SELECT s.external_key AS who, p.subscriber_id,
       CASE WHEN p.clicker AND p.z1 < 0.33 THEN 'web'
            WHEN p.clicker AND p.z1 < 0.43 THEN 'phone'
            WHEN NOT p.clicker AND p.f > 0.021 AND p.r > 0.3 AND p.z1 < 0.015 THEN 'store' END AS via,
       round((20 + 180 * p.z2)::numeric, 2) AS value,
       p.u2 > 0.7 AS emailed
  FROM demo_plan p JOIN smslink.subscriber s ON s.id = p.subscriber_id;
DELETE FROM demo_buyer WHERE via IS NULL AND NOT (emailed AND subscriber_id % 10 = 0);
SELECT coalesce(via, '(none: newsletter click only)') AS buys_via, count(*) AS subscribers,
       count(*) FILTER (WHERE emailed) AS also_clicked_the_newsletter
  FROM demo_buyer GROUP BY via ORDER BY via;
-- A random sending order, fixed once, that demo.sh deals out to its clients.
ALTER TABLE demo_tap ADD COLUMN n bigint;
UPDATE demo_tap SET n = o.n FROM (SELECT ctid, row_number() OVER (ORDER BY random()) AS n FROM demo_tap) o
 WHERE demo_tap.ctid = o.ctid;
