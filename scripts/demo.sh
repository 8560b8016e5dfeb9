#!/usr/bin/env bash
# `make demo`: a 10,000-message campaign end to end on a private local cluster, with the clicks
# sent as real HTTP requests through the real redirect proxy.
#
# 1. demo/demo.sql: brand, domain, campaign, 10,000 wrapped messages, delivery receipts, and the
#    plan of taps (table demo_tap);
# 2. the proxy starts on 127.0.0.1:$DEMO_PORT, logged in as a role that may only call
#    track_click(s), and trusting X-Forwarded-For from loopback (so each phone's address is logged);
# 3. curl sends every planned tap, 4 clients at a time: previews and prefetches first, then first
#    taps (and a scanner's forged tokens), then repeat taps;
# 4. the shop posts web orders back to the proxy's /p, signed, with the click id it read from the
#    landing URL; demo/conversions.sql records phone and store orders and newsletter clicks;
# 5. demo/report.sql: clicks by class, CTR, totals, and attribution by model side by side;
# 6. demo/bandit_*.sql: a three-variant bandit campaign with a 10% holdout, sent in 8 waves
#    through choose_variant with its taps through the proxy; the allocation over epochs,
#    variant_stats and the incrementality report.
source "$(dirname "$0")/common.sh"
PORT="${DEMO_PORT:-18180}"
CLIENTS=4
ensure_packages
ensure_cargo_pgrx
install_extension release
log "building smslink-proxy (release)"
cargo build --release -q -p smslink-proxy
cluster_start
PROXY_PID=""
cleanup() {
  if [ -n "$PROXY_PID" ]; then kill -TERM "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
  cluster_stop
}
trap cleanup EXIT
fresh_db smslink_demo
log "running demo/demo.sql"
psql_q -d smslink_demo -f demo/demo.sql

psql_q -d smslink_demo -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_redirector') THEN
        CREATE ROLE demo_redirector LOGIN IN ROLE smslink_proxy;
    END IF; END \$\$"
DIR="$ROOT/target/demo"
rm -rf "$DIR"; mkdir -p "$DIR"
log "starting smslink-proxy on 127.0.0.1:$PORT"
SMSLINK_DATABASE_URL="host=$PGSOCK port=$PGPORT user=demo_redirector dbname=smslink_demo" \
  "$ROOT/target/release/smslink-proxy" --listen "127.0.0.1:$PORT" --trusted-proxies 127.0.0.1/32 \
  --spool-dir "$DIR/spool" >"$DIR/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$DIR/proxy.log"; die "the proxy did not start"; }
# The edge path: taps on cached links are answered from the proxy's warm link cache and its
# local spool, and shipped to the database in bulk (docs/proxy.md).
wait_edge_warm "$PORT" smslink_demo || die "the proxy's link cache did not fill"

# One curl config block per tap; blocks are separated by `next`, which resets per-request options.
for phase in 1 2 3; do
  for client in $(seq 0 $((CLIENTS - 1))); do
    psql_q -At -d smslink_demo -c "
      SELECT string_agg(format(
               'url = \"http://127.0.0.1:$PORT/c/%s\"' || chr(10) ||
               'header = \"Host: sms.example.com\"' || chr(10) ||
               'user-agent = \"%s\"' || chr(10) ||
               'header = \"X-Forwarded-For: %s\"' || chr(10) ||
               CASE WHEN method = 'HEAD' THEN 'head' || chr(10) ELSE '' END ||
               CASE WHEN purpose IS NOT NULL THEN format('header = \"Sec-Purpose: %s\"', purpose) || chr(10) ELSE '' END ||
               'output = \"/dev/null\"' || chr(10) ||
               'write-out = \"%%{http_code} %%{redirect_url}\\n\"', token, agent, ip),
             chr(10) || 'next' || chr(10) ORDER BY n)
        FROM demo_tap WHERE phase = $phase AND n % $CLIENTS = $client" > "$DIR/phase$phase.$client.cfg"
    # Who sent each of those taps, in the same order: the shop matches landing URLs to buyers.
    psql_q -At -d smslink_demo -c "
      SELECT string_agg(concat_ws(' ', coalesce(who, '-'), truth, coalesce(kind, '-')), chr(10) ORDER BY n)
        FROM demo_tap WHERE phase = $phase AND n % $CLIENTS = $client" > "$DIR/phase$phase.$client.who"
  done
done

log "sending $(psql_q -At -d smslink_demo -c 'SELECT count(*) FROM demo_tap') taps over HTTP through the proxy"
started=$(date +%s.%N)
for phase in 1 2 3; do
  pids=()
  for f in "$DIR"/phase$phase.*.cfg; do
    [ -s "$f" ] || continue
    timeout 300 curl -s --config "$f" > "$f.codes" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "a curl client failed (see $DIR)"; done
done
finished=$(date +%s.%N)
codes() { cat "$DIR"/*.codes | awk '{print $1}' | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd ' '; }
echo "HTTP replies (status x count): $(codes)"
# Every planned tap on a real link must be a redirect, and every forged token a 404.
expected=$(psql_q -At -d smslink_demo -c "
  SELECT format('302 x%s 404 x%s', count(*) FILTER (WHERE truth <> 'forged'), count(*) FILTER (WHERE truth = 'forged'))
    FROM demo_tap")
[ "$(codes)" = "$expected" ] \
  || die "HTTP replies differ from the plan ($expected)"
awk -v a="$started" -v b="$finished" -v n="$(cat "$DIR"/*.codes | wc -l)" \
  'BEGIN { printf "%d requests in %.1f s with %d clients (curl, one request at a time each)\n", n, b - a, 4 }'
wait_spool_drained "$PORT" || die "the spool did not drain"
echo "proxy metrics: $(curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^smslink_proxy_requests_total' | paste -sd ' ')"
echo "edge path: $(proxy_metric "$PORT" smslink_proxy_cache_hits_total) taps answered from the link cache and spooled," \
  "$(proxy_metric "$PORT" smslink_proxy_cache_misses_total) misses (forged tokens) answered by the database;" \
  "$(proxy_metric "$PORT" smslink_proxy_spool_shipped_total) spooled clicks shipped, $(proxy_metric "$PORT" smslink_proxy_spool_pending) pending"

# 8. Conversions. The shop's server reads smsclid from each landing URL a buyer arrived on and
#    posts the order back, signed with the brand's secret (HMAC-SHA256 over the sorted
#    parameters, as docs/conversions.md says; computed here with openssl, as any shop could).
log "the shop posts web orders back to /p, signed, with the click id from the landing URL"
secret=$(psql_q -At -d smslink_demo -c "SELECT secret FROM smslink_secret.postback_secret")
psql_q -At -F ' ' -d smslink_demo -c "SELECT who, value FROM demo_buyer WHERE via = 'web' ORDER BY who" > "$DIR/web_buyers"
# "who click_id" for every human tap on a CTA that was redirected (first landing per subscriber).
for f in "$DIR"/phase2.*.cfg; do paste -d ' ' "${f%.cfg}.who" "$f.codes"; done \
  | awk '$2 == "human" && $3 == "cta" && $4 == "302" && match($5, /smsclid=[0-9]+/) {
           print $1, substr($5, RSTART + 8, RLENGTH - 8) }' | LC_ALL=C sort -u -k1,1 > "$DIR/landings"
postback() { # postback CLICK_ID EXTERNAL_ID VALUE [SIG]: prints the HTTP status
  local canonical="click_id=$1&currency=USD&event=purchase&external_id=$2&value=$3" sig
  sig=${4:-$(printf '%s' "$canonical" | openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')}
  curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$PORT/p?$canonical&sig=$sig"
}
LC_ALL=C join "$DIR/landings" "$DIR/web_buyers" | while read -r who kid value; do
  postback "$kid" "web-${who#+}" "$value"
done > "$DIR/postbacks"
echo "postbacks (status x count): $(sort "$DIR/postbacks" | uniq -c | awk '{print $2 " x" $1}' | paste -sd ' ')"
read -r who kid value < <(LC_ALL=C join "$DIR/landings" "$DIR/web_buyers" | head -n1)
echo "the same postback again: $(postback "$kid" "web-${who#+}" "$value") (idempotent: no new row)"
echo "a tampered postback (value changed after signing): $(postback "$kid" "web-${who#+}" "1.00" \
  "$(printf '%s' "click_id=$kid&currency=USD&event=purchase&external_id=web-${who#+}&value=$value" | openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')")"
echo "an unsigned postback: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/p?click_id=$kid&external_id=x&value=5&currency=USD")"
[ "$(sort -u "$DIR/postbacks")" = "200" ] || die "a postback was refused (see $DIR/postbacks)"
log "phone and store orders through record_conversion, newsletter clicks through record_touchpoint"
psql_q -d smslink_demo -f demo/conversions.sql

psql_q -d smslink_demo -f demo/report.sql

# 10. A bandit campaign with a 10% holdout, in 8 waves. Each later wave is a new session, 2 s or
#     more after the last (the demo campaign's epoch length), so its first choose_variant call
#     freezes a new epoch from the human clicks so far; the wave's taps then go through the proxy.
psql_q -d smslink_demo -f demo/bandit_setup.sql
taps=0
for wave in $(seq 1 8); do
  [ "$wave" = 1 ] || sleep 2
  # The epoch is frozen from the clicks so far: those of the last wave must be in the database.
  wait_spool_drained "$PORT" || die "the spool did not drain"
  psql_q -d smslink_demo -v wave="$wave" -v port="$PORT" -v taps="$DIR/bandit.$wave.cfg" -f demo/bandit_wave.sql
  wait_edge_warm "$PORT" smslink_demo || die "the wave's links did not reach the proxy's cache"
  if [ -s "$DIR/bandit.$wave.cfg" ]; then
    timeout 300 curl -s --config "$DIR/bandit.$wave.cfg" > "$DIR/bandit.$wave.codes" || die "curl failed (wave $wave)"
    [ "$(sort -u "$DIR/bandit.$wave.codes")" = "302" ] || die "a bandit tap was not redirected (see $DIR/bandit.$wave.codes)"
    taps=$((taps + $(wc -l < "$DIR/bandit.$wave.codes")))
  fi
done
wait_spool_drained "$PORT" || die "the spool did not drain"
echo "bandit waves: $taps taps sent through the proxy, all redirected"
psql_q -d smslink_demo -f demo/bandit_report.sql
log "demo finished (re-run to start over; docs/operations.md shows how to look around)"
