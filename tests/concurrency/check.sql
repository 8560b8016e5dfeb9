-- After the concurrent clicks: every click logged, exactly one first click per clicked message,
-- and it is the message's earliest human click.
\pset tuples_only on
\pset format unaligned
SELECT concat_ws(' ',
    'clicks', (SELECT count(*) FROM smslink.click),
    'human', (SELECT count(*) FROM smslink.click WHERE class = 'human'),
    'clicked_messages', (SELECT count(DISTINCT message_id) FROM smslink.click),
    'first_clicks', (SELECT count(*) FROM smslink.click WHERE is_first),
    'messages_without_exactly_one_first', (SELECT count(*) FROM (
        SELECT message_id FROM smslink.click GROUP BY message_id
        HAVING count(*) FILTER (WHERE is_first) <> 1) x),
    'first_click_at_set', (SELECT count(*) FROM smslink.message WHERE first_click_at IS NOT NULL),
    'first_click_matches', (SELECT count(*) FROM smslink.message m JOIN smslink.click k
        ON k.message_id = m.id AND k.is_first AND k.clicked_at = m.first_click_at),
    'first_is_earliest', (SELECT count(*) FROM smslink.message m
        WHERE m.first_click_at = (SELECT min(k.clicked_at) FROM smslink.click k
                                   WHERE k.message_id = m.id AND k.class = 'human')));
