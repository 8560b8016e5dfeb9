-- Delivery receipts for the 'stream' campaign of check 6, relative to the stream's planned start
-- (psql variable t0, Unix milliseconds), so that seconds_since_delivery and the timing signals
-- come out the same in both databases: st-1..10 an hour before, st-11..20 one second before,
-- st-21..30 a minute after (taps before delivery), st-40 a day before; st-31..39 never delivered.
SELECT smslink.mark_delivered(array_agg(id), array_agg(at))
  FROM (SELECT m.id, to_timestamp(:t0 / 1000.0) + CASE
                 WHEN s.n <= 10 THEN interval '-1 hour'
                 WHEN s.n <= 20 THEN interval '-1 second'
                 WHEN s.n <= 30 THEN interval '60 seconds'
                 ELSE interval '-1 day' END AS at
          FROM smslink.message m
          JOIN smslink.campaign c ON c.id = m.campaign_id
          JOIN smslink.subscriber u ON u.id = m.subscriber_id
          CROSS JOIN LATERAL (SELECT substr(u.external_key, 4)::int AS n) s
         WHERE c.name = 'stream' AND (s.n <= 30 OR s.n = 40)) d;
