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
# 4. demo/report.sql: clicks by class, CTR, and totals.
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
  >"$DIR/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$DIR/proxy.log"; die "the proxy did not start"; }

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
               'write-out = \"%%{http_code}\\n\"', token, agent, ip),
             chr(10) || 'next' || chr(10) ORDER BY n)
        FROM demo_tap WHERE phase = $phase AND n % $CLIENTS = $client" > "$DIR/phase$phase.$client.cfg"
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
echo "HTTP replies (status x count): $(cat "$DIR"/*.codes | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd ' ')"
# Every planned tap on a real link must be a redirect, and every forged token a 404.
expected=$(psql_q -At -d smslink_demo -c "
  SELECT format('302 x%s 404 x%s', count(*) FILTER (WHERE truth <> 'forged'), count(*) FILTER (WHERE truth = 'forged'))
    FROM demo_tap")
[ "$(cat "$DIR"/*.codes | sort | uniq -c | awk '{print $2 " x" $1}' | paste -sd ' ')" = "$expected" ] \
  || die "HTTP replies differ from the plan ($expected)"
awk -v a="$started" -v b="$finished" -v n="$(cat "$DIR"/*.codes | wc -l)" \
  'BEGIN { printf "%d requests in %.1f s with %d clients (curl, one request at a time each)\n", n, b - a, 4 }'
echo "proxy metrics: $(curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^smslink_proxy_requests_total' | paste -sd ' ')"

psql_q -d smslink_demo -f demo/report.sql
log "demo finished (re-run to start over; docs/operations.md shows how to look around)"
