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
