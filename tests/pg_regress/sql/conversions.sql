-- Recording outcomes: record_conversion and record_touchpoint, idempotent on (brand, external_id).
\pset footer off
SELECT smslink.create_brand('Convert Co') AS b \gset
SELECT smslink.create_brand('Other Co') AS b2 \gset
SELECT smslink.add_domain(:b, 'go.conv.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Autumn') AS c \gset
SELECT message_id AS m FROM smslink.prepare_message(:c, 'A', 'conv-1', 'Autumn sale https://shop.example/autumn') \gset
SELECT smslink.mark_delivered(:m, '2026-11-27 10:00:00+00');
SELECT token AS t FROM smslink.link WHERE message_id = :m \gset
SET ROLE smslink_proxy;
SELECT click_id AS k FROM smslink.track_click(:'t', 'go.conv.example', 'GET',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
  '203.0.113.40', NULL, '{}', '2026-11-27 10:05:00+00') \gset
RESET ROLE;

-- A purchase attributed to the click; the subscriber is known by key.
SELECT smslink.record_conversion(:b, 'conv-1', 'purchase', 59.90, 'usd', '2026-11-27 10:20:00+00', 'order-1001', :k, '{"sku": "tent-2p"}') AS conv \gset
SELECT k.event, k.value, k.currency, k.occurred_at, k.external_id, k.click_id = :k AS right_click,
       s.external_key, k.properties
  FROM smslink.conversion k JOIN smslink.subscriber s ON s.id = k.subscriber_id WHERE k.id = :conv;
-- The same postback again returns the same id and writes nothing.
SELECT smslink.record_conversion(:b, 'conv-1', 'purchase', 59.90, 'USD', '2026-11-27 10:20:00+00', 'order-1001', :k) = :conv AS same_id;
SELECT count(*) AS conversions FROM smslink.conversion;
-- A repeat that differs is an error and changes nothing.
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 65.00, 'USD', '2026-11-27 10:20:00+00', 'order-1001')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'someone-else', 'purchase', 59.90, 'USD', '2026-11-27 10:20:00+00', 'order-1001')$q$, :b));
SELECT value FROM smslink.conversion WHERE id = :conv;
-- A conversion of a new subscriber creates the subscriber; no value is fine.
SELECT smslink.record_conversion(:b, 'new-subscriber', 'signup', NULL, NULL, '2026-11-27 11:00:00+00', 'signup-77') > 0 AS recorded;
SELECT count(*) AS subscribers FROM smslink.subscriber WHERE brand_id = :b;
-- The same external_id under another brand is another conversion.
SELECT smslink.record_conversion(:b2, 'conv-1', 'purchase', 10, 'EUR', '2026-11-27 10:20:00+00', 'order-1001') <> :conv AS other_brand;
-- Refunds may be negative; purchases may not.
SELECT smslink.record_conversion(:b, 'conv-1', 'refund', -59.90, 'USD', '2026-11-28 09:00:00+00', 'refund-1001') > 0 AS refund_recorded;
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', -5, 'USD', '2026-11-27 10:20:00+00', 'order-neg')$q$, :b));
-- Bad input, each with a clear error.
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'XYZ', '2026-11-27 10:20:00+00', 'o-1')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'dollars', '2026-11-27 10:20:00+00', 'o-1')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, NULL, '2026-11-27 10:20:00+00', 'o-1')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'USD', now() + interval '1 hour', 'o-1')$q$, :b)) ~ '^22007: .* is in the future$' AS future_rejected;
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'USD', now() + interval '1 minute', 'o-skew')$q$, :b)) AS within_skew_tolerance;
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', ' ', 5, 'USD', '2026-11-27 10:20:00+00', 'o-1')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', '')$q$, :b));
SELECT regress.err($$SELECT smslink.record_conversion(NULL, 'conv-1', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', 'o-1')$$);
SELECT regress.err($$SELECT smslink.record_conversion(999, 'conv-1', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', 'o-1')$$);
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', 'o-1', 987654321)$q$, :b));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'new-subscriber', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', 'o-2', %s)$$, :b, :k));
SELECT regress.err(format($q$SELECT smslink.record_conversion(%s, 'conv-1', 'purchase', 5, 'USD', '2026-11-27 10:20:00+00', 'o-3', NULL, '[1, 2]')$q$, :b));

-- Touchpoints from other channels.
SELECT smslink.record_touchpoint(:b, 'conv-1', 'Email', 'click', '2026-11-26 18:00:00+00', 'newsletter-48', 'esp-click-1') AS tp \gset
SELECT smslink.record_touchpoint(:b, 'conv-1', 'email', 'click', '2026-11-26 18:00:00+00', 'newsletter-48', 'esp-click-1') = :tp AS same_id;
SELECT channel, kind, occurred_at, campaign_ref FROM smslink.touchpoint WHERE id = :tp;
SELECT regress.err(format($q$SELECT smslink.record_touchpoint(%s, 'conv-1', 'email', 'view', '2026-11-26 18:00:00+00', 'newsletter-48', 'esp-click-1')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_touchpoint(%s, 'conv-1', 'email', 'open', '2026-11-26 18:00:00+00', NULL, 'esp-2')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_touchpoint(%s, 'conv-1', 'sms', 'click', '2026-11-26 18:00:00+00', NULL, 'esp-3')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_touchpoint(%s, 'conv-1', 'paid social', 'view', '2026-11-26 18:00:00+00', NULL, 'esp-4')$q$, :b));
SELECT regress.err(format($q$SELECT smslink.record_touchpoint(%s, 'conv-1', 'email', 'view', now() + interval '1 day', NULL, 'esp-5')$q$, :b)) ~ '^22007: .* is in the future$' AS future_rejected;
