-- track_click against the durability ceiling: 20,000 delivered messages with one link each,
-- tokens numbered for pgbench, and a bare table of the same shape as smslink.click.
SET client_min_messages = warning;
SELECT smslink.create_brand('Bench clicks') AS b \gset
SELECT smslink.add_domain(:b, 'go.bench.example') AS d \gset
SELECT smslink.create_campaign(:b, 'bench') AS c \gset
SELECT count(*) FROM smslink.prepare_messages(:c, 'A',
    ARRAY(SELECT 'b-' || i FROM generate_series(1, 20000) i), 'Deal https://shop.example/deal') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(now() - interval '1 minute')) FROM smslink.message \g /dev/null
SELECT count(*) FROM smslink.ensure_partitions('1 month') \g /dev/null
CREATE SCHEMA bench;
CREATE TABLE bench.token (i int PRIMARY KEY, token text NOT NULL, link_id bigint NOT NULL);
INSERT INTO bench.token SELECT row_number() OVER (ORDER BY id), token, id FROM smslink.link;
-- Forged tokens of the right shape under the live key slot.
CREATE TABLE bench.forged (i int PRIMARY KEY, token text NOT NULL);
INSERT INTO bench.forged SELECT i, substr((SELECT token FROM smslink.link LIMIT 1), 1, 1) || substr(md5(i::text), 1, 8)
  FROM generate_series(1, 20000) i;
-- The baseline's log: the same columns, indexes and partitioning as smslink.click.
CREATE TABLE bench.click (LIKE smslink.click INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (clicked_at);
CREATE TABLE bench.click_default PARTITION OF bench.click DEFAULT;
ALTER TABLE bench.click_default ADD PRIMARY KEY (id, clicked_at);
CREATE INDEX ON bench.click_default (campaign_id, clicked_at);
CREATE INDEX ON bench.click_default (message_id, clicked_at);
CREATE INDEX ON bench.click_default (subscriber_id, clicked_at);
CREATE INDEX ON bench.click_default (link_id, clicked_at);
CREATE INDEX ON bench.click_default (ip, clicked_at) WHERE ip IS NOT NULL;
VACUUM ANALYZE;
