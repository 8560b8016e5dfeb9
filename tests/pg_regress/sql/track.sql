-- track_click: the hot path, as the proxy calls it.
\pset footer off
SELECT smslink.create_brand('Track Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.track.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Spring') AS c \gset
SELECT message_id AS m1 FROM smslink.prepare_message(:c, 'A', 'track-1', 'Spring sale https://shop.example/spring') \gset
SELECT message_id AS m2 FROM smslink.prepare_message(:c, 'A', 'track-2', 'Spring sale https://shop.example/spring') \gset
SELECT smslink.mark_delivered(ARRAY[:m1, :m2]::bigint[], ARRAY['2026-11-27 10:00:00+00', '2026-11-27 10:00:00+00']::timestamptz[]);
SELECT token AS t1, id AS l1 FROM smslink.link WHERE message_id = :m1 \gset
SELECT token AS t2 FROM smslink.link WHERE message_id = :m2 \gset
\set iphone '''Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'''
CREATE TEMP TABLE rejected_before AS SELECT * FROM smslink.rejected_requests();

-- A human tap: 302 to the destination, one click row with the right ids.
SELECT status, location, class, click_id IS NOT NULL AS logged
  FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, '203.0.113.7', NULL, '{}', '2026-11-27 10:00:42+00');
SELECT k.link_id = :l1 AS link, k.message_id = :m1 AS message, k.campaign_id = :c AS campaign,
       k.brand_id = :b AS brand, k.subscriber_id = (SELECT id FROM smslink.subscriber WHERE external_key = 'track-1') AS subscriber,
       k.clicked_at, k.method, k.ip, k.device, k.class, k.reasons, k.seconds_since_delivery, k.is_first, k.expired
  FROM smslink.click k WHERE k.message_id = :m1;
-- A second tap on the same message is not the first; the message remembers its first click.
SELECT status, class FROM smslink.track_click(:'t1', 'GO.TRACK.EXAMPLE:443', 'GET', :iphone, '203.0.113.7', NULL, '{}', '2026-11-27 10:03:00+00');
SELECT count(*) AS clicks, count(*) FILTER (WHERE is_first) AS first_clicks FROM smslink.click WHERE message_id = :m1;
SELECT first_click_at FROM smslink.message WHERE id = :m1;

-- Previews: HEAD and prefetch headers are logged as preview and never claim the first click.
SELECT status, class FROM smslink.track_click(:'t2', 'go.track.example', 'HEAD', :iphone, '198.51.100.1', NULL, '{}', '2026-11-27 10:00:03+00');
SELECT status, class FROM smslink.track_click(:'t2', 'go.track.example', 'GET', :iphone, '198.51.100.1', NULL, '{"Sec-Purpose": "prefetch"}', '2026-11-27 10:00:04+00');
SELECT status, class FROM smslink.track_click(:'t2', 'go.track.example', 'GET', :iphone, '198.51.100.1', NULL, '{"purpose": "prefetch"}', '2026-11-27 10:00:05+00');
SELECT status, class FROM smslink.track_click(:'t2', 'go.track.example', 'GET', :iphone, '198.51.100.1', NULL, '{"X-Moz": "prefetch"}', '2026-11-27 10:00:06+00');
SELECT class, reasons, is_first, device FROM smslink.click WHERE message_id = :m2 ORDER BY clicked_at;

-- Rejections: 404, no row, no error, counted.
CREATE TEMP TABLE clicks_before AS SELECT count(*) AS n FROM smslink.click;
SELECT status, location, click_id, class FROM smslink.track_click(:'t1', 'evil.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click('ZAAAAAAAA', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click('not-a-token', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click(repeat('a', 5000), 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click(NULL, 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click(smslink.token_for(999999999), 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT status FROM smslink.track_click(:'t1', NULL, 'GET', :iphone, NULL, NULL, NULL);
SELECT (SELECT count(*) FROM smslink.click) - n AS new_clicks FROM clicks_before;
SELECT r.reason, r.count - b.count AS rejected
  FROM smslink.rejected_requests() r JOIN rejected_before b USING (reason) ORDER BY 1;

-- Expiry: the link's fallback, else the campaign's, else the domain's; 410 with none. Logged as expired.
UPDATE smslink.link SET expires_at = '2026-11-28 00:00+00' WHERE id = :l1;
SELECT status, location FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL, '2026-11-29 00:00+00');
UPDATE smslink.domain SET fallback_url = 'https://shop.example/' WHERE id = :d;
SELECT status, location FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL, '2026-11-29 00:00+00');
UPDATE smslink.campaign SET fallback_url = 'https://shop.example/offers' WHERE id = :c;
SELECT status, location FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL, '2026-11-29 00:00+00');
UPDATE smslink.link SET fallback_url = 'https://shop.example/spring-ended' WHERE id = :l1;
SELECT status, location FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL, '2026-11-29 00:00+00');
-- Before expiry the destination still applies.
SELECT status, location FROM smslink.track_click(:'t1', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL, '2026-11-27 23:59+00');
SELECT expired, count(*) FROM smslink.click WHERE message_id = :m1 GROUP BY expired ORDER BY expired;

-- track_clicks: a batch in one call, answered in order, with the rows the taps would give one
-- by one. Two taps on one message in one batch: only the earlier claims the first click, and
-- the later (from no address) sees the earlier one from another address near delivery, which
-- makes it a suspect (burst:token). A preview before them claims nothing. Forged, unknown-host
-- and NULL entries get 404 and no row, counted like single calls.
SELECT message_id AS m3 FROM smslink.prepare_message(:c, 'A', 'track-3', 'Spring sale https://shop.example/spring') \gset
SELECT smslink.mark_delivered(:m3, '2026-11-27 10:00:00+00');
SELECT token AS t3 FROM smslink.link WHERE message_id = :m3 \gset
CREATE TEMP TABLE rejected_before_batch AS SELECT * FROM smslink.rejected_requests();
SELECT ord, status, location, class, click_id IS NOT NULL AS logged
  FROM smslink.track_clicks(ARRAY[:'t3', :'t3', :'t3', 'ZAAAAAAAA', :'t3', NULL],
                            ARRAY['go.track.example', 'go.track.example', 'go.track.example', 'go.track.example', 'evil.example', 'go.track.example'],
                            ARRAY['HEAD', 'GET', 'get', 'GET', 'GET', 'GET'],
                            ARRAY[:iphone, :iphone, :iphone, :iphone, :iphone, :iphone],
                            ARRAY['203.0.113.8', '203.0.113.8', 'not an address', NULL, NULL, NULL],
                            NULL,
                            ARRAY['{}', '{"accept-language": "en"}', NULL, NULL, NULL, NULL]::jsonb[],
                            '2026-11-27 10:01:00+00');
SELECT method, host(ip) AS ip, class, is_first, headers FROM smslink.click WHERE message_id = :m3 ORDER BY id;
SELECT first_click_at FROM smslink.message WHERE id = :m3;
SELECT r.reason, r.count - b.count AS rejected
  FROM smslink.rejected_requests() r JOIN rejected_before_batch b USING (reason) ORDER BY 1;
-- A later batch finds the first click taken.
SELECT ord, status, class FROM smslink.track_clicks(ARRAY[:'t3'], ARRAY['go.track.example'], NULL, ARRAY[:iphone], NULL, NULL, NULL);
SELECT count(*) FILTER (WHERE is_first) AS first_clicks, count(*) AS clicks FROM smslink.click WHERE message_id = :m3;
-- Bad batches are errors, before anything is logged.
SELECT regress.err($$SELECT * FROM smslink.track_clicks(ARRAY['a', 'b'], ARRAY['go.track.example'], NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.track_clicks(NULL, NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.track_clicks(array_fill('x'::text, ARRAY[10001]), NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT count(*) AS empty_batch FROM smslink.track_clicks('{}', NULL, NULL, NULL, NULL, NULL, NULL);

-- The proxy's role executes track_click and track_clicks and nothing else; nobody else may execute it.
GRANT USAGE ON SCHEMA regress TO smslink_proxy;
SET ROLE smslink_proxy;
SELECT status, class FROM smslink.track_click(:'t2', 'go.track.example', 'GET', :iphone, NULL, NULL, NULL);
SELECT ord, status, class FROM smslink.track_clicks(ARRAY[:'t2'], ARRAY['go.track.example'], NULL, ARRAY[:iphone], NULL, NULL, NULL);
SELECT regress.err($$SELECT count(*) FROM smslink.click$$);
SELECT regress.err($$SELECT count(*) FROM smslink.link$$);
SELECT regress.err($$SELECT * FROM smslink_secret.token_key$$);
SELECT regress.err($$INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method) VALUES (now(), 1, 1, 1, 1, 1, 1, 'cta', 'GET')$$);
RESET ROLE;
SET client_min_messages = warning;
DROP ROLE IF EXISTS track_outsider;
RESET client_min_messages;
CREATE ROLE track_outsider;
GRANT USAGE ON SCHEMA smslink, regress TO track_outsider;
SET ROLE track_outsider;
SELECT regress.err(format($$SELECT * FROM smslink.track_click(%L, 'go.track.example', 'GET', NULL, NULL, NULL, NULL)$$, :'t1'));
SELECT regress.err(format($$SELECT * FROM smslink.track_clicks(ARRAY[%L], ARRAY['go.track.example'], NULL, NULL, NULL, NULL, NULL)$$, :'t1'));
RESET ROLE;
SELECT bool_or(has_table_privilege('smslink_proxy', c.oid, 'SELECT,INSERT,UPDATE,DELETE')) AS any_table_privilege
  FROM pg_class c WHERE c.relnamespace = 'smslink'::regnamespace AND c.relkind IN ('r', 'p');
SELECT bool_or(has_sequence_privilege('smslink_proxy', c.oid, 'USAGE,SELECT,UPDATE')) AS any_sequence_privilege
  FROM pg_class c WHERE c.relnamespace = 'smslink'::regnamespace AND c.relkind = 'S';
REVOKE USAGE ON SCHEMA regress FROM smslink_proxy;
DROP OWNED BY track_outsider;
DROP ROLE track_outsider;
