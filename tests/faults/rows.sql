-- The click rows of check 6's stream, one line per click in stream order (the request number in
-- the Referer), with everything the two paths must agree on and nothing they may not (ids,
-- request ids, absolute times). The last field, seconds since delivery, is compared with a
-- tolerance by faults.sh (the two runs are paced the same, not to the microsecond).
SELECT substring(k.referrer FROM 's([0-9]+)$')::int AS i,
       k.class, array_to_string(k.reasons, '+') AS reasons, k.is_first, coalesce(k.device, '-') AS device,
       k.method, k.expired, l.position, k.link_kind, u.external_key, host(k.ip) AS ip,
       coalesce(k.user_agent, '-') AS user_agent, coalesce(k.headers::text, '-') AS headers, k.referrer,
       -- The message's first click time is exactly this click's time when it is the first.
       (m.first_click_at IS NOT DISTINCT FROM k.clicked_at) = k.is_first AS first_click_at_agrees,
       coalesce(to_char(k.seconds_since_delivery, 'FM9999999990.000'), 'null') AS seconds_since_delivery
  FROM smslink.click k
  JOIN smslink.link l ON l.id = k.link_id
  JOIN smslink.message m ON m.id = k.message_id
  JOIN smslink.subscriber u ON u.id = m.subscriber_id
  JOIN smslink.campaign c ON c.id = k.campaign_id
 WHERE c.name = 'stream'
 ORDER BY 1, k.clicked_at;
