-- Data for the JDBC test (tests/jdbc/MetricsJdbcTest.java): the hand-counted history of
-- tests/pg_regress/sql/metrics.sql, on its own in a fresh database, so the expected numbers are
-- the ones in tests/pg_regress/expected/metrics.out. The one change: the silent campaign that
-- anomalies must find belongs to a second brand, so that the first brand's daily series keeps
-- the regress numbers although every row is written before the test reads any.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS smslink;
\ir ../fixtures/metrics_history.sql
-- Anomalies: a campaign delivered to 60 subscribers with no click at all (a tracking failure),
-- under a second brand.
SELECT smslink.create_brand('Quiet Co') AS b2 \gset
SELECT smslink.add_domain(:b2, 'go.quiet.example') AS d2 \gset
SELECT smslink.create_campaign(:b2, 'Silent') AS c3 \gset
SELECT count(*) FROM smslink.prepare_messages(:c3, 'A', ARRAY(SELECT 'q' || i FROM generate_series(1, 60) i), 'Hi https://shop.example/q') \g /dev/null
SELECT smslink.mark_delivered(array_agg(m.id), array_agg(timestamptz '2026-02-10 09:00+00')) FROM smslink.message m WHERE m.campaign_id = :c3 \g /dev/null
-- Experiments: the hand-counted holdout test (tests/fixtures/holdout_hand.sql) under its own brand.
SELECT smslink.create_brand('Holdout Co') AS b \gset
\ir ../fixtures/holdout_hand.sql
