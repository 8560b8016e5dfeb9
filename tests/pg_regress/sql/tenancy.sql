-- Tenant isolation (issue 15): two brands, two mapped roles, one unmapped role.
\pset footer off
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_shop_a, regress_shop_b, regress_reader_a, regress_reader_b, regress_nobody, regress_ops;
RESET client_min_messages;
CREATE ROLE regress_shop_a IN ROLE smslink_app;
CREATE ROLE regress_shop_b IN ROLE smslink_app;
CREATE ROLE regress_reader_a IN ROLE smslink_analyst;
CREATE ROLE regress_reader_b IN ROLE smslink_analyst;
CREATE ROLE regress_nobody IN ROLE smslink_analyst;
CREATE ROLE regress_ops IN ROLE smslink_admin;
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- Each shop creates its brand (and is granted it by doing so), a campaign and a send.
SET ROLE regress_shop_a;
SELECT smslink.create_brand('Tenant A') AS brand_a \gset
SELECT smslink.add_domain(:brand_a, 'go.tenant-a.example') > 0 AS domain_a;
SELECT smslink.create_campaign(:brand_a, 'A launch', '{X,Y}') AS campaign_a \gset
SELECT count(*) AS sent_a FROM smslink.prepare_messages(:campaign_a, 'X',
       ARRAY['+15558880001', '+15558880002'], 'A: https://tenant-a.example/new');
SELECT smslink.mark_delivered(ARRAY(SELECT id FROM smslink.message WHERE campaign_id = :campaign_a),
       ARRAY(SELECT now() - interval '2 hours' FROM smslink.message WHERE campaign_id = :campaign_a)) AS delivered_a;
SELECT l.token AS token_a FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
 WHERE m.campaign_id = :campaign_a ORDER BY l.id LIMIT 1 \gset
RESET ROLE;
SET ROLE regress_shop_b;
SELECT smslink.create_brand('Tenant B') AS brand_b \gset
SELECT smslink.add_domain(:brand_b, 'go.tenant-b.example') > 0 AS domain_b;
SELECT smslink.create_campaign(:brand_b, 'B launch', '{X,Y}') AS campaign_b \gset
SELECT count(*) AS sent_b FROM smslink.prepare_messages(:campaign_b, 'Y',
       ARRAY['+15558880001', '+15558880003', '+15558880004'], 'B: https://tenant-b.example/new');
SELECT smslink.mark_delivered(ARRAY(SELECT id FROM smslink.message WHERE campaign_id = :campaign_b),
       ARRAY(SELECT now() - interval '2 hours' FROM smslink.message WHERE campaign_id = :campaign_b)) AS delivered_b;
SELECT l.token AS token_b FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
 WHERE m.campaign_id = :campaign_b ORDER BY l.id LIMIT 1 \gset
-- Shop B cannot see, change or write into brand A.
SELECT count(*) AS brands_b_sees FROM smslink.brand;
SELECT count(*) AS a_messages_b_sees FROM smslink.message WHERE brand_id = :brand_a;
SELECT regress.err(format('SELECT smslink.create_campaign(%s, ''B into A'')', :brand_a));
SELECT regress.err(format($$SELECT smslink.record_conversion(%s, '+15558880001', 'purchase', 5, 'USD', now(), 'b-into-a')$$, :brand_a));
WITH u AS (UPDATE smslink.brand SET name = 'taken over' WHERE id = :brand_a RETURNING 1)
SELECT count(*) AS a_brands_b_updated FROM u;
SELECT regress.err(format($$INSERT INTO smslink.subscriber (brand_id, external_key) VALUES (%s, 'planted')$$, :brand_a));
SELECT regress.err(format('SELECT smslink.grant_brand(''regress_shop_b'', %s)', :brand_a));
RESET ROLE;

-- Clicks (the proxy runs as the owner) and conversions.
SELECT status FROM smslink.track_click(:'token_a', 'go.tenant-a.example', 'GET', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1', '198.51.100.7', NULL, '{"accept-language": "en"}');
SELECT status FROM smslink.track_click(:'token_b', 'go.tenant-b.example', 'GET', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1', '198.51.100.8', NULL, '{"accept-language": "en"}');
SET ROLE regress_shop_a;
SELECT smslink.record_conversion(:brand_a, '+15558880001', 'purchase', 10, 'USD', now(), 'a-1') > 0 AS conv_a;
RESET ROLE;
SET ROLE regress_shop_b;
SELECT smslink.record_conversion(:brand_b, '+15558880001', 'purchase', 20, 'USD', now(), 'b-1') > 0 AS conv_b;
RESET ROLE;

-- The administrator maps the readers.
SET ROLE regress_ops;
SELECT smslink.grant_brand('regress_reader_a', :brand_a) AS granted;
SELECT smslink.grant_brand('regress_reader_a', :brand_a) AS granted_again;
SELECT smslink.grant_brand('regress_reader_b', :brand_b) AS granted;
SELECT regress.err(format('SELECT smslink.grant_brand(''no_such_role'', %s)', :brand_a));
SELECT regress.err('SELECT smslink.grant_brand(''regress_reader_a'', 987654321)');
SELECT count(*) >= 2 AS ops_sees_both FROM smslink.brand WHERE id IN (:brand_a, :brand_b);
RESET ROLE;

-- Each reader sees its brand only: in the tables and in every function's results.
CREATE FUNCTION regress.tenant_view(a bigint, b bigint, ca bigint, cb bigint) RETURNS TABLE (what text, n bigint)
LANGUAGE sql AS $$
    SELECT 'brands', count(*) FROM smslink.brand WHERE id IN (a, b)
    UNION ALL SELECT 'campaigns', count(*) FROM smslink.campaign WHERE brand_id IN (a, b)
    UNION ALL SELECT 'messages', count(*) FROM smslink.message WHERE brand_id IN (a, b)
    UNION ALL SELECT 'links', count(*) FROM smslink.link_info WHERE brand_id IN (a, b)
    UNION ALL SELECT 'clicks', count(*) FROM smslink.click WHERE brand_id IN (a, b)
    UNION ALL SELECT 'subscribers', count(*) FROM smslink.subscriber WHERE brand_id IN (a, b)
    UNION ALL SELECT 'conversions', count(*) FROM smslink.conversion WHERE brand_id IN (a, b)
    UNION ALL SELECT 'variants', count(*) FROM smslink.variant WHERE campaign_id IN (ca, cb)
    UNION ALL SELECT 'campaign_metrics', count(*) FROM smslink.campaign_metrics(ARRAY[ca, cb])
    UNION ALL SELECT 'delivered (metrics)', coalesce(sum(delivered), 0)::bigint FROM smslink.campaign_metrics(ARRAY[ca, cb])
    UNION ALL SELECT 'campaign_report', count(*) FROM smslink.campaign_report WHERE campaign_id IN (ca, cb)
    UNION ALL SELECT 'attribute (credits)', count(*) FROM smslink.attribute('last_click', now() - interval '1 day', now() + interval '1 day') t
                                   WHERE t.campaign_id IN (ca, cb)
    UNION ALL SELECT 'attribute (conversions)', count(DISTINCT t.conversion_id) FROM smslink.attribute('last_click', now() - interval '1 day', now() + interval '1 day') t
                                   WHERE t.conversion_id IN (SELECT id FROM smslink.conversion WHERE external_id IN ('a-1', 'b-1'))
$$;
GRANT EXECUTE ON FUNCTION regress.tenant_view(bigint, bigint, bigint, bigint) TO PUBLIC;
SET ROLE regress_reader_a;
SELECT * FROM regress.tenant_view(:brand_a, :brand_b, :campaign_a, :campaign_b);
SELECT count(*) AS variant_stats_own FROM smslink.variant_stats(:campaign_a);
SELECT regress.err(format('SELECT * FROM smslink.variant_stats(%s)', :campaign_b)) AS variant_stats_other;
RESET ROLE;
SET ROLE regress_reader_b;
SELECT * FROM regress.tenant_view(:brand_a, :brand_b, :campaign_a, :campaign_b);
SELECT count(*) AS variant_stats_own FROM smslink.variant_stats(:campaign_b);
SELECT regress.err(format('SELECT * FROM smslink.variant_stats(%s)', :campaign_a)) AS variant_stats_other;
RESET ROLE;
SET ROLE regress_nobody;
SELECT * FROM regress.tenant_view(:brand_a, :brand_b, :campaign_a, :campaign_b);
SELECT count(*) AS grants_nobody_sees FROM smslink.brand_grant;
RESET ROLE;
SET ROLE regress_ops;
SELECT * FROM regress.tenant_view(:brand_a, :brand_b, :campaign_a, :campaign_b);
RESET ROLE;

-- A grant through a group role; revoking takes the rows away at once.
CREATE ROLE regress_group_b;
GRANT regress_group_b TO regress_nobody;
SELECT smslink.grant_brand('regress_group_b', :brand_b) AS group_granted;
SET ROLE regress_nobody;
SELECT count(*) AS nobody_sees_via_group FROM smslink.message WHERE brand_id IN (:brand_a, :brand_b);
RESET ROLE;
SELECT smslink.revoke_brand('regress_group_b', :brand_b) AS revoked, smslink.revoke_brand('regress_group_b', :brand_b) AS revoked_again;
SET ROLE regress_nobody;
SELECT count(*) AS nobody_sees_after_revoke FROM smslink.message WHERE brand_id IN (:brand_a, :brand_b);
RESET ROLE;
-- A dropped role's grant matches no one and breaks nothing.
SELECT smslink.grant_brand('regress_group_b', :brand_b) AS regranted;
DROP ROLE regress_group_b;
SELECT count(*) AS dangling_grants FROM smslink.brand_grant WHERE role_name = 'regress_group_b';
SET ROLE regress_reader_a;
SELECT count(*) AS reader_a_still_sees FROM smslink.message WHERE brand_id = :brand_a;
RESET ROLE;

DROP FUNCTION regress.tenant_view(bigint, bigint, bigint, bigint);
DROP OWNED BY regress_shop_a, regress_shop_b, regress_reader_a, regress_reader_b, regress_nobody, regress_ops;
DROP ROLE regress_shop_a, regress_shop_b, regress_reader_a, regress_reader_b, regress_nobody, regress_ops;
