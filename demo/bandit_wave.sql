-- smslink demo, part 3: one wave of the bandit campaign (psql -v wave=N). A new session, so
-- choose_variant reads the allocation afresh: when the current epoch is older than the campaign's
-- bandit_epoch, the first call freezes a new one from the human clicks so far. Then the messages
-- are prepared per chosen variant (holdouts get a row and no body), delivered, and the taps of
-- this wave are written out for curl (demo.sh sends them through the proxy).
\set QUIET on
SET client_min_messages = warning;
SELECT id AS bc FROM smslink.campaign WHERE name = 'Holiday blend 2026' \gset
CREATE TEMP TABLE wave AS
SELECT s.key, smslink.choose_variant(:bc, s.key) AS variant FROM demo_bandit_sub s WHERE s.wave = :wave;
CREATE TEMP TABLE prepared AS
SELECT g.variant, p.* FROM (SELECT w.variant, array_agg(w.key ORDER BY w.key) AS keys FROM wave w GROUP BY w.variant) g
  JOIN demo_bandit b ON b.variant = g.variant,
  LATERAL smslink.prepare_messages(:bc, g.variant, g.keys, b.body) p;
SELECT smslink.mark_delivered(array_agg(message_id), array_agg(now() - interval '3 minutes'))
  FROM prepared WHERE NOT holdout \gset
-- Who taps: a fixed hash of the subscriber below their variant's true CTR.
\pset tuples_only on
\pset format unaligned
\o :taps
SELECT string_agg(format(
         'url = "http://127.0.0.1:%s/c/%s"' || chr(10) || 'header = "Host: nw.example.com"' || chr(10) ||
         'user-agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"' || chr(10) ||
         'header = "X-Forwarded-For: 2001:db8:b:%s::1"' || chr(10) || 'output = "/dev/null"' || chr(10) ||
         'write-out = "%%{http_code}\n"', :'port', l.token, to_hex(m.subscriber_id)), chr(10) || 'next' || chr(10))
  FROM prepared p
  JOIN smslink.message m ON m.id = p.message_id
  JOIN smslink.link l ON l.message_id = m.id
  JOIN demo_bandit b ON b.variant = p.variant
 WHERE NOT p.holdout AND ('x' || substr(md5(p.subscriber_key || 'tap'), 1, 8))::bit(32)::bigint / 4294967296.0 < b.true_ctr;
\o
