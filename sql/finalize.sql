-- Runs last: grants, function settings, and descriptions.
SELECT smslink.rotate_token_key();
-- Who may execute what is decided in one place, the role map at the end of this file.
-- The hot path's plans are cached per session. A month's click partition starts empty, and until
-- autovacuum analyzes it a cached plan could scan it sequentially for every click while it fills
-- at thousands of rows a second. Index scans are always right here (every lookup is by key,
-- address, message or range), so these functions never plan anything else.
ALTER FUNCTION smslink.track_click(text, text, text, text, inet, text, jsonb, timestamptz)
    SET enable_seqscan = off SET enable_bitmapscan = off;
ALTER FUNCTION smslink.track_clicks(text[], text[], text[], text[], text[], text[], jsonb[], timestamptz, uuid[])
    SET enable_seqscan = off SET enable_bitmapscan = off;
ALTER FUNCTION smslink.ingest_clicks(uuid[], bigint[], timestamptz[], text[], text[], text[], text[], text[], text[], jsonb[], bigint[], bigint[])
    SET enable_seqscan = off SET enable_bitmapscan = off;
-- Attribution is thousands of small index lookups; compiling its plans with JIT costs more than
-- it could ever save (50-70 ms per call on the benchmark history, BENCHMARKS.md).
ALTER FUNCTION smslink.attribute(text, timestamptz, timestamptz, interval, interval, text[], bigint, interval, text)
    SET jit = off;
ALTER FUNCTION smslink.markov_removal_effects(timestamptz, timestamptz, interval, text[], bigint, text)
    SET jit = off;
ALTER FUNCTION smslink.markov_transitions(timestamptz, timestamptz, interval, text[], bigint, text)
    SET jit = off;

-- Descriptions for every function that has none yet (BI tools and \df+ show them).
DO $$
DECLARE
    d jsonb := '{
 "_require_messages": "Internal: raises P0002 naming message ids that do not exist, and 55000 for holdout messages.",
 "add_domain": "Registers a branded short domain (host, path prefix) for a brand; returns its id.",
 "attribute": "Attribution credits of every conversion in [from_ts, to_ts) under a model (last_click, first_click, windowed, linear, time_decay, position_based, markov): one row per credited touch. docs/attribution.md.",
 "attribution_summary": "Attribution credits summed by channel, campaign and variant.",
 "check_classes": "Validates click class names for metrics; returns them lower-cased without repeats.",
 "classifier_rule_check": "CHECK of smslink.classifier_rule: raises 22023 saying what to fix.",
 "classify": "The click classifier''s verdict (class and reason codes) for a request, for testing rules.",
 "classify_hit": "Internal to the click hot path: the classifier''s verdict for one row.",
 "click_param_check": "CHECK of campaign.click_param: raises 22023 saying what to fix.",
 "create_brand": "Creates a brand (tenant); returns its id. The creating role (granted_to) is granted its rows.",
 "grant_brand": "Grants a role the rows of a brand (row-level security); true when the grant is new.",
 "revoke_brand": "Takes a brand''s rows away from a role; true when there was a grant.",
 "create_campaign": "Creates a campaign with its variants; returns its id.",
 "ensure_partitions": "Creates the monthly click partitions up to the horizon and moves rows out of the default partition.",
 "expand_destination": "The redirect location for one click: the campaign click parameter appended and the macros {click_id}, {subscriber}, {campaign}, {variant}, {message} expanded.",
 "is_http_url": "True for an http(s) URL that can be tracked (host, no credentials, no control characters).",
 "link_id": "The link id a token resolves to, or NULL for a forged or malformed token.",
 "mark_delivered": "Records delivery receipts (idempotent).",
 "mark_failed": "Records failure receipts (idempotent).",
 "markov_removal_effects": "The Markov attribution chain of a range: removal effect, share, conversions and transition row per state.",
 "markov_transitions": "The Markov attribution chain''s transition matrix in long form.",
 "prepare_message": "Creates one message for a subscriber and wraps its URLs in tracked links; a held-out subscriber gets a holdout row with no body.",
 "prepare_messages": "Creates messages for many subscribers in one call (opted-out subscribers skipped, held-out ones recorded with no body).",
 "reclassify": "Re-runs the click classifier over a stretch of history and fixes first-click flags.",
 "record_conversion": "Records a conversion, idempotent on (brand_id, external_id); returns its id.",
 "record_postback": "Records a conversion from a signed postback or pixel (the proxy''s /p and /px.gif); 28000 when the signature does not verify.",
 "record_touchpoint": "Records a touch from another channel (email, paid social), idempotent on (brand_id, external_id).",
 "rejected_requests": "Rejected click requests since the extension was created, by reason.",
 "rotate_postback_secret": "Creates or rotates a brand''s postback secret; the previous one stays valid until the next rotation.",
 "rotate_token_key": "Makes a new token key current; older tokens keep resolving.",
 "sign_postback": "The HMAC signature (sig) for a postback or pixel with these parameters.",
 "sms_segments": "Encoding (GSM-7 or UCS-2), length and segment count of an SMS body.",
 "token_for": "The token of a link id.",
 "track_click": "The click hot path: logs one click, classifies it and answers the redirect (status, location).",
 "track_clicks": "The click hot path for a batch of clicks in one statement and one transaction; a request id logged before is answered 409.",
 "ingest_clicks": "The edge path: logs clicks an edge proxy answered from its cache and spooled, with their original times, request ids and click ids, exactly as the database path would have; replays are ignored.",
 "ua_os": "Operating-system family of a User-Agent.",
 "choose_variant": "The variant to send to a subscriber: the campaign''s current allocation epoch (fixed shares or bandit weights) and the subscriber''s stable bucket among 10,000.",
 "set_allocation": "Switches a campaign between fixed shares (weights, NULL = equal) and bandit allocation, freezing a new epoch.",
 "holdout_fraction_check": "CHECK of campaign.holdout_fraction and brand.global_holdout_fraction: raises 22023 saying what to fix.",
 "in_holdout": "Whether a subscriber is held out of a campaign (the brand''s global control group or the campaign''s holdout), by a stable hash.",
 "holdout_group": "Which group holds a subscriber out of a campaign: global, campaign, or NULL when they receive it.",
 "in_global_holdout": "Whether a subscriber is in the brand''s global control group (held out of every marketing campaign).",
 "incrementality": "A campaign against its holdout: group sizes, conversion rates, lift with Newcombe and log-ratio intervals, incremental conversions, revenue per recipient with a Welch interval, p-value, minimum detectable effect and a decision. docs/experiments.md.",
 "global_incrementality": "All marketing of a brand in a span against its global control group, with the same numbers as incrementality. docs/experiments.md.",
 "variant_stats": "Statistics of a campaign''s variants: Wilson intervals, lifts with intervals, z-test and chi-square p-values, probability of being best, mSPRT always-valid p-values and a decision. docs/experiments.md.",
 "wrap": "Replaces every URL of a message body with a tracked short link; returns the body, encoding and segments."
}';
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.proname
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'smslink'::regnamespace
                AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL LOOP
        IF d ? f.proname THEN
            EXECUTE format('COMMENT ON FUNCTION %s IS %L', f.sig, d->>f.proname);
        END IF;
    END LOOP;
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
