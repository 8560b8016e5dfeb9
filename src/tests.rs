//! `#[pg_test]` tests: behaviour that needs a live backend (key privileges, table access
//! counts, caches, bulk volume). The SQL API as users see it is covered by pg_regress.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one_i64(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    fn one_text(sql: &str) -> String {
        Spi::get_one::<String>(sql)
            .expect("query runs")
            .expect("not null")
    }

    /// A brand with a default domain and a two-variant campaign; returns the campaign id.
    fn campaign() -> i64 {
        Spi::run("SELECT smslink.create_brand('Acme')").expect("brand");
        Spi::run(
            "SELECT smslink.add_domain((SELECT id FROM smslink.brand WHERE name = 'Acme'), 'sms.acme.test')",
        )
        .expect("domain");
        one_i64("SELECT smslink.create_campaign((SELECT id FROM smslink.brand WHERE name = 'Acme'), 'BF', '{A,B}')")
    }

    #[pg_test]
    fn key_is_generated_at_create_extension() {
        assert_eq!(one_i64("SELECT count(*) FROM smslink_secret.token_key"), 1);
        assert_eq!(
            one_i64("SELECT length(key)::bigint FROM smslink_secret.token_key"),
            32
        );
    }

    #[pg_test]
    fn token_round_trip_and_rotation() {
        let t1 = one_text("SELECT smslink.token_for(12345)");
        assert_eq!(t1.len(), 9);
        assert_eq!(one_i64(&format!("SELECT smslink.link_id('{t1}')")), 12345);
        let v = one_i64("SELECT smslink.rotate_token_key()::bigint");
        assert!(v >= 2);
        let t2 = one_text("SELECT smslink.token_for(12345)");
        assert_ne!(t1, t2, "a new key makes new tokens");
        // Both the old and the new token resolve to the same link.
        assert_eq!(one_i64(&format!("SELECT smslink.link_id('{t1}')")), 12345);
        assert_eq!(one_i64(&format!("SELECT smslink.link_id('{t2}')")), 12345);
        // Lengths 7..12 all round-trip.
        for len in 7..=12 {
            assert_eq!(
                one_i64(&format!(
                    "SELECT smslink.link_id(smslink.token_for(777, {len}))"
                )),
                777
            );
        }
    }

    #[pg_test]
    fn invalid_tokens_are_null_not_errors() {
        for t in ["", "abc", "!!!!!!!!!", "1234567890123", "1aaaaaaa-"] {
            let got = Spi::get_one::<i64>(&format!("SELECT smslink.link_id('{t}')"))
                .expect("never raises");
            assert_eq!(got, None, "{t}");
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT smslink.link_id(NULL)").expect("runs"),
            None
        );
    }

    #[pg_test]
    fn forged_tokens_are_rejected_without_table_access() {
        let c = campaign();
        Spi::run(&format!(
            "SELECT * FROM smslink.prepare_message({c}, 'A', 's1', 'Deal https://acme.test/x')"
        ))
        .expect("prepare");
        let token = one_text("SELECT token FROM smslink.link LIMIT 1");
        // Warm the key cache with one real decode.
        assert!(one_i64(&format!("SELECT smslink.link_id('{token}')")) > 0);
        let scans = "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::bigint
                       FROM pg_stat_xact_user_tables WHERE schemaname = 'smslink'";
        let before = one_i64(scans);
        // 20,000 forged tokens with the live key slot: about 2 pass the 2^-13 check.
        let accepted = one_i64(
            "SELECT count(smslink.link_id('1' || substr(md5(i::text), 1, 8)))
               FROM generate_series(1, 20000) i",
        );
        let after = one_i64(scans);
        assert_eq!(before, after, "decoding touched a table");
        assert!(accepted <= 20, "accepted {accepted} of 20000 forged tokens");
    }

    #[pg_test]
    fn tokens_work_for_the_admin_role_without_reading_keys() {
        Spi::run("CREATE ROLE smslink_test_admin IN ROLE smslink_admin").expect("role");
        Spi::run("SET LOCAL ROLE smslink_test_admin").expect("set role");
        let t = one_text("SELECT smslink.token_for(42)");
        assert_eq!(one_i64(&format!("SELECT smslink.link_id('{t}')")), 42);
        let denied = one_text(
            "SELECT CASE WHEN has_schema_privilege('smslink_secret', 'USAGE') THEN 'usable' ELSE 'denied' END",
        );
        assert_eq!(denied, "denied");
        Spi::run("RESET ROLE").expect("reset");
    }

    #[pg_test(error = "permission denied for function token_for")]
    fn a_usage_only_role_cannot_mint_tokens() {
        Spi::run("CREATE ROLE smslink_test_user").expect("role");
        Spi::run("GRANT USAGE ON SCHEMA smslink TO smslink_test_user").expect("grant");
        Spi::run("SET LOCAL ROLE smslink_test_user").expect("set role");
        Spi::run("SELECT smslink.token_for(1)").expect("must fail");
    }

    #[pg_test(error = "permission denied for schema smslink_secret")]
    fn non_owner_cannot_read_keys() {
        Spi::run("CREATE ROLE smslink_test_reader IN ROLE smslink_admin").expect("role");
        Spi::run("SET LOCAL ROLE smslink_test_reader").expect("set role");
        Spi::run("SELECT * FROM smslink_secret.token_key").expect("must fail");
    }

    #[pg_test]
    fn prepare_messages_handles_100k_in_one_call() {
        let c = campaign();
        let n = one_i64(&format!(
            "SELECT count(*) FROM smslink.prepare_messages({c}, 'B',
                 (SELECT array_agg('+1555' || lpad(i::text, 7, '0')) FROM generate_series(1, 100000) i),
                 'Acme: 20% off https://acme.test/sale Stop? https://acme.test/stop',
                 kinds => '{{cta,optout}}')"
        ));
        assert_eq!(n, 100_000);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.message"), 100_000);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.link"), 200_000);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.subscriber"), 100_000);
        assert_eq!(
            one_i64("SELECT count(DISTINCT token) FROM smslink.link"),
            200_000
        );
        // Every stored token decodes to its own link, and every body carries its tokens.
        assert_eq!(
            one_i64("SELECT count(*) FROM smslink.link WHERE smslink.link_id(token) IS DISTINCT FROM id"),
            0
        );
        assert_eq!(
            one_i64(
                "SELECT count(*) FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
                  WHERE strpos(m.body, 'https://sms.acme.test/c/' || l.token) = 0"
            ),
            0
        );
        assert_eq!(
            one_i64("SELECT count(*) FROM smslink.link WHERE kind = 'optout'"),
            100_000
        );
    }

    #[pg_test]
    fn ensure_partitions_moves_rows_out_of_default() {
        let c = campaign();
        Spi::run(&format!(
            "SELECT * FROM smslink.prepare_message({c}, 'A', 's1', 'Deal https://acme.test/x')"
        ))
        .expect("prepare");
        Spi::run(
            "INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method)
             SELECT t, l.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, l.kind, 'GET'
               FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id,
                    (VALUES (timestamptz '2031-05-10 12:00+00'), (timestamptz '2031-05-31 23:59+00'),
                            (timestamptz '2031-06-01 00:00+00')) v(t)",
        )
        .expect("clicks land in the default partition");
        assert_eq!(one_i64("SELECT count(*) FROM smslink.click_default"), 3);
        let created = one_i64("SELECT count(*) FROM smslink.ensure_partitions('0 days')");
        assert!(created >= 2, "created {created}");
        assert_eq!(one_i64("SELECT count(*) FROM smslink.click_default"), 0);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.click_2031_05"), 2);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.click_2031_06"), 1);
        assert_eq!(one_i64("SELECT count(*) FROM smslink.click"), 3);
        // New partitions carry the default partition's primary key and indexes.
        assert_eq!(
            one_i64("SELECT count(*) FROM pg_indexes WHERE schemaname = 'smslink' AND tablename = 'click_2031_05'"),
            one_i64("SELECT count(*) FROM pg_indexes WHERE schemaname = 'smslink' AND tablename = 'click_default'")
        );
        assert_eq!(
            one_i64("SELECT count(*) FROM pg_indexes WHERE schemaname = 'smslink' AND tablename = 'click_2031_05'"),
            7 // the primary key, campaign, message, subscriber, link, address and request id
        );
        // Idempotent.
        assert_eq!(
            one_i64("SELECT count(*) FROM smslink.ensure_partitions('0 days')"),
            0
        );
    }

    /// Random histories (several seeds): the attribution functions agree with plain-SQL reference
    /// queries over `smslink.touch` for last_click, first_click and windowed with view-through,
    /// linear credits are 1/n of the eligible touches, and every model's credits sum to 1.
    #[pg_test]
    fn attribution_matches_plain_sql_on_random_histories() {
        let c = campaign();
        Spi::run(&format!(
            "CREATE TEMP TABLE ctx AS SELECT c.brand_id AS b, c.id AS c,
                    (SELECT min(id) FROM smslink.variant WHERE campaign_id = c.id) AS v
               FROM smslink.campaign c WHERE c.id = {c}"
        ))
        .expect("ctx");
        for seed in [0.11, 0.37, 0.73] {
            Spi::run(&format!(
                "SELECT setseed({seed});
                 DELETE FROM smslink.conversion; DELETE FROM smslink.touchpoint;
                 DELETE FROM smslink.click; DELETE FROM smslink.message;
                 INSERT INTO smslink.subscriber (brand_id, external_key)
                 SELECT b, 'r' || i FROM ctx, generate_series(1, 60) i ON CONFLICT DO NOTHING;
                 -- Messages delivered over two weeks (some holdouts, some undelivered).
                 INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, delivered_at, is_holdout)
                 SELECT ctx.b, ctx.c, ctx.v, s.id, 'delivered',
                        timestamptz '2030-01-01' + random() * interval '14 days', random() < 0.1
                   FROM ctx, smslink.subscriber s, generate_series(1, 3)
                  WHERE s.brand_id = ctx.b AND random() < 0.7;
                 -- Clicks of every class and link kind, at whole minutes so that ties happen.
                 INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id,
                        subscriber_id, link_id, link_kind, method, class)
                 SELECT date_trunc('minute', m.delivered_at + random() * interval '3 days'), m.brand_id,
                        m.campaign_id, m.variant_id, m.id, m.subscriber_id, m.id,
                        (ARRAY['cta', 'cta', 'secondary', 'optout'])[1 + floor(random() * 4)::int], 'GET',
                        (ARRAY['human', 'human', 'human', 'preview', 'bot', 'scanner', 'suspect'])[1 + floor(random() * 7)::int]
                   FROM smslink.message m, generate_series(1, 2) WHERE random() < 0.5;
                 INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, external_id)
                 SELECT ctx.b, s.id, (ARRAY['email', 'social'])[1 + floor(random() * 2)::int],
                        (ARRAY['click', 'view'])[1 + floor(random() * 2)::int],
                        date_trunc('minute', timestamptz '2030-01-01' + random() * interval '16 days'),
                        'tp-' || s.id || '-' || g
                   FROM ctx, smslink.subscriber s, generate_series(1, 4) g WHERE s.brand_id = ctx.b AND random() < 0.5;
                 -- Ties: email clicks at the very instant of some SMS clicks.
                 INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, external_id)
                 SELECT brand_id, subscriber_id, 'email', 'click', clicked_at, 'tie-' || id
                   FROM smslink.click WHERE random() < 0.3;
                 INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, currency, occurred_at, external_id)
                 SELECT ctx.b, s.id, 'purchase', round((random() * 100)::numeric, 2), 'USD',
                        date_trunc('minute', timestamptz '2030-01-02' + random() * interval '16 days'),
                        'o-' || s.id || '-' || g
                   FROM ctx, smslink.subscriber s, generate_series(1, 3) g WHERE s.brand_id = ctx.b AND random() < 0.6;"
            ))
            .expect("random history");
            // The reference: the extreme eligible touch by (touch_at, channel, source id).
            let reference = |order: &str, kind_filter: &str, window: &str| {
                format!(
                    "SELECT k.id, t.channel, t.touch_at, t.click_id
                       FROM smslink.conversion k
                       LEFT JOIN LATERAL (
                           SELECT * FROM smslink.touch t
                            WHERE t.subscriber_id = k.subscriber_id AND {kind_filter}
                              AND t.touch_at BETWEEN k.occurred_at - interval '{window}' AND k.occurred_at
                            ORDER BY t.touch_at {order}, t.channel {order}, t.source_id {order} LIMIT 1) t ON true
                      WHERE k.occurred_at >= '2030-01-03' AND k.occurred_at < '2030-01-15'"
                )
            };
            let ours = |model: &str, extra: &str| {
                format!(
                    "SELECT a.conversion_id, a.channel, a.touch_at, a.click_id
                       FROM smslink.attribute('{model}', '2030-01-03', '2030-01-15'{extra}) a"
                )
            };
            let differ = |a: String, b: String| {
                one_i64(&format!(
                    "SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a})) d"
                ))
            };
            assert!(
                one_i64(&format!(
                    "SELECT count(*) FROM ({}) r",
                    reference("DESC", "t.kind = 'click'", "7 days")
                )) > 20
            );
            assert_eq!(
                differ(
                    ours("last_click", ""),
                    reference("DESC", "t.kind = 'click'", "7 days")
                ),
                0,
                "last_click, seed {seed}"
            );
            assert_eq!(
                differ(
                    ours("first_click", ", click_window => '2 days'"),
                    reference("ASC", "t.kind = 'click'", "2 days")
                ),
                0,
                "first_click, seed {seed}"
            );
            // windowed: the last SMS click in 7 days, else the last delivery in 24 hours.
            let windowed_reference = format!(
                "SELECT r.id, coalesce(r.channel, v.channel), coalesce(r.touch_at, v.touch_at), r.click_id
                   FROM ({}) r
                   JOIN smslink.conversion k ON k.id = r.id
                   LEFT JOIN LATERAL (
                       SELECT * FROM smslink.touch t
                        WHERE r.channel IS NULL AND t.subscriber_id = k.subscriber_id AND t.kind = 'view' AND t.channel = 'sms'
                          AND t.touch_at BETWEEN k.occurred_at - interval '24 hours' AND k.occurred_at
                        ORDER BY t.touch_at DESC, t.source_id DESC LIMIT 1) v ON true",
                reference("DESC", "t.kind = 'click' AND t.channel = 'sms'", "7 days")
            );
            assert_eq!(
                differ(
                    ours("windowed", ", view_window => '24 hours'"),
                    windowed_reference
                ),
                0,
                "windowed, seed {seed}"
            );
            // linear: 1/n of the eligible touches; every model sums to 1 per conversion.
            assert_eq!(
                one_i64(
                    "SELECT count(*) FROM smslink.attribute('linear', '2030-01-03', '2030-01-15') a
                      JOIN smslink.conversion k ON k.id = a.conversion_id
                     WHERE a.channel IS NOT NULL AND abs(a.credit * (
                           SELECT count(*) FROM smslink.touch t WHERE t.subscriber_id = k.subscriber_id
                              AND t.kind = 'click' AND t.touch_at BETWEEN k.occurred_at - interval '7 days' AND k.occurred_at) - 1) > 1e-9"
                ),
                0,
                "linear, seed {seed}"
            );
            for model in [
                "last_click",
                "first_click",
                "windowed",
                "linear",
                "time_decay",
                "position_based",
                "markov",
            ] {
                assert_eq!(
                    one_i64(&format!(
                        "SELECT count(*) FROM (SELECT a.conversion_id, sum(a.credit) AS s, sum(a.revenue) AS r, min(k.value) AS v
                           FROM smslink.attribute('{model}', '2030-01-03', '2030-01-15', view_window => '1 day') a
                           JOIN smslink.conversion k ON k.id = a.conversion_id GROUP BY a.conversion_id) x
                          WHERE abs(s - 1) > 1e-9 OR r <> v"
                    )),
                    0,
                    "{model} credits and revenue, seed {seed}"
                );
                assert_eq!(
                    one_i64(&format!(
                        "SELECT (SELECT count(DISTINCT conversion_id) FROM smslink.attribute('{model}', '2030-01-03', '2030-01-15'))
                              - (SELECT count(*) FROM smslink.conversion WHERE occurred_at >= '2030-01-03' AND occurred_at < '2030-01-15')"
                    )),
                    0,
                    "{model} covers every conversion, seed {seed}"
                );
            }
        }
    }

    /// Random histories (several seeds): campaign_metrics and breakdown by hour equal a plain-SQL
    /// reference written straight from the definitions in docs/metrics.md, for every campaign,
    /// with the default classes and with previews included.
    #[pg_test]
    fn metrics_match_plain_sql_on_random_histories() {
        Spi::run("SELECT smslink.create_brand('Acme')").expect("brand");
        Spi::run("SELECT smslink.add_domain((SELECT id FROM smslink.brand), 'sms.acme.test')")
            .expect("domain");
        Spi::run(
            "SELECT smslink.create_campaign((SELECT id FROM smslink.brand), 'c' || i, '{A,B}') FROM generate_series(1, 3) i",
        )
        .expect("campaigns");
        for seed in [0.21, 0.58, 0.94] {
            Spi::run(&format!(
                "SELECT setseed({seed});
                 DELETE FROM smslink.conversion; DELETE FROM smslink.click; DELETE FROM smslink.message;
                 UPDATE smslink.subscriber SET opted_out_at = NULL;
                 INSERT INTO smslink.subscriber (brand_id, external_key)
                 SELECT (SELECT id FROM smslink.brand), 's' || i FROM generate_series(1, 80) i ON CONFLICT DO NOTHING;
                 -- Messages in every status, delivered over three days, some holdouts.
                 INSERT INTO smslink.message (brand_id, campaign_id, variant_id, subscriber_id, status, sent_at, delivered_at, failed_at, is_holdout)
                 SELECT c.brand_id, c.id, v.id, s.id, st,
                        CASE WHEN st <> 'queued' THEN t END,
                        CASE WHEN st = 'delivered' THEN t + interval '5 seconds' END,
                        CASE WHEN st IN ('failed', 'undelivered') THEN t + interval '5 seconds' END,
                        random() < 0.05
                   FROM smslink.campaign c JOIN smslink.variant v ON v.campaign_id = c.id
                   CROSS JOIN smslink.subscriber s
                   CROSS JOIN LATERAL (SELECT (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'failed', 'undelivered', 'queued', 'sent'])[1 + floor(random() * 8)::int] AS st,
                                              timestamptz '2030-03-01' + random() * interval '3 days' AS t) x
                  WHERE random() < 0.4;
                 INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id, link_kind, method, class)
                 SELECT coalesce(m.delivered_at, m.sent_at) + random() * interval '2 days', m.brand_id, m.campaign_id, m.variant_id,
                        m.id, m.subscriber_id, m.id,
                        (ARRAY['cta', 'cta', 'secondary', 'optout'])[1 + floor(random() * 4)::int], 'GET',
                        (ARRAY['human', 'human', 'human', 'preview', 'bot', 'scanner', 'suspect'])[1 + floor(random() * 7)::int]
                   FROM smslink.message m, generate_series(1, 3) WHERE m.sent_at IS NOT NULL AND random() < 0.35;
                 UPDATE smslink.subscriber SET opted_out_at = timestamptz '2030-03-01' + random() * interval '5 days' WHERE random() < 0.15;
                 INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, currency, occurred_at, external_id)
                 SELECT s.brand_id, s.id, 'purchase', round((random() * 100)::numeric, 2), 'USD',
                        timestamptz '2030-03-01' + random() * interval '6 days', 'o-' || s.id || '-' || g
                   FROM smslink.subscriber s, generate_series(1, 2) g WHERE random() < 0.5;"
            ))
            .expect("random history");
            for classes in ["{human}", "{human,preview}"] {
                let reference = format!(
                    "WITH scope AS (SELECT * FROM smslink.message WHERE NOT is_holdout),
                     counted AS (SELECT c.* FROM smslink.click c WHERE c.class = ANY('{classes}') AND c.link_kind <> 'optout'),
                     firsts AS (SELECT m.campaign_id, extract(epoch FROM min(k.clicked_at) - m.delivered_at) AS s
                                  FROM counted k JOIN scope m ON m.id = k.message_id WHERE m.delivered_at IS NOT NULL
                                 GROUP BY m.id, m.campaign_id, m.delivered_at),
                     credited AS (
                        SELECT cv.id, cv.value, last.message_id, last.campaign_id
                          FROM smslink.conversion cv
                          CROSS JOIN LATERAL (SELECT k.message_id, k.campaign_id FROM smslink.click k
                                               WHERE k.subscriber_id = cv.subscriber_id AND k.class = 'human' AND k.link_kind <> 'optout'
                                                 AND k.clicked_at BETWEEN cv.occurred_at - interval '24 hours' AND cv.occurred_at
                                               ORDER BY k.clicked_at DESC, k.id DESC LIMIT 1) last),
                     optouts AS (
                        SELECT l.id FROM smslink.subscriber o
                          CROSS JOIN LATERAL (SELECT m0.id FROM smslink.message m0 WHERE m0.subscriber_id = o.id
                                                 AND m0.delivered_at <= o.opted_out_at AND m0.delivered_at > o.opted_out_at - interval '7 days'
                                               ORDER BY m0.delivered_at DESC LIMIT 1) l
                         WHERE o.opted_out_at IS NOT NULL)
                     SELECT c.id AS campaign_id,
                            (SELECT count(*) FROM scope m WHERE m.campaign_id = c.id AND m.status <> 'queued') AS sent,
                            (SELECT count(*) FROM scope m WHERE m.campaign_id = c.id AND m.status = 'delivered') AS delivered,
                            (SELECT count(DISTINCT k.message_id) FROM counted k JOIN scope m ON m.id = k.message_id WHERE m.campaign_id = c.id) AS unique_clicks,
                            (SELECT count(*) FROM counted k JOIN scope m ON m.id = k.message_id WHERE m.campaign_id = c.id) AS total_clicks,
                            (SELECT count(DISTINCT x.message_id) FROM credited x JOIN scope m ON m.id = x.message_id WHERE m.campaign_id = c.id) AS converted,
                            (SELECT count(*) FROM credited x JOIN scope m ON m.id = x.message_id WHERE m.campaign_id = c.id) AS conversions,
                            (SELECT coalesce(sum(x.value), 0) FROM credited x JOIN scope m ON m.id = x.message_id WHERE m.campaign_id = c.id) AS revenue,
                            (SELECT count(*) FROM optouts o JOIN scope m ON m.id = o.id WHERE m.campaign_id = c.id) AS opt_outs,
                            (SELECT count(*) FROM smslink.click k JOIN scope m ON m.id = k.message_id WHERE m.campaign_id = c.id AND k.class <> 'human') AS non_human,
                            (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY f.s)::numeric, 6) FROM firsts f WHERE f.campaign_id = c.id) AS p50
                       FROM smslink.campaign c"
                );
                let ours = format!(
                    "SELECT campaign_id, sent, delivered, unique_clicks, total_clicks, clickers_converted, conversions::bigint,
                            revenue, opt_outs, preview_hits + bot_hits + scanner_hits + suspect_hits,
                            round(ttc_p50_seconds::numeric, 6)
                       FROM smslink.campaign_metrics(include_classes => '{classes}')"
                );
                let differ = one_i64(&format!(
                    "SELECT count(*) FROM ((({ours}) EXCEPT ALL ({reference})) UNION ALL (({reference}) EXCEPT ALL ({ours}))) d"
                ));
                assert_eq!(differ, 0, "campaign_metrics {classes}, seed {seed}");
                assert!(
                    one_i64(&format!("SELECT sum(unique_clicks + conversions + opt_outs)::bigint FROM ({reference}) r")) > 30,
                    "the random history exercises every column (seed {seed})"
                );
                // By hour of delivery (or failure, or send) in a time zone with a half-hour offset.
                let by_hour = one_i64(&format!(
                    "WITH ours AS (SELECT key, sent, delivered, unique_clicks FROM smslink.campaign c,
                                   smslink.breakdown(c.id, 'hour_of_day', 'Asia/Kolkata', include_classes => '{classes}')
                                   WHERE c.name = 'c1'),
                          ref AS (SELECT lpad(extract(hour FROM coalesce(m.delivered_at, m.failed_at, m.sent_at) AT TIME ZONE 'Asia/Kolkata')::int::text, 2, '0') AS key,
                                         count(*) FILTER (WHERE m.status <> 'queued') AS sent,
                                         count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
                                         count(*) FILTER (WHERE EXISTS (SELECT 1 FROM smslink.click k WHERE k.message_id = m.id
                                                            AND k.class = ANY('{classes}') AND k.link_kind <> 'optout')) AS unique_clicks
                                    FROM smslink.message m JOIN smslink.campaign c ON c.id = m.campaign_id
                                   WHERE c.name = 'c1' AND NOT m.is_holdout AND coalesce(m.delivered_at, m.failed_at, m.sent_at) IS NOT NULL
                                   GROUP BY 1)
                     SELECT count(*) FROM ((SELECT * FROM ours EXCEPT ALL SELECT * FROM ref) UNION ALL (SELECT * FROM ref EXCEPT ALL SELECT * FROM ours)) d"
                ));
                assert_eq!(by_hour, 0, "breakdown by hour {classes}, seed {seed}");
            }
        }
    }

    /// A random history over 30 months for two brands with different privacy policies: real
    /// links (a call to action and an opt-out link per message), clicks of every class, device
    /// and OS with addresses, user agents, referrers and headers, conversions and touchpoints.
    fn privacy_history(seed: f64) {
        Spi::run(&format!(
            "SELECT setseed({seed});
             SELECT smslink.create_brand(n) FROM unnest(ARRAY['Keep', 'Short']) n;
             UPDATE smslink.brand SET optout_url_pattern = '/stop$';
             SELECT smslink.set_privacy_policy((SELECT id FROM smslink.brand WHERE name = 'Short'), '12 months', '30 days');
             SELECT smslink.add_domain(b.id, lower(b.name) || '.privacy.test') FROM smslink.brand b;
             SELECT smslink.create_campaign(b.id, b.name || i, '{{A,B}}') FROM smslink.brand b, generate_series(1, 2) i;
             SELECT count(*) FROM smslink.campaign c, smslink.variant v,
                    smslink.prepare_messages(c.id, v.key,
                        ARRAY(SELECT c.brand_id || '-' || v.key || '-' || g FROM generate_series(1, 45) g),
                        'Sale https://shop.example/p?c={{campaign}} stop https://opt.example/stop') p
              WHERE v.campaign_id = c.id;
             UPDATE smslink.subscriber SET segments = (ARRAY['{{vip}}', '{{new}}', '{{}}', '{{vip,new}}'])[1 + floor(random() * 4)::int]::text[];
             SELECT smslink.mark_delivered(array_agg(id ORDER BY id),
                    array_agg(timestamptz '2024-01-01' + random() * interval '1000 days' ORDER BY id))
               FROM smslink.message WHERE random() < 0.9;
             INSERT INTO smslink.click (clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id, link_id,
                                        link_kind, method, ip, user_agent, referrer, headers, device, class)
             SELECT m.delivered_at + CASE WHEN random() < 0.8 THEN random() * interval '6 hours' ELSE random() * interval '40 days' END,
                    m.brand_id, m.campaign_id, m.variant_id, m.id, m.subscriber_id, l.id, l.kind, 'GET',
                    CASE WHEN random() < 0.7 THEN ('203.0.' || floor(random() * 250)::int || '.' || floor(random() * 250)::int)::inet
                         ELSE ('2001:db8:' || floor(random() * 999)::int || ':1:2:3:4:' || floor(random() * 999)::int)::inet END,
                    (ARRAY['Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
                           'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36',
                           'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
                           'curl/8.4.0'])[1 + floor(random() * 4)::int],
                    'https://ref.example/' || floor(random() * 10)::int, jsonb_build_object('accept-language', 'en'),
                    (ARRAY['mobile', 'mobile', 'tablet', 'desktop', NULL])[1 + floor(random() * 5)::int],
                    (ARRAY['human', 'human', 'human', 'preview', 'bot', 'scanner', 'suspect'])[1 + floor(random() * 7)::int]
               FROM smslink.message m JOIN smslink.link l ON l.message_id = m.id, generate_series(1, 3)
              WHERE m.delivered_at IS NOT NULL AND random() < CASE WHEN l.kind = 'optout' THEN 0.05 ELSE 0.45 END;
             SELECT count(*) FROM smslink.ensure_partitions('0 months');
             INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, currency, occurred_at, external_id)
             SELECT k.brand_id, k.subscriber_id, 'purchase', round((random() * 100)::numeric, 2), 'USD',
                    k.clicked_at + random() * interval '30 hours', 'o-' || k.id
               FROM smslink.click k WHERE random() < 0.25;
             INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, campaign_ref, external_id)
             SELECT v.brand_id, v.subscriber_id, 'email', 'click', v.occurred_at - random() * interval '10 hours', 'newsletter', 'e-' || v.id
               FROM smslink.conversion v WHERE random() < 0.4;
             UPDATE smslink.subscriber SET opted_out_at = m.delivered_at + interval '1 hour'
               FROM smslink.message m WHERE m.subscriber_id = subscriber.id AND m.delivered_at IS NOT NULL AND random() < 0.04;"
        ))
        .expect("privacy history");
    }

    /// Every report over the whole history, as one text (rows sorted).
    fn reports() -> Vec<(&'static str, String)> {
        let queries = [
            ("campaign_metrics", "SELECT * FROM smslink.campaign_metrics()"),
            ("campaign_metrics, more classes", "SELECT * FROM smslink.campaign_metrics(include_classes => '{human,preview,suspect}')"),
            ("campaign_metrics, linear 7 days", "SELECT * FROM smslink.campaign_metrics(attribution_model => 'linear', click_window => '7 days')"),
            ("variant_metrics", "SELECT c.id, v.* FROM smslink.campaign c, smslink.variant_metrics(c.id) v"),
            ("breakdowns", "SELECT c.id, d, b.* FROM smslink.campaign c,
                 unnest(ARRAY['variant', 'segment', 'device', 'os', 'hour_of_day', 'day_of_week', 'link_kind']) d,
                 smslink.breakdown(c.id, d, 'Asia/Kolkata') b"),
            ("link_metrics", "SELECT c.id, l.* FROM smslink.campaign c, smslink.link_metrics(c.id, '{human,bot}') l"),
            ("time_to_click", "SELECT c.id, t.* FROM smslink.campaign c, smslink.time_to_click(c.id, '10 minutes', '2 days') t WHERE t.clicks > 0"),
            ("daily_metrics", "SELECT * FROM smslink.daily_metrics('2023-06-01', '2027-01-01')"),
            ("variant_stats", "SELECT c.id, s.* FROM smslink.campaign c, smslink.variant_stats(c.id) s"),
            // (every column but the subscriber key, which erasure replaces)
            ("attribute", "SELECT m, a.conversion_id, a.occurred_at, a.channel, a.campaign_id, a.variant_id,
                    a.message_id, a.click_id, a.touch_at, a.credit, a.revenue FROM unnest(ARRAY['last_click', 'first_click', 'windowed', 'linear', 'time_decay', 'position_based', 'markov']) m,
                 smslink.attribute(m, '2023-06-01', '2027-01-01', '3 days') a"),
        ];
        queries
            .iter()
            .map(|(name, q)| {
                (
                    *name,
                    one_text(&format!(
                        "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '') FROM ({q}) x"
                    )),
                )
            })
            .collect()
    }

    /// `text` with every decimal fraction rounded to 10 significant digits: sums of float8
    /// credits depend on the order rows reach the aggregate (plans change as tables change),
    /// which moves the last bits and nothing else.
    fn rounded(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            match run.parse::<f64>() {
                Ok(v) if run.contains('.') => out.push_str(&format!("{v:.9e}")),
                _ => out.push_str(run),
            }
            run.clear();
        };
        for ch in text.chars() {
            if ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '+' | '-') {
                run.push(ch);
            } else {
                flush(&mut run, &mut out);
                out.push(ch);
            }
        }
        flush(&mut run, &mut out);
        out
    }

    fn assert_same_reports(before: &[(&str, String)], after: &[(&str, String)], when: &str) {
        for ((name, a), (_, b)) in before.iter().zip(after) {
            assert!(a.len() > 20, "{name} has rows");
            assert_eq!(rounded(a), rounded(b), "{name} changed {when}");
        }
    }

    /// Retention on generated histories: every report is the same before and after, no address
    /// older than anonymise_after has host bits, the partitions every brand's policy has passed
    /// are gone, other rows past their brand's retention are deleted, and a second run does
    /// nothing.
    #[pg_test]
    fn retention_keeps_every_report_exact() {
        for seed in [0.31, 0.77] {
            Spi::run(
                "DELETE FROM smslink.touchpoint; DELETE FROM smslink.conversion; DELETE FROM smslink.click;
                 DELETE FROM smslink.click_rollup; DELETE FROM smslink.link; DELETE FROM smslink.message;
                 DELETE FROM smslink.allocation_log; DELETE FROM smslink.variant; DELETE FROM smslink.campaign;
                 DELETE FROM smslink.subscriber; DELETE FROM smslink.domain; DELETE FROM smslink.brand_grant;
                 DELETE FROM smslink.brand;",
            )
            .expect("clean");
            privacy_history(seed);
            let clicks = one_i64("SELECT count(*) FROM smslink.click");
            assert!(clicks > 300, "history has clicks ({clicks})");
            let before = reports();
            let at = "timestamptz '2026-11-15 00:00:00+00'";
            let actions = one_text(&format!(
                "SELECT string_agg(action || ' ' || relation || ' ' || coalesce(brand_id::text, '-') || ' ' || rows, E'\\n')
                   FROM smslink.apply_retention({at})"
            ));
            assert!(actions.contains("anonymised smslink.click"), "{actions}");
            assert!(
                actions.contains("partition_dropped smslink.click_2024_01"),
                "{actions}"
            );
            assert!(actions.contains("rows_deleted smslink.click"), "{actions}");
            assert_same_reports(&before, &reports(), &format!("by retention (seed {seed})"));
            // Nothing lost: every click is a row or counted in the rollup.
            assert_eq!(
                one_i64("SELECT (SELECT count(*) FROM smslink.click) + (SELECT sum(hits) FROM smslink.click_rollup)::bigint"),
                clicks
            );
            // Anonymised: no user agent, referrer, headers or host bits past anonymise_after.
            assert_eq!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.click c JOIN smslink.brand b ON b.id = c.brand_id
                      WHERE c.clicked_at < {at} - b.anonymise_after
                        AND (c.user_agent IS NOT NULL OR c.referrer IS NOT NULL OR c.headers IS NOT NULL
                             OR c.ip IS DISTINCT FROM network(set_masklen(c.ip, CASE family(c.ip) WHEN 4 THEN 24 ELSE 48 END))::inet)"
                )),
                0
            );
            assert!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.click c WHERE c.anonymised_at IS NOT NULL AND c.ip IS NOT NULL
                        AND c.clicked_at < {at} - interval '90 days'"
                )) > 0,
                "some anonymised clicks keep their network"
            );
            // Recent clicks keep their detail.
            assert!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.click WHERE clicked_at >= {at} - interval '80 days' AND user_agent IS NOT NULL"
                )) > 0
            );
            // Past retention: no rows, and the partitions every brand's policy has passed are gone.
            assert_eq!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.click c JOIN smslink.brand b ON b.id = c.brand_id
                      WHERE c.clicked_at < {at} - b.click_retention"
                )),
                0
            );
            assert_eq!(
                one_i64(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                      WHERE i.inhparent = 'smslink.click'::regclass AND c.relname < 'click_2024_11'
                        AND c.relname <> 'click_default'"
                ),
                0
            );
            assert!(
                one_i64("SELECT count(*) FROM pg_class WHERE relname = 'click_2024_11' AND relkind = 'r'")
                    == 1,
                "partitions another brand still needs stay"
            );
            // A second run finds nothing to do and changes nothing.
            assert_eq!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.apply_retention({at})"
                )),
                0
            );
            assert_eq!(
                one_i64(&format!(
                    "SELECT count(*) FROM smslink.apply_retention({at}, full_scan => true)"
                )),
                0
            );
            assert_same_reports(
                &before,
                &reports(),
                &format!("by a second run (seed {seed})"),
            );
        }
    }

    /// Erasure: afterwards no row of any smslink table holds the subscriber's key (a phone
    /// number), or the addresses of their clicks; every report is unchanged; a second call is a
    /// no-op; a later send to the same key starts a fresh subscriber.
    #[pg_test]
    fn forget_subscriber_erases_and_keeps_aggregates() {
        privacy_history(0.42);
        let phone = "+15550009876";
        let sid = one_i64(
            "SELECT m.subscriber_id FROM smslink.message m JOIN smslink.click k ON k.message_id = m.id
              JOIN smslink.brand b ON b.id = m.brand_id AND b.name = 'Keep'
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        );
        Spi::run(&format!(
            "UPDATE smslink.subscriber SET external_key = '{phone}' WHERE id = {sid};
             UPDATE smslink.message SET body = body || ' reply to {phone}', failure_reason = 'rejected {phone}' WHERE subscriber_id = {sid};
             UPDATE smslink.click SET ip = ('198.18.7.' || (id % 200))::inet, referrer = 'https://r.example/?p={phone}',
                    headers = jsonb_build_object('x-msisdn', '{phone}'), user_agent = user_agent || ' {phone}'
              WHERE subscriber_id = {sid};
             INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, currency, occurred_at, external_id, properties)
             SELECT s.brand_id, s.id, 'purchase', 10, 'USD', now() - interval '1 day', 'order-{phone}', jsonb_build_object('phone', '{phone}')
               FROM smslink.subscriber s WHERE s.id = {sid};
             INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, external_id)
             SELECT s.brand_id, s.id, 'email', 'view', now() - interval '2 days', 'mail-{phone}' FROM smslink.subscriber s WHERE s.id = {sid};"
        ))
        .expect("personal data");
        let ips: Vec<String> = Spi::connect(|c| {
            c.select(
                &format!("SELECT DISTINCT host(ip) FROM smslink.click WHERE subscriber_id = {sid}"),
                None,
                &[],
            )
            .expect("ips")
            .map(|r| r.get::<String>(1).expect("ip").expect("not null"))
            .collect()
        });
        assert!(!ips.is_empty());
        // Where a needle appears: every table of the extension, whole rows as text.
        let holding = |needle: &str| {
            one_i64(&format!(
                "SELECT coalesce(sum(n), 0)::bigint FROM (
                    SELECT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s t WHERE t::text LIKE %L',
                            c.oid::regclass, '%' || '{needle}' || '%'), false, true, '')))[1]::text::bigint AS n
                      FROM pg_class c WHERE c.relnamespace = 'smslink'::regnamespace AND c.relkind = 'r') x"
            ))
        };
        assert!(holding(phone) > 0, "the history holds the phone number");
        assert!(holding(&ips[0]) > 0);
        let before = reports();
        let brand = one_i64("SELECT id FROM smslink.brand WHERE name = 'Keep'");
        let changed = one_i64(&format!(
            "SELECT count(*) FROM smslink.forget_subscriber({brand}, '{phone}') WHERE rows > 0"
        ));
        assert_eq!(
            changed, 5,
            "clicks, messages, conversions, touchpoints and the subscriber changed"
        );
        assert_eq!(holding(phone), 0, "no row holds the phone number");
        assert_eq!(holding("15550009876"), 0);
        for ip in &ips {
            assert_eq!(holding(ip), 0, "no row holds the address {ip}");
        }
        assert_same_reports(&before, &reports(), "by erasure");
        assert_eq!(
            one_i64(&format!(
                "SELECT count(*) FROM smslink.erasure WHERE subscriber_id = {sid}"
            )),
            1
        );
        // Idempotent: nothing to find, nothing changed, nothing recorded.
        assert_eq!(
            one_i64(&format!(
                "SELECT count(*) FROM smslink.forget_subscriber({brand}, '{phone}')"
            )),
            0
        );
        assert_eq!(one_i64("SELECT count(*) FROM smslink.erasure"), 1);
        assert_same_reports(&before, &reports(), "by a second erasure");
        // A later send to the same key is a new subscriber.
        Spi::run(&format!(
            "SELECT smslink.prepare_message((SELECT id FROM smslink.campaign WHERE name = 'Keep1'), 'A', '{phone}',
                    'Hello https://shop.example/again')"
        ))
        .expect("send again");
        let fresh = one_i64(&format!(
            "SELECT id FROM smslink.subscriber WHERE external_key = '{phone}'"
        ));
        assert_ne!(fresh, sid);
    }
}
