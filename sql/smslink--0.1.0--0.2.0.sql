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
 "smslink_admin": ["grant_brand", "revoke_brand",
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
      smslink.link_info
   TO smslink_analyst;
GRANT SELECT (id, brand_id, message_id, domain_id, position, kind, destination, expires_at,
              fallback_url, created_at, feed_xid) ON smslink.link TO smslink_analyst;
-- The sending application creates brands, domains, campaigns, messages and links, and records
-- receipts, conversions, touches and allocations.
GRANT SELECT, INSERT, UPDATE ON smslink.brand, smslink.domain, smslink.campaign, smslink.variant,
      smslink.subscriber, smslink.message, smslink.link, smslink.conversion, smslink.touchpoint,
      smslink.allocation_log
   TO smslink_app;
GRANT SELECT ON smslink.click, smslink.classifier_rule, smslink.ip_range TO smslink_app;
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
-- Row-level security reads the caller's brand grants (each role sees its own).
GRANT SELECT ON smslink.brand_grant TO smslink_app, smslink_analyst, smslink_admin;
