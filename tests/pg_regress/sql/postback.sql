-- Click ids on the landing page (destination macros, the campaign's click parameter) and signed
-- postbacks: what the proxy's /p and /px.gif call.
\pset footer off
GRANT USAGE ON SCHEMA regress TO smslink_proxy;
SELECT smslink.create_brand('Postback Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.pb.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Affiliate', '{"B 2"}') AS c \gset
-- A destination with macros (written plainly; stored percent-encoded) and a campaign click parameter.
UPDATE smslink.campaign SET click_param = 'smsclid={click_id}&utm_campaign={campaign}' WHERE id = :c;
SELECT message_id AS m FROM smslink.prepare_message(:c, 'B 2', 'ann+1@example.com',
  'Deal https://shop.example/land?s={subscriber}&v={variant}&m={message}#top') \gset
SELECT destination FROM smslink.link WHERE message_id = :m;
SELECT smslink.mark_delivered(:m, '2026-11-27 10:00:00+00');
SELECT token AS t FROM smslink.link WHERE message_id = :m \gset
SET ROLE smslink_proxy;
SELECT click_id AS k, location AS loc FROM smslink.track_click(:'t', 'go.pb.example', 'GET',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
  '203.0.113.41', NULL, '{}', '2026-11-27 10:05:00+00') \gset
RESET ROLE;
-- Every macro expanded, URL-encoded, and the click parameter before the fragment.
SELECT replace(replace(replace(:'loc', :'k', '<click>'), :'m', '<message>'), :'c', '<campaign>') AS location;
SELECT :'loc' = format('https://shop.example/land?s=ann%%2B1%%40example.com&v=B%%202&m=%s&smsclid=%s&utm_campaign=%s#top', :m, :k, :c) AS exact;
-- The landing page hands the click id back in a postback.
-- expand_destination is also callable directly, and click_param is checked.
SELECT smslink.expand_destination('https://x.example/?id=%7Bclick_id%7D', NULL, 5, NULL, NULL, NULL, NULL);
SELECT regress.err(format($q$UPDATE smslink.campaign SET click_param = 'smsclid={clickid}' WHERE id = %s$q$, :c));
SELECT regress.err(format($q$UPDATE smslink.campaign SET click_param = 'smsclid' WHERE id = %s$q$, :c));

-- Postback secrets: the owner makes one per brand; nobody else can read or use them.
SELECT length(smslink.rotate_postback_secret(:b)) AS secret_length;
SET ROLE smslink_proxy;
SELECT regress.err('SELECT * FROM smslink_secret.postback_secret');
SELECT regress.err(format('SELECT smslink.sign_postback(%s, ''{}'')', :b));
SELECT regress.err(format('SELECT smslink.rotate_postback_secret(%s)', :b));
RESET ROLE;
SELECT smslink.sign_postback(:b, jsonb_build_object('click_id', :'k', 'event', 'purchase', 'value', '49.50',
  'currency', 'USD', 'external_id', 'pb-order-1', 'coupon', 'SMS10')) AS sig \gset

-- A signed postback records the conversion, attributed to the click's subscriber.
SET ROLE smslink_proxy;
SELECT smslink.record_postback(ARRAY['click_id', 'event', 'value', 'currency', 'external_id', 'coupon', 'sig'],
  ARRAY[:'k', 'purchase', '49.50', 'USD', 'pb-order-1', 'SMS10', :'sig']) AS conv \gset
-- Replayed (any order of parameters): the same id, nothing new.
SELECT smslink.record_postback(ARRAY['sig', 'coupon', 'external_id', 'currency', 'value', 'event', 'click_id'],
  ARRAY[:'sig', 'SMS10', 'pb-order-1', 'USD', '49.50', 'purchase', :'k']) = :conv AS same_id;
-- Unsigned, tampered, a wrong click, or a duplicated parameter: refused, nothing written.
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'external_id', 'value', 'currency'], ARRAY['%s', 'pb-order-2', '1', 'USD'])$q$, :k));
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'event', 'value', 'currency', 'external_id', 'coupon', 'sig'], ARRAY['%s', 'purchase', '4950', 'USD', 'pb-order-1', 'SMS10', '%s'])$q$, :k, :'sig'));
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'event', 'value', 'currency', 'external_id', 'coupon', 'sig'], ARRAY['%s', 'purchase', '49.50', 'USD', 'pb-order-1', 'SMS10', '%s'])$q$, :k + 1000, :'sig'));
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'click_id', 'external_id', 'sig'], ARRAY['%s', '1', 'x', 'ab'])$q$, :k));
SELECT regress.err('SELECT count(*) FROM smslink.conversion');
RESET ROLE;
SELECT k.event, k.value, k.currency, k.click_id = :k AS right_click, s.external_key, k.properties
  FROM smslink.conversion k JOIN smslink.subscriber s ON s.id = k.subscriber_id
 WHERE k.brand_id = :b;
-- A signed but invalid conversion is 22xxx (the proxy answers 400); a different repeat is 23505 (409).
SELECT smslink.sign_postback(:b, jsonb_build_object('click_id', :'k', 'value', '5', 'currency', 'XYZ', 'external_id', 'pb-order-3')) AS sig3 \gset
SELECT smslink.sign_postback(:b, jsonb_build_object('click_id', :'k', 'value', '50', 'currency', 'USD', 'external_id', 'pb-order-1', 'event', 'purchase')) AS sig4 \gset
SET ROLE smslink_proxy;
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'value', 'currency', 'external_id', 'sig'], ARRAY['%s', '5', 'XYZ', 'pb-order-3', '%s'])$q$, :k, :'sig3'));
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'value', 'currency', 'external_id', 'event', 'sig'], ARRAY['%s', '50', 'USD', 'pb-order-1', 'purchase', '%s'])$q$, :k, :'sig4')) ~ '^23505' AS conflict;
RESET ROLE;
-- After a rotation the previous secret still verifies (senders switch over), the one before it not.
SELECT smslink.rotate_postback_secret(:b) IS NOT NULL AS rotated;
SELECT smslink.sign_postback(:b, jsonb_build_object('click_id', :'k', 'external_id', 'pb-order-5')) AS sig5 \gset
SET ROLE smslink_proxy;
SELECT smslink.record_postback(ARRAY['click_id', 'external_id', 'sig'], ARRAY[:'k', 'pb-order-5', :'sig5'], 'pixel') > 0 AS recorded_with_current;
SELECT smslink.record_postback(ARRAY['click_id', 'event', 'value', 'currency', 'external_id', 'coupon', 'sig'],
  ARRAY[:'k', 'purchase', '49.50', 'USD', 'pb-order-1', 'SMS10', :'sig']) = :conv AS previous_still_valid;
RESET ROLE;
SELECT smslink.rotate_postback_secret(:b) IS NOT NULL AS rotated_again;
SET ROLE smslink_proxy;
SELECT regress.err(format($q$SELECT smslink.record_postback(ARRAY['click_id', 'external_id', 'sig'], ARRAY['%s', 'pb-order-6', '%s'])$q$, :k, :'sig'));
RESET ROLE;
SELECT regress.err('SELECT smslink.rotate_postback_secret(NULL)');
SELECT regress.err('SELECT smslink.rotate_postback_secret(999999)');
