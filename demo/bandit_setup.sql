-- smslink demo, part 3 (set-up): a three-variant campaign that a bandit allocates, with a 10%
-- holdout, sent in 8 waves of 1,500 subscribers (demo/bandit_wave.sql), its taps sent through
-- the proxy by demo.sh. Each variant's subscribers tap with a true CTR the bandit does not know:
-- A 4%, B 6%, C 9%.
\pset footer off
\set QUIET on
\echo
\echo '== 10. A bandit campaign with a 10% holdout: 12,000 subscribers in 8 waves'
SELECT smslink.create_brand('Northwind Coffee') AS nb \gset
SELECT smslink.add_domain(:nb, 'nw.example.com') AS nd \gset
SELECT smslink.create_campaign(:nb, 'Holiday blend 2026', '{A,B,C}') AS bc \gset
-- 10% of subscribers, by a stable hash of campaign and subscriber, get nothing: the control group.
-- Epochs last 2 seconds here so that the demo moves (the default is 5 minutes, or 500 outcomes).
UPDATE smslink.campaign SET holdout_fraction = 0.10, bandit_epoch = '2 seconds' WHERE id = :bc;
SELECT smslink.set_allocation(:bc, 'bandit') AS first_epoch \gset
CREATE TABLE demo_bandit (variant text PRIMARY KEY, true_ctr float8, body text);
INSERT INTO demo_bandit VALUES
  ('A', 0.04, 'Northwind: the Holiday blend is back. 15% off this week https://northwind.example/holiday'),
  ('B', 0.06, 'Northwind ☕ Holiday blend, roasted today: 15% off until Sunday https://northwind.example/holiday?v=b'),
  ('C', 0.09, 'Your Holiday blend is waiting: 15% off, free shipping today only https://northwind.example/holiday?v=c');
CREATE TABLE demo_bandit_sub AS
SELECT 'nw-' || lpad(i::text, 5, '0') AS key, (i - 1) / 1500 + 1 AS wave FROM generate_series(1, 12000) i;
SELECT c.name AS campaign, c.allocation, c.holdout_fraction, c.bandit_goal, c.bandit_floor, c.bandit_epoch,
       (SELECT string_agg(variant || ' ' || true_ctr, ', ' ORDER BY variant) FROM demo_bandit) AS true_ctr_unknown_to_the_bandit
  FROM smslink.campaign c WHERE c.id = :bc;
