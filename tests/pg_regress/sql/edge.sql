-- The edge path: the link feed for the proxy's cache, click-id leases, and ingest_clicks, which
-- must log spooled clicks exactly as the database path logs them one by one.
\pset footer off
SELECT smslink.create_brand('Edge Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.edge.example') AS d \gset
UPDATE smslink.domain SET fallback_url = 'https://edge.example/home' WHERE id = :d;
SELECT smslink.create_campaign(:b, 'Edge') AS c \gset
SELECT smslink.create_campaign(:b, 'Edge twin') AS c2 \gset
\set iphone '''Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'''

-- Two campaigns built the same way: 6 messages each, delivered a day apart, so that one click
-- stream can be sent through track_click (one call per click) into the first and through
-- ingest_clicks (one batch) into the second, with no context crossing between them.
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', ARRAY(SELECT 'edge-a' || g FROM generate_series(1, 6) g),
       'Sale https://shop.example/edge?sub={subscriber} stop: https://edge.example/stop') \g /dev/null
SELECT count(*) FROM smslink.prepare_messages(:c2, 'A', ARRAY(SELECT 'edge-b' || g FROM generate_series(1, 6) g),
       'Sale https://shop.example/edge?sub={subscriber} stop: https://edge.example/stop') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id ORDER BY id),
       array_agg(CASE WHEN campaign_id = :c THEN timestamptz '2026-11-20 10:00:00+00'
                      ELSE timestamptz '2026-11-21 10:00:00+00' END ORDER BY id))
  FROM smslink.message WHERE campaign_id IN (:c, :c2) \g /dev/null

-- The stream: (message number 1-6, link position, seconds after delivery, method, user agent,
-- address, headers). Repeats on one message and one address, a preview, a bot, a burst.
CREATE TEMP TABLE stream (n int, msg int, pos int, secs float8, method text, ua text, ip text, headers jsonb);
INSERT INTO stream VALUES
  (1, 1, 1, 1.5, 'HEAD', :iphone, '203.0.113.10', '{}'),
  (2, 1, 1, 40, 'GET', :iphone, '203.0.113.11', '{"accept-language": "en"}'),
  (3, 1, 1, 41, 'GET', :iphone, '203.0.113.12', '{}'),
  (4, 2, 1, 2, 'GET', 'WhatsApp/2.23.20.0 A', '198.51.100.5', '{}'),
  (5, 2, 1, 90, 'GET', :iphone, '198.51.100.6', '{}'),
  (6, 3, 1, 30, 'GET', 'python-requests/2.31.0', '192.0.2.50', '{}'),
  (7, 4, 1, 31, 'GET', :iphone, '192.0.2.50', '{}'),
  (8, 5, 1, 32, 'GET', :iphone, '192.0.2.50', '{}'),
  (9, 6, 1, 33, 'GET', :iphone, '192.0.2.50', '{}'),
  (10, 6, 2, 300, 'GET', :iphone, '203.0.113.99', '{}'),
  (11, 3, 1, 400, 'GET', :iphone, NULL, '{"sec-purpose": "prefetch"}'),
  (12, 1, 1, 500, 'GET', :iphone, '203.0.113.11', '{}');
CREATE TEMP VIEW stream_links AS
SELECT s.*, m.campaign_id, l.token, m.delivered_at + make_interval(secs => s.secs) AS at
  FROM stream s
  JOIN LATERAL (SELECT m.* FROM smslink.message m WHERE m.campaign_id IN (:c, :c2)) m ON true
  JOIN smslink.link l ON l.message_id = m.id AND l.position = s.pos
 WHERE (SELECT count(*) FROM smslink.message o WHERE o.campaign_id = m.campaign_id AND o.id <= m.id) = s.msg;

-- Database path, one call per click, in stream order.
CREATE TEMP TABLE db_stream AS SELECT * FROM stream_links WHERE campaign_id = :c;
DO $$
DECLARE
    x record;
BEGIN
    FOR x IN SELECT * FROM db_stream ORDER BY n LOOP
        PERFORM smslink.track_click(x.token, 'go.edge.example', x.method, x.ua, x.ip::inet, NULL, x.headers, x.at);
    END LOOP;
END $$;
SELECT count(*) AS database_path FROM smslink.click WHERE campaign_id = :c;
-- Edge path: the whole stream in one batch, shuffled (ingestion orders it by request time).
CREATE TEMP TABLE edge_batch AS
SELECT x.*, gen_random_uuid() AS request_id, 281474976710656 + 1000 + x.n AS click_id
  FROM stream_links x WHERE x.campaign_id = :c2;
SELECT status, count(*)
  FROM smslink.ingest_clicks(
         (SELECT array_agg(request_id ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(click_id ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(at ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(token ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg('go.edge.example'::text ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(method ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(ua ORDER BY md5(n::text)) FROM edge_batch),
         (SELECT array_agg(ip ORDER BY md5(n::text)) FROM edge_batch),
         NULL,
         (SELECT array_agg(headers ORDER BY md5(n::text)) FROM edge_batch))
 GROUP BY status ORDER BY status;
-- Both paths give the same rows: class, reasons, is_first, device, timing, expiry.
CREATE TEMP VIEW logged AS
SELECT k.campaign_id, row_number() OVER (PARTITION BY k.campaign_id ORDER BY k.clicked_at, k.id) AS n,
       k.class, k.reasons, k.is_first, k.device, k.method, k.seconds_since_delivery, k.expired,
       k.link_kind, k.request_id IS NOT NULL AS has_request_id
  FROM smslink.click k WHERE k.campaign_id IN (:c, :c2);
SELECT n, class, reasons, is_first, seconds_since_delivery AS secs FROM logged WHERE campaign_id = :c ORDER BY n;
SELECT count(*) AS rows_that_differ FROM (
  (SELECT n, class, reasons, is_first, device, method, seconds_since_delivery, expired, link_kind FROM logged WHERE campaign_id = :c
   EXCEPT SELECT n, class, reasons, is_first, device, method, seconds_since_delivery, expired, link_kind FROM logged WHERE campaign_id = :c2)
  UNION ALL
  (SELECT n, class, reasons, is_first, device, method, seconds_since_delivery, expired, link_kind FROM logged WHERE campaign_id = :c2
   EXCEPT SELECT n, class, reasons, is_first, device, method, seconds_since_delivery, expired, link_kind FROM logged WHERE campaign_id = :c)) d;
SELECT (SELECT array_agg(first_click_at - delivered_at ORDER BY id) FROM smslink.message WHERE campaign_id = :c)
     = (SELECT array_agg(first_click_at - delivered_at ORDER BY id) FROM smslink.message WHERE campaign_id = :c2) AS same_first_click_times;
-- The proxy's click ids and request ids are kept: the landing page's {click_id} is the row's id.
SELECT count(*) AS kept_ids FROM edge_batch e JOIN smslink.click k ON k.id = e.click_id AND k.request_id = e.request_id;

-- A replay (the proxy restarted before it knew the batch committed) logs nothing again.
SELECT status, count(*)
  FROM smslink.ingest_clicks((SELECT array_agg(request_id ORDER BY n) FROM edge_batch),
                             (SELECT array_agg(click_id ORDER BY n) FROM edge_batch),
                             (SELECT array_agg(at ORDER BY n) FROM edge_batch),
                             (SELECT array_agg(token ORDER BY n) FROM edge_batch),
                             (SELECT array_agg('go.edge.example'::text) FROM edge_batch),
                             NULL, NULL, NULL, NULL, NULL)
 GROUP BY status ORDER BY status;
SELECT count(*) AS clicks_after_replay FROM smslink.click WHERE campaign_id = :c2;
-- ...and so does the database path for a request id it has seen.
SELECT ord, status, class FROM smslink.track_clicks(
  (SELECT array_agg(token ORDER BY n) FROM edge_batch WHERE n = 5), ARRAY['go.edge.example'], NULL, NULL, NULL, NULL, NULL,
  (SELECT at FROM edge_batch WHERE n = 5), (SELECT array_agg(request_id) FROM edge_batch WHERE n = 5));

-- A human click shipped late with an earlier time takes the first click over.
SELECT e.token AS t6, e.at AS at6 FROM edge_batch e WHERE e.n = 7 \gset
SELECT status, class FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY[:'at6'::timestamptz - interval '20 seconds'],
       ARRAY[:'t6'], ARRAY['go.edge.example'], ARRAY['GET'], ARRAY[:iphone], ARRAY['203.0.113.200'], NULL, NULL);
SELECT k.seconds_since_delivery, k.is_first FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id
 WHERE l.token = :'t6' ORDER BY k.clicked_at;
SELECT m.first_click_at - m.delivered_at AS first_click_after FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id WHERE l.token = :'t6';

-- Forged tokens and foreign hosts are answered 404, logged nothing.
SELECT ord, status FROM smslink.ingest_clicks(ARRAY[gen_random_uuid(), gen_random_uuid()], NULL, ARRAY[now(), now()],
       ARRAY['ZAAAAAAAA', :'t6'], ARRAY['go.edge.example', 'evil.example'], NULL, NULL, NULL, NULL, NULL);
-- A proxy passes the link and message its cache resolved the token to: the token is not
-- decoded, but it must still be that link's token, and the message that link's message.
SELECT l.id AS l6, l.message_id AS m6, (SELECT l2.id FROM smslink.link l2 WHERE l2.id <> l.id ORDER BY l2.id LIMIT 1) AS other6
  FROM smslink.link l WHERE l.token = :'t6' \gset
SELECT count(*) AS other_before FROM smslink.click WHERE link_id = :other6 \gset
SELECT ord, status, class FROM smslink.ingest_clicks(
       ARRAY[gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid()], NULL,
       ARRAY[:'at6'::timestamptz + interval '1 minute', :'at6'::timestamptz + interval '2 minutes',
             :'at6'::timestamptz + interval '3 minutes', :'at6'::timestamptz + interval '4 minutes'],
       ARRAY[:'t6', :'t6', :'t6', :'t6'], ARRAY['go.edge.example', 'go.edge.example', 'go.edge.example', 'go.edge.example'],
       NULL, ARRAY[:iphone, :iphone, :iphone, :iphone], NULL, NULL, NULL,
       ARRAY[:l6, :other6, :l6, NULL]::bigint[], ARRAY[:m6, :m6, :m6 + 100000, NULL]::bigint[]);
SELECT count(*) AS logged_for_t6_after FROM smslink.click k
 WHERE k.link_id = :l6 AND k.clicked_at > :'at6'::timestamptz;
SELECT count(*) - :other_before AS logged_on_other FROM smslink.click WHERE link_id = :other6;
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY[now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL, ARRAY[1, 2]::bigint[])$$);
-- Bad batches are errors that say what to fix.
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(NULL, NULL, ARRAY[now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[NULL::uuid], NULL, ARRAY[now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY['infinity'::timestamptz], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], ARRAY[42::bigint], ARRAY[now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY[now(), now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);

-- Click-id leases: disjoint blocks of 2^20 above 2^48, never met by click_id_seq.
SELECT (l1).first_id >= 281474976710656 AS above_2_48, (l1).last_id - (l1).first_id + 1 AS size,
       (l2).first_id = (l1).last_id + 1 AS next_block
  FROM (SELECT smslink.edge_lease_click_ids() AS l1) a, LATERAL (SELECT smslink.edge_lease_click_ids() AS l2) b;
SELECT seqmax FROM pg_sequence WHERE seqrelid = 'smslink.click_id_seq'::regclass;
-- A conversion naming a leased click that is not shipped yet is told to retry (55000); an id
-- nobody leased is not a click (23503).
SELECT id AS sub6 FROM smslink.subscriber WHERE external_key = 'edge-b6' \gset
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'edge-b6', 'purchase', 10, 'USD', now(), 'edge-order-1', %s)$$,
       :b, (SELECT (smslink.edge_lease_click_ids()).first_id)));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'edge-b6', 'purchase', 10, 'USD', now(), 'edge-order-1', %s)$$,
       :b, 281474976710656::bigint * 1000));
-- A shipped edge click is a click like any other.
SELECT smslink.record_conversion(:b, 'edge-b' || (SELECT msg FROM edge_batch WHERE n = 10), 'purchase', 10, 'USD', now(), 'edge-order-2',
       (SELECT click_id FROM edge_batch WHERE n = 10)) > 0 AS recorded;

-- The feed. A cold cache starts from the newest links by id, then follows changes by
-- transaction: every change of a finished transaction below the horizon, nothing of a later one.
SELECT horizon > 0 AS has_horizon, after_link > 0 AS skips_older FROM smslink.edge_start(3);
SELECT (SELECT count(*) FROM smslink.edge_links_by_id((SELECT after_link FROM smslink.edge_start(3)))) AS newest;
SELECT count(*) AS all_links, count(*) FILTER (WHERE subscriber_key LIKE 'edge-%') AS edge_links,
       bool_and(NOT deleted) AS none_deleted
  FROM smslink.edge_links_by_id(0, 100000);
SELECT link_id, token IS NOT NULL AS token, domain_id = :d AS domain, campaign_id = :c AS campaign, destination, fallback_url,
       expires_at, subscriber_key, variant_key
  FROM smslink.edge_links_by_id(0, 100000) WHERE subscriber_key = 'edge-a1' ORDER BY link_id;
-- Changes made in this transaction are not below the horizon yet: commit them first. (pg_regress
-- runs each statement in its own transaction.)
SELECT smslink.edge_horizon() AS h0 \gset
UPDATE smslink.link SET expires_at = '2026-12-01 00:00+00', fallback_url = 'https://shop.example/over'
 WHERE message_id = (SELECT id FROM smslink.message WHERE campaign_id = :c ORDER BY id LIMIT 1) AND position = 1;
-- An update that changes nothing a cache holds is not fed again.
UPDATE smslink.link SET token = token WHERE message_id = (SELECT id FROM smslink.message WHERE campaign_id = :c ORDER BY id OFFSET 1 LIMIT 1);
UPDATE smslink.campaign SET click_param = 'smsclid={click_id}' WHERE id = :c2;
UPDATE smslink.campaign SET name = 'Edge (renamed)' WHERE id = :c;
SELECT smslink.edge_horizon() AS h1 \gset
SELECT :h1 > :h0 AS horizon_moved;
SELECT deleted, destination, fallback_url, expires_at, subscriber_key FROM smslink.edge_links(:h0, 0, :h1) ORDER BY feed_xid, link_id;
SELECT campaign_id = :c2 AS twin, fallback_url, click_param FROM smslink.edge_campaigns(:h0, :h1);
SELECT count(*) AS all_campaigns FROM smslink.edge_campaigns(NULL, NULL);
-- Paging inside one transaction's changes: (feed_xid, link_id) is the cursor.
SELECT count(*) AS page1 FROM smslink.edge_links(0, 0, :h1, 5);
-- A renamed subscriber (their key is in {subscriber} landing URLs) re-feeds their links.
UPDATE smslink.subscriber SET external_key = 'edge-a2-renamed' WHERE external_key = 'edge-a2';
SELECT smslink.edge_horizon() AS h2 \gset
SELECT subscriber_key FROM smslink.edge_links(:h1, 0, :h2) ORDER BY link_id;
-- Deleted links leave tombstones.
DELETE FROM smslink.message WHERE id = (SELECT id FROM smslink.message WHERE campaign_id = :c ORDER BY id DESC LIMIT 1);
SELECT smslink.edge_horizon() AS h3 \gset
SELECT deleted, token IS NOT NULL AS token, destination FROM smslink.edge_links(:h2, 0, :h3) ORDER BY link_id;
-- A changed token (a re-keyed link) retires the old one: its tombstone comes before the new row.
SELECT id AS lk, token AS old_token FROM smslink.link WHERE message_id = (SELECT id FROM smslink.message WHERE campaign_id = :c ORDER BY id LIMIT 1) AND position = 2 \gset
UPDATE smslink.link SET token = 'NEWTOKEN1' WHERE id = :lk;
SELECT smslink.edge_horizon() AS h4 \gset
SELECT deleted, token = :'old_token' AS old_token, token = 'NEWTOKEN1' AS new_token FROM smslink.edge_links(:h3, 0, :h4);
SELECT host, fallback_url, brand_fallback_url FROM smslink.edge_domains() WHERE domain_id = :d;

-- Only the proxy's role may read the feed, lease ids and ingest.
SET client_min_messages = warning;
DROP ROLE IF EXISTS edge_outsider;
RESET client_min_messages;
CREATE ROLE edge_outsider;
GRANT USAGE ON SCHEMA smslink, regress TO edge_outsider;
SET ROLE edge_outsider;
SELECT regress.err('SELECT * FROM smslink.edge_links_by_id(0)');
SELECT regress.err('SELECT * FROM smslink.edge_lease_click_ids()');
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY[now()], ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
RESET ROLE;
SET ROLE smslink_proxy;
SELECT count(*) > 0 AS proxy_reads_feed FROM smslink.edge_links_by_id(0);
SELECT count(*) AS proxy_reads_domains FROM smslink.edge_domains() WHERE host = 'go.edge.example';
SELECT ord, status FROM smslink.ingest_clicks(ARRAY[gen_random_uuid()], NULL, ARRAY[now()], ARRAY['ZAAAAAAAA'], NULL, NULL, NULL, NULL, NULL, NULL);
RESET ROLE;
