-- 2,000 delivered messages with one link each, for the concurrent-click test (32 HTTP clients
-- through the proxy; see scripts/test.sh).
SET client_min_messages = warning;
SELECT smslink.create_brand('Concurrency') AS b \gset
SELECT smslink.add_domain(:b, 'c.conc.example') AS d \gset
SELECT smslink.create_campaign(:b, 'race') AS c \gset
SELECT count(*) FROM smslink.prepare_messages(:c, 'A',
    ARRAY(SELECT 'conc-' || i FROM generate_series(1, 2000) i), 'Race https://shop.example/race') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 minute')) FROM smslink.message \g /dev/null
-- All 32 clients come from 127.0.0.1: without this, the classifier would (rightly) call one
-- address hitting thousands of messages a gateway scanner. This test is about exact first
-- clicks under concurrency, so the burst signals are switched off for this database.
ALTER DATABASE smslink_concurrency SET smslink.classifier_burst_ip_messages = 0;
ALTER DATABASE smslink_concurrency SET smslink.classifier_burst_token_ips = 0;
