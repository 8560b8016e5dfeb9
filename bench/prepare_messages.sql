-- prepare_messages against a bare INSERT of the same message and link rows, same run, same
-- database. Subscribers exist beforehand for both; each round truncates messages and links.
-- Variables: :n (messages per round), :rounds.
\pset footer off
\set QUIET on
SET client_min_messages = warning;
SELECT smslink.create_brand('Bench') AS brand_id \gset
SELECT smslink.add_domain(:brand_id, 'sms.bench.example') AS domain_id \gset
UPDATE smslink.brand SET optout_url_pattern = '/stop$' WHERE id = :brand_id;
SELECT smslink.create_campaign(:brand_id, 'bench') AS campaign_id \gset
SELECT id AS variant_id FROM smslink.variant WHERE campaign_id = :campaign_id \gset
INSERT INTO smslink.subscriber (brand_id, external_key)
SELECT :brand_id, '+1555' || lpad(i::text, 7, '0') FROM generate_series(1, :n) i;
VACUUM ANALYZE smslink.subscriber;

CREATE SCHEMA bench;
CREATE TABLE bench.result (round int, method text, seconds float8);

-- The baseline: the same rows (two links per message, a 9-character token each, a body with
-- both short URLs), written with plain INSERT ... SELECT.
CREATE FUNCTION bench.bare_insert(campaign bigint, variant bigint, brand bigint, dom bigint, n int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    INSERT INTO smslink.message (id, brand_id, campaign_id, variant_id, subscriber_id, body, encoding, segments)
    SELECT nextval('smslink.message_id_seq'), brand, campaign, variant, s.id,
           'Acme: Black Friday, 30% off every tent https://sms.bench.example/c/' || substr(md5(s.id::text), 1, 9)
           || ' Stop: https://sms.bench.example/c/' || substr(md5(s.id::text), 10, 9), 'GSM-7', 1
      FROM smslink.subscriber s WHERE s.brand_id = brand ORDER BY s.id LIMIT n;
    INSERT INTO smslink.link (id, brand_id, message_id, domain_id, position, kind, destination, token)
    SELECT nextval('smslink.link_id_seq'), brand, m.id, dom, p,
           CASE p WHEN 1 THEN 'cta' ELSE 'optout' END,
           CASE p WHEN 1 THEN 'https://acme.example/bf?utm_source=sms' ELSE 'https://acme.example/stop' END,
           substr(md5(m.id::text || p::text), 1, 9)
      FROM smslink.message m, generate_series(1, 2) p WHERE m.campaign_id = campaign;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

CREATE FUNCTION bench.prepare(campaign bigint, brand bigint, n int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); got bigint;
BEGIN
    SELECT count(*) INTO got FROM smslink.prepare_messages(campaign, 'A',
        (SELECT array_agg(s.external_key ORDER BY s.id) FROM (SELECT * FROM smslink.subscriber WHERE brand_id = brand ORDER BY id LIMIT n) s),
        'Acme: Black Friday, 30% off every tent https://acme.example/bf?utm_source=sms Stop: https://acme.example/stop');
    IF got <> n THEN RAISE EXCEPTION 'prepared % of %', got, n; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

-- Rounds alternate the two methods; each starts from empty message and link tables.
SELECT stmt FROM (
    SELECT r, k, CASE k
        WHEN 1 THEN 'TRUNCATE smslink.link, smslink.message CASCADE'
        WHEN 2 THEN 'CHECKPOINT'
        WHEN 3 THEN format('INSERT INTO bench.result SELECT %s, %L, bench.bare_insert(%s, %s, %s, %s, %s)',
                           r, 'bare INSERT', :campaign_id, :variant_id, :brand_id, :domain_id, :n)
        WHEN 4 THEN 'TRUNCATE smslink.link, smslink.message CASCADE'
        WHEN 5 THEN 'CHECKPOINT'
        WHEN 6 THEN format('INSERT INTO bench.result SELECT %s, %L, bench.prepare(%s, %s, %s)',
                           r, 'prepare_messages', :campaign_id, :brand_id, :n)
    END AS stmt
      FROM generate_series(1, :rounds) r, generate_series(1, 6) k
     ORDER BY r, k
) s \gexec

\echo
\echo 'prepare_messages vs bare INSERT of the same rows (median of rounds):'
WITH m AS (
    SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS s, count(*) AS rounds
      FROM bench.result GROUP BY method
)
SELECT m.method, :n AS messages, 3 * :n AS rows_written, m.rounds, round(m.s::numeric, 3) AS median_s,
       round((:n / m.s)::numeric) AS messages_per_s,
       round((m.s / b.s)::numeric, 2) AS ratio_to_bare_insert
  FROM m, m b WHERE b.method = 'bare INSERT'
 ORDER BY m.method;
