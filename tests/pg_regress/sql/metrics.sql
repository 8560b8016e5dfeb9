-- Metrics against a small history counted by hand (the expected numbers are in the comments).
\pset footer off
SET client_min_messages = warning;
-- (pg_regress feeds this file on standard input from the repository root: \i is relative to it)
\i tests/fixtures/metrics_history.sql

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
