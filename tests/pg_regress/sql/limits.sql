-- Bounds on one call's work (last in the schedule: it adds a brand).
\pset footer off
-- Memory is bounded per call: past smslink.attribution_max_rows rows (conversions with their
-- touches) a call is refused, for the touch-by-touch models and Markov alike. Only a superuser
-- may raise or lower the bound.
SELECT smslink.create_brand('Attr bulk') AS bulk \gset
INSERT INTO smslink.subscriber (brand_id, external_key) VALUES (:bulk, 'bulk-1');
INSERT INTO smslink.conversion (brand_id, subscriber_id, event, value, occurred_at, external_id)
SELECT :bulk, (SELECT id FROM smslink.subscriber WHERE external_key = 'bulk-1' AND brand_id = :bulk),
       'purchase', 1, timestamptz '2027-01-01' + g * interval '1 minute', 'bulk-' || g
  FROM generate_series(1, 1500) g;
SET smslink.attribution_max_rows = 1000;
SELECT regress.err($$SELECT count(*) FROM smslink.attribute('linear', '2027-01-01', '2027-01-03')$$);
SELECT regress.err($$SELECT count(*) FROM smslink.attribute('markov', '2027-01-01', '2027-01-03')$$);
RESET smslink.attribution_max_rows;
SELECT count(*) FROM smslink.attribute('linear', '2027-01-01', '2027-01-03');
DROP ROLE IF EXISTS regress_attr_analyst;
CREATE ROLE regress_attr_analyst IN ROLE smslink_analyst;
SET ROLE regress_attr_analyst;
SET smslink.attribution_max_rows = 100000000;
RESET ROLE;
DROP ROLE regress_attr_analyst;
