-- The click classifier: smslink.classify, rules, IP ranges, settings, the hot path's timing and
-- behaviour signals, and reclassify over a history that changes.
\pset footer off
\set iphone '''Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'''
\set chrome '''Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36'''

-- 1. smslink.classify: one row per request, class and reason codes.
SELECT v.label, c.class, c.reasons
  FROM (VALUES
    ('iphone safari', :iphone),
    ('imessage', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0'),
    ('google messages', 'Mozilla/5.0 (Linux; Android 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0 Mobile Safari/537.36 Google-PageRenderer Google (+https://developers.google.com/+/web/snippet/)'),
    ('whatsapp', 'WhatsApp/2.23.20.0 A'),
    ('slack', 'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)'),
    ('googlebot', 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'),
    ('curl', 'curl/8.4.0'),
    ('python', 'python-requests/2.31.0'),
    ('headless', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36'),
    ('uptime', 'Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)'),
    ('scanner', 'Mozilla/5.0 (compatible; Barracuda Sentinel)'),
    ('facebook in-app', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.35.111;FBBV/1;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]'),
    ('tiktok in-app', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US BytedanceWebview/d8a21c6'),
    ('no user agent', NULL),
    ('empty user agent', '')) v(label, ua_string),
       LATERAL smslink.classify(v.ua_string) c;
-- Request signals.
SELECT 'head' AS request, * FROM smslink.classify(:iphone, 'HEAD');
SELECT 'prefetch' AS request, * FROM smslink.classify(:iphone, 'GET', '{"Sec-Purpose": "prefetch;prerender"}');
SELECT 'scanner referrer' AS request, * FROM smslink.classify(:iphone, 'GET', '{}', NULL, NULL, 'https://urlscan.io/result/1/');
-- Timing: the default threshold is 3 seconds; before delivery allows 2 seconds of clock skew.
SELECT s AS seconds, c.class, c.reasons
  FROM unnest(ARRAY[-30, -1, 0.5, 2.9, 3, 45, 7200]::float8[]) s, LATERAL smslink.classify(:iphone, 'GET', '{}', NULL, s) c;
SET smslink.classifier_min_human_seconds = 1;
SELECT 'threshold 1 s' AS setting, * FROM smslink.classify(:iphone, 'GET', '{}', NULL, 2);
RESET smslink.classifier_min_human_seconds;
SHOW smslink.classifier_min_human_seconds;
SELECT regress.err($$SET smslink.classifier_min_human_seconds = -1$$);

-- 2. IP ranges: the starter set, the most specific range wins, its class decides.
SELECT count(*) > 5 AS starter_ranges, bool_and(source = 'starter') AS all_starter FROM smslink.ip_range;
SELECT * FROM smslink.classify(:chrome, 'GET', '{}', '66.249.66.1', 600);
INSERT INTO smslink.ip_range (range, label, class) VALUES
    ('192.0.2.0/24', 'test-cloud', 'suspect'),
    ('192.0.2.128/25', 'test-scanner-vendor', 'scanner'),
    ('198.51.100.0/24', 'acme-office', 'human');
SELECT ip, c.class, c.reasons
  FROM unnest(ARRAY['192.0.2.1', '192.0.2.200', '198.51.100.9', '203.0.113.1']::inet[]) ip,
       LATERAL smslink.classify(:chrome, 'GET', '{}', ip, 600) c;
-- A data-centre address alone is only suspect; with a too-fast click it is a scanner.
SELECT * FROM smslink.classify(:chrome, 'GET', '{}', '192.0.2.1', 1.5);
SELECT regress.err($$INSERT INTO smslink.ip_range (range, label, class) VALUES ('10.0.0.0/8', 'Bad Label', 'bot')$$);
SELECT regress.err($$INSERT INTO smslink.ip_range (range, label, class) VALUES ('10.0.0.0/8', 'lan', 'friendly')$$);
-- The lookup is indexed: with 100,000 ranges loaded the plan uses the GiST index.
INSERT INTO smslink.ip_range (range, label, class)
SELECT set_masklen(('10.0.0.0'::inet + (i::bigint * 256)), 24)::cidr, 'bulk', 'suspect' FROM generate_series(1, 100000) i;
ANALYZE smslink.ip_range;
SELECT count(*) AS ranges FROM smslink.ip_range;
EXPLAIN (COSTS OFF) SELECT label, class FROM smslink.ip_range WHERE range >>= '10.1.2.3'::inet ORDER BY masklen(range) DESC, id LIMIT 1;
SELECT * FROM smslink.classify(:chrome, 'GET', '{}', '10.1.2.3', 600);
DELETE FROM smslink.ip_range WHERE label = 'bulk';

-- 3. Users' rules come before the built-in ones; bad rules are refused with a clear error.
SELECT * FROM smslink.classify('AcmeShopApp/5.1 okhttp/4.12.0');
INSERT INTO smslink.classifier_rule (class, reason, pattern, note)
VALUES ('human', 'ua:in_app:acme', '^AcmeShopApp/', 'our own app opens links with okhttp');
SELECT * FROM smslink.classify('AcmeShopApp/5.1 okhttp/4.12.0');
SELECT regress.err($$INSERT INTO smslink.classifier_rule (class, reason, pattern) VALUES ('bot', 'ua:bot:x', '(unclosed')$$);
SELECT regress.err($$INSERT INTO smslink.classifier_rule (class, reason, pattern) VALUES ('suspect', 'x', 'y')$$);
SELECT regress.err($$INSERT INTO smslink.classifier_rule (kind, class, reason, pattern) VALUES ('cookie', 'bot', 'x', 'y')$$);
SELECT regress.err($$INSERT INTO smslink.classifier_rule (class, reason, pattern) VALUES ('bot', 'two words', 'y')$$);
UPDATE smslink.classifier_rule SET enabled = false;
SELECT * FROM smslink.classify('AcmeShopApp/5.1 okhttp/4.12.0');

-- 4. The hot path: timing, bursts and "preview, then human", from the clicks already logged.
SELECT smslink.create_brand('Classify Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.cls.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Winter') AS c \gset
SELECT count(*) FROM (SELECT smslink.prepare_message(:c, 'A', 'cls-' || i, 'Winter sale https://shop.example/winter') FROM generate_series(1, 8) i) s;
CREATE TEMP TABLE m AS
SELECT row_number() OVER (ORDER BY msg.id) AS n, msg.id, l.token
  FROM smslink.message msg JOIN smslink.link l ON l.message_id = msg.id WHERE msg.campaign_id = :c;
SELECT smslink.mark_delivered(array_agg(id ORDER BY id), array_agg(timestamptz '2026-11-28 12:00:00+00' ORDER BY id)) FROM m;
CREATE FUNCTION pg_temp.tap(n int, ua text, ip inet, at timestamptz, method text DEFAULT 'GET')
RETURNS TABLE (status int, class text) LANGUAGE sql AS $$
    SELECT t.status, t.class FROM m, smslink.track_click(m.token, 'go.cls.example', method, ua, ip, NULL, '{}', at) t WHERE m.n = tap.n
$$;
-- A human, two minutes after delivery; a too-fast tap; a tap before delivery.
SELECT * FROM pg_temp.tap(1, :iphone, '203.0.113.10', '2026-11-28 12:02:00+00');
SELECT * FROM pg_temp.tap(2, :iphone, '203.0.113.11', '2026-11-28 12:00:01+00');
SELECT * FROM pg_temp.tap(3, :iphone, '203.0.113.12', '2026-11-28 11:58:00+00');
-- A preview fetch, then the human: the human counts, noted after_preview.
SELECT * FROM pg_temp.tap(4, :iphone, '203.0.113.13', '2026-11-28 12:00:05+00', 'HEAD');
SELECT * FROM pg_temp.tap(4, :iphone, '203.0.113.13', '2026-11-28 12:01:00+00');
-- A gateway scanner: one address opens message after message within seconds (Chrome UA).
SELECT n, t.* FROM generate_series(5, 8) n,
       LATERAL pg_temp.tap(n, :chrome, '203.0.113.99', timestamptz '2026-11-28 12:00:04+00' + n * interval '1 s') t;
-- The same link from a second address within a minute of delivery: one weak signal.
SELECT * FROM pg_temp.tap(2, :iphone, '203.0.113.51', '2026-11-28 12:00:20+00');
-- A second tap from the same address later is fine.
SELECT * FROM pg_temp.tap(1, :iphone, '203.0.113.10', '2026-11-28 12:30:00+00');
SELECT m.n, k.clicked_at, host(k.ip) AS ip, k.method, k.class, k.reasons, k.is_first
  FROM smslink.click k JOIN m ON m.id = k.message_id ORDER BY k.id;
SELECT m.n, msg.first_click_at FROM m JOIN smslink.message msg ON msg.id = m.id ORDER BY m.n;

-- With the database context switched off, only request signals classify: a too-fast tap is
-- human, and a HEAD is still a preview; the click is logged the same way otherwise.
SET smslink.classifier_context = off;
SELECT * FROM pg_temp.tap(7, :iphone, '203.0.113.70', '2026-11-28 12:00:01+00');
SELECT * FROM pg_temp.tap(7, :iphone, '203.0.113.70', '2026-11-28 12:00:02+00', 'HEAD');
SELECT k.class, k.reasons, k.seconds_since_delivery, k.device, k.link_id = l.id AS right_link
  FROM smslink.click k JOIN m ON m.id = k.message_id JOIN smslink.link l ON l.message_id = m.id
 WHERE m.n = 7 AND host(k.ip) = '203.0.113.70' ORDER BY k.id;
RESET smslink.classifier_context;

-- 5. reclassify: a rule added later changes history; is_first and first_click_at follow.
-- A curl test from the office stays a bot (its reasons note the office range). The scanner's
-- address turns out to be a known gateway: its earlier clicks, some only suspect at click time,
-- become scanner clicks.
SELECT * FROM pg_temp.tap(1, 'curl/8.4.0', '198.51.100.20', '2026-11-28 12:05:00+00');
INSERT INTO smslink.ip_range (range, label, class) VALUES ('203.0.113.99/32', 'known-gateway', 'scanner');
-- Message 4's human was on 203.0.113.13: a rule marking that address as a bot takes message 4's
-- only human click away.
INSERT INTO smslink.ip_range (range, label, class) VALUES ('203.0.113.13/32', 'test-rig', 'bot');
SELECT * FROM smslink.reclassify('2026-11-28 00:00+00', '2026-11-29 00:00+00');
SELECT m.n, host(k.ip) AS ip, k.method, k.class, k.reasons, k.is_first
  FROM smslink.click k JOIN m ON m.id = k.message_id ORDER BY k.id;
SELECT m.n, msg.first_click_at FROM m JOIN smslink.message msg ON msg.id = m.id ORDER BY m.n;
-- Taking the rule away and re-running restores message 4's first click; a second run changes nothing.
DELETE FROM smslink.ip_range WHERE label = 'test-rig';
SELECT * FROM smslink.reclassify('2026-11-28 00:00+00', '2026-11-29 00:00+00');
SELECT * FROM smslink.reclassify('2026-11-28 00:00+00', '2026-11-29 00:00+00');
SELECT m.n, msg.first_click_at, (SELECT count(*) FROM smslink.click k WHERE k.message_id = m.id AND k.is_first) AS firsts
  FROM m JOIN smslink.message msg ON msg.id = m.id WHERE m.n = 4;
SELECT regress.err($$SELECT * FROM smslink.reclassify('2026-11-29', '2026-11-28')$$);
-- Every message has at most one first click, and it is its earliest human click.
SELECT count(*) AS messages_breaking_is_first FROM m
 WHERE (SELECT count(*) FROM smslink.click k WHERE k.message_id = m.id AND k.is_first) > 1
    OR (SELECT k.id FROM smslink.click k WHERE k.message_id = m.id AND k.is_first)
       IS DISTINCT FROM (SELECT k.id FROM smslink.click k WHERE k.message_id = m.id AND k.class = 'human' ORDER BY k.clicked_at, k.id LIMIT 1);
DELETE FROM smslink.ip_range WHERE source = 'user';
