-- A three-variant bandit campaign with 3,000 delivered messages and some clicks, for the
-- non-blocking epoch test (scripts/test.sh, step "click concurrency"). Prints the campaign id.
SET client_min_messages = warning;
SELECT smslink.create_brand('Bandit race') AS b \gset
SELECT smslink.add_domain(:b, 'b.conc.example') AS d \gset
SELECT smslink.create_campaign(:b, 'bandit race', '{A,B,C}') AS c \gset
SELECT count(*) FROM unnest('{A,B,C}'::text[]) v,
       LATERAL smslink.prepare_messages(:c, v, ARRAY(SELECT 'br-' || v || i FROM generate_series(1, 1000) i),
                                        'Race https://shop.example/bandit') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 hour'))
  FROM smslink.message WHERE campaign_id = :c \g /dev/null
INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method)
SELECT now() - interval '30 minutes', m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, l.kind, 'GET'
  FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id JOIN smslink.variant v ON v.id = m.variant_id
 WHERE m.campaign_id = :c AND m.id % 100 < CASE v.key WHEN 'A' THEN 5 WHEN 'B' THEN 6 ELSE 8 END;
SELECT smslink.set_allocation(:c, 'bandit') \g /dev/null
\echo :c
