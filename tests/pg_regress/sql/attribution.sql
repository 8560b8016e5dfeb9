-- Attribution: every model over hand-built journeys whose credits are worked out in the comments.
\pset footer off
SET client_min_messages = warning;
SELECT smslink.create_brand('Attr Co') AS b \gset
SELECT smslink.add_domain(:b, 'go.attr.example') AS d \gset
SELECT smslink.create_campaign(:b, 'Spring', '{A,B}') AS c \gset
-- One SMS per subscriber, delivered 2026-03-01 10:00 UTC unless said otherwise.
SELECT count(*) FROM smslink.prepare_messages(:c, 'A', '{alice,bob,carol,dave,erin,frank,hank,ivy}',
  'Spring sale https://shop.example/spring') \g /dev/null
SELECT count(*) FROM smslink.prepare_message(:c, 'B', 'gina', 'Spring sale https://shop.example/spring STOP https://shop.example/stop', '{cta,optout}') \g /dev/null
SELECT smslink.mark_delivered(array_agg(id), array_agg(timestamptz '2026-03-01 10:00+00')) FROM smslink.message WHERE campaign_id = :c \g /dev/null
CREATE TEMP TABLE tok AS
SELECT s.external_key AS who, l.kind, l.token FROM smslink.link l
  JOIN smslink.message m ON m.id = l.message_id JOIN smslink.subscriber s ON s.id = m.subscriber_id
 WHERE m.campaign_id = :c;
-- A human tap (iPhone Safari, its own address) or a preview fetch at a given time.
CREATE FUNCTION pg_temp.tap(who text, at timestamptz, kind text DEFAULT 'cta', ua text DEFAULT
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1')
RETURNS text LANGUAGE sql AS $$
  SELECT t.class FROM tok, smslink.track_click(tok.token, 'go.attr.example', 'GET', ua,
         ('198.51.100.' || (10 + length(who) * 7 + extract(minute FROM at)::int))::inet, NULL, '{}', at) t
   WHERE tok.who = tap.who AND tok.kind = tap.kind
$$;
CREATE FUNCTION pg_temp.touch(who text, channel text, kind text, at timestamptz, ext text)
RETURNS bigint LANGUAGE sql AS $$ SELECT smslink.record_touchpoint((SELECT id FROM smslink.brand WHERE name = 'Attr Co'), who, channel, kind, at, 'newsletter-1', ext) $$;
CREATE FUNCTION pg_temp.buy(who text, at timestamptz, value numeric, ext text)
RETURNS bigint LANGUAGE sql AS $$ SELECT smslink.record_conversion((SELECT id FROM smslink.brand WHERE name = 'Attr Co'), who, 'purchase', value, 'USD', at, ext) $$;

-- alice: SMS click, then an email click; buys a day after delivery.
SELECT pg_temp.tap('alice', '2026-03-01 10:05+00');
SELECT pg_temp.touch('alice', 'email', 'click', '2026-03-01 12:00+00', 'e-alice');
SELECT pg_temp.buy('alice', '2026-03-02 10:00+00', 100, 'o-alice') \g /dev/null
-- bob: an SMS click and an email click at the same instant (a tie), buys an hour later.
SELECT pg_temp.tap('bob', '2026-03-05 09:00+00');
SELECT pg_temp.touch('bob', 'email', 'click', '2026-03-05 09:00+00', 'e-bob');
SELECT pg_temp.buy('bob', '2026-03-05 10:00+00', 30, 'o-bob') \g /dev/null
-- carol: an SMS click exactly 7 days before buying (inside), an email click 1 µs earlier (outside).
SELECT pg_temp.tap('carol', '2026-03-01 11:00+00');
SELECT pg_temp.touch('carol', 'email', 'click', '2026-03-01 10:59:59.999999+00', 'e-carol');
SELECT pg_temp.buy('carol', '2026-03-08 11:00+00', 70, 'o-carol') \g /dev/null
-- dave buys before he ever clicks: unattributed.
SELECT pg_temp.buy('dave', '2026-03-01 10:30+00', 10, 'o-dave') \g /dev/null
SELECT pg_temp.tap('dave', '2026-03-01 11:00+00');
-- erin buys twice after one click.
SELECT pg_temp.tap('erin', '2026-03-01 10:20+00');
SELECT pg_temp.buy('erin', '2026-03-01 11:00+00', 20, 'o-erin-1') \g /dev/null
SELECT pg_temp.buy('erin', '2026-03-02 11:00+00', 40, 'o-erin-2') \g /dev/null
-- frank: email, SMS, paid social, email clicks (a multi-channel path), then buys.
SELECT pg_temp.touch('frank', 'email', 'click', '2026-03-01 09:00+00', 'e-frank-1');
SELECT pg_temp.tap('frank', '2026-03-01 12:00+00');
SELECT pg_temp.touch('frank', 'paid_social', 'click', '2026-03-02 09:00+00', 's-frank');
SELECT pg_temp.touch('frank', 'email', 'click', '2026-03-03 09:00+00', 'e-frank-2');
SELECT pg_temp.buy('frank', '2026-03-03 12:00+00', 200, 'o-frank') \g /dev/null
-- gina taps the sale and the opt-out link, opts out, and buys: the opt-out tap never counts,
-- her purchase is still attributed.
SELECT pg_temp.tap('gina', '2026-03-01 10:10+00');
SELECT pg_temp.tap('gina', '2026-03-01 10:12+00', 'optout');
UPDATE smslink.subscriber SET opted_out_at = '2026-03-01 10:12+00' WHERE external_key = 'gina';
SELECT pg_temp.buy('gina', '2026-03-01 18:00+00', 50, 'o-gina') \g /dev/null
-- hank's only hit is a link-preview fetch: not a touch.
SELECT pg_temp.tap('hank', '2026-03-01 10:00:01+00', 'cta', 'WhatsApp/2.23.20.0 A');
SELECT pg_temp.buy('hank', '2026-03-01 12:00+00', 15, 'o-hank') \g /dev/null
-- ivy never clicks SMS; an email click, then she buys 10 hours after delivery (view-through).
SELECT pg_temp.touch('ivy', 'email', 'click', '2026-03-01 11:00+00', 'e-ivy');
SELECT pg_temp.buy('ivy', '2026-03-01 20:00+00', 60, 'o-ivy') \g /dev/null
-- Outside the range [2026-03-01, 2026-04-01): one at the end instant is excluded.
SELECT pg_temp.buy('alice', '2026-04-01 00:00+00', 999, 'o-alice-april') \g /dev/null

-- The touches the models see (a view: nothing is copied).
SELECT s.external_key AS who, t.channel, t.kind, t.touch_at
  FROM smslink.touch t JOIN smslink.subscriber s ON s.id = t.subscriber_id
 WHERE t.brand_id = :b AND t.kind = 'click' ORDER BY t.touch_at, who, t.channel;

CREATE TEMP VIEW credits AS
SELECT m.model, a.subscriber_key AS who, a.channel, a.touch_at,
       round(a.credit::numeric, 6) AS credit, a.revenue
  FROM unnest(ARRAY['last_click', 'first_click', 'windowed', 'linear', 'time_decay', 'position_based', 'markov']) m(model),
       smslink.attribute(m.model, '2026-03-01', '2026-04-01', brand_id => (SELECT id FROM smslink.brand WHERE name = 'Attr Co')) a;

-- last_click: alice → email (12:00 is after 10:05); bob's tie → sms (ties: channel name, then
-- row, so sms follows email); carol → sms (exactly on the edge); erin → sms twice; frank → the
-- last email; gina → her sale tap, not the opt-out tap; ivy → email; dave, hank unattributed.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'last_click' ORDER BY who, touch_at;
-- first_click mirrors it.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'first_click' ORDER BY who, touch_at;
-- windowed (no view window): the last SMS click only; other channels never count.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'windowed' ORDER BY who, touch_at;
-- linear: 1/n; frank's four touches get 0.25 each, email counted twice.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'linear' ORDER BY who, touch_at;
-- time_decay, H = 7 days = 604,800 s: alice's touches are 86,100 s (sms) and 79,200 s (email)
-- old, so w_sms / w_email = 2^(-6900/604800) = 0.992123 → credits 0.498023 and 0.501977.
-- bob's tie: equal ages, 0.5 each.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'time_decay' ORDER BY who, touch_at;
-- position_based: one touch 1.0; two 0.5/0.5; frank's four 0.4, 0.1, 0.1, 0.4.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'position_based' ORDER BY who, touch_at;
-- markov: credits follow the removal effects below; erin's second purchase has no touch of its
-- own (her click's journey ended at the first purchase), so it is unattributed.
SELECT who, channel, touch_at, credit, revenue FROM credits WHERE model = 'markov' ORDER BY who, touch_at;

-- Invariants, for every model: credits of each conversion sum to 1, revenue adds up exactly to
-- the value, every conversion of the range appears, opt-out taps and previews never appear.
SELECT model, count(DISTINCT a.conversion_id) AS conversions,
       bool_and(abs(s.total - 1) < 1e-9) AS credits_sum_to_1, bool_and(s.revenue = k.value) AS revenue_reconciles
  FROM unnest(ARRAY['last_click', 'first_click', 'windowed', 'linear', 'time_decay', 'position_based', 'markov']) m(model)
  CROSS JOIN LATERAL (SELECT conversion_id, sum(credit) AS total, sum(revenue) AS revenue
                        FROM smslink.attribute(m.model, '2026-03-01', '2026-04-01', view_window => '1 day')
                       GROUP BY conversion_id) s
  JOIN smslink.conversion k ON k.id = s.conversion_id
  CROSS JOIN LATERAL (SELECT s.conversion_id) a
 GROUP BY model ORDER BY model;
SELECT count(*) AS optout_or_preview_credits
  FROM smslink.attribute('linear', '2026-03-01', '2026-04-01') a
  JOIN smslink.click k ON k.id = a.click_id WHERE k.link_kind = 'optout' OR k.class <> 'human';

-- windowed with a 24-hour view window: ivy's purchase 10 h after delivery goes to the delivery;
-- hank's (2 h) and dave's (30 min) too: a preview fetch and a tap after buying are not clicks
-- before the purchase. A 6-hour view window is too short for ivy.
SELECT a.subscriber_key AS who, a.channel, a.touch_at, a.credit FROM smslink.attribute('windowed', '2026-03-01', '2026-04-01', view_window => '24 hours') a
 WHERE a.subscriber_key IN ('ivy', 'hank', 'dave') ORDER BY who;
SELECT a.subscriber_key AS who, a.channel FROM smslink.attribute('windowed', '2026-03-01', '2026-04-01', view_window => '6 hours') a
 WHERE a.subscriber_key IN ('ivy', 'hank') ORDER BY who;
-- A shorter click window: carol's 7-day-old click falls out of a 6-day window.
SELECT a.subscriber_key AS who, a.channel FROM smslink.attribute('last_click', '2026-03-01', '2026-04-01', click_window => '6 days') a
 WHERE a.subscriber_key = 'carol';
-- Channel filter: SMS only.
SELECT a.subscriber_key AS who, a.channel, a.credit FROM smslink.attribute('linear', '2026-03-01', '2026-04-01', channels => '{sms}') a
 WHERE a.subscriber_key IN ('alice', 'frank', 'ivy') ORDER BY who, a.touch_at;
-- The range is half-open: [from, to).
SELECT count(*) FILTER (WHERE a.subscriber_key = 'alice') AS alice_march FROM smslink.attribute('last_click', '2026-03-01', '2026-04-01') a;
SELECT count(*) AS april_first FROM smslink.attribute('last_click', '2026-04-01', '2026-04-02') a;

-- The summary aggregates the same credits.
SELECT channel, (SELECT key FROM smslink.variant v WHERE v.id = variant_id) AS variant, conversions, revenue
  FROM smslink.attribution_summary('linear', '2026-03-01', '2026-04-01');
-- Markov's per-conversion credits split each conversion over the channels on its own path, in
-- proportion to their removal effects, so channel totals differ from the chain-wide shares of
-- markov_removal_effects below; both add up to the converting journeys.
SELECT channel, (SELECT key FROM smslink.variant v WHERE v.id = variant_id) AS variant, round(conversions::numeric, 6) AS conversions, revenue
  FROM smslink.attribution_summary('markov', '2026-03-01', '2026-04-01');

-- The Markov chain. Journeys (state paths): alice sms→email→conv; bob email→sms→conv (tie order);
-- carol sms→conv (her email is older than the window: a null path email→null); dave sms→null
-- (after his purchase); erin sms→conv, then a conversion with no touch (not in the chain);
-- frank email→sms→paid_social→email→conv; gina sms→conv; ivy email→conv.
SELECT from_state, to_state, count, round(probability::numeric, 6) AS probability FROM smslink.markov_transitions('2026-03-01', '2026-04-01') ORDER BY 1, 2;
SELECT state, round(removal_effect::numeric, 6) AS removal_effect, round(share::numeric, 6) AS share,
       round(conversions::numeric, 6) AS conversions, transitions
  FROM smslink.markov_removal_effects('2026-03-01', '2026-04-01') ORDER BY state;
-- Per campaign as the state.
SELECT state FROM smslink.markov_removal_effects('2026-03-01', '2026-04-01', markov_by => 'campaign') WHERE state LIKE 'sms:%' OR state LIKE 'email:%' ORDER BY 1;

-- Bad input, each with a clear error.
SELECT regress.err($$SELECT * FROM smslink.attribute(NULL, '2026-03-01', '2026-04-01')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('last_touch', '2026-03-01', '2026-04-01')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('linear', '2026-04-01', '2026-03-01')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('linear', '2026-03-01', '2026-04-01', click_window => '0')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('linear', '2026-03-01', '2026-04-01', click_window => '-1 day')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('windowed', '2026-03-01', '2026-04-01', view_window => '0')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('time_decay', '2026-03-01', '2026-04-01', half_life => '0')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('linear', NULL, '2026-04-01')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('markov', '2026-03-01', '2026-04-01', markov_by => 'variant')$$);
SELECT regress.err($$SELECT * FROM smslink.attribute('linear', '2026-03-01', '2026-04-01', channels => '{sms,NULL}')$$);
