-- One line that must be identical before a pg_dump and after its restore (with the keys restored
-- as docs/operations.md says): row counts, link tokens, sequence positions, and every token
-- still resolving to its link.
\pset tuples_only on
\pset format unaligned
SELECT concat_ws(' ',
    'brands', (SELECT count(*) FROM smslink.brand),
    'domains', (SELECT count(*) FROM smslink.domain),
    'campaigns', (SELECT count(*) FROM smslink.campaign),
    'variants', (SELECT count(*) FROM smslink.variant),
    'subscribers', (SELECT count(*) FROM smslink.subscriber),
    'messages', (SELECT count(*) FROM smslink.message),
    'delivered', (SELECT count(*) FROM smslink.message WHERE status = 'delivered'),
    'links', (SELECT count(*) FROM smslink.link),
    'clicks', (SELECT count(*) FROM smslink.click),
    'partitions', (SELECT count(*) FROM pg_inherits WHERE inhparent = 'smslink.click'::regclass),
    'tokens_resolving', (SELECT count(*) FROM smslink.link WHERE smslink.link_id(token) = id),
    'links_md5', (SELECT md5(string_agg(id || ':' || token || ':' || destination, ',' ORDER BY id)) FROM smslink.link),
    'keys', (SELECT count(*) FROM smslink_secret.token_key),
    'message_seq', (SELECT last_value FROM smslink.message_id_seq),
    'link_seq', (SELECT last_value FROM smslink.link_id_seq),
    'key_seq', (SELECT last_value FROM smslink_secret.token_key_version_seq));
