-- Metrics against a small history counted by hand (the expected numbers are in the comments).
\pset footer off
SET client_min_messages = warning;
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

-- M1 by hand: sent 9 (8 delivered + a9 failed; b9 was never sent), delivery rate 8/9;
-- unique clicks 4 (a1, a2, b1, b2; a4's opt-out tap and a3's bot hit do not count), total 5,
-- CTR 4/8, repeat rate 5/4; clickers converted 1 (b2), CTCR 1/4, conversions 1, revenue 30,
-- RPM 30/8 = 3.75; opt-outs 1 (a4), rate 1/8; hits: human 6 (a4's opt-out tap included),
-- preview 1, bot 1, bot share 2/8; time to click of the first counted clicks 120, 1800, 300 and
-- 900 s: p50 600, p90 900 + 0.7 × 900 = 1530. M2: 1 sent, 1 delivered, 1 unique click after
-- 1200 s, a1's purchase ($100).
SELECT campaign, sent, delivered, failed, round(delivery_rate::numeric, 4) AS delivery_rate,
       unique_clicks, total_clicks, ctr, repeat_click_rate, clickers_converted, ctcr, conversions,
       revenue, rpm, opt_outs, opt_out_rate, human_hits, preview_hits, bot_hits, scanner_hits,
       suspect_hits, bot_share, ttc_p50_seconds, ttc_p90_seconds
  FROM smslink.campaign_metrics(ARRAY[:c, :c2]::bigint[]) \gx
-- Per variant: A has a1, a2 (3 clicks), a4's opt-out, a9 failed; B has b1, b2 and b9 unsent.
SELECT variant, sent, delivered, failed, unique_clicks, total_clicks, ctr, conversions, revenue, opt_outs,
       human_hits, preview_hits, bot_hits, ttc_p50_seconds
  FROM smslink.variant_metrics(:c);
-- Including previews: a2's preview joins her click (same unique clicks), total clicks 6.
SELECT unique_clicks, total_clicks FROM smslink.campaign_metrics(ARRAY[:c]::bigint[], include_classes => '{human,preview}');
-- The time range selects messages by send time: M1's B messages were sent after 23:00.
SELECT sent, delivered, unique_clicks FROM smslink.campaign_metrics(ARRAY[:c]::bigint[], '2026-02-10 23:00+00', '2026-02-11 00:00+00');
-- Last-click over a 7-day window credits b1's purchase too (b2 30 + b1 50; a1's stays with M2).
SELECT conversions, revenue, clickers_converted FROM smslink.campaign_metrics(ARRAY[:c]::bigint[], attribution_model => 'last_click', click_window => '7 days');

-- Breakdowns. Hours and days in UTC, then in Berlin (B crosses midnight into Wednesday).
SELECT key, sent, delivered, unique_clicks, ctr FROM smslink.breakdown(:c, 'hour_of_day');
SELECT key, sent, delivered, unique_clicks, ctr FROM smslink.breakdown(:c, 'hour_of_day', 'Europe/Berlin');
SELECT key, delivered, unique_clicks FROM smslink.breakdown(:c, 'day_of_week');
SELECT key, delivered, unique_clicks FROM smslink.breakdown(:c, 'day_of_week', 'Europe/Berlin');
-- Segments: a1 is vip and new, b1 vip; everyone else is in no segment.
SELECT key, sent, delivered, unique_clicks, conversions FROM smslink.breakdown(:c, 'segment');
-- Click-level dimensions: clicks split by device and OS, against all 8 delivered messages.
SELECT key, delivered, unique_clicks, total_clicks, ctr, conversions FROM smslink.breakdown(:c, 'device');
SELECT key, unique_clicks, total_clicks FROM smslink.breakdown(:c, 'os');
SELECT key, unique_clicks, total_clicks, human_hits FROM smslink.breakdown(:c, 'link_kind');
SELECT key, ctr FROM smslink.breakdown(:c, 'variant');

-- Links: the CTA and the opt-out link apart; opt-out clicks are never engagement.
SELECT * FROM smslink.link_metrics(:c);

-- Time to click in 5-minute buckets up to an hour: 120 s, 300 s, 900 s and 1800 s.
SELECT bucket_start, bucket_end, clicks, share, cumulative_share
  FROM smslink.time_to_click(:c, '5 minutes', '1 hour') WHERE clicks > 0 OR bucket_start < '15 minutes';

-- Daily series by delivery day.
SELECT * FROM smslink.daily_metrics('2026-02-01', '2026-03-01', :b);
SELECT day, delivered FROM smslink.daily_metrics('2026-02-01', '2026-03-01', :b, 'Europe/Berlin');

-- BI views, with descriptions.
SELECT campaign, sent, delivered, unique_clicks, ctr FROM smslink.campaign_report WHERE campaign_id IN (:c, :c2);
SELECT campaign, variant, delivered, unique_clicks FROM smslink.variant_report WHERE campaign_id = :c;
SELECT col_description('smslink.campaign_report'::regclass, attnum) AS ctr_description
  FROM pg_attribute WHERE attrelid = 'smslink.campaign_report'::regclass AND attname = 'ctr';
SELECT count(*) FILTER (WHERE col_description('smslink.campaign_report'::regclass, attnum) IS NULL) AS columns_without_description
  FROM pg_attribute WHERE attrelid = 'smslink.campaign_report'::regclass AND attnum > 0;

-- Every function of the extension has a description too.
SELECT array_agg(proname) AS functions_without_description FROM pg_proc
 WHERE pronamespace = 'smslink'::regnamespace AND obj_description(oid, 'pg_proc') IS NULL;

-- Anomalies: M1's bot share (2 of 8 hits) is no spike; a campaign delivered with no clicks is.
SELECT smslink.create_campaign(:b, 'Silent') AS c3 \gset
SELECT count(*) FROM smslink.prepare_messages(:c3, 'A', ARRAY(SELECT 'q' || i FROM generate_series(1, 60) i), 'Hi https://shop.example/q') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-02-10 09:00+00')) FROM smslink.message m WHERE m.campaign_id = :c3 \g /dev/null
SELECT kind, subject, observed, expected, message FROM smslink.anomalies('2026-02-10', '2026-02-11');

-- Every other kind of finding, in April 2026. Baselines: the 30 days before hold only the
-- attribution test's human clicks (bot share 0, so the threshold is 0 + 0.2) and fewer than 100
-- sends (delivery rate: the default 0.95).
-- - Spiky: 30 hits, 20 of them bots (share 0.667 > 0.5) and 3 human clicks on expired links;
-- - Lossy: 100 sent, 70 delivered (0.70 < 0.85);
-- - 5,000 rejected tokens between the snapshots bracketing the range, against 10 human clicks.
SELECT smslink.create_campaign(:b, 'Spiky') AS c4 \gset
SELECT smslink.create_campaign(:b, 'Lossy') AS c5 \gset
SELECT count(*) FROM smslink.prepare_messages(:c4, 'A', ARRAY(SELECT 'sp' || i FROM generate_series(1, 10) i), 'Hi https://shop.example/sp') \g /dev/null
SELECT count(*) FROM smslink.prepare_messages(:c5, 'A', ARRAY(SELECT 'lo' || i FROM generate_series(1, 100) i), 'Hi https://shop.example/lo') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-04-10 09:00+00')) FROM smslink.message m WHERE m.campaign_id = :c4 \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id ORDER BY m.id), array_agg(timestamptz '2026-04-10 09:00+00'))
  FROM (SELECT id FROM smslink.message WHERE campaign_id = :c5 ORDER BY id LIMIT 70) m \g /dev/null
SELECT smslink.mark_failed(array_agg(m.id), array_agg(timestamptz '2026-04-10 09:00+00'), array_agg('carrier 30007'::text))
  FROM smslink.message m WHERE m.campaign_id = :c5 AND m.status = 'queued' \g /dev/null
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method, class, expired)
SELECT timestamptz '2026-04-10 09:30+00' + g * interval '1 minute', m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id,
       l.id, 'cta', 'GET', CASE WHEN g <= 20 THEN 'bot' ELSE 'human' END, g > 27
  FROM generate_series(1, 30) g
  JOIN LATERAL (SELECT * FROM smslink.message WHERE campaign_id = :c4 ORDER BY id OFFSET g % 10 LIMIT 1) m ON true
  JOIN smslink.link l ON l.message_id = m.id;
INSERT INTO smslink.rejection_snapshot VALUES ('2026-04-01 00:00+00', 100, 0), ('2026-04-20 00:00+00', 5000, 100);
SELECT kind, subject, round(observed::numeric, 3) AS observed, round(expected::numeric, 3) AS expected, message
  FROM smslink.anomalies('2026-04-01', '2026-05-01') ORDER BY kind, subject;
-- snapshot_rejections records the counters now.
SELECT smslink.snapshot_rejections() IS NOT NULL AS snapshot_taken;
SELECT count(*) AS snapshots FROM smslink.rejection_snapshot;
SELECT regress.err($q$SELECT * FROM smslink.anomalies('2026-05-01', '2026-04-01')$q$);

-- Bad input, each with a clear error.
SELECT regress.err(format($q$SELECT * FROM smslink.breakdown(%s, 'colour')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.breakdown(%s, 'hour_of_day', 'Mars/Olympus')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.time_to_click(%s, '0 minutes')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.time_to_click(%s, '-1 minute')$q$, :c));
SELECT regress.err(format($q$SELECT * FROM smslink.campaign_metrics(include_classes => '{human,robot}')$q$));
SELECT regress.err(format($q$SELECT * FROM smslink.campaign_metrics(include_classes => '{}')$q$));
SELECT regress.err($q$SELECT * FROM smslink.variant_metrics(999999)$q$);
SELECT regress.err($q$SELECT * FROM smslink.campaign_metrics(from_ts => '2026-03-01', to_ts => '2026-02-01')$q$);
SELECT regress.err($q$SELECT * FROM smslink.campaign_metrics(attribution_model => 'first_touch')$q$);
SELECT regress.err($q$SELECT * FROM smslink.daily_metrics(NULL, now())$q$);
