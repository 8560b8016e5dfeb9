-- smslink data model. Runs inside CREATE EXTENSION, after smslink.is_http_url exists.
--
-- Conventions:
-- * every row that grows with traffic carries brand_id (the tenant and the future Citus
--   distribution key);
-- * ids are bigserial so that pg_dump/restore keeps sequences (see pg_extension_config_dump
--   at the end of this file);
-- * statuses, kinds and classes are text with CHECK constraints: readable from any client,
--   including JDBC, and extendable with an ALTER instead of an enum rewrite.

-- Secrets (token keys, postback secrets) live in a schema of their own that nobody but the
-- extension owner can use, so that no GRANT ... ON ALL TABLES IN SCHEMA smslink reaches them.
CREATE SCHEMA smslink_secret;
REVOKE ALL ON SCHEMA smslink_secret FROM PUBLIC;
COMMENT ON SCHEMA smslink_secret IS 'smslink token keys and postback secrets: usable by the extension owner only';

CREATE TABLE smslink.brand (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    optout_url_pattern text,
    fallback_url       text CHECK (smslink.is_http_url(fallback_url)),
    -- The brand-wide control group: this share of subscribers (by a stable hash of the brand and
    -- the subscriber key) is held out of every marketing campaign. See smslink.in_holdout.
    global_holdout_fraction float8 NOT NULL DEFAULT 0
                       CHECK (smslink.holdout_fraction_check(global_holdout_fraction)),
    created_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE smslink.brand IS 'The tenant. Every other table hangs off a brand.';
COMMENT ON COLUMN smslink.brand.global_holdout_fraction IS
    'Share of subscribers held out of every marketing campaign (global control group), 0 to below 1';
COMMENT ON COLUMN smslink.brand.optout_url_pattern IS
    'Regular expression (Rust regex syntax); a URL matching it becomes an optout link';

CREATE TABLE smslink.domain (
    id           bigserial PRIMARY KEY,
    brand_id     bigint NOT NULL REFERENCES smslink.brand (id),
    host         text NOT NULL UNIQUE
                 CHECK (host ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$'),
    prefix       text NOT NULL DEFAULT 'c' CHECK (prefix ~ '^[A-Za-z0-9_-]{1,32}$'),
    token_length int NOT NULL DEFAULT 9 CHECK (token_length BETWEEN 7 AND 12),
    fallback_url text CHECK (smslink.is_http_url(fallback_url)),
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, brand_id)
);
CREATE UNIQUE INDEX domain_one_default_per_brand ON smslink.domain (brand_id) WHERE is_default;
COMMENT ON TABLE smslink.domain IS 'Branded short hosts: links are https://{host}/{prefix}/{token}';

CREATE TABLE smslink.campaign (
    id                 bigserial PRIMARY KEY,
    brand_id           bigint NOT NULL REFERENCES smslink.brand (id),
    name               text NOT NULL CHECK (btrim(name) <> ''),
    domain_id          bigint,
    purpose            text NOT NULL DEFAULT 'marketing' CHECK (purpose IN ('marketing', 'transactional')),
    optout_url_pattern text,
    fallback_url       text CHECK (smslink.is_http_url(fallback_url)),
    -- Query parameters appended to every redirect of the campaign, with macros expanded, for
    -- example 'smsclid={click_id}' (see smslink.expand_destination).
    click_param        text CHECK (smslink.click_param_check(click_param)),
    -- How choose_variant allocates sends: fixed shares (allocation_weights, NULL = equal) or a
    -- bandit that recomputes its weights every bandit_epoch or bandit_epoch_outcomes outcomes.
    allocation            text NOT NULL DEFAULT 'fixed' CHECK (allocation IN ('fixed', 'bandit')),
    allocation_weights    jsonb,
    bandit_goal           text NOT NULL DEFAULT 'clicks' CHECK (bandit_goal IN ('clicks', 'conversions')),
    bandit_epoch          interval NOT NULL DEFAULT '5 minutes' CHECK (bandit_epoch > interval '0'),
    bandit_epoch_outcomes int NOT NULL DEFAULT 500 CHECK (bandit_epoch_outcomes > 0),
    bandit_floor          float8 NOT NULL DEFAULT 0.05 CHECK (bandit_floor >= 0 AND bandit_floor < 1),
    -- This share of the brand's subscribers (by a stable hash of campaign and subscriber key) is
    -- held out of the campaign: prepare_message records them with status 'holdout' and no body.
    holdout_fraction   float8 NOT NULL DEFAULT 0 CHECK (smslink.holdout_fraction_check(holdout_fraction)),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaign_transactional_no_holdout CHECK (purpose = 'marketing' OR holdout_fraction = 0),
    UNIQUE (id, brand_id),
    FOREIGN KEY (domain_id, brand_id) REFERENCES smslink.domain (id, brand_id)
);
CREATE INDEX campaign_brand_idx ON smslink.campaign (brand_id, created_at);

CREATE TABLE smslink.variant (
    id          bigserial PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES smslink.campaign (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (btrim(key) <> ''),
    weight      double precision NOT NULL DEFAULT 1 CHECK (weight >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, key),
    UNIQUE (id, campaign_id)
);

CREATE TABLE smslink.subscriber (
    id           bigserial PRIMARY KEY,
    brand_id     bigint NOT NULL REFERENCES smslink.brand (id),
    external_key text NOT NULL CHECK (external_key <> ''),
    opted_out_at timestamptz,
    -- Segments the application puts the subscriber in (breakdowns by segment).
    segments     text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, external_key),
    UNIQUE (id, brand_id)
);
-- Opt-outs, for metrics that charge each one to the message it answered.
CREATE INDEX subscriber_opted_out_idx ON smslink.subscriber (opted_out_at) WHERE opted_out_at IS NOT NULL;

CREATE TABLE smslink.message (
    id             bigserial PRIMARY KEY,
    brand_id       bigint NOT NULL,
    campaign_id    bigint NOT NULL,
    variant_id     bigint NOT NULL,
    subscriber_id  bigint NOT NULL,
    body           text,
    encoding       text CHECK (encoding IN ('GSM-7', 'UCS-2')),
    segments       int CHECK (segments >= 1),
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sent', 'delivered', 'undelivered', 'failed', 'holdout')),
    sent_at        timestamptz,
    delivered_at   timestamptz,
    failed_at      timestamptz,
    failure_reason text,
    is_holdout     boolean NOT NULL DEFAULT false,
    -- Which control group held the subscriber out: 'campaign' (campaign.holdout_fraction) or
    -- 'global' (brand.global_holdout_fraction). NULL on an is_holdout row means 'campaign'.
    holdout_group  text CHECK (holdout_group IN ('campaign', 'global')),
    first_click_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'holdout' OR is_holdout),
    CHECK (holdout_group IS NULL OR is_holdout),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL),
    CHECK (status NOT IN ('failed', 'undelivered') OR failed_at IS NOT NULL),
    FOREIGN KEY (campaign_id, brand_id) REFERENCES smslink.campaign (id, brand_id),
    FOREIGN KEY (variant_id, campaign_id) REFERENCES smslink.variant (id, campaign_id),
    FOREIGN KEY (subscriber_id, brand_id) REFERENCES smslink.subscriber (id, brand_id)
);
-- Covering: metrics count a campaign's messages by status with an index-only scan.
CREATE INDEX message_campaign_idx ON smslink.message (campaign_id, variant_id) INCLUDE (status, sent_at, delivered_at, is_holdout, id);
-- Metrics over a time range select messages by send time.
CREATE INDEX message_sent_idx ON smslink.message (sent_at);
-- By subscriber (erasure, attribution), with the delivery time for view-through lookups.
CREATE INDEX message_subscriber_idx ON smslink.message (subscriber_id, delivered_at);
CREATE INDEX message_delivered_idx ON smslink.message (brand_id, delivered_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE smslink.link (
    id           bigserial PRIMARY KEY,
    brand_id     bigint NOT NULL,
    message_id   bigint NOT NULL REFERENCES smslink.message (id) ON DELETE CASCADE,
    domain_id    bigint NOT NULL REFERENCES smslink.domain (id),
    position     int NOT NULL CHECK (position >= 1),
    kind         text NOT NULL CHECK (kind IN ('cta', 'secondary', 'optout', 'transactional')),
    destination  text NOT NULL CHECK (smslink.is_http_url(destination)),
    token        text NOT NULL,
    expires_at   timestamptz,
    fallback_url text CHECK (smslink.is_http_url(fallback_url)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, position)
);
COMMENT ON COLUMN smslink.link.token IS
    'The token as sent; smslink.link_id(token) = id. Not indexed: the hot path decodes it.';
-- Links without their tokens, for analysts: a token is a bearer credential (whoever has it can
-- click as the subscriber), so smslink_analyst may read every column of smslink.link but token.
CREATE VIEW smslink.link_info WITH (security_invoker = true) AS
SELECT id, brand_id, message_id, domain_id, position, kind, destination, expires_at, fallback_url,
       created_at
  FROM smslink.link;
COMMENT ON VIEW smslink.link_info IS 'smslink.link without the token column (tokens are bearer credentials)';

-- Clicks: range-partitioned by month on clicked_at, with a default partition so that an insert
-- never fails for want of a partition. smslink.ensure_partitions() creates monthly partitions
-- and moves any rows the default partition holds for them.
-- No foreign keys: clicks are written by track_click right after it reads the link (integrity by
-- construction, no extra lookup on the hot path), and partitions made at run time are restored by
-- pg_dump before the extension's own tables, so an FK here would make restores fail. Erasure
-- deletes clicks by subscriber_id explicitly.
CREATE TABLE smslink.click (
    id                     bigserial,
    clicked_at             timestamptz NOT NULL,
    brand_id               bigint NOT NULL,
    campaign_id            bigint NOT NULL,
    variant_id             bigint NOT NULL,
    message_id             bigint NOT NULL,
    subscriber_id          bigint NOT NULL,
    link_id                bigint NOT NULL,
    link_kind              text NOT NULL CHECK (link_kind IN ('cta', 'secondary', 'optout', 'transactional')),
    method                 text NOT NULL CHECK (method ~ '^[A-Z]{1,16}$'),
    ip                     inet,
    user_agent             text,
    referrer               text,
    headers                jsonb,
    device                 text CHECK (device IN ('mobile', 'tablet', 'desktop', 'other')),
    class                  text NOT NULL DEFAULT 'human'
                           CHECK (class IN ('human', 'preview', 'bot', 'scanner', 'suspect')),
    reasons                text[] NOT NULL DEFAULT '{}',
    seconds_since_delivery double precision,
    is_first               boolean NOT NULL DEFAULT false,
    expired                boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (clicked_at);
-- Indexes live on each partition, not on the parent: the default partition is the template that
-- ensure_partitions copies (LIKE ... INCLUDING INDEXES). Partitioned indexes on an extension-owned
-- parent would make pg_dump emit each run-time partition's indexes twice, and restores fail.
CREATE TABLE smslink.click_default PARTITION OF smslink.click DEFAULT;
ALTER TABLE smslink.click_default ADD PRIMARY KEY (id, clicked_at);
CREATE INDEX click_default_campaign_idx ON smslink.click_default (campaign_id, clicked_at);
CREATE INDEX click_default_message_idx ON smslink.click_default (message_id, clicked_at);
CREATE INDEX click_default_subscriber_idx ON smslink.click_default (subscriber_id, clicked_at);
CREATE INDEX click_default_link_idx ON smslink.click_default (link_id, clicked_at);
-- For the classifier's burst:ip signal (the same address on many messages within seconds).
CREATE INDEX click_default_ip_idx ON smslink.click_default (ip, clicked_at) WHERE ip IS NOT NULL;

CREATE TABLE smslink.conversion (
    id            bigserial PRIMARY KEY,
    brand_id      bigint NOT NULL REFERENCES smslink.brand (id),
    subscriber_id bigint,
    click_id      bigint,
    event         text NOT NULL CHECK (btrim(event) <> ''),
    value         numeric,
    currency      text CHECK (currency ~ '^[A-Z]{3}$'),
    occurred_at   timestamptz NOT NULL,
    external_id   text NOT NULL,
    properties    jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, external_id),
    FOREIGN KEY (subscriber_id, brand_id) REFERENCES smslink.subscriber (id, brand_id)
);
CREATE INDEX conversion_subscriber_idx ON smslink.conversion (subscriber_id, occurred_at);
CREATE INDEX conversion_time_idx ON smslink.conversion (brand_id, occurred_at);
-- Attribution over every brand reads a time range of conversions.
CREATE INDEX conversion_occurred_idx ON smslink.conversion (occurred_at);

CREATE TABLE smslink.touchpoint (
    id            bigserial PRIMARY KEY,
    brand_id      bigint NOT NULL REFERENCES smslink.brand (id),
    subscriber_id bigint NOT NULL,
    channel       text NOT NULL CHECK (btrim(channel) <> ''),
    kind          text NOT NULL CHECK (kind IN ('click', 'view')),
    occurred_at   timestamptz NOT NULL,
    campaign_ref  text,
    external_id   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, external_id),
    FOREIGN KEY (subscriber_id, brand_id) REFERENCES smslink.subscriber (id, brand_id)
);
CREATE INDEX touchpoint_subscriber_idx ON smslink.touchpoint (subscriber_id, occurred_at);

-- The attribution touch view, smslink.touch, is in sql/privacy.sql (it reads the click rollup).

-- Every allocation epoch of every campaign, frozen: which variant owns which of the 10,000
-- subscriber buckets, and the counts the weights came from. Any send can be audited: recompute
-- smslink.choose_variant's bucket for the subscriber and the epoch of the send.
CREATE TABLE smslink.allocation_log (
    campaign_id  bigint NOT NULL REFERENCES smslink.campaign (id) ON DELETE CASCADE,
    epoch        int NOT NULL CHECK (epoch >= 1),
    started_at   timestamptz NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('fixed', 'bandit')),
    variants     text[] NOT NULL,
    weights      float8[] NOT NULL,
    bounds       int[] NOT NULL,
    trials       bigint[],
    successes    bigint[],
    PRIMARY KEY (campaign_id, epoch)
);

-- Postback secrets: one per brand, for the HMAC signatures of server-side postbacks and pixels.
-- The previous secret stays valid after a rotation until the next one, so integrations can
-- switch over without losing conversions. Readable only by the owner, like token_key, and
-- likewise not dumped (see docs/operations.md).
CREATE TABLE smslink_secret.postback_secret (
    brand_id        bigint PRIMARY KEY REFERENCES smslink.brand (id) ON DELETE CASCADE,
    secret          text NOT NULL CHECK (length(secret) >= 32),
    previous_secret text CHECK (length(previous_secret) >= 32),
    rotated_at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON smslink_secret.postback_secret FROM PUBLIC;

-- Rejected click requests, counted without a row per attempt: a sequence is one fixed-size
-- relation updated in place, so a flood of forged tokens cannot fill the disk.
-- invalid_token: malformed or forged; unknown_target: a valid token whose link does not exist,
-- or a host that is not the link's domain.
CREATE SEQUENCE smslink.rejected_invalid_token_seq;
CREATE SEQUENCE smslink.rejected_unknown_target_seq;

-- IP ranges the click classifier knows: data centres, scanner vendors, the brand's own office.
-- A click from an address in a range gets the reason code ip:range:<label>; the range's class
-- says what that means: scanner, bot or preview decide the verdict alone, suspect is one weak
-- signal (two weak signals make a scanner), human is informational. The most specific range
-- (longest prefix) wins. GiST inet_ops keeps lookups fast with 100,000+ ranges.
CREATE TABLE smslink.ip_range (
    id         bigserial PRIMARY KEY,
    range      cidr NOT NULL,
    label      text NOT NULL CHECK (label ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    class      text NOT NULL CHECK (class IN ('human', 'preview', 'bot', 'scanner', 'suspect')),
    source     text NOT NULL DEFAULT 'user',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (range, label)
);
CREATE INDEX ip_range_range_idx ON smslink.ip_range USING gist (range inet_ops);
-- The starter set: a few well-known, published ranges (docs/classification.md). source =
-- 'starter' rows are not dumped (the extension recreates them); users' rows are.
INSERT INTO smslink.ip_range (range, label, class, source) VALUES
    ('66.249.64.0/19',   'google-crawler', 'bot', 'starter'),
    ('157.55.39.0/24',   'bing-crawler', 'bot', 'starter'),
    ('207.46.13.0/24',   'bing-crawler', 'bot', 'starter'),
    ('40.77.167.0/24',   'bing-crawler', 'bot', 'starter'),
    ('17.241.0.0/16',    'apple-crawler', 'bot', 'starter'),
    ('31.13.24.0/21',    'meta-crawler', 'preview', 'starter'),
    ('31.13.64.0/18',    'meta-crawler', 'preview', 'starter'),
    ('66.220.144.0/20',  'meta-crawler', 'preview', 'starter'),
    ('69.63.176.0/20',   'meta-crawler', 'preview', 'starter'),
    ('69.171.224.0/19',  'meta-crawler', 'preview', 'starter'),
    ('173.252.64.0/18',  'meta-crawler', 'preview', 'starter'),
    ('2a03:2880::/32',   'meta-crawler', 'preview', 'starter');

-- Users' User-Agent and Referer rules for the classifier, tried before the built-in ones
-- (core/data/classifier.tsv), in id order; the first match of a kind decides. Running sessions
-- pick up changes within 2 seconds. classifier_rule_check raises a clear error for a bad rule.
CREATE TABLE smslink.classifier_rule (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL DEFAULT 'ua',
    class      text NOT NULL,
    reason     text NOT NULL,
    pattern    text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    note       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (smslink.classifier_rule_check(kind, class, reason, pattern))
);

-- Token keys: 32-byte AES keys, versioned. Only the extension owner can read this table; the
-- extension's functions read it by switching to the owner for that one query. A rolled-back
-- rotation burns its version number (sequence), so a version never names two keys.
CREATE TABLE smslink_secret.token_key (
    version    int PRIMARY KEY CHECK (version >= 1),
    key        bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE smslink_secret.token_key_version_seq AS int MINVALUE 1 OWNED BY smslink_secret.token_key.version;
REVOKE ALL ON smslink_secret.token_key FROM PUBLIC;
REVOKE ALL ON SEQUENCE smslink_secret.token_key_version_seq FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- Helpers for creating things. Plain INSERTs work too; these give clear errors.
------------------------------------------------------------------------------------------------

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

CREATE FUNCTION smslink.add_domain(brand_id bigint, host text, prefix text DEFAULT 'c',
                                   is_default boolean DEFAULT true) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h text := lower(btrim(host));
    new_id bigint;
BEGIN
    IF brand_id IS NULL OR host IS NULL OR prefix IS NULL OR is_default IS NULL THEN
        RAISE EXCEPTION 'add_domain: brand_id, host, prefix and is_default must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM smslink.brand b WHERE b.id = add_domain.brand_id) THEN
        RAISE EXCEPTION 'unknown brand %', brand_id USING ERRCODE = 'P0002';
    END IF;
    IF h !~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$' THEN
        RAISE EXCEPTION 'invalid domain host "%": give a bare host name such as sms.example.com', host
            USING ERRCODE = '22023', HINT = 'no scheme, port, path or trailing dot';
    END IF;
    IF prefix !~ '^[A-Za-z0-9_-]{1,32}$' THEN
        RAISE EXCEPTION 'invalid path prefix "%": use 1 to 32 letters, digits, "_" or "-"', prefix
            USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM smslink.domain d WHERE d.host = h) THEN
        RAISE EXCEPTION 'domain "%" is already registered', h USING ERRCODE = '23505';
    END IF;
    IF is_default THEN
        UPDATE smslink.domain d SET is_default = false
         WHERE d.brand_id = add_domain.brand_id AND d.is_default;
    END IF;
    INSERT INTO smslink.domain (brand_id, host, prefix, is_default)
    VALUES (add_domain.brand_id, h, add_domain.prefix, add_domain.is_default)
    RETURNING id INTO new_id;
    RETURN new_id;
END $$;

CREATE FUNCTION smslink.create_campaign(brand_id bigint, name text, variants text[] DEFAULT '{A}')
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_id bigint;
    v text;
BEGIN
    IF brand_id IS NULL OR name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'create_campaign: brand_id and a non-empty name are required'
            USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM smslink.brand b WHERE b.id = create_campaign.brand_id) THEN
        RAISE EXCEPTION 'unknown brand %', brand_id USING ERRCODE = 'P0002';
    END IF;
    IF variants IS NULL OR cardinality(variants) = 0 THEN
        RAISE EXCEPTION 'campaign "%" needs at least one variant key', name USING ERRCODE = '22023';
    END IF;
    FOREACH v IN ARRAY variants LOOP
        IF v IS NULL OR btrim(v) = '' THEN
            RAISE EXCEPTION 'variant keys must be non-empty (got %)', variants USING ERRCODE = '22023';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT x) FROM unnest(variants) x) <> cardinality(variants) THEN
        RAISE EXCEPTION 'variant keys must be unique (got %)', variants USING ERRCODE = '22023';
    END IF;
    INSERT INTO smslink.campaign (brand_id, name) VALUES (create_campaign.brand_id, create_campaign.name)
    RETURNING id INTO new_id;
    INSERT INTO smslink.variant (campaign_id, key)
    SELECT new_id, k FROM unnest(variants) WITH ORDINALITY AS t(k, ord) ORDER BY ord;
    RETURN new_id;
END $$;

------------------------------------------------------------------------------------------------
-- Delivery receipts. Idempotent: replaying a receipt changes nothing. A delivered message keeps
-- its earliest delivery time; a failure receipt after delivery is refused (carriers do not
-- un-deliver), a delivery receipt after a failure wins (a retry got through).
------------------------------------------------------------------------------------------------

-- Internal: raises P0002 naming up to ten ids that are not messages, and 55000 for holdouts.
CREATE FUNCTION smslink._require_messages(message_ids bigint[]) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    missing bigint[];
BEGIN
    SELECT array_agg(r.id) INTO missing
      FROM (SELECT DISTINCT u.id FROM unnest(message_ids) u(id)
             WHERE NOT EXISTS (SELECT 1 FROM smslink.message m WHERE m.id = u.id)
             ORDER BY 1 LIMIT 10) r;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'unknown message ids: %', missing USING ERRCODE = 'P0002';
    END IF;
    SELECT array_agg(r.id) INTO missing
      FROM (SELECT m.id FROM smslink.message m WHERE m.id = ANY (message_ids) AND m.is_holdout
             ORDER BY 1 LIMIT 10) r;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'messages % are holdouts: nothing was sent to them, so they have no receipts', missing
            USING ERRCODE = '55000',
                  HINT = 'holdout messages record who was held out of the campaign; do not send or mark them';
    END IF;
END $$;

CREATE FUNCTION smslink.mark_delivered(message_ids bigint[], ats timestamptz[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    changed bigint;
BEGIN
    IF message_ids IS NULL OR ats IS NULL OR cardinality(message_ids) <> cardinality(ats) THEN
        RAISE EXCEPTION 'mark_delivered: message_ids and ats must be non-NULL arrays of equal length (got % and %)',
            cardinality(message_ids), cardinality(ats) USING ERRCODE = '22023';
    END IF;
    IF array_position(message_ids, NULL) IS NOT NULL OR array_position(ats, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'mark_delivered: message ids and times must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM smslink._require_messages(message_ids);
    WITH r AS (
        SELECT u.id, min(u.at) AS at FROM unnest(message_ids, ats) u(id, at) GROUP BY u.id
    )
    UPDATE smslink.message m
       SET status = 'delivered',
           delivered_at = CASE WHEN m.delivered_at IS NULL THEN r.at ELSE least(m.delivered_at, r.at) END,
           sent_at = least(coalesce(m.sent_at, r.at), r.at)
      FROM r
     WHERE m.id = r.id
       AND (m.status <> 'delivered' OR m.delivered_at > r.at);
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END $$;

CREATE FUNCTION smslink.mark_delivered(message_id bigint, at timestamptz) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT smslink.mark_delivered(ARRAY[message_id], ARRAY[at]);
$$;

CREATE FUNCTION smslink.mark_failed(message_ids bigint[], ats timestamptz[], reasons text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    delivered bigint[];
    changed bigint;
BEGIN
    IF message_ids IS NULL OR ats IS NULL OR reasons IS NULL
       OR cardinality(message_ids) <> cardinality(ats) OR cardinality(ats) <> cardinality(reasons) THEN
        RAISE EXCEPTION 'mark_failed: message_ids, ats and reasons must be non-NULL arrays of equal length'
            USING ERRCODE = '22023';
    END IF;
    IF array_position(message_ids, NULL) IS NOT NULL OR array_position(ats, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'mark_failed: message ids and times must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM smslink._require_messages(message_ids);
    SELECT array_agg(m.id ORDER BY m.id) INTO delivered
      FROM smslink.message m WHERE m.id = ANY (message_ids) AND m.status = 'delivered';
    IF delivered IS NOT NULL THEN
        RAISE EXCEPTION 'messages % are already delivered; a failure receipt cannot follow delivery', delivered
            USING ERRCODE = '55000';
    END IF;
    WITH r AS (
        SELECT DISTINCT ON (u.id) u.id, u.at, u.reason
          FROM unnest(message_ids, ats, reasons) u(id, at, reason)
         ORDER BY u.id, u.at
    )
    UPDATE smslink.message m
       SET status = 'failed', failed_at = r.at, failure_reason = r.reason,
           -- a failure receipt means the message was handed to the carrier
           sent_at = least(coalesce(m.sent_at, r.at), r.at)
      FROM r
     WHERE m.id = r.id
       AND (m.status <> 'failed' OR m.failed_at IS DISTINCT FROM r.at
            OR m.failure_reason IS DISTINCT FROM r.reason);
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END $$;

CREATE FUNCTION smslink.mark_failed(message_id bigint, at timestamptz, reason text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT smslink.mark_failed(ARRAY[message_id], ARRAY[at], ARRAY[reason]);
$$;

------------------------------------------------------------------------------------------------
-- Click partitions.
------------------------------------------------------------------------------------------------

CREATE FUNCTION smslink.ensure_partitions(ahead interval DEFAULT '3 months') RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    m date;
    part text;
    lo timestamptz;
    hi timestamptz;
BEGIN
    IF ahead IS NULL OR ahead < interval '0' OR ahead > interval '10 years' THEN
        RAISE EXCEPTION 'invalid partition horizon: % (must be between 0 and 10 years)', ahead
            USING ERRCODE = '22023';
    END IF;
    -- Months from now through now + ahead, plus any month the default partition holds rows for.
    FOR m IN
        SELECT DISTINCT d FROM (
            -- In UTC throughout: month arithmetic in the session's time zone could end the
            -- horizon a month early around month boundaries.
            SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                   (now() AT TIME ZONE 'UTC') + ahead, interval '1 month')::date AS d
            UNION
            SELECT date_trunc('month', c.clicked_at AT TIME ZONE 'UTC')::date FROM smslink.click_default c
        ) s ORDER BY d
    LOOP
        part := format('click_%s', to_char(m, 'YYYY_MM'));
        CONTINUE WHEN to_regclass(format('smslink.%I', part)) IS NOT NULL;
        lo := m::timestamp AT TIME ZONE 'UTC';
        hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE smslink.%I (LIKE smslink.click_default INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)', part);
        -- Rows that landed in the default partition move into their month: none is lost.
        EXECUTE format('WITH moved AS (DELETE FROM smslink.click_default WHERE clicked_at >= %L AND clicked_at < %L RETURNING *)
                        INSERT INTO smslink.%I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE smslink.click ATTACH PARTITION smslink.%I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        RETURN NEXT part;
    END LOOP;
END $$;

-- Rows created by applications must survive pg_dump/restore: register every data table and
-- sequence as extension configuration. token_key is deliberately left out: keys are secrets
-- and must not travel in dump files (see docs/operations.md for key backup).
-- Rejected click requests since the extension was created, by reason (see track_click).
CREATE FUNCTION smslink.rejected_requests() RETURNS TABLE (reason text, count bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT 'invalid_token', CASE WHEN is_called THEN last_value ELSE 0 END FROM smslink.rejected_invalid_token_seq
    UNION ALL
    SELECT 'unknown_target', CASE WHEN is_called THEN last_value ELSE 0 END FROM smslink.rejected_unknown_target_seq
$$;

-- The proxy's role: it may execute smslink.track_click (granted where that function is created)
-- and nothing else; it has no table privileges. It cannot log in: grant it to a login role,
-- for example CREATE ROLE redirector LOGIN PASSWORD '...' IN ROLE smslink_proxy.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'smslink_proxy') THEN
        CREATE ROLE smslink_proxy NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA smslink TO smslink_proxy;

-- (one call per statement: each call updates the pg_extension row)
SELECT pg_catalog.pg_extension_config_dump('smslink.brand', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.domain', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.campaign', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.variant', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.subscriber', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.message', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.link', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.click_default', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.conversion', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.touchpoint', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.brand_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.domain_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.campaign_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.variant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.subscriber_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.message_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.link_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.conversion_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.touchpoint_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.click_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.ip_range', $$WHERE source <> 'starter'$$);
SELECT pg_catalog.pg_extension_config_dump('smslink.ip_range_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.classifier_rule', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.allocation_log', '');
SELECT pg_catalog.pg_extension_config_dump('smslink.classifier_rule_id_seq', '');
