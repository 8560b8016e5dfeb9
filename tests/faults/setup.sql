-- Data for the "faults" tier (scripts/faults.sh), loaded into every database it makes, so that
-- the database-path and edge-path databases of check 6 start identical.
--   * campaign 'load': 2,000 delivered messages with one link each (the taps of checks 1-5);
--   * campaign 'stream': 40 messages with a call to action and an opt-out link each, for the
--     replayed click stream of check 6 (faults.sh sets their delivery times just before it);
--     message st-40's links have expired, so their taps go to the campaign's fallback;
--   * a domain fallback, and the login role the proxy uses (a member of smslink_proxy only).
SET client_min_messages = warning;
SELECT smslink.create_brand('Faults') AS b \gset
SELECT smslink.add_domain(:b, 'f.faults.example') AS d \gset
UPDATE smslink.domain SET fallback_url = 'https://shop.example/domain-fallback' WHERE id = :d;

SELECT smslink.create_campaign(:b, 'load') AS c \gset
SELECT count(*) FROM smslink.prepare_messages(:c, 'A',
    ARRAY(SELECT 'load-' || i FROM generate_series(1, 2000) i), 'Sale https://shop.example/load') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 minute'))
  FROM smslink.message WHERE campaign_id = :c \g /dev/null

SELECT smslink.create_campaign(:b, 'stream') AS s \gset
UPDATE smslink.campaign SET fallback_url = 'https://shop.example/ended' WHERE id = :s;
SELECT count(*) FROM smslink.prepare_messages(:s, 'A',
    ARRAY(SELECT 'st-' || i FROM generate_series(1, 40) i),
    'Deal https://shop.example/deal?s={subscriber} Stop? https://shop.example/stop',
    kinds => '{cta,optout}') \g /dev/null
UPDATE smslink.link l SET expires_at = now() - interval '1 day'
  FROM smslink.message m JOIN smslink.subscriber u ON u.id = m.subscriber_id
 WHERE l.message_id = m.id AND u.external_key = 'st-40';

DROP ROLE IF EXISTS faults_redirector;
CREATE ROLE faults_redirector LOGIN IN ROLE smslink_proxy;
