-- Data for the proxy end-to-end test, and a login role for the proxy that is only smslink_proxy.
SET client_min_messages = warning;
SELECT smslink.create_brand('E2E') AS b \gset
SELECT smslink.add_domain(:b, 'go.e2e.example') AS d \gset
SELECT smslink.create_campaign(:b, 'e2e') AS c \gset
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', '{e2e-1,e2e-2}', 'Hi https://shop.example/e2e?x=1') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 minute')) FROM smslink.message \g /dev/null
SELECT count(*) FROM smslink.prepare_message(:c, 'A', 'e2e-3', 'Gone https://shop.example/gone') \g /dev/null
UPDATE smslink.link SET expires_at = now() - interval '1 day' WHERE destination = 'https://shop.example/gone';
UPDATE smslink.campaign SET fallback_url = 'https://shop.example/ended' WHERE id = :c;
-- Conversions: a campaign that hands the landing page its click id, and the brand's postback secret.
SELECT smslink.create_campaign(:b, 'e2e-affiliate') AS ca \gset
UPDATE smslink.campaign SET click_param = 'smsclid={click_id}' WHERE id = :ca;
SELECT count(*) FROM smslink.prepare_message(:ca, 'A', 'e2e-4', 'Shop https://shop.example/land?sub={subscriber}') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 minute')) FROM smslink.message WHERE campaign_id = :ca \g /dev/null
SELECT smslink.rotate_postback_secret(:b) \g /dev/null
DROP ROLE IF EXISTS e2e_redirector;
CREATE ROLE e2e_redirector LOGIN IN ROLE smslink_proxy;
