-- smslink demo, part 2: what the taps that demo.sh sent through the proxy left in the database.
\pset footer off
\set QUIET on

\echo
\echo '== 6. Clicks logged by smslink.track_clicks, as the proxy called it'
SELECT class, count(*) AS hits, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct,
       (SELECT string_agg(code || ' ' || n, ', ' ORDER BY n DESC, code)
          FROM (SELECT r AS code, count(*) AS n FROM smslink.click k2, unnest(k2.reasons) r
                 WHERE k2.class = k.class GROUP BY r) x) AS reason_codes
  FROM smslink.click k GROUP BY class ORDER BY class;
\echo 'Confusion table: what each hit really was (rows) against the class the classifier gave it (columns)'
WITH truth AS (
    SELECT token, method, agent, ip::inet AS ip, purpose IS NOT NULL AS prefetch, min(truth) AS truth
      FROM demo_tap WHERE truth <> 'forged' GROUP BY 1, 2, 3, 4, 5
)
SELECT t.truth,
       count(*) FILTER (WHERE k.class = 'human') AS human,
       count(*) FILTER (WHERE k.class = 'preview') AS preview,
       count(*) FILTER (WHERE k.class = 'bot') AS bot,
       count(*) FILTER (WHERE k.class = 'scanner') AS scanner,
       count(*) FILTER (WHERE k.class = 'suspect') AS suspect,
       count(*) AS hits,
       round(100.0 * count(*) FILTER (WHERE (k.class = 'human') = (t.truth = 'human')) / count(*), 1) AS counted_right_pct
  FROM smslink.click k
  JOIN smslink.link l ON l.id = k.link_id
  JOIN truth t ON t.token = l.token AND t.method = k.method AND t.agent = k.user_agent AND t.ip = k.ip
              AND t.prefetch = coalesce(k.headers::text ILIKE '%prefetch%', false)
 GROUP BY t.truth ORDER BY t.truth;
SELECT device, count(*) AS human_clicks FROM smslink.click WHERE class = 'human' GROUP BY device ORDER BY 2 DESC;
SELECT * FROM smslink.rejected_requests();
\echo 'CTR = unique human clicks on non-opt-out links / delivered messages'
SELECT v.key AS variant,
       count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(DISTINCT k.message_id) AS unique_clicks,
       count(k.id) AS total_clicks,
       round(100.0 * count(DISTINCT k.message_id) / count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered'), 2) AS ctr_pct,
       round(count(k.id)::numeric / nullif(count(DISTINCT k.message_id), 0), 2) AS clicks_per_clicker,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY k.seconds_since_delivery) FILTER (WHERE k.is_first))::numeric / 60, 1) AS time_to_click_p50_min
  FROM smslink.message m
  JOIN smslink.variant v ON v.id = m.variant_id
  LEFT JOIN smslink.click k ON k.message_id = m.id AND k.class = 'human'
        AND k.link_id IN (SELECT id FROM smslink.link WHERE message_id = m.id AND kind <> 'optout')
 GROUP BY v.key ORDER BY v.key;
\echo 'CTR with every hit counted (what a tracker without a classifier reports) and with humans only'
SELECT v.key AS variant,
       round(100.0 * count(DISTINCT k.message_id) / count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered'), 2) AS ctr_all_hits_pct,
       round(100.0 * count(DISTINCT k.message_id) FILTER (WHERE k.class = 'human') / count(DISTINCT m.id) FILTER (WHERE m.status = 'delivered'), 2) AS ctr_humans_pct
  FROM smslink.message m
  JOIN smslink.variant v ON v.id = m.variant_id
  LEFT JOIN smslink.click k ON k.message_id = m.id
        AND k.link_id IN (SELECT id FROM smslink.link WHERE message_id = m.id AND kind <> 'optout')
 GROUP BY v.key ORDER BY v.key;
SELECT count(*) AS opt_out_link_clicks FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id
 WHERE l.kind = 'optout' AND k.class = 'human';
SELECT count(*) FILTER (WHERE is_first) AS first_clicks,
       count(DISTINCT message_id) FILTER (WHERE class = 'human') AS messages_with_a_human_click,
       count(*) FILTER (WHERE host(ip) LIKE '2001:db8:%') AS clicks_with_phone_ip
  FROM smslink.click;

\echo '== 7. Totals'
SELECT v.key AS variant, count(*) AS messages, min(m.encoding) AS encoding, max(m.segments) AS segments,
       count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       round(100.0 * count(*) FILTER (WHERE m.status = 'delivered') / count(*), 2) AS delivery_rate_pct,
       sum(m.segments) AS billable_segments
  FROM smslink.message m JOIN smslink.variant v ON v.id = m.variant_id
 GROUP BY v.key ORDER BY v.key;
SELECT count(*) AS links, count(*) FILTER (WHERE kind = 'cta') AS cta, count(*) FILTER (WHERE kind = 'optout') AS optout,
       count(DISTINCT token) AS distinct_tokens,
       count(*) FILTER (WHERE smslink.link_id(token) = id) AS tokens_resolving
  FROM smslink.link;
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - sent_at))::numeric, 1) AS delivery_p50_s,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - sent_at))::numeric, 1) AS delivery_p90_s,
       count(*) AS delivered
  FROM smslink.message WHERE status = 'delivered';
SELECT failure_reason, count(*) FROM smslink.message WHERE status = 'failed' GROUP BY 1 ORDER BY 1;
