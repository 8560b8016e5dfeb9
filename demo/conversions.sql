-- smslink demo, conversions that do not come through the proxy: phone and store orders recorded
-- by applications, and newsletter clicks from the email platform (other-channel touchpoints).
\pset footer off
\set QUIET on
SELECT id AS brand_id FROM smslink.brand \gset
-- Newsletter clicks happened a few minutes to half an hour ago, before the orders.
SELECT count(smslink.record_touchpoint(:brand_id, who, 'email', 'click',
                                       now() - (5 + (subscriber_id * 7919 % 25)) * interval '1 min',
                                       'newsletter-bf', 'esp-' || subscriber_id)) AS newsletter_clicks
  FROM demo_buyer WHERE emailed;
-- Orders taken by phone (the subscriber had tapped, but the order carries no click id) and in
-- stores (the subscriber never tapped): the application calls record_conversion.
SELECT count(smslink.record_conversion(:brand_id, who, 'purchase', value, 'USD', now(),
                                       via || '-' || ltrim(who, '+'), NULL,
                                       jsonb_build_object('source', via))) AS orders_recorded
  FROM demo_buyer WHERE via IN ('phone', 'store');
-- The opt-out page unsubscribes whoever tapped the opt-out link (the application's job); metrics
-- charge each opt-out to the message it answered.
UPDATE smslink.subscriber s SET opted_out_at = k.at
  FROM (SELECT subscriber_id, min(clicked_at) AS at FROM smslink.click
         WHERE link_kind = 'optout' AND class = 'human' GROUP BY 1) k
 WHERE s.id = k.subscriber_id;
SELECT count(*) AS opted_out FROM smslink.subscriber WHERE opted_out_at IS NOT NULL;
