-- The click stream of check 6 (scripts/faults.sh): 200 requests on the 'stream' campaign's links,
-- one TSV line each for `smslink-load replay` (METHOD PATH HOST USER_AGENT X_FORWARDED_FOR
-- REFERER EXTRA_HEADER, empty = not sent). Deterministic: the same requests in the same order on
-- every database made from tests/faults/setup.sql; only the tokens differ (each database has its
-- own token key). Request i carries its number in the Referer (…/s{i}) so that rows can be
-- matched to requests.
--   1-40   four taps each on st-11..st-20 (delivered 1 s before the stream starts): too fast
--          for a human at first, is_first decided among them;
--   41-52  one address (203.0.113.66) on st-1..st-12 in a quarter of a second: burst:ip;
--   53-200 a hashed mix of messages, both link positions, phones, desktop, tablet, preview
--          fetchers, declared bots, a library, no User-Agent, HEAD, prefetch, a language header,
--          a scanner referrer, and 60 client addresses via X-Forwarded-For.
WITH ua(k, v) AS (VALUES
    (0, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
    (1, 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36'),
    (2, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'),
    (3, 'Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'),
    (4, 'WhatsApp/2.23.20.0 A'),
    (5, 'facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)'),
    (6, 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'),
    (7, 'python-requests/2.31.0'),
    (8, NULL),
    (9, 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108]')),
links AS (
    SELECT substr(u.external_key, 4)::int AS n, l.position, '/' || d.prefix || '/' || l.token AS path, d.host
      FROM smslink.link l
      JOIN smslink.message m ON m.id = l.message_id
      JOIN smslink.subscriber u ON u.id = m.subscriber_id
      JOIN smslink.campaign c ON c.id = m.campaign_id
      JOIN smslink.domain d ON d.id = l.domain_id
     WHERE c.name = 'stream'),
req AS (
    SELECT i, abs(hashtext('faults-stream-' || i)::bigint) AS h FROM generate_series(1, 200) i),
plan AS (
    SELECT i,
           CASE WHEN i <= 40 THEN 11 + (i - 1) % 10 WHEN i <= 52 THEN i - 40 ELSE 1 + h % 40 END AS n,
           CASE WHEN i > 52 AND h % 5 = 0 THEN 2 ELSE 1 END AS position,
           -- 10-15 are phones again: most taps are people.
           CASE WHEN i BETWEEN 41 AND 52 THEN 0
                WHEN (h / 7) % 16 >= 10 THEN (h / 7) % 2 ELSE (h / 7) % 16 END AS ua,
           CASE WHEN i BETWEEN 41 AND 52 THEN '203.0.113.66'
                ELSE '198.51.100.' || (1 + (h / 131) % 60) END AS ip,
           CASE WHEN (h / 11) % 13 = 0 THEN 'HEAD' ELSE 'GET' END AS method,
           CASE (h / 17) % 19 WHEN 0 THEN 'Sec-Purpose: prefetch' WHEN 1 THEN 'Accept-Language: de-DE,de;q=0.9' END AS extra,
           CASE WHEN (h / 23) % 29 = 0 THEN 'https://urlscan.io/result/s' ELSE 'https://load.test/s' END || i AS referer
      FROM req)
SELECT p.method, l.path, l.host, coalesce(ua.v, ''), p.ip, p.referer, coalesce(p.extra, '')
  FROM plan p
  JOIN links l ON l.n = p.n AND l.position = p.position
  JOIN ua ON ua.k = p.ua
 ORDER BY p.i;
