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
        assert_eq!(one_i64("SELECT count(*) FROM smslink.token_key"), 1);
        assert_eq!(
            one_i64("SELECT length(key)::bigint FROM smslink.token_key"),
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
    fn key_table_is_private_but_tokens_work_for_other_roles() {
        Spi::run("CREATE ROLE smslink_test_analyst").expect("role");
        Spi::run("GRANT USAGE ON SCHEMA smslink TO smslink_test_analyst").expect("grant");
        Spi::run("SET LOCAL ROLE smslink_test_analyst").expect("set role");
        let t = one_text("SELECT smslink.token_for(42)");
        assert_eq!(one_i64(&format!("SELECT smslink.link_id('{t}')")), 42);
        let denied = one_text(
            "SELECT CASE WHEN has_table_privilege('smslink.token_key', 'SELECT') THEN 'readable' ELSE 'denied' END",
        );
        assert_eq!(denied, "denied");
        Spi::run("RESET ROLE").expect("reset");
    }

    #[pg_test(error = "permission denied for table token_key")]
    fn non_owner_cannot_read_keys() {
        Spi::run("CREATE ROLE smslink_test_reader").expect("role");
        Spi::run("GRANT USAGE ON SCHEMA smslink TO smslink_test_reader").expect("grant");
        Spi::run("SET LOCAL ROLE smslink_test_reader").expect("set role");
        Spi::run("SELECT * FROM smslink.token_key").expect("must fail");
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
            6
        );
        // Idempotent.
        assert_eq!(
            one_i64("SELECT count(*) FROM smslink.ensure_partitions('0 days')"),
            0
        );
    }
}
