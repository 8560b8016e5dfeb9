-- Least privilege, secrets apart, pinned search_path and hostile input (issue 15).
\pset footer off
-- Roles are global: drop any left by an interrupted earlier run.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_usage_only, regress_reader, regress_app, regress_analyst, regress_proxy, regress_admin, regress_half;
RESET client_min_messages;

-- Runs a statement and shows its SQLSTATE, message and DETAIL (the statement's rows roll back).
CREATE FUNCTION regress.err_detail(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / detail: ' || coalesce(nullif(d, ''), '(none)');
END $$;

-- The roles below call regress.err.
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- The privilege sweep over the catalogue. PUBLIC can execute no smslink function.
SELECT count(*) AS executable_by_public
  FROM pg_proc p WHERE p.pronamespace = 'smslink'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE');
-- Each role's exact set (by name; overloads alike). smslink_admin is a member of smslink_app and
-- smslink_analyst, so its set includes theirs.
SELECT r AS role, string_agg(DISTINCT p.proname, ', ' ORDER BY p.proname) AS functions
  FROM unnest(ARRAY['smslink_proxy', 'smslink_app', 'smslink_analyst', 'smslink_admin']) r,
       pg_proc p
 WHERE p.pronamespace = 'smslink'::regnamespace AND has_function_privilege(r, p.oid, 'EXECUTE')
 GROUP BY r ORDER BY r;
-- What no role can execute: triggers and helpers that only SECURITY DEFINER functions call.
SELECT string_agg(p.proname, ', ' ORDER BY p.proname) AS internal
  FROM pg_proc p WHERE p.pronamespace = 'smslink'::regnamespace
   AND NOT has_function_privilege('smslink_admin', p.oid, 'EXECUTE')
   AND NOT has_function_privilege('smslink_proxy', p.oid, 'EXECUTE');
-- The roles cannot log in.
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'smslink\_%' ORDER BY rolname;

-- A role with only USAGE on the schema can mint no token.
CREATE ROLE regress_usage_only;
GRANT USAGE ON SCHEMA smslink TO regress_usage_only;
SET ROLE regress_usage_only;
SELECT regress.err('SELECT smslink.token_for(1)');
SELECT regress.err('SELECT * FROM smslink.track_click(''abc'', ''h'', ''GET'', NULL, NULL, NULL, NULL)');
SELECT regress.err('SELECT smslink.classify(''curl/8'', ''GET'', ''{}'', NULL, NULL, NULL)');
RESET ROLE;

-- GRANT SELECT ON ALL TABLES IN SCHEMA smslink does not expose keys or secrets: they are in
-- smslink_secret, which only the owner can use.
CREATE ROLE regress_reader;
GRANT USAGE ON SCHEMA smslink TO regress_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA smslink TO regress_reader;
SET ROLE regress_reader;
SELECT regress.err('SELECT * FROM smslink_secret.token_key');
SELECT regress.err('SELECT * FROM smslink_secret.postback_secret');
SELECT count(*) AS secret_like_tables_in_smslink FROM pg_class
 WHERE relnamespace = 'smslink'::regnamespace AND relname IN ('token_key', 'postback_secret');
RESET ROLE;
SELECT has_schema_privilege('smslink_admin', 'smslink_secret', 'USAGE') AS admin_uses_secrets;

-- search_path is pinned on every function that runs SQL; the only exceptions are Rust functions
-- that run no SQL at all.
SELECT string_agg(p.proname, ', ' ORDER BY p.proname) AS unpinned
  FROM pg_proc p WHERE p.pronamespace = 'smslink'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
SELECT count(*) AS unpinned_not_rust
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'smslink'::regnamespace AND l.lanname <> 'c'
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');

-- The roles at work, each through a login-less member role.
CREATE ROLE regress_app IN ROLE smslink_app;
CREATE ROLE regress_analyst IN ROLE smslink_analyst;
CREATE ROLE regress_proxy IN ROLE smslink_proxy;
CREATE ROLE regress_admin IN ROLE smslink_admin;

SET ROLE regress_app;
SELECT smslink.create_brand('Least Privilege Co') AS lp_brand \gset
SELECT smslink.add_domain(:lp_brand, 'go.lp.example') > 0 AS domain_added;
SELECT smslink.create_campaign(:lp_brand, 'LP launch', '{A,B}') AS lp_campaign \gset
SELECT count(*) AS prepared FROM smslink.prepare_messages(:lp_campaign, 'A',
       ARRAY['+15557770001', '+15557770002', '+15557770003'], 'Launch: https://lp.example/new');
SELECT m.id AS lp_message, l.token AS lp_token FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id
 WHERE m.campaign_id = :lp_campaign ORDER BY m.id LIMIT 1 \gset
SELECT smslink.mark_delivered(ARRAY(SELECT id FROM smslink.message WHERE campaign_id = :lp_campaign),
       ARRAY(SELECT now() - interval '1 hour' FROM smslink.message WHERE campaign_id = :lp_campaign)) AS delivered;
SELECT smslink.choose_variant(:lp_campaign, '+15557770009') IN ('A', 'B') AS variant_chosen;
SELECT regress.err('SELECT smslink.token_for(1)');
SELECT regress.err('SELECT smslink.rotate_token_key()');
SELECT regress.err('SELECT * FROM smslink_secret.token_key');
RESET ROLE;

SET ROLE regress_proxy;
SELECT status FROM smslink.track_click(:'lp_token', 'go.lp.example', 'GET',
       'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
       '203.0.113.9', NULL, '{"accept-language": "en-US"}');
SELECT regress.err('SELECT count(*) FROM smslink.click');
SELECT regress.err('SELECT smslink.create_brand(''proxy brand'')');
RESET ROLE;

SET ROLE regress_app;
SELECT smslink.record_conversion(:lp_brand, '+15557770001', 'purchase', 25, 'USD', now(), 'lp-order-1') > 0 AS converted;
RESET ROLE;

-- (analysts see the brands they are granted: sql/tenancy.sql)
SELECT smslink.grant_brand('regress_analyst', :lp_brand) AS analyst_granted;
SET ROLE regress_analyst;
SELECT delivered, unique_clicks, conversions FROM smslink.campaign_metrics(ARRAY[:lp_campaign]::bigint[]);
SELECT count(*) AS credited FROM smslink.attribute('last_click', now() - interval '1 day', now() + interval '1 day') a
 WHERE a.campaign_id = :lp_campaign;
SELECT count(*) AS variants FROM smslink.variant_stats(:lp_campaign);
SELECT count(*) AS links_seen FROM smslink.link WHERE brand_id = :lp_brand;
SELECT count(*) AS link_info_rows FROM smslink.link_info WHERE brand_id = :lp_brand;
SELECT regress.err('SELECT token FROM smslink.link LIMIT 1');
SELECT regress.err('SELECT * FROM smslink.link LIMIT 1');
SELECT regress.err('SELECT smslink.create_brand(''analyst brand'')');
SELECT regress.err('UPDATE smslink.brand SET name = name');
SELECT regress.err('SELECT smslink.rotate_token_key()');
RESET ROLE;

SET ROLE regress_admin;
SELECT smslink.rotate_token_key() > 1 AS rotated;
SELECT smslink.token_for(1) IS NOT NULL AS minted;
SELECT count(*) >= 0 AS partitions_ensured FROM smslink.ensure_partitions('1 month');
SELECT smslink.snapshot_rejections() IS NOT NULL AS snapshot;
SELECT regress.err('SELECT * FROM smslink_secret.token_key');
RESET ROLE;

-- A search_path hijack: lookalikes of built-ins the extension's functions call, in a schema
-- earlier in the path, are never called.
CREATE TABLE regress.hijacked (fn text);
GRANT INSERT ON regress.hijacked TO PUBLIC;
CREATE FUNCTION public.to_char(date, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress.hijacked VALUES ('to_char'); RETURN 'hijacked'; END $$;
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress.hijacked VALUES ('lower'); RETURN 'hijacked'; END $$;
CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress.hijacked VALUES ('btrim'); RETURN 'hijacked'; END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress.hijacked VALUES ('now'); RETURN '2000-01-01'; END $$;
SET search_path = public, pg_catalog;
SELECT count(*) >= 1 AS partitions FROM smslink.ensure_partitions('24 months');
SELECT smslink.create_brand('Hijack Test') > 0 AS brand_created;
SELECT count(*) AS rows FROM smslink.campaign_metrics(ARRAY[:lp_campaign]::bigint[]);
SELECT count(*) AS rows FROM smslink.daily_metrics(pg_catalog.now() - interval '1 day', pg_catalog.now() + interval '1 day');
SELECT count(*) AS rows FROM smslink.anomalies(pg_catalog.now() - interval '1 day', pg_catalog.now() + interval '1 day');
RESET search_path;
SELECT count(*) AS hijacked_calls FROM regress.hijacked;
DROP FUNCTION public.to_char(date, text), public.lower(text), public.btrim(text), public.now();

-- Hostile input: non-finite and absurd values are refused with 22023.
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'k1', 'purchase', 'NaN', 'USD', now(), 'nan-1')$$, :lp_brand));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'k1', 'purchase', 'Infinity', 'USD', now(), 'inf-1')$$, :lp_brand));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'k1', 'refund', '-Infinity', 'USD', now(), 'inf-2')$$, :lp_brand));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'k1', 'purchase', 1e13, 'USD', now(), 'big-1')$$, :lp_brand));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, 'k1', 'purchase', 1e12, 'USD', now(), 'max-1')$$, :lp_brand)) AS at_the_maximum;
-- Click times further ahead of the database's clock than the skew allowance (300 s).
SELECT regress.err($$SELECT * FROM smslink.ingest_clicks(ARRAY[gen_random_uuid(), gen_random_uuid()], NULL,
       ARRAY[now(), now() + interval '1 hour'], ARRAY['x', 'y'], NULL, NULL, NULL, NULL, NULL, NULL)$$);
SELECT regress.err($$SELECT * FROM smslink.track_click('x', 'h', 'GET', NULL, NULL, NULL, NULL, now() + interval '10 minutes')$$);
SELECT regress.err($$SELECT * FROM smslink.track_clicks(ARRAY['x'], NULL, NULL, NULL, NULL, NULL, NULL, now() + interval '10 minutes')$$);
SELECT regress.err($$SELECT * FROM smslink.track_click('x', 'h', 'GET', NULL, NULL, NULL, NULL, now() + interval '4 minutes')$$) AS within_skew;

-- An error raised inside a Rust function's SQL carries no backtrace: a role that may execute
-- create_brand but has no privilege on the table it writes.
CREATE ROLE regress_half;
GRANT USAGE ON SCHEMA smslink TO regress_half;
GRANT EXECUTE ON FUNCTION smslink.record_conversion(bigint, text, text, numeric, text, timestamptz, text, bigint, jsonb) TO regress_half;
GRANT EXECUTE ON FUNCTION smslink.variant_stats(bigint, text, text, double precision, text[], double precision) TO regress_half;
SET ROLE regress_half;
SELECT regress.err_detail(format($$SELECT smslink.record_conversion(%s, 'k1', 'purchase', 1, 'USD', now(), 'half-1')$$, :lp_brand));
SELECT regress.err_detail(format('SELECT * FROM smslink.variant_stats(%s)', :lp_campaign));
RESET ROLE;
SELECT regress.err_detail('SELECT * FROM smslink.variant_stats(987654321)');

-- The token check: a token must be its link's own. Point a link's stored token elsewhere (as a
-- restore without the keys would leave it): its real token no longer resolves to it.
SELECT l.id AS lp_link FROM smslink.link l WHERE l.token = :'lp_token' \gset
UPDATE smslink.link SET token = 'zzzzzzzzz' WHERE id = :lp_link;
SELECT status FROM smslink.track_click(:'lp_token', 'go.lp.example', 'GET', NULL, '203.0.113.9', NULL, NULL);
UPDATE smslink.link SET token = :'lp_token' WHERE id = :lp_link;
SELECT status FROM smslink.track_click(:'lp_token', 'go.lp.example', 'GET', NULL, '203.0.113.9', NULL, NULL);

DROP OWNED BY regress_usage_only, regress_reader, regress_app, regress_analyst, regress_proxy, regress_admin, regress_half;
DROP ROLE regress_usage_only, regress_reader, regress_app, regress_analyst, regress_proxy, regress_admin, regress_half;

-- Markov refuses more states than its cap (1,000): a subscriber with touches on 1,001 channels.
INSERT INTO smslink.subscriber (brand_id, external_key) VALUES (:lp_brand, '+15557779999');
INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, external_id)
SELECT :lp_brand, s.id, 'channel-' || i, 'click', '2020-03-01'::timestamptz + i * interval '1 second', 'cap-' || i
  FROM smslink.subscriber s, generate_series(1, 1001) i WHERE s.external_key = '+15557779999';
SELECT regress.err(format($$SELECT * FROM smslink.markov_removal_effects('2020-03-01', '2020-03-02', brand_id => %s)$$, :lp_brand));
DELETE FROM smslink.touchpoint WHERE external_id LIKE 'cap-%' AND substr(external_id, 5)::int > 3;
SELECT count(*) AS states FROM smslink.markov_removal_effects('2020-03-01', '2020-03-02', brand_id => :lp_brand);
