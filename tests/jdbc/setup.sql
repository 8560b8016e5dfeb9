-- Data for the JDBC test (tests/jdbc/MetricsJdbcTest.java): the hand-counted history of
-- tests/pg_regress/sql/metrics.sql, on its own in a fresh database, so the expected numbers are
-- the ones in tests/pg_regress/expected/metrics.out. The one change: the silent campaign that
-- anomalies must find belongs to a second brand, so that the first brand's daily series keeps
-- the regress numbers although every row is written before the test reads any.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS smslink;
SELECT smslink.create_brand('Metrics Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.metrics.example') AS d \gset
SELECT smslink.create_campaign(:b, 'M1', '{A,B}') AS c \gset
SELECT smslink.create_campaign(:b, 'M2') AS c2 \gset
-- M1: variant A to a1..a4 and a9, B to b1..b4 and b9; every message has a CTA and an opt-out link.
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', '{a1,a2,a3,a4,a9}', 'Sale https://shop.example/m1 STOP https://shop.example/stop', '{cta,optout}') \g /dev/null
SELECT count(*) FROM smslink.prepare_messages(:c, 'B', '{b1,b2,b3,b4,b9}', 'Sale https://shop.example/m1b STOP https://shop.example/stop', '{cta,optout}') \g /dev/null
-- M2: another campaign to a1, whose clicks must not count in M1.
SELECT count(*) FROM smslink.prepare_messages(:c2, 'A', '{a1}', 'Other https://shop.example/m2') \g /dev/null
CREATE TEMP VIEW msg AS
SELECT s.external_key AS who, m.id, m.campaign_id,
       (SELECT l.id FROM smslink.link l WHERE l.message_id = m.id AND l.kind = 'cta') AS cta,
       (SELECT l.id FROM smslink.link l WHERE l.message_id = m.id AND l.kind = 'optout') AS optout
  FROM smslink.message m JOIN smslink.subscriber s ON s.id = m.subscriber_id;
-- A delivered Tuesday 2026-02-10 09:00 UTC; B at 23:30 UTC (00:30 Wednesday in Berlin);
-- a9 failed; b9 never sent (queued); M2 delivered at 09:00 too.
SELECT smslink.mark_delivered(array_agg(id), array_agg(timestamptz '2026-02-10 09:00+00'))
  FROM msg WHERE campaign_id = :c AND who IN ('a1', 'a2', 'a3', 'a4') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(timestamptz '2026-02-10 23:30+00'))
  FROM msg WHERE campaign_id = :c AND who IN ('b1', 'b2', 'b3', 'b4') \g /dev/null
SELECT smslink.mark_failed((SELECT id FROM msg WHERE who = 'a9'), '2026-02-10 09:00+00', 'carrier 30003') \g /dev/null
SELECT smslink.mark_delivered((SELECT id FROM msg WHERE campaign_id = :c2), '2026-02-10 09:00+00') \g /dev/null
-- Clicks, written directly (class and device as the classifier would have logged them):
--   a1: human 09:02 and 09:10 (mobile, iPhone)   a2: preview 09:00:02, human 09:30 (desktop, Windows)
--   a3: bot only                                  a4: human on the opt-out link 09:05, then opts out
--   b1: human 23:35 (tablet, iPad)                b2: human 23:45 (mobile, Android)
--   a1 on M2: human 09:20 (not M1's)
CREATE TEMP TABLE hit (who text, camp bigint, kind text, at timestamptz, class text, device text, ua text);
INSERT INTO hit VALUES
  ('a1', :c, 'cta', '2026-02-10 09:02+00', 'human', 'mobile', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
  ('a1', :c, 'cta', '2026-02-10 09:10+00', 'human', 'mobile', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
  ('a2', :c, 'cta', '2026-02-10 09:00:02+00', 'preview', 'other', 'WhatsApp/2.23.20.0 A'),
  ('a2', :c, 'cta', '2026-02-10 09:30+00', 'human', 'desktop', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'),
  ('a3', :c, 'cta', '2026-02-10 09:01+00', 'bot', 'other', 'python-requests/2.31.0'),
  ('a4', :c, 'optout', '2026-02-10 09:05+00', 'human', 'mobile', 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36'),
  ('b1', :c, 'cta', '2026-02-10 23:35+00', 'human', 'tablet', 'Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
  ('b2', :c, 'cta', '2026-02-10 23:45+00', 'human', 'mobile', 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36'),
  ('a1', :c2, 'cta', '2026-02-10 09:20+00', 'human', 'mobile', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1');
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id,
                           link_kind, method, class, device, user_agent, seconds_since_delivery)
SELECT h.at, m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id,
       CASE h.kind WHEN 'cta' THEN x.cta ELSE x.optout END, h.kind, 'GET', h.class, h.device, h.ua,
       extract(epoch FROM h.at - m.delivered_at)
  FROM hit h JOIN msg x ON x.who = h.who AND x.campaign_id = h.camp JOIN smslink.message m ON m.id = x.id;
UPDATE smslink.subscriber SET opted_out_at = '2026-02-10 09:05+00' WHERE external_key = 'a4';
UPDATE smslink.subscriber SET segments = '{vip,new}' WHERE external_key = 'a1';
UPDATE smslink.subscriber SET segments = '{vip}' WHERE external_key = 'b1';
-- Purchases: a1 at 12:00 ($100: her last SMS click, at 09:20, was on M2's link, so M2 gets it),
-- b2 the next morning ($30, credited to M1), b1 24 h 25 min after his click ($50: outside the
-- 24-hour window, not credited).
SELECT smslink.record_conversion(:b, 'a1', 'purchase', 100, 'USD', '2026-02-10 12:00+00', 'm-o1') \g /dev/null
SELECT smslink.record_conversion(:b, 'b2', 'purchase', 30, 'USD', '2026-02-11 10:00+00', 'm-o2') \g /dev/null
SELECT smslink.record_conversion(:b, 'b1', 'purchase', 50, 'USD', '2026-02-12 00:00+00', 'm-o3') \g /dev/null
-- Anomalies: a campaign delivered to 60 subscribers with no click at all (a tracking failure),
-- under a second brand.
SELECT smslink.create_brand('Quiet Co') AS b2 \gset
SELECT smslink.add_domain(:b2, 'go.quiet.example') AS d2 \gset
SELECT smslink.create_campaign(:b2, 'Silent') AS c3 \gset
SELECT count(*) FROM smslink.prepare_messages(:c3, 'A', ARRAY(SELECT 'q' || i FROM generate_series(1, 60) i), 'Hi https://shop.example/q') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-02-10 09:00+00')) FROM smslink.message m WHERE m.campaign_id = :c3 \g /dev/null
