-- A realistic, deterministic year of SMS marketing history, for benchmarks over history
-- (attribution, campaign metrics, experiment statistics). Run it with psql inside a database
-- where `CREATE EXTENSION smslink` was just run (scripts/gen-history.sh does that).
--
-- Variables (psql -v):
--   scale        1 (default) = 1,000,000 subscribers, 10,000,000 messages, ~1,000,000 clicks,
--                ~100,000 conversions, ~300,000 email touchpoints; 0.001 shrinks every count
--   real_tokens  false (default): link.token is the placeholder 'g' || link.id (see below);
--                true: smslink.token_for(link.id), real tokens (slow: two SPI queries per link)
--   generator    a fingerprint of this file, recorded in public.bench_meta (gen-history.sh)
--   ext_sql      a fingerprint of the extension's install script, likewise
--
-- The history: 12 months of messages, October 2025 to September 2026, ending at the fixed time
-- 2026-10-01 00:00 UTC; no event at or after it. One brand, one domain, 60 campaigns (five a
-- month) of varying sizes with 2 or 3 variants each, among them "Black Friday 2025", sent to
-- every subscriber plus a retry wave for the failed first attempts: exactly
-- 1,000,000 × scale delivered messages in one campaign.
--
-- Deterministic: every random choice is a hash of a row's id and a salt (hashint8extended,
-- which is stable across platforms and releases because hash partitioning depends on it), never
-- random(); explicit ids everywhere; every created_at is set from the history, not now(). Two
-- runs give identical rows. Only the click partitions made ahead of now() differ with the date.
--
-- Speed: bulk INSERT ... SELECT generate_series, one statement per table; RI triggers are off for
-- the load (session_replication_role = replica: the rows are consistent by construction, and
-- the check at the end counts orphans); asynchronous commit. Nothing the extension owns is
-- dropped or altered.
\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\if :{?scale} \else \set scale 1 \endif
\if :{?real_tokens} \else \set real_tokens false \endif
\if :{?generator} \else \set generator unknown \endif
\if :{?ext_sql} \else \set ext_sql unknown \endif

SET client_min_messages = warning;
SET TIME ZONE 'UTC';
SET synchronous_commit = off;
SET maintenance_work_mem = '1GB';
SET work_mem = '256MB';
SET session_replication_role = replica;
\if :{?timing} \timing on \else \timing off \endif
SELECT clock_timestamp() AS gen_t0 \gset

DO $$
BEGIN
    IF to_regclass('smslink.message') IS NULL THEN
        RAISE EXCEPTION 'run CREATE EXTENSION smslink first';
    END IF;
    IF EXISTS (SELECT 1 FROM smslink.brand) OR EXISTS (SELECT 1 FROM smslink.message) THEN
        RAISE EXCEPTION 'this database already holds smslink data: generate into a fresh database';
    END IF;
    IF to_regclass('smslink.click') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = 'smslink.click'::regclass AND attname = 'link_kind') THEN
        RAISE EXCEPTION 'the installed smslink is older than this generator (no click.link_kind)';
    END IF;
END $$;

-- h(x, salt): a uniform pseudo-random number in [0, 1), a pure function of (x, salt). Inlined.
CREATE FUNCTION pg_temp.h(x bigint, salt bigint) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(x, salt) & 9007199254740991)::float8 / 9007199254740992.0 $$;

-- Parameters.
CREATE TEMP TABLE gen_param AS
SELECT greatest(round(1000000 * :scale), 20)::bigint AS n_sub,
       greatest(round(10000000 * :scale), 1200)::bigint AS n_msg,
       greatest(round(100000 * :scale), 10)::bigint AS n_conv,
       greatest(round(300000 * :scale), 52)::bigint AS n_tp,
       timestamptz '2025-10-01 00:00+00' AS t_start,
       timestamptz '2026-10-01 00:00+00' AS t_end,
       250.0::float8 AS rate; -- messages per second the gateway sends

\echo '==> campaigns'
-- The campaign plan: 60 campaigns, five per month. Campaign index c = 0..59, id c + 1.
-- Campaign 9 is Black Friday 2025: every subscriber, plus one retry for each failed first
-- attempt (ordinals n_sub+1 .. n_sub + n_sub/20 resend to ordinals 20, 40, ...), all delivered.
-- The others share the remaining messages by pseudo-random weights (more in Nov and Dec).
-- Subscriber of ordinal k: ((k - 1) * mult + shift) mod n_sub + 1, a permutation because mult
-- is a prime that does not divide n_sub, so no subscriber gets two messages of one campaign
-- (except Black Friday's retries).
CREATE TEMP TABLE gen_campaign AS
WITH p AS (SELECT * FROM gen_param),
base AS (
    SELECT c, c = 9 AS big, c / 5 AS month_idx,
           (0.4 + 1.2 * pg_temp.h(c, 11)) * CASE WHEN c / 5 IN (1, 2) THEN 1.3 ELSE 1.0 END AS w
      FROM generate_series(0, 59) c
),
sized AS (
    SELECT b.*,
           CASE WHEN b.big THEN p.n_sub + p.n_sub / 20
                ELSE floor(b.w / sum(b.w) FILTER (WHERE NOT b.big) OVER () * (p.n_msg - p.n_sub - p.n_sub / 20))::bigint
           END AS n0
      FROM base b, p
),
fixed AS (
    -- The last campaign takes the rounding remainder, so that the total is exactly n_msg.
    SELECT s.*,
           (s.n0 + CASE WHEN s.c = 59 THEN p.n_msg - sum(s.n0) OVER () ELSE 0 END)::bigint AS n
      FROM sized s, p
),
planned AS (
    SELECT f.c, f.c + 1 AS campaign_id, f.big, f.month_idx, f.n,
           CASE WHEN f.big THEN timestamptz '2025-11-28 14:00+00'
                ELSE p.t_start + f.month_idx * interval '1 month'
                     + ((f.c % 5) * 6 + floor(pg_temp.h(f.c, 12) * 4)) * interval '1 day'
                     + (14 + floor(pg_temp.h(f.c, 22) * 6)) * interval '1 hour'
                     + floor(pg_temp.h(f.c, 23) * 60) * interval '1 minute'
           END AS send_start,
           CASE WHEN f.big THEN 3 ELSE 2 + (pg_temp.h(f.c, 13) < 0.4)::int END AS nv,
           0.85 + 0.3 * pg_temp.h(f.c, 14) AS vm_b,
           0.85 + 0.3 * pg_temp.h(f.c, 15) AS vm_c,
           f.big OR pg_temp.h(f.c, 16) < 0.4 AS has_optout,
           NOT f.big AND pg_temp.h(f.c, 17) < 0.2 AS holdout,
           CASE WHEN f.big THEN 0.05 ELSE 0.05 + 0.045 * pg_temp.h(f.c, 18) END AS base_ctr,
           (SELECT q FROM unnest(ARRAY[104723, 104729, 130363, 224737, 350377, 479909, 611953,
                                      746773, 882389, 999983, 1299709, 15485863]::bigint[]) q
             WHERE p.n_sub % q <> 0
             ORDER BY (q + f.c) % 12, q LIMIT 1) AS mult,
           floor(pg_temp.h(f.c, 19) * p.n_sub)::bigint AS shift,
           (ARRAY['new-arrivals', 'flash-sale', 'weekend-deal', 'loyalty-points', 'back-in-stock',
                  'clearance', 'members-preview', 'free-shipping'])[1 + floor(pg_temp.h(f.c, 24) * 8)::int] AS theme
      FROM fixed f, p
)
SELECT pl.*,
       coalesce(sum(pl.n) OVER w, 0)::bigint AS msg_offset,
       coalesce(sum(pl.nv) OVER w, 0)::bigint AS var_offset,
       (p.n_msg + coalesce(sum(pl.n) FILTER (WHERE pl.has_optout) OVER w, 0))::bigint AS optout_offset,
       CASE WHEN pl.big THEN 'Black Friday 2025'
            ELSE to_char(pl.send_start, 'YYYY-MM') || ' ' || pl.theme END AS name,
       CASE WHEN pl.big THEN 'black-friday-2025'
            ELSE to_char(pl.send_start, 'YYYY-MM') || '-' || pl.theme END AS slug
  FROM planned pl, p
WINDOW w AS (ORDER BY pl.c ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);
ANALYZE gen_campaign;

INSERT INTO smslink.brand (id, name, optout_url_pattern, fallback_url, created_at)
VALUES (1, 'Acme Outfitters', '^https://shop\.acme-outfitters\.example/stop', 'https://shop.acme-outfitters.example/',
        '2025-01-15 09:00+00');
INSERT INTO smslink.domain (id, brand_id, host, prefix, token_length, fallback_url, is_default, created_at)
VALUES (1, 1, 'go.acme-outfitters.example', 'c', 9, 'https://shop.acme-outfitters.example/', true,
        '2025-01-15 09:05+00');
INSERT INTO smslink.campaign (id, brand_id, name, domain_id, purpose, created_at)
SELECT campaign_id, 1, name, 1, 'marketing', send_start - interval '2 days' FROM gen_campaign ORDER BY c;
INSERT INTO smslink.variant (id, campaign_id, key, weight, created_at)
SELECT g.var_offset + v, g.campaign_id, chr(64 + v::int), 1, g.send_start - interval '2 days'
  FROM gen_campaign g, generate_series(1, g.nv) v ORDER BY 1;

\echo '==> subscribers'
INSERT INTO smslink.subscriber (id, brand_id, external_key, created_at)
SELECT i, 1, 's' || lpad(i::text, 7, '0'),
       timestamptz '2025-09-01 00:00+00' - floor(pg_temp.h(i, 25) * 1000 * 86400) * interval '1 second'
  FROM gen_param p, generate_series(1, p.n_sub) i;

-- One row per message, computed from (campaign, ordinal k) alone. Click model: a delivered
-- message gets a human click on its CTA link with probability base_ctr × variant multiplier ×
-- the subscriber's engagement (20% engaged ×3, 50% normal ×0.8, 30% dormant ×0.1), capped at
-- 0.45; time to click 20 s × exp(u^1.5 × ln 13000): median ~10 minutes, a tail to 3 days.
-- A message of a campaign with an opt-out link whose CTA draw (salt 1) is ≥ 0.5 (so it can never
-- be a CTA clicker) gets an opt-out click with probability 0.5%, 1 minute to 1 day after
-- delivery. first_click_at is the first human click, of either kind (as smslink.reclassify
-- defines it). Ordinals k ≡ 0 (mod 20) fail (5%); in holdout campaigns k ≡ 10 (mod 20) is a
-- holdout (queued, never sent).
CREATE TEMP VIEW gen_msg AS
SELECT g.c, g.campaign_id, k, g.msg_offset + k AS id, g.var_offset + a.vidx + 1 AS variant_id,
       b.subscriber_id, a.status, a.sent_at,
       d.delivered_at,
       CASE WHEN a.status IN ('failed', 'undelivered')
            THEN a.sent_at + (2 + 60 * pg_temp.h(g.msg_offset + k, 26)) * interval '1 second' END AS failed_at,
       CASE WHEN a.status IN ('failed', 'undelivered')
            THEN (ARRAY['30003 unreachable destination handset', '30005 unknown destination handset',
                        '30006 landline or unreachable carrier', '30007 carrier filtering',
                        '30008 unknown error'])[1 + floor(pg_temp.h(g.msg_offset + k, 27) * 5)::int] END AS failure_reason,
       a.status = 'queued' AS is_holdout,
       CASE WHEN e.cta AND e.cta_at < p.t_end THEN e.cta_at
            WHEN e.opt AND e.opt_at < p.t_end THEN e.opt_at END AS first_click_at,
       g.send_start - interval '1 hour' AS created_at,
       g.has_optout, g.optout_offset, g.slug
  FROM gen_param p
  JOIN gen_campaign g ON true
 CROSS JOIN LATERAL generate_series(1, g.n) k
 CROSS JOIN LATERAL (
    SELECT (k - 1) % g.nv AS vidx,
           CASE WHEN g.big AND k > p.n_sub THEN 20 * (k - p.n_sub) ELSE k END AS k_sub,
           CASE WHEN g.big AND k > p.n_sub THEN 'delivered'
                WHEN k % 20 = 0 THEN CASE WHEN pg_temp.h(g.msg_offset + k, 28) < 0.6 THEN 'undelivered' ELSE 'failed' END
                WHEN g.holdout AND k % 20 = 10 THEN 'queued'
                ELSE 'delivered' END AS status,
           CASE WHEN g.holdout AND k % 20 = 10 AND NOT (g.big AND k > p.n_sub) THEN NULL
                ELSE g.send_start + ((k - 1) / p.rate) * interval '1 second' END AS sent_at
 ) a
 CROSS JOIN LATERAL (SELECT ((a.k_sub - 1) * g.mult + g.shift) % p.n_sub + 1 AS subscriber_id) b
 CROSS JOIN LATERAL (
    SELECT CASE WHEN a.status = 'delivered'
                THEN a.sent_at + (1 + 30 * pg_temp.h(g.msg_offset + k, 20) ^ 4) * interval '1 second' END AS delivered_at,
           least(0.45, g.base_ctr
                 * CASE a.vidx WHEN 0 THEN 1.0 WHEN 1 THEN g.vm_b ELSE g.vm_c END
                 * CASE WHEN pg_temp.h(b.subscriber_id, 21) < 0.2 THEN 3.0
                        WHEN pg_temp.h(b.subscriber_id, 21) < 0.7 THEN 0.8 ELSE 0.1 END) AS p_click
 ) d
 CROSS JOIN LATERAL (
    SELECT d.delivered_at IS NOT NULL AND pg_temp.h(g.msg_offset + k, 1) < d.p_click AS cta,
           d.delivered_at + 20 * exp(pg_temp.h(g.msg_offset + k, 2) ^ 1.5 * ln(13000)) * interval '1 second' AS cta_at,
           d.delivered_at IS NOT NULL AND g.has_optout AND pg_temp.h(g.msg_offset + k, 1) >= 0.5
               AND pg_temp.h(g.msg_offset + k, 7) < 0.005 AS opt,
           d.delivered_at + 60 * exp(pg_temp.h(g.msg_offset + k, 9) * ln(1440)) * interval '1 second' AS opt_at
 ) e;

\echo '==> messages'
-- No body: 10 M bodies would add ~1.5 GB and nothing any history benchmark reads; encoding and
-- segments are set as if there were one.
INSERT INTO smslink.message (id, brand_id, campaign_id, variant_id, subscriber_id, encoding, segments,
                             status, sent_at, delivered_at, failed_at, failure_reason, is_holdout,
                             first_click_at, created_at)
SELECT id, 1, campaign_id, variant_id, subscriber_id,
       CASE WHEN pg_temp.h(id, 29) < 0.9 THEN 'GSM-7' ELSE 'UCS-2' END,
       1 + (pg_temp.h(id, 30) < 0.15)::int,
       status, sent_at, delivered_at, failed_at, failure_reason, is_holdout, first_click_at, created_at
  FROM gen_msg;

\echo '==> links'
-- One CTA link per message (link id = message id) and, in campaigns with an opt-out link, an
-- opt-out link at position 2 (ids after n_msg, in message order).
-- Tokens: a real token is smslink.token_for(link_id) (FF1 under the current key, plus two SPI
-- queries per call: minutes for 10 M links). No history benchmark resolves tokens, so by
-- default link.token holds the placeholder 'g' || id, which is not the link's token
-- (smslink.link_id() does not map it back to the link; do not resolve it); -v real_tokens=true
-- makes real ones (checked: link_id(token) = id for every link).
INSERT INTO smslink.link (id, brand_id, message_id, domain_id, position, kind, destination, token, created_at)
SELECT l.id, 1, m.id, 1, l.position, l.kind, l.destination,
       CASE WHEN :real_tokens THEN smslink.token_for(l.id) ELSE 'g' || l.id END,
       m.created_at
  FROM gen_msg m
 CROSS JOIN LATERAL (
    VALUES (m.id, 1, 'cta', 'https://shop.acme-outfitters.example/' || m.slug
                           || '?utm_source=sms&utm_medium=text&utm_campaign=' || m.slug)
    UNION ALL
    SELECT m.optout_offset + m.k, 2, 'optout', 'https://shop.acme-outfitters.example/stop' WHERE m.has_optout
 ) l(id, position, kind, destination);

\echo '==> clicks'
-- Monthly partitions first, so that the clicks go straight into them: ensure_partitions makes a
-- partition for every month the default partition holds rows for, so one placeholder row per
-- month of the history (negative ids) is put there, then removed from the new partitions.
INSERT INTO smslink.click_default (id, clicked_at, brand_id, campaign_id, variant_id, message_id,
                                   subscriber_id, link_id, link_kind, method)
SELECT -i - 1, p.t_start + i * interval '1 month', 1, 1, 1, 1, 1, 1, 'cta', 'GET'
  FROM gen_param p, generate_series(0, 11) i;
SELECT count(*) AS partitions_made FROM smslink.ensure_partitions() \gset
DELETE FROM smslink.click WHERE id < 0;

-- Per message, from the message table: the human clicks (the first click, then for 20% of CTA
-- clickers one or two repeats, 30 s to 1 day apart); and hits that are not human, right after
-- delivery for the most part: link previews 0.8% of delivered messages, security scanners
-- 0.2%, declared bots 0.06% (any time within two days), suspects 0.05%.
INSERT INTO smslink.click (id, clicked_at, brand_id, campaign_id, variant_id, message_id, subscriber_id,
                           link_id, link_kind, method, ip, user_agent, referrer, headers, device, class,
                           reasons, seconds_since_delivery, is_first, expired)
WITH m AS (
    SELECT m.id, m.campaign_id, m.variant_id, m.subscriber_id, m.delivered_at, m.first_click_at,
           m.id - g.msg_offset AS k, g.has_optout, g.optout_offset,
           m.first_click_at IS NOT NULL AND g.has_optout AND pg_temp.h(m.id, 1) >= 0.5
               AND pg_temp.h(m.id, 7) < 0.005 AS optout_clicker
      FROM smslink.message m JOIN gen_campaign g ON g.campaign_id = m.campaign_id
     WHERE m.status = 'delivered'
       AND (m.first_click_at IS NOT NULL OR pg_temp.h(m.id, 5) < 0.008 OR pg_temp.h(m.id, 6) < 0.002
            OR pg_temp.h(m.id, 8) < 0.0006 OR pg_temp.h(m.id, 10) < 0.0005)
),
hit AS (
    -- slot 0: the first human click; 1, 2: repeats; 10 preview, 11 scanner, 12 bot, 13 suspect
    SELECT m.*, 0 AS slot, m.first_click_at AS at, 'human' AS class
      FROM m WHERE m.first_click_at IS NOT NULL
    UNION ALL
    SELECT m.*, r, m.first_click_at + s.gap, 'human'
      FROM m
     CROSS JOIN LATERAL generate_series(1, 1 + (pg_temp.h(m.id, 4) < 0.4)::int) r
     CROSS JOIN LATERAL (
        SELECT sum(30 * exp(pg_temp.h(m.id, 40 + j) * ln(2880))) * interval '1 second' AS gap
          FROM generate_series(1, r) j) s
     WHERE m.first_click_at IS NOT NULL AND NOT m.optout_clicker AND pg_temp.h(m.id, 3) < 0.2
    UNION ALL
    SELECT m.*, 10, m.delivered_at + (0.5 + 6 * pg_temp.h(m.id, 50)) * interval '1 second', 'preview'
      FROM m WHERE pg_temp.h(m.id, 5) < 0.008
    UNION ALL
    SELECT m.*, 11, m.delivered_at + (0.2 + 3 * pg_temp.h(m.id, 52)) * interval '1 second', 'scanner'
      FROM m WHERE pg_temp.h(m.id, 6) < 0.002
    UNION ALL
    SELECT m.*, 12, m.delivered_at + 172800 * pg_temp.h(m.id, 54) * interval '1 second', 'bot'
      FROM m WHERE pg_temp.h(m.id, 8) < 0.0006
    UNION ALL
    SELECT m.*, 13, m.delivered_at + (0.3 + 1.5 * pg_temp.h(m.id, 56)) * interval '1 second', 'suspect'
      FROM m WHERE pg_temp.h(m.id, 10) < 0.0005
),
dressed AS (
    SELECT x.*,
           x.slot = 0 AND x.optout_clicker AS on_optout,
           pg_temp.h(x.id, 60 + x.slot) AS u,
           pg_temp.h(x.subscriber_id, 61) AS us
      FROM hit x
     WHERE x.at < (SELECT t_end FROM gen_param)
)
SELECT row_number() OVER (ORDER BY x.at, x.id, x.slot),
       x.at, 1, x.campaign_id, x.variant_id, x.id, x.subscriber_id,
       CASE WHEN x.on_optout THEN x.optout_offset + x.k ELSE x.id END,
       CASE WHEN x.on_optout THEN 'optout' ELSE 'cta' END,
       CASE WHEN x.class = 'scanner' AND x.u < 0.5 THEN 'HEAD' ELSE 'GET' END,
       CASE x.class
            WHEN 'human' THEN inet '73.0.0.0' + floor(x.us * 16777216)::bigint
            WHEN 'preview' THEN inet '17.58.0.0' + floor(x.u * 65536)::bigint
            ELSE inet '52.0.0.0' + floor(x.u * 16777216)::bigint END,
       CASE x.class
            WHEN 'human' THEN CASE
                 WHEN x.us < 0.55 THEN 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
                 WHEN x.us < 0.88 THEN 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36'
                 WHEN x.us < 0.93 THEN 'Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
                 WHEN x.us < 0.97 THEN 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36'
                 ELSE NULL END
            WHEN 'preview' THEN CASE
                 WHEN x.u < 0.5 THEN 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0'
                 WHEN x.u < 0.8 THEN 'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) GoogleMessages'
                 ELSE 'WhatsApp/2.24.10.79 A' END
            WHEN 'scanner' THEN CASE
                 WHEN x.u < 0.5 THEN 'Mozilla/5.0 (compatible; Proofpoint URL Defense)'
                 ELSE 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36' END
            WHEN 'bot' THEN 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
            ELSE 'Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36'
       END,
       NULL, NULL,
       CASE x.class
            WHEN 'human' THEN CASE WHEN x.us < 0.55 THEN 'mobile' WHEN x.us < 0.88 THEN 'mobile'
                                   WHEN x.us < 0.93 THEN 'tablet' WHEN x.us < 0.97 THEN 'desktop' ELSE 'other' END
            WHEN 'scanner' THEN CASE WHEN x.u < 0.5 THEN 'other' ELSE 'desktop' END
            WHEN 'suspect' THEN 'mobile'
            ELSE 'other' END,
       x.class,
       CASE x.class
            WHEN 'human' THEN '{}'::text[]
            WHEN 'preview' THEN CASE WHEN x.u < 0.5 THEN '{ua:preview:imessage}'::text[]
                                     WHEN x.u < 0.8 THEN '{ua:preview:google_messages}'
                                     ELSE '{ua:preview:whatsapp}' END
            WHEN 'scanner' THEN CASE WHEN x.u < 0.5 THEN '{ua:scanner:proofpoint}'::text[]
                                     ELSE '{ip:range:aws,timing:too_fast}' END
            WHEN 'bot' THEN '{ua:bot:crawler}'
            ELSE CASE WHEN x.u < 0.6 THEN '{timing:too_fast}'::text[] ELSE '{burst:token}' END
       END,
       extract(epoch FROM x.at - x.delivered_at)::float8,
       x.slot = 0,
       false
  FROM dressed x;

\echo '==> email touchpoints'
-- 52 weekly newsletters (Thursdays 15:00 UTC from 2 October 2025); each touchpoint is an open
-- ('view', 75%) or a click (25%) by a pseudo-random subscriber, 1 minute to 3 days after the send.
INSERT INTO smslink.touchpoint (id, brand_id, subscriber_id, channel, kind, occurred_at, campaign_ref,
                                external_id, created_at)
SELECT row_number() OVER (ORDER BY t.at, t.i), 1, t.subscriber_id, 'email', t.kind, t.at,
       'newsletter-' || lpad(t.nl::text, 2, '0'), 'em-' || lpad(t.i::text, 7, '0'), t.at
  FROM (
    SELECT i, nl, 1 + floor(pg_temp.h(i, 70) * p.n_sub)::bigint AS subscriber_id,
           CASE WHEN pg_temp.h(i, 71) < 0.25 THEN 'click' ELSE 'view' END AS kind,
           timestamptz '2025-10-02 15:00+00' + (nl - 1) * interval '7 days'
               + 60 * exp(pg_temp.h(i, 72) * ln(4320)) * interval '1 second' AS at
      FROM gen_param p, generate_series(1, p.n_tp) i
     CROSS JOIN LATERAL (SELECT 1 + (i - 1) % 52 AS nl) n
  ) t, gen_param p
 WHERE t.at < p.t_end;

\echo '==> conversions'
-- Purchases, by source (target shares of n_conv):
--   70% SMS clickers: the first human CTA clicks with the smallest hash, 0-7 days after the click
--       (35% within 2 hours), 10% of them 7-10 days after (outside a 7-day window); 60% carry
--       the click id (a postback with the click parameter);
--   15% view-through: delivered messages without a click, within 24 hours of delivery;
--    5% email clickers, within 3 days of an email click;
--   10% anyone, any time (unattributed unless a touch happens to precede), 1 in 10 of them
--       anonymous (no subscriber).
-- Values: log-normal around 60 USD, at least 5.
INSERT INTO smslink.conversion (id, brand_id, subscriber_id, click_id, event, value, currency, occurred_at,
                                external_id, properties, created_at)
WITH p AS (SELECT * FROM gen_param),
clicker AS (
    SELECT c.subscriber_id, c.id AS click_id, c.clicked_at + d.delay AS at, c.message_id AS seed,
           pg_temp.h(c.message_id, 33) < 0.6 AS with_click
      FROM (SELECT c.* FROM smslink.click c
             WHERE c.is_first AND c.link_kind = 'cta'
             ORDER BY pg_temp.h(c.message_id, 31), c.id
             LIMIT (SELECT round(n_conv * 0.70) FROM p)) c
     CROSS JOIN LATERAL (SELECT CASE
              WHEN pg_temp.h(c.message_id, 32) < 0.35 THEN 7200 * pg_temp.h(c.message_id, 34) ^ 2
              WHEN pg_temp.h(c.message_id, 32) < 0.90 THEN 7200 + (604800 - 7200) * pg_temp.h(c.message_id, 34)
              ELSE 604800 + 259200 * pg_temp.h(c.message_id, 34) END * interval '1 second' AS delay) d
),
viewer AS (
    SELECT m.subscriber_id, NULL::bigint AS click_id,
           m.delivered_at + 86400 * pg_temp.h(i, 36) * interval '1 second' AS at, i AS seed, false AS with_click
      FROM p CROSS JOIN LATERAL generate_series(1, 3 * p.n_conv) i
      JOIN smslink.message m ON m.id = 1 + floor(pg_temp.h(i, 35) * p.n_msg)::bigint
     WHERE m.status = 'delivered' AND m.first_click_at IS NULL
     ORDER BY i LIMIT (SELECT round(n_conv * 0.15) FROM p)
),
emailer AS (
    SELECT t.subscriber_id, NULL::bigint, t.occurred_at + 259200 * pg_temp.h(t.id, 38) * interval '1 second',
           t.id, false
      FROM smslink.touchpoint t
     WHERE t.kind = 'click'
     ORDER BY pg_temp.h(t.id, 37), t.id LIMIT (SELECT round(n_conv * 0.05) FROM p)
),
anyone AS (
    SELECT CASE WHEN pg_temp.h(i, 39) < 0.1 THEN NULL ELSE 1 + floor(pg_temp.h(i, 40) * p.n_sub)::bigint END,
           NULL::bigint, p.t_start + (p.t_end - p.t_start) * pg_temp.h(i, 41), i, false
      FROM p CROSS JOIN LATERAL generate_series(1, (p.n_conv - round(p.n_conv * 0.70) - round(p.n_conv * 0.15)
                                                       - round(p.n_conv * 0.05))::bigint) i
),
allc AS (
    SELECT 1 AS src, * FROM clicker
    UNION ALL SELECT 2, * FROM viewer
    UNION ALL SELECT 3, * FROM emailer
    UNION ALL SELECT 4, * FROM anyone
),
numbered AS (
    SELECT row_number() OVER (ORDER BY a.at, a.src, a.seed) AS id, a.*,
           sqrt(-2 * ln(1 - pg_temp.h(a.seed * 8 + a.src, 42))) * cos(2 * pi() * pg_temp.h(a.seed * 8 + a.src, 43)) AS z
      FROM allc a, p WHERE a.at < p.t_end
)
SELECT n.id, 1, n.subscriber_id, CASE WHEN n.with_click THEN n.click_id END, 'purchase',
       greatest(5, round((60 * exp(0.7 * n.z))::numeric, 2)), 'USD', n.at,
       'ord-' || lpad(n.id::text, 8, '0'),
       jsonb_build_object('source', (ARRAY['sms_click', 'sms_view', 'email', 'other'])[n.src]),
       n.at + interval '5 seconds'
  FROM numbered n;

\echo '==> opt-outs, sequences'
UPDATE smslink.subscriber s SET opted_out_at = o.at
  FROM (SELECT subscriber_id, min(clicked_at) AS at FROM smslink.click
         WHERE link_kind = 'optout' AND class = 'human' GROUP BY subscriber_id) o
 WHERE s.id = o.subscriber_id;

SELECT setval('smslink.brand_id_seq', 1),
       setval('smslink.domain_id_seq', 1),
       setval('smslink.campaign_id_seq', (SELECT max(id) FROM smslink.campaign)),
       setval('smslink.variant_id_seq', (SELECT max(id) FROM smslink.variant)),
       setval('smslink.subscriber_id_seq', (SELECT max(id) FROM smslink.subscriber)),
       setval('smslink.message_id_seq', (SELECT max(id) FROM smslink.message)),
       setval('smslink.link_id_seq', (SELECT max(id) FROM smslink.link)),
       setval('smslink.click_id_seq', greatest(1, (SELECT max(id) FROM smslink.click))),
       setval('smslink.conversion_id_seq', greatest(1, (SELECT max(id) FROM smslink.conversion))),
       setval('smslink.touchpoint_id_seq', greatest(1, (SELECT max(id) FROM smslink.touchpoint))) \gset

RESET session_replication_role;
SELECT clock_timestamp() AS gen_t1 \gset

-- Referential integrity, which the load did not check row by row: every reference resolves.
DO $$
DECLARE bad bigint;
BEGIN
    SELECT (SELECT count(*) FROM smslink.message m WHERE NOT EXISTS (SELECT 1 FROM smslink.subscriber s WHERE s.id = m.subscriber_id))
         + (SELECT count(*) FROM smslink.message m WHERE NOT EXISTS (SELECT 1 FROM smslink.variant v WHERE v.id = m.variant_id AND v.campaign_id = m.campaign_id))
         + (SELECT count(*) FROM smslink.click c WHERE NOT EXISTS (SELECT 1 FROM smslink.link l WHERE l.id = c.link_id AND l.message_id = c.message_id AND l.kind = c.link_kind))
         + (SELECT count(*) FROM smslink.conversion v WHERE v.subscriber_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM smslink.subscriber s WHERE s.id = v.subscriber_id))
         + (SELECT count(*) FROM smslink.touchpoint t WHERE NOT EXISTS (SELECT 1 FROM smslink.subscriber s WHERE s.id = t.subscriber_id))
      INTO bad;
    IF bad <> 0 THEN RAISE EXCEPTION 'generated history has % dangling references', bad; END IF;
    IF EXISTS (SELECT 1 FROM smslink.click_default) THEN
        RAISE EXCEPTION 'clicks landed in the default partition';
    END IF;
END $$;
SELECT clock_timestamp() AS gen_t2 \gset

\echo '==> VACUUM ANALYZE'
-- Sets hint bits and the visibility map now, so that neither autovacuum nor first reads do it
-- during a benchmark.
VACUUM (ANALYZE);
SELECT clock_timestamp() AS gen_t3 \gset

CREATE TABLE IF NOT EXISTS public.bench_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO public.bench_meta (key, value) VALUES
    ('scale', :'scale'),
    ('generator', :'generator'),
    ('ext_sql', :'ext_sql'),
    ('generated_at', now()::text),
    ('load_seconds', round(extract(epoch FROM :'gen_t1'::timestamptz - :'gen_t0'::timestamptz))::text),
    ('check_seconds', round(extract(epoch FROM :'gen_t2'::timestamptz - :'gen_t1'::timestamptz))::text),
    ('vacuum_seconds', round(extract(epoch FROM :'gen_t3'::timestamptz - :'gen_t2'::timestamptz))::text)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

\echo '==> summary'
\pset format aligned
SELECT 'subscribers' AS what, count(*) AS n FROM smslink.subscriber
UNION ALL SELECT 'subscribers opted out', count(*) FROM smslink.subscriber WHERE opted_out_at IS NOT NULL
UNION ALL SELECT 'campaigns', count(*) FROM smslink.campaign
UNION ALL SELECT 'variants', count(*) FROM smslink.variant
UNION ALL SELECT 'messages', count(*) FROM smslink.message
UNION ALL SELECT 'messages ' || status, count(*) FROM smslink.message GROUP BY status
UNION ALL SELECT 'messages clicked (first_click_at)', count(*) FROM smslink.message WHERE first_click_at IS NOT NULL
UNION ALL SELECT 'links ' || kind, count(*) FROM smslink.link GROUP BY kind
UNION ALL SELECT 'clicks', count(*) FROM smslink.click
UNION ALL SELECT 'clicks ' || class || ' ' || link_kind, count(*) FROM smslink.click GROUP BY class, link_kind
UNION ALL SELECT 'clicks is_first', count(*) FROM smslink.click WHERE is_first
UNION ALL SELECT 'click partitions holding rows', count(DISTINCT tableoid) FROM smslink.click
UNION ALL SELECT 'conversions', count(*) FROM smslink.conversion
UNION ALL SELECT 'conversions with click_id', count(click_id) FROM smslink.conversion
UNION ALL SELECT 'touchpoints email ' || kind, count(*) FROM smslink.touchpoint GROUP BY kind
UNION ALL SELECT 'largest campaign delivered', max(n) FROM (SELECT count(*) AS n FROM smslink.message WHERE status = 'delivered' GROUP BY campaign_id) x
ORDER BY 1;
SELECT key, value FROM public.bench_meta WHERE key LIKE '%seconds' ORDER BY key;
