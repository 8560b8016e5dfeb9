-- Bad input: an SQLSTATE, an actionable message, and no partial rows.
CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM smslink.subscriber) AS subscribers,
       (SELECT count(*) FROM smslink.message) AS messages,
       (SELECT count(*) FROM smslink.link) AS links;
-- Unknown campaign, variant, domain; brand without a domain.
SELECT regress.err($$SELECT * FROM smslink.prepare_message(999, 'A', 'new-1', 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_messages(1, 'Z', '{new-1,new-2}', 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT smslink.add_domain(999, 'sms.other.example')$$);
SELECT regress.err($$SELECT smslink.add_domain(1, 'https://sms.acme.example/')$$);
SELECT regress.err($$SELECT smslink.add_domain(1, 'sms.acme.example')$$);
SELECT regress.err($$SELECT smslink.create_campaign(999, 'x')$$);
SELECT regress.err($$SELECT smslink.create_campaign(1, 'x', '{A,A}')$$);
SELECT regress.err($$UPDATE smslink.campaign SET domain_id = 999 WHERE id = 1$$);
SELECT smslink.create_brand('No Domain Co') AS nd \gset
SELECT smslink.create_campaign(:nd, 'Launch') AS nd_campaign \gset
SELECT regress.err(format($$SELECT * FROM smslink.prepare_message(%s, 'A', 'new-1', 'Hi https://nd.example/x')$$, :nd_campaign));
SELECT regress.err($$SELECT smslink.create_brand('Acme Outdoor')$$);
-- Bodies without the URL they need (and saying which).
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'No link here, reply STOP')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Only opt-out: acme.example/stop')$$);
SELECT message_id > 0 AS ok_without_link FROM smslink.prepare_message(1, 'A', 'new-ok', 'No link, just news', require_link => false);
-- Destinations that cannot be tracked.
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Get it at ftp://files.acme.example/cat.pdf')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Sign in https://user:pw@acme.example/')$$);
SELECT regress.err($$INSERT INTO smslink.link (brand_id, message_id, domain_id, position, kind, destination, token)
                     VALUES (1, 1, 1, 9, 'cta', 'javascript:alert(1)', 'x')$$);
SELECT regress.err($$INSERT INTO smslink.link (brand_id, message_id, domain_id, position, kind, destination, token)
                     VALUES (1, 1, 1, 9, 'cta', 'data:text/html,<script>', 'x')$$);
SELECT regress.err($$UPDATE smslink.domain SET fallback_url = 'javascript:void(0)'$$);
-- NULL and malformed keys, kinds, duplicates.
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', NULL, 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_messages(1, 'A', ARRAY['new-1', NULL], 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_messages(1, 'A', '{new-1,new-2,new-1}', 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Hi https://acme.example/x', kinds => '{promo}')$$);
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Hi https://acme.example/x', kinds => '{cta,optout}')$$);
SELECT regress.err($$SELECT * FROM smslink.wrap(999999, 'Hi https://acme.example/x')$$);
SELECT regress.err($$SELECT * FROM smslink.wrap(1, 'Different https://acme.example/other')$$);
-- An invalid opt-out pattern is reported, not ignored.
UPDATE smslink.campaign SET optout_url_pattern = '(unclosed' WHERE id = 1;
SELECT regress.err($$SELECT * FROM smslink.prepare_message(1, 'A', 'new-1', 'Hi https://acme.example/x')$$);
UPDATE smslink.campaign SET optout_url_pattern = NULL WHERE id = 1;
-- Receipts and partitions.
SELECT regress.err($$SELECT smslink.mark_delivered(999999, now())$$);
SELECT regress.err($$SELECT smslink.mark_failed(ARRAY[1, 999998, 999999], ARRAY[now(), now(), now()], ARRAY['a', 'b', 'c'])$$);
SELECT regress.err($$SELECT smslink.mark_delivered(ARRAY[1, 2], ARRAY[now()])$$);
SELECT regress.err($$SELECT * FROM smslink.ensure_partitions('-1 month')$$);
-- Nothing above left a row behind (one message was prepared on purpose with require_link => false).
SELECT (SELECT count(*) FROM smslink.subscriber) - subscribers AS new_subscribers,
       (SELECT count(*) FROM smslink.message) - messages AS new_messages,
       (SELECT count(*) FROM smslink.link) - links AS new_links
  FROM counts;
