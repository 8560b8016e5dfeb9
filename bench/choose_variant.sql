-- choose_variant throughput in one session: 200,000 calls for a bandit campaign, against the same
-- loop calling hashtext (a built-in C function: the floor of a per-row function call), interleaved
-- over :rounds rounds (make bench).
\set QUIET on
\pset footer off
\if :{?rounds} \else \set rounds 3 \endif
SET bench.rounds = :rounds;
SELECT smslink.create_brand('Bench bandit') AS b \gset
SELECT smslink.add_domain(:b, 'go.bandit.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Bandit', '{A,B,C}') AS c \gset
SELECT smslink.set_allocation(:c, 'bandit') AS epoch \gset
CREATE TEMP TABLE t (round int, name text, ms float8);
DO $$
DECLARE t0 timestamptz; n bigint; c bigint := (SELECT max(id) FROM smslink.campaign);
BEGIN
    PERFORM smslink.choose_variant(c, 'warm-up');
    FOR r IN 1..current_setting('bench.rounds')::int LOOP
        t0 := clock_timestamp();
        SELECT count(DISTINCT hashtext('s' || i)) INTO n FROM generate_series(1, 200000) i;
        INSERT INTO t VALUES (r, 'hashtext', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        SELECT count(DISTINCT smslink.choose_variant(c, 's' || i)) INTO n FROM generate_series(1, 200000) i;
        INSERT INTO t VALUES (r, 'choose_variant', 1000 * extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
END $$;
SELECT name, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round(200000 / (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 1000))::bigint AS calls_per_s
  FROM t GROUP BY name ORDER BY name;
SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE name = 'choose_variant')::numeric
           / (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM t WHERE name = 'hashtext')::numeric, 2)
       AS ratio_to_hashtext;
