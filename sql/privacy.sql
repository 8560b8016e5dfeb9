-- The privacy lifecycle (docs/privacy.md): per-brand retention settings, anonymisation of old
-- clicks, retention that folds click rows into exact per-day rollups before removing them, and
-- erasure of one subscriber. Every statement here works on a fresh install and on an upgrade
-- from 0.1.0, and the upgrade script carries this file word for word.

-- Per-brand policy. anonymise_after: clicks older than this lose their user agent, referrer and
-- headers, and their address is cut to its /24 (IPv4) or /48 (IPv6) network. click_retention:
-- click rows older than this are folded into smslink.click_rollup and removed. The *_through
-- columns are how far smslink.apply_retention has got, so that a run reads only new work.
ALTER TABLE smslink.brand
    ADD COLUMN click_retention interval NOT NULL DEFAULT '24 months',
    ADD COLUMN anonymise_after interval NOT NULL DEFAULT '90 days',
    ADD COLUMN anonymised_through timestamptz,
    ADD COLUMN purged_through timestamptz,
    ADD CONSTRAINT brand_privacy_policy CHECK (
        anonymise_after >= interval '1 day' AND click_retention >= anonymise_after
        AND click_retention <= interval '100 years');
COMMENT ON COLUMN smslink.brand.click_retention IS
    'Click rows older than this are folded into click_rollup and removed (default 24 months)';
COMMENT ON COLUMN smslink.brand.anonymise_after IS
    'Clicks older than this keep no user agent, referrer or headers, and only a /24 or /48 address (default 90 days)';

-- An anonymised click keeps its operating-system family (the "os" breakdown reads it once the
-- user agent is gone) and says when it was anonymised (smslink.reclassify leaves it alone: its
-- evidence is gone, so its verdict stands).
ALTER TABLE smslink.click ADD COLUMN os text, ADD COLUMN anonymised_at timestamptz;

-- Click rows past their brand's retention, folded: one row per link, class, device, OS family
-- and UTC day. A link belongs to one message, so every count the reports make (unique clicks
-- per message, total clicks, hits by class, the first click's time for time-to-click) stays
-- exact. The counted touches attribution needs (human clicks on links that are not opt-out
-- links) keep their click id and time, so attribution credits them as before. No address, user
-- agent, referrer or header survives.
CREATE TABLE smslink.click_rollup (
    brand_id      bigint NOT NULL,
    campaign_id   bigint NOT NULL,
    variant_id    bigint NOT NULL,
    message_id    bigint NOT NULL,
    subscriber_id bigint NOT NULL,
    link_id       bigint NOT NULL,
    link_kind     text NOT NULL,
    class         text NOT NULL,
    device        text,
    os            text,
    day           date NOT NULL,
    hits          bigint NOT NULL CHECK (hits >= 1),
    first_at      timestamptz NOT NULL,
    last_at       timestamptz NOT NULL,
    touch_ids     bigint[] NOT NULL DEFAULT '{}',
    touch_times   timestamptz[] NOT NULL DEFAULT '{}',
    CHECK (cardinality(touch_ids) = cardinality(touch_times)),
    UNIQUE NULLS NOT DISTINCT (link_id, class, day, device, os)
);
CREATE INDEX click_rollup_campaign_idx ON smslink.click_rollup (campaign_id);
CREATE INDEX click_rollup_message_idx ON smslink.click_rollup (message_id);
CREATE INDEX click_rollup_subscriber_idx ON smslink.click_rollup (subscriber_id, day);
COMMENT ON TABLE smslink.click_rollup IS
    'Clicks past retention, folded per link, class, device, OS and UTC day (see smslink.apply_retention)';
SELECT pg_catalog.pg_extension_config_dump('smslink.click_rollup', '');

-- Every click the reports count, whether still a row of smslink.click or folded into the
-- rollup: one row per click (hits = 1) or per rollup group (hits = its clicks). Reports sum
-- hits and take min(first_at), so they give the same numbers before and after retention.
CREATE OR REPLACE VIEW smslink.click_fact WITH (security_invoker = true) AS
SELECT c.brand_id, c.campaign_id, c.variant_id, c.message_id, c.subscriber_id, c.link_id,
       c.link_kind, c.class, c.device, coalesce(c.os, smslink.ua_os(c.user_agent)) AS os,
       1::bigint AS hits, c.clicked_at AS first_at, c.clicked_at AS last_at
  FROM smslink.click c
UNION ALL
SELECT r.brand_id, r.campaign_id, r.variant_id, r.message_id, r.subscriber_id, r.link_id,
       r.link_kind, r.class, r.device, r.os, r.hits, r.first_at, r.last_at
  FROM smslink.click_rollup r;
COMMENT ON VIEW smslink.click_fact IS
    'Every counted click: rows of smslink.click (hits = 1) and folded rollup groups (hits = n)';

-- Every touch the attribution models see, without copying a row: SMS human clicks on links that
-- are not opt-out links are 'click' touches (from smslink.click, and those folded into the
-- rollup), SMS deliveries are 'view' touches, and the other channels' touchpoints are what they
-- say. Filters on subscriber_id and touch_at reach each branch's index.
CREATE OR REPLACE VIEW smslink.touch WITH (security_invoker = true) AS
SELECT 'sms'::text AS channel, 'click'::text AS kind, c.brand_id, c.subscriber_id,
       c.clicked_at AS touch_at, c.campaign_id, c.variant_id, c.message_id, c.id AS click_id,
       NULL::text AS campaign_ref, c.id AS source_id
  FROM smslink.click c
 WHERE c.class = 'human' AND c.link_kind <> 'optout'
UNION ALL
SELECT 'sms', 'view', m.brand_id, m.subscriber_id, m.delivered_at, m.campaign_id, m.variant_id,
       m.id, NULL::bigint, NULL::text, m.id
  FROM smslink.message m
 WHERE m.delivered_at IS NOT NULL AND NOT m.is_holdout
UNION ALL
SELECT t.channel, t.kind, t.brand_id, t.subscriber_id, t.occurred_at, NULL::bigint, NULL::bigint,
       NULL::bigint, NULL::bigint, t.campaign_ref, t.id
  FROM smslink.touchpoint t
UNION ALL
SELECT 'sms', 'click', r.brand_id, r.subscriber_id, u.at, r.campaign_id, r.variant_id,
       r.message_id, u.id, NULL::text, u.id
  FROM smslink.click_rollup r CROSS JOIN LATERAL unnest(r.touch_ids, r.touch_times) AS u(id, at)
 WHERE r.class = 'human' AND r.link_kind <> 'optout';
COMMENT ON VIEW smslink.touch IS
    'Attribution touches: SMS human clicks on non-opt-out links (click, including folded ones), SMS deliveries (view), and touchpoints from other channels.';

-- Erasures, without personal data: which subscriber row (a number that no longer leads to a
-- person), when, by whom, and how many rows of each table were changed.
CREATE TABLE smslink.erasure (
    id            bigserial PRIMARY KEY,
    brand_id      bigint NOT NULL REFERENCES smslink.brand (id),
    subscriber_id bigint NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now(),
    erased_by     name NOT NULL DEFAULT session_user,
    changed       jsonb NOT NULL
);
CREATE INDEX erasure_brand_idx ON smslink.erasure (brand_id, erased_at);
COMMENT ON TABLE smslink.erasure IS 'Every smslink.forget_subscriber call that erased someone (no personal data)';
SELECT pg_catalog.pg_extension_config_dump('smslink.erasure', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.erasure_id_seq', '');

-- Tenant isolation for the new tables, as for the others (sql/tenancy.sql).
DO $$
DECLARE
    t text;
    visible text := '((SELECT pg_catalog.pg_has_role(''smslink_admin'', ''USAGE''))
                      OR brand_id IN (SELECT g.brand_id FROM smslink.brand_grant g))';
BEGIN
    FOREACH t IN ARRAY ARRAY['click_rollup', 'erasure'] LOOP
        EXECUTE format('ALTER TABLE smslink.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY brand_rows ON smslink.%I USING %s WITH CHECK %s', t,
                       visible, visible);
    END LOOP;
END $$;

-- An address with its host part zeroed: IPv4 to its /24, IPv6 to its /48 (an address that is
-- already a shorter network stays as it is).
CREATE FUNCTION smslink.anonymise_ip(ip inet) RETURNS inet
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT pg_catalog.network(pg_catalog.set_masklen(ip,
               least(pg_catalog.masklen(ip), CASE pg_catalog.family(ip) WHEN 4 THEN 24 ELSE 48 END)))::inet
$$;

-- Sets a brand's retention and anonymisation periods (NULL keeps the current value) and returns
-- the policy in force, as {"click_retention": ..., "anonymise_after": ...}.
CREATE FUNCTION smslink.set_privacy_policy(brand_id bigint, click_retention interval DEFAULT NULL,
                                           anonymise_after interval DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    keep interval;
    anon interval;
BEGIN
    IF brand_id IS NULL THEN
        RAISE EXCEPTION 'set_privacy_policy: brand_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT coalesce(set_privacy_policy.click_retention, b.click_retention),
           coalesce(set_privacy_policy.anonymise_after, b.anonymise_after)
      INTO keep, anon
      FROM smslink.brand b WHERE b.id = set_privacy_policy.brand_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown brand %', brand_id USING ERRCODE = 'P0002';
    END IF;
    IF anon < interval '1 day' THEN
        RAISE EXCEPTION 'anonymise_after must be at least 1 day, not %', anon USING ERRCODE = '22023',
            HINT = 'the click classifier and smslink.reclassify read addresses and user agents of recent clicks';
    END IF;
    IF keep < anon THEN
        RAISE EXCEPTION 'click_retention (%) must not be shorter than anonymise_after (%)', keep, anon
            USING ERRCODE = '22023';
    END IF;
    IF keep > interval '100 years' THEN
        RAISE EXCEPTION 'click_retention must be at most 100 years, not %', keep USING ERRCODE = '22023';
    END IF;
    UPDATE smslink.brand b SET click_retention = keep, anonymise_after = anon
     WHERE b.id = set_privacy_policy.brand_id;
    RETURN jsonb_build_object('click_retention', keep, 'anonymise_after', anon);
END $$;

-- Internal: folds the click rows `source` selects (a DELETE ... RETURNING or a SELECT of click
-- rows) into smslink.click_rollup, merging with groups already there. Returns the rows folded
-- per brand.
CREATE FUNCTION smslink._fold_clicks(source text) RETURNS TABLE (brand_id bigint, rows bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
WITH src AS (%s), folded AS (
    INSERT INTO smslink.click_rollup AS r (brand_id, campaign_id, variant_id, message_id,
           subscriber_id, link_id, link_kind, class, device, os, day, hits, first_at, last_at,
           touch_ids, touch_times)
    SELECT s.brand_id, s.campaign_id, s.variant_id, s.message_id, s.subscriber_id, s.link_id,
           s.link_kind, s.class, s.device, coalesce(s.os, smslink.ua_os(s.user_agent)),
           (s.clicked_at AT TIME ZONE 'UTC')::date, count(*), min(s.clicked_at), max(s.clicked_at),
           coalesce(array_agg(s.id ORDER BY s.clicked_at, s.id)
                        FILTER (WHERE s.class = 'human' AND s.link_kind <> 'optout'), '{}'),
           coalesce(array_agg(s.clicked_at ORDER BY s.clicked_at, s.id)
                        FILTER (WHERE s.class = 'human' AND s.link_kind <> 'optout'), '{}')
      FROM src s
     GROUP BY s.brand_id, s.campaign_id, s.variant_id, s.message_id, s.subscriber_id, s.link_id,
              s.link_kind, s.class, s.device, coalesce(s.os, smslink.ua_os(s.user_agent)),
              (s.clicked_at AT TIME ZONE 'UTC')::date
    ON CONFLICT (link_id, class, day, device, os) DO UPDATE
       SET hits = r.hits + excluded.hits,
           first_at = least(r.first_at, excluded.first_at),
           last_at = greatest(r.last_at, excluded.last_at),
           touch_ids = r.touch_ids || excluded.touch_ids,
           touch_times = r.touch_times || excluded.touch_times
    RETURNING 1
)
-- (a data-modifying WITH runs to completion whether or not it is read)
SELECT s.brand_id, count(*)::bigint FROM src s GROUP BY 1 ORDER BY 1$q$, source);
END $$;

-- Applies every brand's policy as of `at`: anonymises clicks older than anonymise_after, then
-- folds clicks older than click_retention into smslink.click_rollup and removes them, dropping
-- whole monthly partitions that every brand's policy has passed and deleting rows elsewhere.
-- Returns one row per action and table (and brand). Safe to schedule (pg_cron or any scheduler):
-- one run at a time (a second concurrent run returns a single 'skipped' row), each run reads
-- only the clicks since the last run's cut-offs (one pass for all brands, pruned to those
-- times), and a failed run changes nothing. full_scan re-reads every click older than the
-- cut-offs (for clicks recorded late with old times).
CREATE FUNCTION smslink.apply_retention(at timestamptz DEFAULT now(), full_scan boolean DEFAULT false)
RETURNS TABLE (action text, relation text, brand_id bigint, rows bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    p record;
    n bigint;
    lo timestamptz;
    hi timestamptz;
    global_cut timestamptz;
BEGIN
    IF at IS NULL OR full_scan IS NULL THEN
        RAISE EXCEPTION 'apply_retention: at and full_scan must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF at > now() + interval '1 day' THEN
        RAISE EXCEPTION 'apply_retention: at (%) is in the future', at USING ERRCODE = '22023',
            HINT = 'retention applies policies as of a time no later than now';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('smslink.apply_retention', 0)) THEN
        RETURN QUERY SELECT 'skipped'::text, 'another apply_retention is running'::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS pg_temp.smslink_retention_cut (
        brand_id bigint PRIMARY KEY, anon_lo timestamptz, anon_cut timestamptz,
        purge_lo timestamptz, purge_cut timestamptz) ON COMMIT DROP;
    TRUNCATE pg_temp.smslink_retention_cut;
    INSERT INTO pg_temp.smslink_retention_cut
    SELECT x.id,
           CASE WHEN full_scan THEN '-infinity' ELSE coalesce(x.anonymised_through, '-infinity') END,
           at - x.anonymise_after,
           CASE WHEN full_scan THEN '-infinity' ELSE coalesce(x.purged_through, '-infinity') END,
           at - x.click_retention
      FROM smslink.brand x;

    -- 1. Anonymise: one pass over the clicks between the brands' last cut-offs and their new ones.
    SELECT min(k.anon_lo), max(k.anon_cut) INTO lo, hi
      FROM pg_temp.smslink_retention_cut k WHERE k.anon_cut > k.anon_lo;
    IF lo IS NOT NULL THEN
        RETURN QUERY EXECUTE format($q$
            WITH done AS (
                UPDATE smslink.click c
                   SET os = coalesce(c.os, smslink.ua_os(c.user_agent)),
                       ip = smslink.anonymise_ip(c.ip), user_agent = NULL, referrer = NULL, headers = NULL,
                       anonymised_at = coalesce(c.anonymised_at, now())
                  FROM pg_temp.smslink_retention_cut k
                 WHERE c.brand_id = k.brand_id AND c.clicked_at >= k.anon_lo AND c.clicked_at < k.anon_cut
                   AND c.clicked_at >= %L AND c.clicked_at < %L
                   AND (c.user_agent IS NOT NULL OR c.referrer IS NOT NULL OR c.headers IS NOT NULL
                        OR c.ip IS DISTINCT FROM smslink.anonymise_ip(c.ip))
                RETURNING c.brand_id)
            SELECT 'anonymised'::text, 'smslink.click'::text, d.brand_id, count(*)::bigint
              FROM done d GROUP BY d.brand_id ORDER BY d.brand_id$q$, lo, hi);
        UPDATE smslink.brand x SET anonymised_through = greatest(x.anonymised_through, k.anon_cut)
          FROM pg_temp.smslink_retention_cut k WHERE x.id = k.brand_id AND k.anon_cut > k.anon_lo;
    END IF;

    -- 2. Whole partitions that every brand's retention has passed: fold, then drop.
    SELECT min(k.purge_cut) INTO global_cut FROM pg_temp.smslink_retention_cut k;
    FOR p IN
        SELECT c.oid::regclass AS part, 'smslink.' || c.relname AS name,
               (regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS hi
          FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'smslink.click'::regclass AND c.relispartition
           AND c.oid <> 'smslink.click_default'::regclass
         ORDER BY 3
    LOOP
        EXIT WHEN global_cut IS NULL OR p.hi IS NULL OR p.hi > global_cut;
        SELECT coalesce(sum(f.rows), 0) INTO n FROM smslink._fold_clicks(format('SELECT * FROM %s', p.part)) f;
        EXECUTE format('DROP TABLE %s', p.part);
        RETURN QUERY SELECT 'partition_dropped'::text, p.name, NULL::bigint, n;
    END LOOP;

    -- 3. Rows elsewhere (partitions other brands still need, the default partition): fold and
    --    delete in one statement, one pass for every brand.
    SELECT min(k.purge_lo), max(k.purge_cut) INTO lo, hi
      FROM pg_temp.smslink_retention_cut k WHERE k.purge_cut > k.purge_lo;
    IF lo IS NOT NULL THEN
        RETURN QUERY SELECT 'rows_deleted'::text, 'smslink.click'::text, f.brand_id, f.rows
          FROM smslink._fold_clicks(format(
                 'DELETE FROM smslink.click c USING pg_temp.smslink_retention_cut k
                   WHERE c.brand_id = k.brand_id AND c.clicked_at >= k.purge_lo AND c.clicked_at < k.purge_cut
                     AND c.clicked_at >= %L AND c.clicked_at < %L
                  RETURNING c.*', lo, hi)) f;
        UPDATE smslink.brand x SET purged_through = greatest(x.purged_through, k.purge_cut)
          FROM pg_temp.smslink_retention_cut k WHERE x.id = k.brand_id AND k.purge_cut > k.purge_lo;
    END IF;
END $$;

-- Erases one subscriber's personal data: the key, message bodies and failure texts, the
-- addresses, user agents, referrers and headers of their clicks, and the properties and
-- external ids of their conversions and touchpoints (the order or event ids that lead back to
-- them in other systems). The subscriber row stays under a
-- placeholder key (its id still joins their messages, so every aggregate is unchanged); a later
-- send to the same key creates a fresh subscriber. Records the erasure in smslink.erasure.
-- Idempotent: a second call finds no subscriber with that key and changes nothing.
CREATE FUNCTION smslink.forget_subscriber(brand_id bigint, subscriber_key text)
RETURNS TABLE (relation text, rows bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    sid bigint;
    n bigint;
    changed jsonb := '{}';
BEGIN
    IF brand_id IS NULL OR subscriber_key IS NULL THEN
        RAISE EXCEPTION 'forget_subscriber: brand_id and subscriber_key must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM smslink.brand b WHERE b.id = forget_subscriber.brand_id) THEN
        RAISE EXCEPTION 'unknown brand %', brand_id USING ERRCODE = 'P0002';
    END IF;
    SELECT s.id INTO sid FROM smslink.subscriber s
     WHERE s.brand_id = forget_subscriber.brand_id AND s.external_key = subscriber_key
       FOR UPDATE;
    IF sid IS NULL THEN
        RETURN;
    END IF;

    UPDATE smslink.click c
       SET os = coalesce(c.os, smslink.ua_os(c.user_agent)),
           ip = NULL, user_agent = NULL, referrer = NULL, headers = NULL,
           anonymised_at = coalesce(c.anonymised_at, now())
     WHERE c.subscriber_id = sid
       AND (c.ip IS NOT NULL OR c.user_agent IS NOT NULL OR c.referrer IS NOT NULL OR c.headers IS NOT NULL);
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed || jsonb_build_object('smslink.click', n);

    UPDATE smslink.message m SET body = NULL, failure_reason = NULL
     WHERE m.subscriber_id = sid AND (m.body IS NOT NULL OR m.failure_reason IS NOT NULL);
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed || jsonb_build_object('smslink.message', n);

    UPDATE smslink.conversion v SET properties = '{}', external_id = 'erased:' || v.id
     WHERE v.subscriber_id = sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed || jsonb_build_object('smslink.conversion', n);

    UPDATE smslink.touchpoint t SET external_id = 'erased:' || t.id
     WHERE t.subscriber_id = sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed || jsonb_build_object('smslink.touchpoint', n);

    UPDATE smslink.subscriber s SET external_key = 'erased:' || s.id WHERE s.id = sid;
    changed := changed || jsonb_build_object('smslink.subscriber', 1);

    INSERT INTO smslink.erasure (brand_id, subscriber_id, changed)
    VALUES (forget_subscriber.brand_id, sid, changed);

    RETURN QUERY SELECT e.key, e.value::bigint FROM jsonb_each_text(changed) e ORDER BY e.key;
END $$;

COMMENT ON FUNCTION smslink.apply_retention(timestamptz, boolean) IS
    'Applies every brand''s privacy policy: anonymises old clicks, folds clicks past retention into click_rollup and removes them; one row per action. docs/privacy.md.';
COMMENT ON FUNCTION smslink.forget_subscriber(bigint, text) IS
    'Erases a subscriber''s personal data (key, bodies, click addresses and headers, conversion and touchpoint ids); aggregates unchanged; idempotent. docs/privacy.md.';
COMMENT ON FUNCTION smslink.set_privacy_policy(bigint, interval, interval) IS
    'Sets a brand''s click_retention and anonymise_after (NULL keeps a value); returns the policy in force.';
COMMENT ON FUNCTION smslink.anonymise_ip(inet) IS
    'An address with its host part zeroed: IPv4 to its /24, IPv6 to its /48.';
COMMENT ON FUNCTION smslink._fold_clicks(text) IS
    'Internal to apply_retention: folds the click rows a query returns into smslink.click_rollup.';
