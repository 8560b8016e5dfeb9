-- smslink 0.1.0 -> 0.2.0. Run by ALTER EXTENSION smslink UPDATE; keeps every row.
\echo Use "ALTER EXTENSION smslink UPDATE TO '0.2.0'" to load this file. \quit

-- Note: adding link.feed_xid and campaign.feed_xid rewrites those tables (an ACCESS EXCLUSIVE
-- lock for the time it takes; about a minute per 10 million links on a small machine).

------------------------------------------------------------------------------------------------
-- The edge click path (issue 14): the schema part is sql/edge.sql, word for word.
------------------------------------------------------------------------------------------------

-- Every click the proxy sends carries an id it assigned (a UUID), so that a spool replayed after
-- a crash, or a click retried on another path, is logged once. Unique per partition with the
-- partition key, which the click's original request time fixes: a replay has the same time.
ALTER TABLE smslink.click ADD COLUMN request_id uuid;
COMMENT ON COLUMN smslink.click.request_id IS
    'The id the proxy gave the request (NULL for clicks logged by direct SQL calls); a click with a request id already logged is ignored';
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_catalog.pg_inherits
                 WHERE inhparent = 'smslink.click'::regclass
    LOOP
        EXECUTE format('CREATE UNIQUE INDEX %I ON %s (request_id, clicked_at) WHERE request_id IS NOT NULL',
                       (SELECT relname FROM pg_catalog.pg_class WHERE oid = part) || '_request_idx', part);
    END LOOP;
END $$;

-- Click ids for taps answered at the edge are assigned by the proxy before the database sees
-- the click (the landing page gets them in {click_id}), from blocks it leases here. Blocks lie
-- above 2^48, so they never meet the ids the database path takes from click_id_seq.
ALTER SEQUENCE smslink.click_id_seq MAXVALUE 281474976710655;
CREATE SEQUENCE smslink.click_id_block_seq MINVALUE 0 START 0;
SELECT pg_catalog.pg_extension_config_dump('smslink.click_id_block_seq', '');

-- The link feed. Every write to a link or campaign records the writing transaction's id; a
-- proxy reads the rows of transactions that have all finished (below the snapshot's xmin), so
-- nothing committed late is ever skipped, whatever order transactions commit in.
CREATE FUNCTION smslink.feed_xid() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.pg_current_xact_id()::text::bigint $$;
COMMENT ON FUNCTION smslink.feed_xid() IS
    'The current transaction''s id as a bigint: the feed position of the rows it writes';

ALTER TABLE smslink.link ADD COLUMN feed_xid bigint NOT NULL DEFAULT smslink.feed_xid();
CREATE INDEX link_feed_idx ON smslink.link (feed_xid, id);
COMMENT ON COLUMN smslink.link.feed_xid IS
    'The transaction that last changed where this link leads (the edge feed''s position)';
ALTER TABLE smslink.campaign ADD COLUMN feed_xid bigint NOT NULL DEFAULT smslink.feed_xid();
COMMENT ON COLUMN smslink.campaign.feed_xid IS
    'The transaction that last changed the campaign''s fallback or click parameter (the edge feed''s position)';

CREATE FUNCTION smslink.touch_feed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.feed_xid := smslink.feed_xid();
    RETURN NEW;
END $$;
COMMENT ON FUNCTION smslink.touch_feed() IS
    'Trigger: a changed link or campaign takes the current transaction as its feed position';
CREATE TRIGGER link_feed BEFORE UPDATE ON smslink.link FOR EACH ROW
    WHEN (OLD.destination IS DISTINCT FROM NEW.destination
       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.fallback_url IS DISTINCT FROM NEW.fallback_url
       OR OLD.token IS DISTINCT FROM NEW.token
       OR OLD.domain_id IS DISTINCT FROM NEW.domain_id
       OR OLD.message_id IS DISTINCT FROM NEW.message_id)
    EXECUTE FUNCTION smslink.touch_feed();
-- A link whose token changed leaves a tombstone for the old token (read before the new row).
CREATE FUNCTION smslink.link_token_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO smslink.link_tombstone (link_id, token) VALUES (OLD.id, OLD.token);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION smslink.link_token_changed() IS
    'Trigger: a link whose token changed leaves a tombstone for the old token';
CREATE TRIGGER link_token_changed AFTER UPDATE OF token ON smslink.link FOR EACH ROW
    WHEN (OLD.token IS DISTINCT FROM NEW.token)
    EXECUTE FUNCTION smslink.link_token_changed();
CREATE TRIGGER campaign_feed BEFORE UPDATE ON smslink.campaign FOR EACH ROW
    WHEN (OLD.fallback_url IS DISTINCT FROM NEW.fallback_url
       OR OLD.click_param IS DISTINCT FROM NEW.click_param)
    EXECUTE FUNCTION smslink.touch_feed();

-- A subscriber key is part of a cached landing URL ({subscriber}): a changed key (erasure,
-- pseudonymisation) re-feeds the subscriber's links.
CREATE FUNCTION smslink.subscriber_feed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE smslink.link l SET feed_xid = smslink.feed_xid()
      FROM smslink.message m
     WHERE m.subscriber_id = NEW.id AND l.message_id = m.id;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION smslink.subscriber_feed() IS
    'Trigger: a subscriber whose key changed has its links fed to the edge proxies again';
CREATE TRIGGER subscriber_feed AFTER UPDATE OF external_key ON smslink.subscriber FOR EACH ROW
    WHEN (OLD.external_key IS DISTINCT FROM NEW.external_key)
    EXECUTE FUNCTION smslink.subscriber_feed();

-- Deleted links leave a tombstone, so that a proxy drops them from its cache.
CREATE TABLE smslink.link_tombstone (
    link_id    bigint NOT NULL,
    token      text NOT NULL,
    feed_xid   bigint NOT NULL DEFAULT smslink.feed_xid(),
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_xid, link_id, token)
);
COMMENT ON TABLE smslink.link_tombstone IS
    'Links deleted since the edge proxies loaded them: the feed tells proxies to forget them';
SELECT pg_catalog.pg_extension_config_dump('smslink.link_tombstone', '');
CREATE FUNCTION smslink.link_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO smslink.link_tombstone (link_id, token) SELECT id, token FROM gone;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION smslink.link_deleted() IS
    'Trigger: deleted links leave tombstones in smslink.link_tombstone for the edge feed';
CREATE TRIGGER link_tombstone AFTER DELETE ON smslink.link
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION smslink.link_deleted();

-- The feed functions, for the proxy role only.
CREATE FUNCTION smslink.edge_horizon() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint $$;
COMMENT ON FUNCTION smslink.edge_horizon() IS
    'Every transaction below this id has finished: the edge feed reads changes up to it';

CREATE FUNCTION smslink.edge_start(max_links int, OUT horizon bigint, OUT after_link bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT smslink.edge_horizon(),
           coalesce((SELECT id FROM smslink.link ORDER BY id DESC
                      OFFSET greatest(max_links, 0) LIMIT 1), 0)
$$;
COMMENT ON FUNCTION smslink.edge_start(int) IS
    'Where a cold edge cache starts: the feed horizon now, and the link id after which the newest max_links links lie';

-- The columns a cached link needs (one definition for both feed functions).
CREATE VIEW smslink.edge_link AS
SELECT l.feed_xid, l.id AS link_id, l.token, false AS deleted, l.domain_id, m.campaign_id,
       l.message_id, l.destination, l.fallback_url, l.expires_at,
       s.external_key AS subscriber_key, v.key AS variant_key
  FROM smslink.link l
  JOIN smslink.message m ON m.id = l.message_id
  JOIN smslink.subscriber s ON s.id = m.subscriber_id
  JOIN smslink.variant v ON v.id = m.variant_id;
REVOKE ALL ON smslink.edge_link FROM PUBLIC;
COMMENT ON VIEW smslink.edge_link IS 'What the edge proxy caches of a link (read through smslink.edge_links)';

CREATE FUNCTION smslink.edge_links_by_id(after_link bigint, max_rows int DEFAULT 10000)
RETURNS SETOF smslink.edge_link
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.* FROM smslink.edge_link e
     WHERE e.link_id > after_link
     ORDER BY e.link_id
     LIMIT least(greatest(max_rows, 1), 100000)
$$;
COMMENT ON FUNCTION smslink.edge_links_by_id(bigint, int) IS
    'Cold start of an edge cache: links with id above after_link, in id order';

CREATE FUNCTION smslink.edge_links(after_xid bigint, after_link bigint, horizon bigint,
                                   max_rows int DEFAULT 10000)
RETURNS SETOF smslink.edge_link
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.* FROM (
        -- >= for links: a page that ended on a link's tombstone (a changed token: tombstone
        -- and new row share a position, the tombstone first) must still bring the new row;
        -- a page that ended on the row itself brings it again, which is harmless.
        (SELECT e.* FROM smslink.edge_link e
          WHERE (e.feed_xid, e.link_id) >= (after_xid, after_link) AND e.feed_xid < horizon
          ORDER BY e.feed_xid, e.link_id
          LIMIT least(greatest(max_rows, 1), 100000))
        UNION ALL
        (SELECT t.feed_xid, t.link_id, t.token, true, NULL::bigint, NULL::bigint, NULL::bigint,
                NULL::text, NULL::text, NULL::timestamptz, NULL::text, NULL::text
           FROM smslink.link_tombstone t
          WHERE (t.feed_xid, t.link_id) > (after_xid, after_link) AND t.feed_xid < horizon
          ORDER BY t.feed_xid, t.link_id
          LIMIT least(greatest(max_rows, 1), 100000))
    ) u
    ORDER BY u.feed_xid, u.link_id, u.deleted DESC
    LIMIT least(greatest(max_rows, 1), 100000)
$$;
COMMENT ON FUNCTION smslink.edge_links(bigint, bigint, bigint, int) IS
    'Links changed (or deleted) by transactions after (after_xid, after_link) and below horizon, in feed order';

CREATE FUNCTION smslink.edge_campaigns(from_xid bigint, horizon bigint)
RETURNS TABLE (feed_xid bigint, campaign_id bigint, fallback_url text, click_param text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.feed_xid, c.id, c.fallback_url, c.click_param FROM smslink.campaign c
     WHERE (from_xid IS NULL OR c.feed_xid >= from_xid) AND (horizon IS NULL OR c.feed_xid < horizon)
     ORDER BY c.id
$$;
COMMENT ON FUNCTION smslink.edge_campaigns(bigint, bigint) IS
    'Campaign settings that decide where a tap lands, changed in [from_xid, horizon) (NULL: no bound)';

CREATE FUNCTION smslink.edge_domains()
RETURNS TABLE (domain_id bigint, host text, fallback_url text, brand_fallback_url text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.id, d.host, d.fallback_url, b.fallback_url
      FROM smslink.domain d JOIN smslink.brand b ON b.id = d.brand_id
     ORDER BY d.id
$$;
COMMENT ON FUNCTION smslink.edge_domains() IS
    'Every branded domain with its fallback URL and its brand''s: the edge proxy''s host list (the domain''s ends the expiry chain; either serves taps on unknown tokens while the database is unreachable)';

CREATE FUNCTION smslink.edge_lease_click_ids(OUT first_id bigint, OUT last_id bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 281474976710656 + b * 1048576, 281474976710656 + b * 1048576 + 1048575
      FROM (SELECT nextval('smslink.click_id_block_seq') AS b) s
$$;
COMMENT ON FUNCTION smslink.edge_lease_click_ids() IS
    'A block of 1,048,576 click ids for an edge proxy to give taps it answers before the database logs them';

-- Whether a click id lies in a block an edge proxy has leased: a conversion that names such a
-- click before the proxy shipped it is told to retry rather than refused.
CREATE FUNCTION smslink.is_leased_click_id(click_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT click_id >= 281474976710656
       AND (SELECT CASE WHEN is_called THEN last_value END FROM smslink.click_id_block_seq)
           >= (click_id - 281474976710656) / 1048576
$$;
COMMENT ON FUNCTION smslink.is_leased_click_id(bigint) IS
    'True when click_id was leased to an edge proxy (the click may not have been shipped yet)';

REVOKE EXECUTE ON FUNCTION smslink.edge_horizon() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_start(int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_links_by_id(bigint, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_links(bigint, bigint, bigint, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_campaigns(bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_domains() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION smslink.edge_lease_click_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.edge_horizon() TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_start(int) TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_links_by_id(bigint, int) TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_links(bigint, bigint, bigint, int) TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_campaigns(bigint, bigint) TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_domains() TO smslink_proxy;
GRANT EXECUTE ON FUNCTION smslink.edge_lease_click_ids() TO smslink_proxy;

------------------------------------------------------------------------------------------------
-- track_clicks takes request ids; ingest_clicks is new (both in src/track.rs).
------------------------------------------------------------------------------------------------
DROP FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz);
-- smslink::track::track_clicks
CREATE  FUNCTION "track_clicks"(
	"tokens" TEXT[], /* Texts < '_ > */
	"hosts" TEXT[], /* Texts < '_ > */
	"methods" TEXT[], /* Texts < '_ > */
	"user_agents" TEXT[], /* Texts < '_ > */
	"ips" TEXT[], /* Texts < '_ > */
	"referrers" TEXT[], /* Texts < '_ > */
	"headers" jsonb[], /* :: std :: option :: Option < Array < '_, JsonB > > */
	"at" timestamp with time zone DEFAULT now(), /* Option < TimestampWithTimeZone > */
	"request_ids" uuid[] DEFAULT NULL /* :: std :: option :: Option < Array < '_, pgrx :: Uuid > > */
) RETURNS TABLE (
	"ord" INT,  /* i32 */
	"status" INT,  /* i32 */
	"location" TEXT,  /* Option < String > */
	"click_id" bigint,  /* Option < i64 > */
	"class" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'track_clicks_wrapper';

-- smslink::track::ingest_clicks
CREATE  FUNCTION "ingest_clicks"(
	"request_ids" uuid[], /* :: std :: option :: Option < Array < '_, pgrx :: Uuid > > */
	"click_ids" bigint[], /* :: std :: option :: Option < Array < '_, i64 > > */
	"ats" timestamp with time zone[], /* :: std :: option :: Option < Array < '_, TimestampWithTimeZone > > */
	"tokens" TEXT[], /* Texts < '_ > */
	"hosts" TEXT[], /* Texts < '_ > */
	"methods" TEXT[], /* Texts < '_ > */
	"user_agents" TEXT[], /* Texts < '_ > */
	"ips" TEXT[], /* Texts < '_ > */
	"referrers" TEXT[], /* Texts < '_ > */
	"headers" jsonb[], /* :: std :: option :: Option < Array < '_, JsonB > > */
	"link_ids" bigint[] DEFAULT NULL, /* :: std :: option :: Option < Array < '_, i64 > > */
	"message_ids" bigint[] DEFAULT NULL /* :: std :: option :: Option < Array < '_, i64 > > */
) RETURNS TABLE (
	"ord" INT,  /* i32 */
	"status" INT,  /* i32 */
	"click_id" bigint,  /* Option < i64 > */
	"class" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_clicks_wrapper';

REVOKE EXECUTE ON FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz, uuid[]) TO smslink_proxy;
REVOKE EXECUTE ON FUNCTION smslink.ingest_clicks(uuid[], bigint[], timestamptz[], text[], text[], text[], text[], text[], text[], jsonb[], bigint[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION smslink.ingest_clicks(uuid[], bigint[], timestamptz[], text[], text[], text[], text[], text[], text[], jsonb[], bigint[], bigint[]) TO smslink_proxy;
ALTER FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz, uuid[])
    SET enable_seqscan = off SET enable_bitmapscan = off;
ALTER FUNCTION smslink.ingest_clicks(uuid[], bigint[], timestamptz[], text[], text[], text[], text[], text[], text[], jsonb[], bigint[], bigint[])
    SET enable_seqscan = off SET enable_bitmapscan = off;
COMMENT ON FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz, uuid[]) IS
    'The click hot path for a batch of clicks in one statement and one transaction; a request id logged before is answered 409.';
COMMENT ON FUNCTION smslink.ingest_clicks(uuid[], bigint[], timestamptz[], text[], text[], text[], text[], text[], text[], jsonb[], bigint[], bigint[]) IS
    'The edge path: logs clicks an edge proxy answered from its cache and spooled, with their original times, request ids and click ids, exactly as the database path would have; replays are ignored.';

------------------------------------------------------------------------------------------------
-- Trust (issue 15). Secrets move to a schema of their own; ensure_partitions runs as the owner
-- (it creates partitions) so that smslink_admin can run it; then search_path and privileges,
-- word for word as at the end of sql/finalize.sql.
------------------------------------------------------------------------------------------------
CREATE SCHEMA smslink_secret;
REVOKE ALL ON SCHEMA smslink_secret FROM PUBLIC;
COMMENT ON SCHEMA smslink_secret IS 'smslink token keys and postback secrets: usable by the extension owner only';
-- (the key version sequence is owned by token_key.version and moves with its table)
ALTER TABLE smslink.token_key SET SCHEMA smslink_secret;
ALTER TABLE smslink.postback_secret SET SCHEMA smslink_secret;
ALTER FUNCTION smslink.ensure_partitions(interval) SECURITY DEFINER;
-- Links without their tokens, for analysts (as in sql/schema.sql).
CREATE VIEW smslink.link_info WITH (security_invoker = true) AS
SELECT id, brand_id, message_id, domain_id, position, kind, destination, expires_at, fallback_url,
       created_at
  FROM smslink.link;
COMMENT ON VIEW smslink.link_info IS 'smslink.link without the token column (tokens are bearer credentials)';

-- create_brand grants the creating role its new brand (sql/schema.sql, word for word), and
-- tenant isolation (sql/tenancy.sql, word for word).
DROP FUNCTION smslink.create_brand(text);
-- SECURITY DEFINER so that the creating role (granted_to, the caller by default: a default is
-- evaluated in the caller's context) can be granted the new brand's rows (sql/tenancy.sql);
-- without a grant, an application role could not see the brand it just made. Roles that see
-- every brand (smslink_admin's members, superusers) get no grant.
CREATE FUNCTION smslink.create_brand(name text, granted_to name DEFAULT current_user) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    new_id bigint;
BEGIN
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'brand name must not be empty' USING ERRCODE = '22004';
    END IF;
    IF EXISTS (SELECT 1 FROM smslink.brand b WHERE b.name = create_brand.name) THEN
        RAISE EXCEPTION 'brand "%" already exists', name USING ERRCODE = '23505',
            HINT = 'brand names are unique; pick another name or reuse the existing brand';
    END IF;
    INSERT INTO smslink.brand (name) VALUES (create_brand.name) RETURNING id INTO new_id;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE r.rolname = granted_to
                  AND NOT pg_catalog.pg_has_role(r.oid, 'smslink_admin', 'USAGE')) THEN
        INSERT INTO smslink.brand_grant (role_name, brand_id) VALUES (granted_to, new_id);
    END IF;
    RETURN new_id;
END $$;

-- Tenant isolation: row-level security on every table that holds brand data. A role sees the
-- brands it is granted (smslink.grant_brand), directly or through a role it is a member of;
-- members of smslink_admin see every brand; the extension owner (and superusers) are not subject
-- to row-level security at all. A role with no grant sees nothing. The click path, the link feed
-- and signed postbacks run as the owner (SECURITY DEFINER), so they never evaluate a policy.
-- Functions run with the caller's privileges, so every report (metrics, attribution,
-- experiments) shows only the caller's brands; the views are security_invoker for the same reason.

CREATE TABLE smslink.brand_grant (
    role_name  name NOT NULL,
    brand_id   bigint NOT NULL REFERENCES smslink.brand (id) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, brand_id)
);
COMMENT ON TABLE smslink.brand_grant IS
    'Which roles see which brands (smslink.grant_brand, smslink.revoke_brand); a role sees its own grants';
SELECT pg_catalog.pg_extension_config_dump('smslink.brand_grant', '');
ALTER TABLE smslink.brand_grant ENABLE ROW LEVEL SECURITY;
-- By name through pg_roles: a grant left behind by a dropped role matches no one (pg_has_role on
-- a name that no longer exists would raise in every query of every role).
CREATE POLICY brand_grant_own ON smslink.brand_grant FOR SELECT
    USING (pg_catalog.pg_has_role('smslink_admin', 'USAGE')
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                       WHERE r.rolname = brand_grant.role_name
                         AND pg_catalog.pg_has_role(r.oid, 'USAGE')));

DO $$
DECLARE
    t text;
    -- The brands the current role may see, evaluated once per statement (an initplan and an
    -- uncorrelated, hashed subquery), not per row.
    visible text := '((SELECT pg_catalog.pg_has_role(''smslink_admin'', ''USAGE''))
                      OR %s IN (SELECT g.brand_id FROM smslink.brand_grant g))';
BEGIN
    FOREACH t IN ARRAY ARRAY['domain', 'campaign', 'subscriber', 'message', 'link', 'click',
                             'conversion', 'touchpoint'] LOOP
        EXECUTE format('ALTER TABLE smslink.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY brand_rows ON smslink.%I USING %s WITH CHECK %s', t,
                       format(visible, 'brand_id'), format(visible, 'brand_id'));
    END LOOP;
    ALTER TABLE smslink.brand ENABLE ROW LEVEL SECURITY;
    EXECUTE format('CREATE POLICY brand_rows ON smslink.brand USING %s WITH CHECK %s',
                   format(visible, 'id'), format(visible, 'id'));
END $$;
-- Rows of a campaign's children follow the campaign's visibility.
ALTER TABLE smslink.variant ENABLE ROW LEVEL SECURITY;
CREATE POLICY brand_rows ON smslink.variant
    USING (campaign_id IN (SELECT c.id FROM smslink.campaign c))
    WITH CHECK (campaign_id IN (SELECT c.id FROM smslink.campaign c));
ALTER TABLE smslink.allocation_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY brand_rows ON smslink.allocation_log
    USING (campaign_id IN (SELECT c.id FROM smslink.campaign c))
    WITH CHECK (campaign_id IN (SELECT c.id FROM smslink.campaign c));
ALTER VIEW smslink.touch SET (security_invoker = true);
ALTER VIEW smslink.campaign_report SET (security_invoker = true);
ALTER VIEW smslink.variant_report SET (security_invoker = true);

-- Grants a role the rows of a brand (idempotent: true when the grant is new).
CREATE FUNCTION smslink.grant_brand(role_name name, brand_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    added int;
BEGIN
    IF role_name IS NULL OR brand_id IS NULL THEN
        RAISE EXCEPTION 'grant_brand: role_name and brand_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = grant_brand.role_name) THEN
        RAISE EXCEPTION 'grant_brand: role "%" does not exist', role_name USING ERRCODE = '42704',
            HINT = 'create the role first (CREATE ROLE ... IN ROLE smslink_analyst, for example)';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM smslink.brand b WHERE b.id = grant_brand.brand_id) THEN
        RAISE EXCEPTION 'grant_brand: unknown brand %', brand_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO smslink.brand_grant (role_name, brand_id) VALUES (grant_brand.role_name, grant_brand.brand_id)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added > 0;
END $$;

-- Takes a brand's rows away from a role (true when there was a grant).
CREATE FUNCTION smslink.revoke_brand(role_name name, brand_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    removed int;
BEGIN
    IF role_name IS NULL OR brand_id IS NULL THEN
        RAISE EXCEPTION 'revoke_brand: role_name and brand_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM smslink.brand_grant g
     WHERE g.role_name = revoke_brand.role_name AND g.brand_id = revoke_brand.brand_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed > 0;
END $$;

COMMENT ON FUNCTION smslink.create_brand(text, name) IS 'Creates a brand (tenant); returns its id. The creating role (granted_to) is granted its rows.';
COMMENT ON FUNCTION smslink.grant_brand(name, bigint) IS 'Grants a role the rows of a brand (row-level security); true when the grant is new.';
COMMENT ON FUNCTION smslink.revoke_brand(name, bigint) IS 'Takes a brand''s rows away from a role; true when there was a grant.';

-- The privacy lifecycle (issue 15): sql/privacy.sql, word for word.
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

-- The reports read click rows and the rollup of clicks past retention alike (sql/metrics.sql,
-- word for word but OR REPLACE).
CREATE OR REPLACE FUNCTION smslink.metrics_by(
    dimension text,
    campaign_ids bigint[] DEFAULT NULL,
    from_ts timestamptz DEFAULT NULL,
    to_ts timestamptz DEFAULT NULL,
    attribution_model text DEFAULT 'windowed',
    click_window interval DEFAULT '24 hours',
    include_classes text[] DEFAULT '{human}',
    time_zone text DEFAULT 'UTC')
RETURNS TABLE (
    key text, sent bigint, delivered bigint, failed bigint, delivery_rate float8,
    unique_clicks bigint, total_clicks bigint, ctr float8, repeat_click_rate float8,
    clickers_converted bigint, ctcr float8, conversions float8, revenue numeric, rpm numeric,
    opt_outs bigint, opt_out_rate float8,
    human_hits bigint, preview_hits bigint, bot_hits bigint, scanner_hits bigint, suspect_hits bigint,
    bot_share float8, ttc_p50_seconds float8, ttc_p90_seconds float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
    msg_key text;       -- the group key of a message (aliases m, s, seg)
    msg_from text := '';    -- extra FROM items it needs
    click_key text;     -- for click-level dimensions, the group key of a click (alias c)
    scope text;         -- WHERE clause selecting the scope's messages (alias m)
    camps bigint[];
BEGIN
    IF dimension IS NULL THEN
        RAISE EXCEPTION 'metrics: dimension must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF attribution_model IS NULL OR click_window IS NULL OR time_zone IS NULL THEN
        RAISE EXCEPTION 'metrics: attribution_model, click_window and time_zone must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF from_ts > to_ts THEN
        RAISE EXCEPTION 'metrics: from_ts % is after to_ts %', from_ts, to_ts USING ERRCODE = '22023',
            HINT = 'the range [from_ts, to_ts) selects messages by the time they were sent';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = time_zone)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs WHERE abbrev = time_zone) THEN
        RAISE EXCEPTION 'metrics: unknown time zone "%"', time_zone USING ERRCODE = '22023',
            HINT = 'use an IANA name such as America/New_York, or UTC';
    END IF;
    CASE lower(dimension)
        WHEN 'campaign' THEN msg_key := 'm.campaign_id::text';
        WHEN 'variant' THEN msg_key := 'm.variant_id::text';
        WHEN 'segment' THEN
            msg_key := 'seg.name';
            msg_from := 'JOIN smslink.subscriber s ON s.id = m.subscriber_id
                         CROSS JOIN LATERAL unnest(CASE WHEN cardinality(s.segments) > 0 THEN s.segments
                                                        ELSE ARRAY[''(none)''] END) seg(name)';
        WHEN 'hour_of_day' THEN
            msg_key := format('lpad(extract(hour FROM coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L)::int::text, 2, ''0'')', time_zone);
        WHEN 'day_of_week' THEN
            msg_key := format('to_char(coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L, ''ID Dy'')', time_zone);
        WHEN 'day' THEN
            msg_key := format('((coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE %L)::date)::text', time_zone);
        WHEN 'device' THEN click_key := 'c.device';
        WHEN 'os' THEN click_key := 'c.os';
        WHEN 'link_kind' THEN click_key := 'c.link_kind';
        ELSE
            RAISE EXCEPTION 'metrics: unknown dimension "%"', dimension USING ERRCODE = '22023',
                HINT = 'one of variant, segment, device, os, hour_of_day, day_of_week, link_kind (and campaign, day)';
    END CASE;
    IF click_key IS NOT NULL THEN
        msg_key := '''(all)''';
    END IF;

    -- Time dimensions place a message at its delivery (or failure, or send) time; messages
    -- still queued have none and are left out of them.
    scope := format('NOT m.is_holdout%s%s%s%s',
        CASE WHEN lower(dimension) IN ('hour_of_day', 'day_of_week', 'day')
             THEN ' AND coalesce(m.delivered_at, m.failed_at, m.sent_at) IS NOT NULL' ELSE '' END,
        CASE WHEN campaign_ids IS NOT NULL THEN format(' AND m.campaign_id = ANY(%L::bigint[])', campaign_ids) ELSE '' END,
        CASE WHEN from_ts IS NOT NULL THEN format(' AND m.sent_at >= %L::timestamptz', from_ts) ELSE '' END,
        CASE WHEN to_ts IS NOT NULL THEN format(' AND m.sent_at < %L::timestamptz', to_ts) ELSE '' END);
    -- The campaigns in scope (the click lookups go by campaign).
    IF campaign_ids IS NOT NULL AND from_ts IS NULL AND to_ts IS NULL THEN
        camps := campaign_ids;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT m.campaign_id) FROM smslink.message m WHERE %s', scope) INTO camps;
    END IF;
    camps := coalesce(camps, '{}');
    RETURN QUERY EXECUTE format($q$
WITH msg_c AS (
    SELECT %1$s AS g, m.campaign_id,
           count(*) FILTER (WHERE m.status <> 'queued') AS sent,
           count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
           count(*) FILTER (WHERE m.status IN ('failed', 'undelivered')) AS failed,
           min(m.sent_at) AS lo, max(greatest(m.delivered_at, m.sent_at)) AS hi
      FROM smslink.message m %2$s
     WHERE %3$s
     GROUP BY 1, 2
), msg AS (
    SELECT g, sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered, sum(failed)::bigint AS failed,
           min(lo) AS lo, max(hi) AS hi
      FROM msg_c GROUP BY g
), span AS (
    -- The time span the scope's conversions can fall in: from the first send to the last
    -- delivery or click plus the click window (read in the same pass as the counts).
    SELECT coalesce(min(msg.lo), now()) AS lo,
           coalesce(greatest(max(msg.hi), (SELECT max(c.last_at) FROM smslink.click_fact c WHERE c.campaign_id = ANY(%9$s)))
                    + $4 + interval '1 microsecond', now()) AS hi
      FROM msg
), per_message AS (
    -- One row per clicked message (per click group for click-level dimensions), from click
    -- rows and from the rollup of clicks past retention alike.
    SELECT c.message_id, %4$s AS cg,
           sum(c.hits) FILTER (WHERE c.class = ANY($1) AND c.link_kind <> 'optout') AS clicks,
           min(c.first_at) FILTER (WHERE c.class = ANY($1) AND c.link_kind <> 'optout') AS first_at,
           sum(c.hits) FILTER (WHERE c.class = 'human') AS human,
           sum(c.hits) FILTER (WHERE c.class = 'preview') AS preview,
           sum(c.hits) FILTER (WHERE c.class = 'bot') AS bot,
           sum(c.hits) FILTER (WHERE c.class = 'scanner') AS scanner,
           sum(c.hits) FILTER (WHERE c.class = 'suspect') AS suspect
      FROM smslink.click_fact c
     WHERE c.campaign_id = ANY(%9$s)
     GROUP BY 1, 2
), clk AS (
    SELECT coalesce(pm.cg, %1$s) AS g,
           count(*) FILTER (WHERE pm.clicks > 0) AS unique_clicks,
           sum(pm.clicks) AS total_clicks,
           sum(pm.human) AS human, sum(pm.preview) AS preview, sum(pm.bot) AS bot,
           sum(pm.scanner) AS scanner, sum(pm.suspect) AS suspect,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM pm.first_at - m.delivered_at))
               FILTER (WHERE pm.first_at IS NOT NULL AND m.delivered_at IS NOT NULL) AS p90
      FROM per_message pm
      JOIN smslink.message m ON m.id = pm.message_id %2$s
     WHERE %3$s
     GROUP BY 1
), att AS (
    SELECT coalesce(%5$s, %1$s) AS g,
           count(DISTINCT a.message_id) FILTER (WHERE a.click_id IS NOT NULL) AS clickers_converted,
           sum(a.credit) AS conversions, sum(a.revenue) AS revenue
      FROM smslink.attribute($3, (SELECT span.lo FROM span), (SELECT span.hi FROM span), $4) a
      JOIN smslink.message m ON m.id = a.message_id %2$s %6$s
     WHERE a.campaign_id = ANY(%9$s) AND %3$s
     GROUP BY 1
), opt AS (
    -- An opt-out answers the last message delivered to the subscriber before it, within 7 days
    -- (message-level dimensions only).
    SELECT %1$s AS g, count(*) AS opt_outs
      FROM smslink.subscriber o
      CROSS JOIN LATERAL (
          SELECT m0.id FROM smslink.message m0
           WHERE m0.subscriber_id = o.id AND m0.delivered_at <= o.opted_out_at
             AND m0.delivered_at > o.opted_out_at - interval '7 days'
           ORDER BY m0.delivered_at DESC LIMIT 1) last
      JOIN smslink.message m ON m.id = last.id %2$s
     WHERE %7$s AND o.opted_out_at IS NOT NULL AND o.opted_out_at >= (SELECT span.lo FROM span) AND %3$s
     GROUP BY 1
), keys AS (
    SELECT g FROM msg WHERE %7$s UNION SELECT g FROM clk UNION SELECT g FROM att UNION SELECT g FROM opt
)
SELECT k.g,
       coalesce(t.sent, 0)::bigint, coalesce(t.delivered, 0)::bigint, coalesce(t.failed, 0)::bigint,
       t.delivered::float8 / nullif(t.sent, 0),
       coalesce(clk.unique_clicks, 0)::bigint, coalesce(clk.total_clicks, 0)::bigint,
       coalesce(clk.unique_clicks, 0)::float8 / nullif(t.delivered, 0),
       clk.total_clicks::float8 / nullif(clk.unique_clicks, 0),
       coalesce(att.clickers_converted, 0)::bigint,
       coalesce(att.clickers_converted, 0)::float8 / nullif(clk.unique_clicks, 0),
       coalesce(att.conversions, 0)::float8, coalesce(att.revenue, 0),
       coalesce(att.revenue, 0) / nullif(t.delivered, 0),
       coalesce(opt.opt_outs, 0)::bigint,
       coalesce(opt.opt_outs, 0)::float8 / nullif(t.delivered, 0),
       coalesce(clk.human, 0)::bigint, coalesce(clk.preview, 0)::bigint, coalesce(clk.bot, 0)::bigint,
       coalesce(clk.scanner, 0)::bigint, coalesce(clk.suspect, 0)::bigint,
       (coalesce(clk.preview, 0) + coalesce(clk.bot, 0) + coalesce(clk.scanner, 0) + coalesce(clk.suspect, 0))::float8
           / nullif(coalesce(clk.human, 0) + coalesce(clk.preview, 0) + coalesce(clk.bot, 0)
                    + coalesce(clk.scanner, 0) + coalesce(clk.suspect, 0), 0),
       clk.p50, clk.p90
  FROM keys k
  LEFT JOIN msg t ON %8$s
  LEFT JOIN clk ON clk.g = k.g
  LEFT JOIN att ON att.g = k.g
  LEFT JOIN opt ON opt.g = k.g
 ORDER BY k.g
$q$,
        msg_key,                                              -- 1
        msg_from,                                             -- 2
        scope,                                                -- 3
        coalesce(click_key, 'NULL::text'),                    -- 4
        CASE WHEN click_key IS NULL THEN 'NULL::text'
             ELSE format('coalesce(%s, ''(view-through)'')', click_key) END,                  -- 5
        -- the credited click's group (device, OS, link kind), from its row or its rollup group
        CASE WHEN click_key IS NULL THEN ''
             ELSE 'LEFT JOIN LATERAL (
                       SELECT k.device, coalesce(k.os, smslink.ua_os(k.user_agent)) AS os, k.link_kind
                         FROM smslink.click k WHERE k.id = a.click_id AND k.clicked_at = a.touch_at
                       UNION ALL
                       SELECT r.device, r.os, r.link_kind FROM smslink.click_rollup r
                        WHERE r.message_id = a.message_id AND a.click_id = ANY (r.touch_ids)
                       LIMIT 1) c ON true' END,                                                -- 6
        CASE WHEN click_key IS NULL THEN 'true' ELSE 'false' END,                              -- 7
        CASE WHEN click_key IS NULL THEN 't.g = k.g' ELSE 'true' END,                          -- 8
        '$2')                                                                                  -- 9
    USING classes, camps, attribution_model, click_window;
END
$fn$;

CREATE OR REPLACE FUNCTION smslink.link_metrics(
    campaign_id bigint, include_classes text[] DEFAULT '{human}')
RETURNS TABLE (
    "position" int, kind text, destination text, messages bigint, delivered bigint,
    unique_clicks bigint, total_clicks bigint, ctr float8, hits bigint, bot_share float8,
    counts_as_engagement boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
BEGIN
    PERFORM smslink.require_campaign(campaign_id);
    RETURN QUERY
    WITH links AS (
        SELECT l.position, l.kind, min(l.destination) AS destination, count(*) AS messages,
               count(*) FILTER (WHERE m.status = 'delivered') AS delivered
          FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id
         WHERE m.campaign_id = link_metrics.campaign_id AND NOT m.is_holdout
         GROUP BY 1, 2
    ), clicks AS (
        SELECT l.position, l.kind,
               count(DISTINCT c.message_id) FILTER (WHERE c.class = ANY(classes)) AS unique_clicks,
               coalesce(sum(c.hits) FILTER (WHERE c.class = ANY(classes)), 0)::bigint AS total_clicks,
               sum(c.hits)::bigint AS hits,
               coalesce(sum(c.hits) FILTER (WHERE c.class <> 'human'), 0)::bigint AS non_human
          FROM smslink.click_fact c JOIN smslink.link l ON l.id = c.link_id
         WHERE c.campaign_id = link_metrics.campaign_id
         GROUP BY 1, 2
    )
    SELECT k.position, k.kind, k.destination, k.messages, k.delivered,
           coalesce(c.unique_clicks, 0), coalesce(c.total_clicks, 0),
           coalesce(c.unique_clicks, 0)::float8 / nullif(k.delivered, 0),
           coalesce(c.hits, 0), c.non_human::float8 / nullif(c.hits, 0),
           k.kind <> 'optout'
      FROM links k LEFT JOIN clicks c ON c.position = k.position AND c.kind = k.kind
     ORDER BY k.position, k.kind;
END $$;

CREATE OR REPLACE FUNCTION smslink.time_to_click(
    campaign_id bigint, bucket interval DEFAULT '1 minute', max_age interval DEFAULT '7 days',
    include_classes text[] DEFAULT '{human}')
RETURNS TABLE (bucket_start interval, bucket_end interval, clicks bigint, share float8, cumulative_share float8)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    classes text[] := smslink.check_classes(include_classes);
    width float8 := extract(epoch FROM bucket);
    buckets bigint;
BEGIN
    PERFORM smslink.require_campaign(campaign_id);
    IF bucket IS NULL OR max_age IS NULL THEN
        RAISE EXCEPTION 'time_to_click: bucket and max_age must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF width <= 0 THEN
        RAISE EXCEPTION 'time_to_click: bucket must be positive, not %', bucket USING ERRCODE = '22023';
    END IF;
    IF max_age <= interval '0' THEN
        RAISE EXCEPTION 'time_to_click: max_age must be positive, not %', max_age USING ERRCODE = '22023';
    END IF;
    buckets := ceil(extract(epoch FROM max_age) / width);
    IF buckets > 100000 THEN
        RAISE EXCEPTION 'time_to_click: % buckets of % up to %; at most 100,000', buckets, bucket, max_age
            USING ERRCODE = '54000', HINT = 'use a wider bucket or a shorter max_age';
    END IF;
    RETURN QUERY
    WITH first AS (
        -- Each message's first counted click on a non-opt-out link, against its delivery.
        SELECT greatest(0, extract(epoch FROM min(c.first_at) - min(m.delivered_at)))::float8 AS s
          FROM smslink.click_fact c JOIN smslink.message m ON m.id = c.message_id
         WHERE c.campaign_id = time_to_click.campaign_id AND c.class = ANY(classes)
           AND c.link_kind <> 'optout' AND m.delivered_at IS NOT NULL
         GROUP BY c.message_id
    ), counted AS (
        SELECT floor(f.s / width)::bigint AS b, count(*) AS n FROM first f GROUP BY 1
    ), total AS (SELECT count(*)::float8 AS n FROM first)
    SELECT g * bucket, (g + 1) * bucket, coalesce(k.n, 0),
           coalesce(k.n, 0) / nullif(t.n, 0),
           sum(coalesce(k.n, 0)) OVER (ORDER BY g) / nullif(t.n, 0)
      FROM generate_series(0, buckets - 1) g
      CROSS JOIN total t
      LEFT JOIN counted k ON k.b = g
     ORDER BY g;
END $$;

------------------------------------------------------------------------------------------------
-- search_path is pinned on every function that runs SQL (CVE-2018-1058: a lookalike object in
-- a schema earlier in the caller's path must not be picked up). pg_catalog comes first, then
-- smslink, and pg_temp last. Exempt: Rust functions that run no SQL at all (nothing to look
-- up), which the hot path calls per row, where a SET would cost a GUC save and restore each
-- time. The regress test "privileges" checks the catalogue against this list.
------------------------------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'smslink'::regnamespace
                AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
                AND p.proname NOT IN ('classify_hit', 'expand_destination', 'is_http_url',
                                      'sms_segments', 'ua_os', 'check_classes',
                                      'classifier_rule_check', 'click_param_check',
                                      'holdout_fraction_check') LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, smslink, pg_temp', f);
    END LOOP;
END $$;

------------------------------------------------------------------------------------------------
-- Least privilege (docs/operations.md, "Roles"). No smslink function is executable by PUBLIC;
-- four NOLOGIN roles get what their job needs. Grant a
-- role to a login role: CREATE ROLE shop_backend LOGIN PASSWORD '...' IN ROLE smslink_app.
-- The same block is in the upgrade script (sql/smslink--0.1.0--0.2.0.sql).
------------------------------------------------------------------------------------------------
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['smslink_proxy', 'smslink_app', 'smslink_analyst', 'smslink_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA smslink TO %I', r);
    END LOOP;
END $$;
-- The administrator does everything the application and the analysts do, and more.
GRANT smslink_app, smslink_analyst TO smslink_admin;
-- (Per-schema default privileges cannot take away PUBLIC's global EXECUTE default, so every
-- script of the chain ends with this REVOKE, and the regress test "privileges" fails if any
-- smslink function is executable by PUBLIC.)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA smslink FROM PUBLIC;
DO $$
DECLARE
    -- Function names (every overload) per role. Functions in no list are internal: triggers,
    -- and helpers that only SECURITY DEFINER functions call.
    grants jsonb := '{
 "smslink_proxy": ["track_click", "track_clicks", "ingest_clicks", "record_postback",
                   "edge_horizon", "edge_start", "edge_links_by_id", "edge_links",
                   "edge_campaigns", "edge_domains", "edge_lease_click_ids"],
 "smslink_app": ["create_brand", "add_domain", "create_campaign", "prepare_message",
                 "prepare_messages", "wrap", "mark_delivered", "mark_failed", "_require_messages",
                 "record_conversion", "record_touchpoint", "set_allocation", "choose_variant",
                 "allocation", "in_holdout", "in_global_holdout", "holdout_group", "sign_postback",
                 "link_id", "sms_segments", "is_http_url", "feed_xid", "click_param_check",
                 "holdout_fraction_check"],
 "smslink_analyst": ["attribute", "attribution_summary", "markov_removal_effects",
                     "markov_transitions", "campaign_metrics", "variant_metrics", "metrics_by",
                     "require_campaign", "check_classes", "breakdown", "link_metrics",
                     "time_to_click", "daily_metrics", "anomalies", "rejected_requests",
                     "variant_stats", "incrementality", "global_incrementality", "allocation",
                     "in_holdout", "in_global_holdout", "holdout_group", "classify", "ua_os",
                     "sms_segments", "is_http_url"],
 "smslink_admin": ["grant_brand", "revoke_brand", "apply_retention", "forget_subscriber",
                   "set_privacy_policy", "anonymise_ip",
                   "rotate_token_key", "rotate_postback_secret", "token_for", "ensure_partitions",
                   "reclassify", "classify_hit", "snapshot_rejections", "classifier_rule_check"]
}';
    r text;
    f regprocedure;
BEGIN
    FOR r IN SELECT jsonb_object_keys(grants) LOOP
        FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
                  WHERE p.pronamespace = 'smslink'::regnamespace
                    AND p.proname IN (SELECT jsonb_array_elements_text(grants -> r)) LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, r);
        END LOOP;
    END LOOP;
END $$;
-- Tables. The proxy has none (its functions are SECURITY DEFINER). Analysts read everything but
-- secrets (in smslink_secret, which only the owner can use) and tokens, which are bearer
-- credentials: smslink.link is readable without its token column.
GRANT SELECT ON smslink.brand, smslink.domain, smslink.campaign, smslink.variant,
      smslink.subscriber, smslink.message, smslink.click, smslink.conversion, smslink.touchpoint,
      smslink.allocation_log, smslink.classifier_rule, smslink.ip_range,
      smslink.rejection_snapshot, smslink.touch, smslink.campaign_report, smslink.variant_report,
      smslink.link_info, smslink.click_rollup, smslink.click_fact
   TO smslink_analyst;
GRANT SELECT (id, brand_id, message_id, domain_id, position, kind, destination, expires_at,
              fallback_url, created_at, feed_xid) ON smslink.link TO smslink_analyst;
-- The sending application creates brands, domains, campaigns, messages and links, and records
-- receipts, conversions, touches and allocations.
GRANT SELECT, INSERT, UPDATE ON smslink.domain, smslink.campaign, smslink.variant,
      smslink.subscriber, smslink.message, smslink.link, smslink.conversion, smslink.touchpoint,
      smslink.allocation_log
   TO smslink_app;
GRANT SELECT ON smslink.click, smslink.click_rollup, smslink.click_fact, smslink.classifier_rule,
      smslink.ip_range
   TO smslink_app;
-- Brands: not the privacy policy (retention and anonymisation are the administrator's, through
-- smslink.set_privacy_policy), nor apply_retention's progress.
REVOKE UPDATE ON smslink.brand FROM smslink_app;
GRANT SELECT, INSERT ON smslink.brand TO smslink_app;
GRANT UPDATE (name, optout_url_pattern, fallback_url, global_holdout_fraction) ON smslink.brand
   TO smslink_app;
GRANT USAGE ON SEQUENCE smslink.brand_id_seq, smslink.domain_id_seq, smslink.campaign_id_seq,
      smslink.variant_id_seq, smslink.subscriber_id_seq, smslink.message_id_seq,
      smslink.link_id_seq, smslink.conversion_id_seq, smslink.touchpoint_id_seq
   TO smslink_app;
-- The administrator keeps the classifier's rules and address ranges, reclassifies history and
-- snapshots the rejection counters.
GRANT INSERT, UPDATE, DELETE ON smslink.classifier_rule, smslink.ip_range TO smslink_admin;
GRANT USAGE ON SEQUENCE smslink.classifier_rule_id_seq, smslink.ip_range_id_seq TO smslink_admin;
GRANT UPDATE ON smslink.click TO smslink_admin;
GRANT INSERT, UPDATE ON smslink.rejection_snapshot TO smslink_admin;
-- The record of erasures (no personal data) is the administrator's.
GRANT SELECT ON smslink.erasure TO smslink_admin;
-- Row-level security reads the caller's brand grants (each role sees its own).
GRANT SELECT ON smslink.brand_grant TO smslink_app, smslink_analyst, smslink_admin;
