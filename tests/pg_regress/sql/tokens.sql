-- Tokens: fixed length, URL-safe, keyed; NULL (never an error) for anything invalid.
SELECT length(smslink.token_for(1)) AS default_len,
       smslink.token_for(1) ~ '^[0-9A-Za-z]{9}$' AS url_safe,
       smslink.token_for(1) = smslink.token_for(1) AS deterministic,
       smslink.token_for(1) <> smslink.token_for(2) AS distinct_ids;
SELECT len, length(smslink.token_for(123456, len)) AS got, smslink.link_id(smslink.token_for(123456, len)) AS id
  FROM generate_series(7, 12) len;
SELECT smslink.link_id(NULL) AS null_in, smslink.link_id('') AS empty, smslink.link_id('abc') AS too_short,
       smslink.link_id('1234567890123') AS too_long, smslink.link_id('1abc-defg') AS bad_alphabet,
       smslink.link_id('1abcdéfg') AS non_ascii;
-- Forged tokens of the right shape: about 1 in 8192 passes the redundancy check.
SELECT count(smslink.link_id(substr(smslink.token_for(1), 1, 1) || substr(md5(i::text), 1, 8))) < 10 AS forged_rejected
  FROM generate_series(1, 10000) i;
-- Rotation: a new current key, old tokens still resolve.
CREATE TEMP TABLE before AS SELECT smslink.token_for(99) AS t;
SELECT smslink.rotate_token_key() > 1 AS rotated;
SELECT t <> smslink.token_for(99) AS new_token, smslink.link_id(t) AS old_resolves,
       smslink.link_id(smslink.token_for(99)) AS new_resolves
  FROM before;
SELECT count(*) AS key_versions FROM smslink_secret.token_key;
-- Errors for impossible requests.
SELECT regress.err($$SELECT smslink.token_for(0)$$);
SELECT regress.err($$SELECT smslink.token_for(1, 6)$$);
SELECT regress.err($$SELECT smslink.token_for(10000000, 7)$$);
