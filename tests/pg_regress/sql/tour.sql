-- The five-minute tour of the README, as a test.
\pset footer off
SELECT smslink.create_brand('Acme Outdoor') AS brand_id;
SELECT smslink.add_domain(1, 'sms.acme.example') AS domain_id;
UPDATE smslink.brand SET optout_url_pattern = '/(stop|unsubscribe|optout)\b' WHERE id = 1;
SELECT smslink.create_campaign(1, 'Black Friday', '{A,B}') AS campaign_id;
SELECT key FROM smslink.variant WHERE campaign_id = 1 ORDER BY id;

-- One message: the subscriber is created, both URLs become tracked links.
SELECT message_id, regress.mask(body) AS body, encoding, segments
  FROM smslink.prepare_message(1, 'A', '+15550000001',
       'Acme: 30% off all tents today! https://acme.example/bf?utm_source=sms Reply STOP or acme.example/stop');
SELECT position, kind, destination, length(token) AS token_len, smslink.link_id(token) = id AS resolves
  FROM smslink.link WHERE message_id = 1 ORDER BY position;
SELECT external_key FROM smslink.subscriber;

-- A whole send in one statement.
SELECT count(*) AS prepared, min(regress.mask(body)) AS body, min(encoding) AS encoding, max(segments) AS segments
  FROM smslink.prepare_messages(1, 'B',
       ARRAY(SELECT '+1555100' || lpad(i::text, 4, '0') FROM generate_series(1, 500) i),
       'Acme ⛺ Black Friday: tents 30% off https://acme.example/bf. Stop: https://acme.example/stop');
SELECT kind, count(*) FROM smslink.link GROUP BY kind ORDER BY kind;
SELECT count(DISTINCT token) = count(*) AS tokens_unique FROM smslink.link;
SELECT count(*) AS bodies_with_their_tokens
  FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
 WHERE strpos(m.body, 'https://sms.acme.example/c/' || l.token) > 0;

-- Opted-out subscribers: refused one at a time, skipped (with a NOTICE) in a send.
UPDATE smslink.subscriber SET opted_out_at = '2026-01-01' WHERE external_key = '+15551000001';
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', '+15551000001', 'Hi https://acme.example/x')$$);
SELECT count(*) FROM smslink.prepare_messages(1, 'A', '{+15551000001,+15551000002}', 'Hi https://acme.example/x');

-- wrap() on a message created with plain SQL, then again: idempotent.
INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id)
SELECT 1, 1, v.id, s.id FROM smslink.variant v, smslink.subscriber s
 WHERE v.campaign_id = 1 AND v.key = 'A' AND s.external_key = '+15550000001'
RETURNING id AS plain_message_id \gset
SELECT regress.mask(body) AS body, encoding, segments, characters, links
  FROM smslink.wrap(:plain_message_id, 'New arrivals (https://acme.example/new), shop.acme.example/sale!');
SELECT count(*) AS links_before FROM smslink.link WHERE message_id = :plain_message_id;
SELECT regress.mask(body) AS body, links
  FROM smslink.wrap(:plain_message_id, 'New arrivals (https://acme.example/new), shop.acme.example/sale!');
SELECT count(*) AS links_after FROM smslink.link WHERE message_id = :plain_message_id;
SELECT position, kind, destination FROM smslink.link WHERE message_id = :plain_message_id ORDER BY position;
-- Wrapping an already wrapped body finds nothing new to wrap.
SELECT links FROM smslink.wrap(:plain_message_id, (SELECT body FROM smslink.message WHERE id = :plain_message_id), require_link => false);

-- Caller-given kinds; transactional campaigns.
SELECT smslink.create_campaign(1, 'Order updates') AS tx_campaign \gset
UPDATE smslink.campaign SET purpose = 'transactional' WHERE id = :tx_campaign;
SELECT message_id FROM smslink.prepare_message(:tx_campaign, 'A', '+15550000001',
       'Your order shipped: https://acme.example/track/123') \gset tx_
SELECT kind FROM smslink.link WHERE message_id = :tx_message_id;
SELECT message_id FROM smslink.prepare_message(1, 'A', '+15550000009',
       'Pick one: https://acme.example/a https://acme.example/b', kinds => '{secondary,cta}') \gset k_
SELECT position, kind FROM smslink.link WHERE message_id = :k_message_id ORDER BY position;

-- Delivery receipts, idempotent; bulk form returns how many changed.
SELECT smslink.mark_delivered(1, '2026-11-27 10:00:05+00');
SELECT smslink.mark_delivered(1, '2026-11-27 10:00:05+00');
SELECT smslink.mark_delivered(ARRAY[2, 3, 4], ARRAY['2026-11-27 10:00:07+00', '2026-11-27 10:00:09+00', '2026-11-27 10:00:11+00']::timestamptz[]) AS changed;
SELECT smslink.mark_delivered(ARRAY[2, 3, 4], ARRAY['2026-11-27 10:00:07+00', '2026-11-27 10:00:09+00', '2026-11-27 10:00:11+00']::timestamptz[]) AS changed_again;
-- An earlier receipt for a delivered message keeps the earliest time.
SELECT smslink.mark_delivered(ARRAY[2], ARRAY['2026-11-27 10:00:06+00']::timestamptz[]) AS earlier;
SELECT smslink.mark_failed(5, '2026-11-27 10:01:00+00', 'carrier 30007: filtered');
SELECT smslink.mark_failed(5, '2026-11-27 10:01:00+00', 'carrier 30007: filtered');
SELECT id, status, delivered_at, failed_at, failure_reason FROM smslink.message WHERE id <= 5 ORDER BY id;
SELECT regress.err($$SELECT smslink.mark_failed(1, now(), 'late failure')$$);
-- A delivery after a failure wins (the retry got through).
SELECT smslink.mark_delivered(5, '2026-11-27 10:03:00+00');
SELECT status, delivered_at FROM smslink.message WHERE id = 5;

-- Clicks (captured by track_click in a later release) can be written with plain SQL too. A click
-- for a month with no partition lands in the default partition; ensure_partitions creates this
-- month, next month and that month, and moves the row.
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method, user_agent)
SELECT t, l.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, l.kind, 'GET', 'Mozilla/5.0 (iPhone)'
  FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id,
       (VALUES (timestamptz '2025-03-15 12:00+00'), (now())) v(t)
 WHERE l.message_id = 1 AND l.position = 1;
SELECT count(*) AS in_default FROM smslink.click_default;
SELECT count(*) AS partitions_created FROM smslink.ensure_partitions('1 month');
SELECT count(*) AS in_default FROM smslink.click_default;
SELECT count(*) AS in_march_2025 FROM smslink.click_2025_03;
SELECT count(*) AS clicks FROM smslink.click;
