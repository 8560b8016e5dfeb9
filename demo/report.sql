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

\echo '== 8. Conversions and attribution'
SELECT coalesce(properties->>'source', 'api') AS source, count(*) AS conversions,
       count(*) FILTER (WHERE click_id IS NOT NULL) AS with_click_id, sum(value) AS revenue
  FROM smslink.conversion GROUP BY 1 ORDER BY 1;
\echo 'Conversions credited by each model (touch = channel and variant; click window 7 days)'
CREATE TEMP TABLE credit AS
SELECT m.model, coalesce(s.channel || coalesce(' ' || v.key, ''), '(unattributed)') AS touch,
       s.conversions, s.revenue
  FROM (VALUES ('last_click'), ('windowed'), ('linear'), ('time_decay'), ('position_based'), ('markov')) m(model)
 CROSS JOIN LATERAL smslink.attribution_summary(m.model, now() - interval '1 day', now() + interval '1 minute',
           view_window => CASE WHEN m.model = 'windowed' THEN interval '24 hours' END) s
  LEFT JOIN smslink.variant v ON v.id = s.variant_id;
SELECT touch,
       round(sum(conversions) FILTER (WHERE model = 'last_click')::numeric, 1) AS last_click,
       round(sum(conversions) FILTER (WHERE model = 'windowed')::numeric, 1) AS windowed_24h_view,
       round(sum(conversions) FILTER (WHERE model = 'linear')::numeric, 1) AS linear,
       round(sum(conversions) FILTER (WHERE model = 'time_decay')::numeric, 1) AS time_decay,
       round(sum(conversions) FILTER (WHERE model = 'position_based')::numeric, 1) AS position_based,
       round(sum(conversions) FILTER (WHERE model = 'markov')::numeric, 1) AS markov
  FROM credit GROUP BY touch ORDER BY touch = '(unattributed)', touch;
\echo 'Revenue credited by each model (USD)'
SELECT touch,
       round(sum(revenue) FILTER (WHERE model = 'last_click'), 2) AS last_click,
       round(sum(revenue) FILTER (WHERE model = 'windowed'), 2) AS windowed_24h_view,
       round(sum(revenue) FILTER (WHERE model = 'linear'), 2) AS linear,
       round(sum(revenue) FILTER (WHERE model = 'time_decay'), 2) AS time_decay,
       round(sum(revenue) FILTER (WHERE model = 'position_based'), 2) AS position_based,
       round(sum(revenue) FILTER (WHERE model = 'markov'), 2) AS markov
  FROM credit GROUP BY touch ORDER BY touch = '(unattributed)', touch;
\echo 'Every model accounts for every conversion and every dollar:'
SELECT model, round(sum(conversions)::numeric, 6) AS conversions, sum(revenue) AS revenue
  FROM credit GROUP BY model ORDER BY model;
\echo 'Markov chain: removal effects (exact, from the absorbing chain) and transition rows'
SELECT state, round(removal_effect::numeric, 4) AS removal_effect, round(share::numeric, 4) AS share,
       round(conversions::numeric, 1) AS conversions, transitions
  FROM smslink.markov_removal_effects(now() - interval '1 day', now() + interval '1 minute') ORDER BY state;

\echo '== 9. Campaign report (smslink.variant_metrics, link_metrics, time_to_click, breakdown, anomalies)'
SELECT id AS campaign_id FROM smslink.campaign LIMIT 1 \gset
SELECT variant, sent, delivered, round(100 * delivery_rate::numeric, 1) AS delivery_pct, unique_clicks,
       total_clicks, round(100 * ctr::numeric, 2) AS ctr_pct, round(repeat_click_rate::numeric, 2) AS repeat,
       clickers_converted, round(100 * ctcr::numeric, 1) AS ctcr_pct, round(conversions::numeric, 1) AS conversions,
       round(revenue, 2) AS revenue, round(rpm, 3) AS rpm, opt_outs, round(100 * bot_share::numeric, 1) AS bot_pct,
       round(ttc_p50_seconds::numeric / 60, 1) AS ttc_p50_min, round(ttc_p90_seconds::numeric / 60, 1) AS ttc_p90_min
  FROM smslink.variant_metrics(:campaign_id);
SELECT position, kind, destination, delivered, unique_clicks, total_clicks, round(100 * ctr::numeric, 2) AS ctr_pct,
       hits, round(100 * bot_share::numeric, 1) AS bot_pct, counts_as_engagement
  FROM smslink.link_metrics(:campaign_id);
\echo 'Time to first click (human, CTA), 1-minute buckets: share of clickers per minute and cumulative'
SELECT to_char(extract(epoch FROM bucket_start) / 60, 'FM90') || '-' || to_char(extract(epoch FROM bucket_end) / 60, 'FM90') || ' min' AS after,
       clicks, rpad(repeat('#', round(200 * share)::int), 40) AS histogram,
       to_char(100 * cumulative_share, 'FM990.0') || '%' AS cumulative
  FROM smslink.time_to_click(:campaign_id, '1 minute', '20 minutes');
SELECT key AS device, unique_clicks, total_clicks, round(100 * ctr::numeric, 2) AS ctr_pct,
       round(conversions::numeric, 1) AS conversions, round(revenue, 2) AS revenue
  FROM smslink.breakdown(:campaign_id, 'device');
\echo 'Anomalies in the last day (none expected for a healthy send):'
SELECT smslink.snapshot_rejections() IS NOT NULL AS rejections_snapshot_taken \gset
SELECT kind, subject, round(observed::numeric, 3) AS observed, round(expected::numeric, 3) AS expected, message
  FROM smslink.anomalies(now() - interval '1 day', now() + interval '1 minute');
