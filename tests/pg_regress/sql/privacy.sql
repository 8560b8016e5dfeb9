-- The privacy lifecycle as users call it: policies, anonymisation, retention, erasure, the
-- rights to run them, and opted-out subscribers kept out of targeting. (The exactness of every
-- report across retention and erasure on random histories is a #[pg_test].)
\pset footer off
SELECT smslink.create_brand('Privacy Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.privacy.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Old news', '{A}') AS c \gset
-- Only this brand's clicks are touched in this file: the others keep theirs for a century.
UPDATE smslink.brand SET click_retention = '100 years', anonymise_after = '100 years' WHERE id <> :b;

-- Policies: the defaults, a change, and bad values refused with what to fix.
SELECT click_retention, anonymise_after FROM smslink.brand WHERE id = :b;
SELECT smslink.set_privacy_policy(:b, anonymise_after => '30 days');
SELECT regress.err(format('SELECT smslink.set_privacy_policy(%s, anonymise_after => ''1 hour'')', :b));
SELECT regress.err(format('SELECT smslink.set_privacy_policy(%s, ''10 days'')', :b));
SELECT regress.err(format('SELECT smslink.set_privacy_policy(%s, ''200 years'')', :b));
SELECT regress.err('SELECT smslink.set_privacy_policy(NULL)');
SELECT regress.err('SELECT smslink.set_privacy_policy(999999)');
SELECT regress.err('SELECT smslink.apply_retention(NULL)');
SELECT regress.err('SELECT smslink.apply_retention(''2999-01-01'')');

-- Addresses keep their network only.
SELECT smslink.anonymise_ip(a) FROM unnest(ARRAY['203.0.113.77', '203.0.113.77/24', '10.1.2.3/8',
       '2001:db8:1234:5678::9', '::1']::inet[]) a;

-- Three messages, delivered in January 2025, and clicks then, in March, and recently.
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', ARRAY['p-1', 'p-2', '+15550004242'],
       'Spring sale https://shop.example/spring') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id ORDER BY id), array_agg(timestamptz '2025-01-10 09:00+00' ORDER BY id))
  FROM smslink.message WHERE campaign_id = :c \g /dev/null
\set iphone '''Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1'''
SELECT count(*) FROM (
    SELECT smslink.track_click(l.token, 'go.privacy.example', 'GET', :iphone, x.ip::inet,
                               'https://chat.example/', '{"accept-language": "en"}', x.at)
      FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
     CROSS JOIN (VALUES ('203.0.113.7', timestamptz '2025-01-10 09:05+00'),
                        ('2001:db8:aa:bb::1', timestamptz '2025-03-01 12:00+00'),
                        ('198.51.100.20', now() - interval '1 day')) x(ip, at)
     WHERE m.campaign_id = :c) t;
SELECT smslink.record_conversion(:b, '+15550004242', 'purchase', 25, 'USD', timestamptz '2025-01-10 10:00+00',
       'order-+15550004242', properties => '{"email": "someone@example.com"}') > 0 AS converted;
CREATE TEMP TABLE metrics_before AS SELECT * FROM smslink.campaign_metrics(ARRAY[:c]);

-- As of 2026-02-15, with 30 days' anonymisation and 13 months' retention: the January 2025
-- clicks are folded into the rollup and removed, the March ones anonymised, the recent ones (after
-- 2026-02-15) left alone.
SELECT smslink.set_privacy_policy(:b, '13 months');
SELECT action, relation, brand_id = :b AS ours, rows FROM smslink.apply_retention('2026-02-15');
SELECT host(ip) AS ip, masklen(ip), user_agent IS NOT NULL AS ua, referrer IS NOT NULL AS referrer,
       headers IS NOT NULL AS headers, os, anonymised_at IS NOT NULL AS anonymised
  FROM smslink.click WHERE campaign_id = :c ORDER BY clicked_at, id;
SELECT class, day, hits, cardinality(touch_ids) AS touches FROM smslink.click_rollup WHERE campaign_id = :c ORDER BY 1, 2;
-- The campaign's numbers are those of before.
SELECT count(*) AS changed FROM (SELECT * FROM metrics_before EXCEPT SELECT * FROM smslink.campaign_metrics(ARRAY[:c])) x;
-- Nothing left to do.
SELECT count(*) FROM smslink.apply_retention('2026-02-15');

-- Erasure: the key, bodies, addresses and ids go; the numbers stay; a second call is a no-op.
SELECT relation, rows FROM smslink.forget_subscriber(:b, '+15550004242');
SELECT relation, rows FROM smslink.forget_subscriber(:b, '+15550004242');
SELECT count(*) AS erasures, bool_and(changed ? 'smslink.click') AS recorded FROM smslink.erasure WHERE brand_id = :b;
SELECT count(*) AS rows_with_the_key FROM smslink.subscriber s WHERE s::text LIKE '%15550004242%';
SELECT count(*) AS clicks_with_detail FROM smslink.click k JOIN smslink.subscriber s ON s.id = k.subscriber_id
 WHERE s.external_key LIKE 'erased:%' AND (k.ip IS NOT NULL OR k.user_agent IS NOT NULL OR k.referrer IS NOT NULL OR k.headers IS NOT NULL);
SELECT count(*) AS rows_with_the_key FROM smslink.conversion v WHERE v::text LIKE '%15550004242%' OR v::text LIKE '%someone@%';
SELECT count(*) AS changed FROM (SELECT * FROM metrics_before EXCEPT SELECT * FROM smslink.campaign_metrics(ARRAY[:c])) x;
SELECT regress.err('SELECT smslink.forget_subscriber(NULL, ''x'')');
SELECT regress.err('SELECT smslink.forget_subscriber(999999, ''x'')');

-- Opted-out subscribers are not targeted by marketing campaigns; their history stays.
UPDATE smslink.subscriber SET opted_out_at = '2026-01-01 00:00+00' WHERE brand_id = :b AND external_key = 'p-1';
SELECT regress.err(format('SELECT smslink.choose_variant(%s, ''p-1'')', :c));
SELECT smslink.choose_variant(:c, 'p-1', '2025-12-31 23:00+00') AS before_the_opt_out;
SELECT smslink.choose_variant(:c, 'p-2');

-- Rights: the administrator's functions; the application cannot change the policy.
DROP ROLE IF EXISTS regress_priv_app, regress_priv_analyst;
CREATE ROLE regress_priv_app IN ROLE smslink_app;
CREATE ROLE regress_priv_analyst IN ROLE smslink_analyst;
SELECT smslink.grant_brand('regress_priv_app', :b) AND smslink.grant_brand('regress_priv_analyst', :b) AS granted;
SET ROLE regress_priv_app;
SELECT regress.err(format('UPDATE smslink.brand SET click_retention = ''100 years'' WHERE id = %s', :b));
SELECT regress.err(format('UPDATE smslink.brand SET fallback_url = NULL WHERE id = %s', :b));
SELECT regress.err(format('SELECT smslink.forget_subscriber(%s, ''p-2'')', :b));
SET ROLE regress_priv_analyst;
SELECT regress.err('SELECT smslink.apply_retention()');
SELECT count(*) > 0 AS analyst_reads_the_rollup FROM smslink.click_rollup;
SELECT regress.err('SELECT count(*) FROM smslink.erasure');
RESET ROLE;
DROP OWNED BY regress_priv_app, regress_priv_analyst;
DROP ROLE regress_priv_app, regress_priv_analyst;
