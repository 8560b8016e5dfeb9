#!/usr/bin/env bash
# `make test`: every tier, then one summary line. Exits non-zero on any failure.
source "$(dirname "$0")/common.sh"

declare -a RESULTS=()
FAILED=0
# SMSLINK_ONLY="pg_regress" (a space-separated list of step names) runs only those steps.
step() { # step NAME COMMAND...
  local name="$1"; shift
  if [ -n "${SMSLINK_ONLY:-}" ] && [[ " $SMSLINK_ONLY " != *" $name "* ]]; then return 0; fi
  log "$name"
  if "$@"; then RESULTS+=("$name: ok"); else RESULTS+=("$name: FAILED"); FAILED=1; fi
}

ensure_packages
ensure_cargo_pgrx

hygiene() {
  cargo fmt --all -- --check && cargo clippy --workspace --all-targets -q -- -D warnings
}

# The pure crate, and the proxy's own unit tests (spool, cache, shipper, HTTP edge cases).
core_tests() { cargo test -q -p smslink-core --release && cargo test -q -p smslink-proxy; }

pg_tests() {
  # The test server runs as postgres, which must own its data directory's parent. As an
  # ordinary user, cargo-pgrx installs the test build with sudo and starts the server through
  # sudo -u postgres; as root it does the same without asking.
  $SUDO mkdir -p "$ROOT/target/pgrx-test-data" || return 1
  $SUDO chown postgres:postgres "$ROOT/target/pgrx-test-data" || return 1
  cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$ROOT/target/pgrx-test-data"
}

regress() {
  # Inside `if`, bash ignores `set -e`: every command checks its own status.
  install_extension debug || return 1
  cluster_start || return 1
  trap cluster_stop EXIT
  local pgxs regress_bin out="$ROOT/target/regress"
  pgxs="$("$PG_CONFIG" --pgxs)" || return 1
  regress_bin="$(dirname "$pgxs")/../test/regress/pg_regress"
  rm -rf "$out"; mkdir -p "$out"
  psql_q -d postgres -c "DROP DATABASE IF EXISTS smslink_regress" -c "CREATE DATABASE smslink_regress" || return 1
  local tests
  tests=$(sed -n 's/^test: //p' tests/pg_regress/schedule)
  "$regress_bin" --use-existing --host="$PGSOCK" --port="$PGPORT" --user=postgres \
    --inputdir=tests/pg_regress --outputdir="$out" --dbname=smslink_regress $tests \
    || { cat "$out/regression.diffs" 2>/dev/null | head -n 200; return 1; }
}

# The later steps use the cluster that regress starts; alone (SMSLINK_ONLY) they start it.
ensure_cluster() {
  if [ -f "$PGDATA/postmaster.pid" ] && "$PGBIN/pg_isready" -q -h "$PGSOCK" -p "$PGPORT"; then
    return 0
  fi
  install_extension debug || return 1
  cluster_start || return 1
  trap cluster_stop EXIT
}

# pg_dump/restore of the regress database keeps every row, and (with the keys restored as
# docs/operations.md says) every token still resolves. Runs on the cluster regress started.
dump_restore() {
  ensure_cluster || return 1
  local dump="$ROOT/target/smslink_regress.dump" keys="$ROOT/target/token_keys.csv" before after
  rm -f "$dump" "$keys"
  "$PGBIN/pg_dump" -Fc -d smslink_regress -f "$dump" || return 1
  psql_q -d smslink_regress -c "\\copy smslink_secret.token_key TO '$keys' CSV" || return 1
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS smslink_restored" -c "CREATE DATABASE smslink_restored" || return 1
  "$PGBIN/pg_restore" --exit-on-error -d smslink_restored "$dump" || return 1
  psql_q -d smslink_restored -c "TRUNCATE smslink_secret.token_key" \
    -c "\\copy smslink_secret.token_key FROM '$keys' CSV" \
    -c "SELECT setval('smslink_secret.token_key_version_seq', (SELECT max(version) FROM smslink_secret.token_key))" >/dev/null || return 1
  before="$(psql_q -d smslink_regress -f tests/dump_restore/fingerprint.sql)" || return 1
  after="$(psql_q -d smslink_restored -f tests/dump_restore/fingerprint.sql)" || return 1
  echo "before: $before"
  echo "after:  $after"
  [ -n "$before" ] && [ "$before" = "$after" ] || { echo "dump/restore changed the data"; return 1; }
  # The copy holds grants to the regress roles: left behind, it would stop the next run's
  # regress from dropping and recreating them.
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres -c "DROP DATABASE smslink_restored"
}

# 32 concurrent HTTP clients send 20,000 clicks (10 per message, shuffled) over 2,000 messages,
# each click its own request: half the clients through a proxy on the database path (each click
# its own transaction, racing for first clicks), half through an edge proxy (warm cache, spool,
# bulk ingestion), on the same messages. Every click is logged once and each message gets
# exactly one first click, its earliest human click, whichever path logged it. A database stall
# cannot fail a tap: the edge proxy answers from its cache and spool, and the database-path proxy
# waits up to 15 s (its --request-timeout-ms) before it would answer 503.
concurrency() {
  ensure_cluster || return 1
  cargo build -q -p smslink-proxy || return 1
  local dir="$ROOT/target/concurrency" clients=32 port=18090 edge_port=18091 expected pid edge_pid
  rm -rf "$dir"; mkdir -p "$dir"
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS smslink_concurrency" -c "CREATE DATABASE smslink_concurrency" || return 1
  psql_q -d smslink_concurrency -c "CREATE EXTENSION smslink" || return 1
  psql_q -d smslink_concurrency -f tests/concurrency/setup.sql || return 1
  psql_q -At -d smslink_concurrency -c "
    SELECT format('url = \"http://127.0.0.1:PORT/c/%s\"' || chr(10) || 'output = \"/dev/null\"', l.token)
      FROM smslink.link l, generate_series(1, 10) ORDER BY random()" > "$dir/all.cfg" || return 1
  split -n "l/$clients" -d -a 2 "$dir/all.cfg" "$dir/client." || return 1
  local url="host=$PGSOCK port=$PGPORT user=postgres dbname=smslink_concurrency"
  SMSLINK_DATABASE_URL="$url" "$ROOT/target/debug/smslink-proxy" --listen "127.0.0.1:$port" \
    --pool-size 16 --request-timeout-ms 15000 >"$dir/proxy.log" 2>&1 & pid=$!
  SMSLINK_DATABASE_URL="$url" "$ROOT/target/debug/smslink-proxy" --listen "127.0.0.1:$edge_port" \
    --pool-size 4 --spool-dir "$dir/spool" >"$dir/edge-proxy.log" 2>&1 & edge_pid=$!
  local i; for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  wait_edge_warm "$edge_port" smslink_concurrency 60 || { tail -n 20 "$dir/edge-proxy.log"; return 1; }
  local pids=() f n=0
  for f in "$dir"/client.*; do
    # Even clients take the database path, odd ones the edge path.
    if [ $((n % 2)) = 0 ]; then sed -i "s/:PORT\//:$port\//" "$f"; else sed -i "s/:PORT\//:$edge_port\//" "$f"; fi
    n=$((n + 1))
    timeout 300 curl -s -H "Host: c.conc.example" -A "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148" \
      -w '%{http_code}\n' --config "$f" > "$f.codes" &
    pids+=($!)
  done
  local failed=0 p
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  wait_spool_drained "$edge_port" 120 || failed=1
  echo "edge path: $(proxy_metric "$edge_port" smslink_proxy_cache_hits_total) cache hits, $(proxy_metric "$edge_port" smslink_proxy_cache_misses_total) misses"
  kill -TERM "$pid" "$edge_pid"; wait "$pid" || true; wait "$edge_pid" || true
  [ "$failed" = 0 ] || { echo "a client failed"; return 1; }
  local codes; codes=$(cat "$dir"/client.*.codes | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
  echo "HTTP status counts: $codes"
  [ "$codes" = "302x20000 " ] || { grep -h "timeout\|error" "$dir"/*.log | tail -n 5; return 1; }
  expected="clicks 20000 human 20000 clicked_messages 2000 first_clicks 2000 messages_without_exactly_one_first 0 first_click_at_set 2000 first_click_matches 2000 first_is_earliest 2000"
  local got
  got="$(psql_q -d smslink_concurrency -f tests/concurrency/check.sql)" || return 1
  echo "got:      $got"
  echo "expected: $expected"
  [ "$got" = "$expected" ] || return 1
  bandit_concurrency
}

# choose_variant while another session recomputes the epoch: session 1 freezes epoch 2 and keeps
# its transaction (the advisory lock and the uncommitted log row) open for 6 s; session 2 makes
# 20,000 calls that find the epoch due, with lock_timeout 100 ms, and must finish on epoch 1
# while session 1 still holds the lock (checked in pg_locks afterwards, so no timing assertion).
# Then 4 sessions race on a due epoch: exactly one new epoch is frozen.
bandit_concurrency() {
  local db=smslink_concurrency c holder s2 locks after
  c="$(psql_q -At -d "$db" -f tests/concurrency/bandit_setup.sql)" || return 1
  psql_q -At -d "$db" -c "BEGIN" \
    -c "SELECT smslink.choose_variant($c, 'holder', now() + interval '1 hour') IS NOT NULL" \
    -c "SELECT pg_sleep(6)" -c "COMMIT" > "$ROOT/target/concurrency/holder.out" 2>&1 & holder=$!
  local i; for i in $(seq 1 50); do
    locks="$(psql_q -At -d "$db" -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")"
    [ "$locks" = 1 ] && break; sleep 0.1
  done
  [ "$locks" = 1 ] || { echo "session 1 never took the allocation lock"; return 1; }
  s2="$(psql_q -At -d "$db" -c "SET lock_timeout = '100ms'" -c "
    SELECT count(*) || ' calls, ' || count(DISTINCT v) || ' variants, epoch '
           || (SELECT max(epoch) FROM smslink.allocation_log WHERE campaign_id = $c)
      FROM (SELECT smslink.choose_variant($c, 'bk' || i, now() + interval '1 hour') v
              FROM generate_series(1, 20000) i) s")" || { echo "session 2 failed (blocked?)"; return 1; }
  locks="$(psql_q -At -d "$db" -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")"
  wait "$holder" || { cat "$ROOT/target/concurrency/holder.out"; return 1; }
  echo "bandit: while session 1 recomputed: $s2; lock still held after: $locks"
  [ "$s2" = "20000 calls, 3 variants, epoch 1" ] && [ "$locks" = 1 ] || return 1
  local pids=() p failed=0
  for i in 1 2 3 4; do
    psql_q -At -d "$db" -c "SELECT count(smslink.choose_variant($c, 'race$i-' || g, now() + interval '2 hours'))
                             FROM generate_series(1, 5000) g" > /dev/null & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  after="$(psql_q -At -d "$db" -c "SELECT string_agg(epoch::text, ',' ORDER BY epoch) FROM smslink.allocation_log WHERE campaign_id = $c")"
  echo "bandit: epochs after 4 racing sessions: $after"
  [ "$failed" = 0 ] && [ "$after" = "1,2,3" ]
}

# The attribution benchmark's generator and its agreement check, at a small scale: the history
# generates, and smslink.attribute gives the same rows as the hand-written SQL the benchmark
# times (bench/history/attribution.sql fails the run otherwise).
history_check() {
  ensure_cluster || return 1
  bash scripts/gen-history.sh --fresh smslink_history_check 0.01 >/dev/null || return 1
  psql_q -d smslink_history_check -v rounds=1 -f bench/history/attribution.sql | grep -E 'rows differ' || return 1
}

# The real proxy binary over real HTTP on loopback, against the test cluster, logged in as a role
# that is only a member of smslink_proxy.
proxy_e2e() {
  ensure_cluster || return 1
  cargo build -q -p smslink-proxy || return 1
  local db=smslink_e2e bin="$ROOT/target/debug/smslink-proxy" log="$ROOT/target/proxy-e2e.log"
  local port=18088 port2=18089 port3=18090 fails=0 pid pid2 pid3 out
  # Hardening checks: port4 (with its admin listener on admin4) has small deadlines and a
  # postback budget of 2; port5 has a per-address cap of 3.
  local port4=18300 admin4=18301 port5=18302 pid4 pid5
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" || return 1
  psql_q -d "$db" -c "CREATE EXTENSION smslink" -f tests/e2e/setup.sql || return 1
  local url="host=$PGSOCK port=$PGPORT user=e2e_redirector dbname=$db"
  SMSLINK_DATABASE_URL="$url" "$bin" --listen "127.0.0.1:$port" --trusted-proxies 127.0.0.1/32 \
    --request-timeout-ms 1500 >"$log" 2>&1 & pid=$!
  SMSLINK_DATABASE_URL="$url" "$bin" --listen "127.0.0.1:$port2" --header-timeout-ms 2500 \
    --max-connections 1 >>"$log" 2>&1 & pid2=$!
  # HTTPS with a throw-away self-signed certificate for the link domain.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=go.e2e.example" \
    -addext "subjectAltName=DNS:go.e2e.example" -keyout "$ROOT/target/e2e-key.pem" \
    -out "$ROOT/target/e2e-cert.pem" >/dev/null 2>&1 || return 1
  SMSLINK_DATABASE_URL="$url" "$bin" --listen "127.0.0.1:$port3" --tls-cert "$ROOT/target/e2e-cert.pem" \
    --tls-key "$ROOT/target/e2e-key.pem" --first-request-timeout-ms 2000 >>"$log" 2>&1 & pid3=$!
  SMSLINK_DATABASE_URL="$url" "$bin" --listen "127.0.0.1:$port4" --admin-listen "127.0.0.1:$admin4" \
    --first-request-timeout-ms 1500 --body-timeout-ms 1000 --postback-concurrency 2 \
    --request-timeout-ms 10000 >>"$log" 2>&1 & pid4=$!
  SMSLINK_DATABASE_URL="$url" "$bin" --listen "127.0.0.1:$port5" --max-connections-per-ip 3 \
    --first-request-timeout-ms 20000 --trusted-proxies 127.0.0.4/32 >>"$log" 2>&1 & pid5=$!
  local i
  for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$admin4/healthz" >/dev/null && break; sleep 0.2; done
  for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port5/healthz" >/dev/null && break; sleep 0.2; done
  sql() { psql_q -At -d "$db" -c "$1"; }
  check() { # check NAME GOT WANT
    if [ "$2" = "$3" ]; then echo "  ok   $1"; else echo "  FAIL $1: got [$2] want [$3]"; fails=$((fails + 1)); fi
  }
  req() { curl -s -o /dev/null -m 5 -w '%{http_code} %{redirect_url}' "$@"; }
  local t1 t2 tgone
  t1=$(sql "SELECT l.token FROM smslink.link l JOIN smslink.subscriber s ON true JOIN smslink.message m ON m.id = l.message_id AND m.subscriber_id = s.id WHERE s.external_key = 'e2e-1'")
  t2=$(sql "SELECT l.token FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id JOIN smslink.subscriber s ON s.id = m.subscriber_id WHERE s.external_key = 'e2e-2'")
  tgone=$(sql "SELECT token FROM smslink.link WHERE destination = 'https://shop.example/gone'")
  local H=(-H "Host: go.e2e.example" -A "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148")

  check "healthz" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" "200"
  check "valid GET redirects" "$(req "${H[@]}" "http://127.0.0.1:$port/c/$t1")" "302 https://shop.example/e2e?x=1"
  check "one click row, right ids" "$(sql "SELECT count(*), bool_and(k.message_id = m.id), min(k.class), min(k.device), min(k.method) FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id JOIN smslink.message m ON m.id = l.message_id WHERE l.token = '$t1'")" "1|t|human|mobile|GET"
  out=$(curl -s -D - -o /dev/null "${H[@]}" "http://127.0.0.1:$port/c/$t1" | tr -d '\r' | grep -iE '^(cache-control|referrer-policy):' | sort | tr '\n' ' ')
  check "no-store, no-referrer" "$out" "cache-control: no-store referrer-policy: no-referrer "
  check "HEAD is a preview" "$(curl -s -o /dev/null -w '%{http_code}' -I "${H[@]}" "http://127.0.0.1:$port/c/$t2")" "302"
  req "${H[@]}" -H "Sec-Purpose: prefetch" "http://127.0.0.1:$port/c/$t2" >/dev/null
  check "HEAD and prefetch logged as preview" "$(sql "SELECT string_agg(k.class || ':' || k.method, ',' ORDER BY k.id) FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id WHERE l.token = '$t2'")" "preview:HEAD,preview:GET"
  local before; before=$(sql "SELECT count(*) FROM smslink.click")
  check "forged token 404" "$(req "${H[@]}" "http://127.0.0.1:$port/c/1AAAAAAAA" | cut -c1-3)" "404"
  check "malformed token 404" "$(req "${H[@]}" "http://127.0.0.1:$port/c/no-such-token" | cut -c1-3)" "404"
  check "over-long token 404" "$(req "${H[@]}" "http://127.0.0.1:$port/c/$(printf 'a%.0s' $(seq 1 400))" | cut -c1-3)" "404"
  check "unknown host 404" "$(req -H "Host: evil.example" "http://127.0.0.1:$port/c/$t1" | cut -c1-3)" "404"
  check "rejections leave no row" "$(sql "SELECT count(*) FROM smslink.click")" "$before"
  # The full classifier on the hot path: declared preview fetchers and libraries are told apart
  # by User-Agent; the verdict carries its reason codes.
  req -H "Host: go.e2e.example" -A "WhatsApp/2.23.20.0 A" "http://127.0.0.1:$port/c/$t2" >/dev/null
  req -H "Host: go.e2e.example" -A "python-requests/2.31.0" "http://127.0.0.1:$port/c/$t2" >/dev/null
  req -H "Host: go.e2e.example" -A "" "http://127.0.0.1:$port/c/$t2" >/dev/null
  check "classifier: preview app, library, no User-Agent" "$(sql "SELECT string_agg(k.class || ':' || array_to_string(k.reasons, '+'), ',' ORDER BY k.id) FROM (SELECT k.* FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id WHERE l.token = '$t2' ORDER BY k.id DESC LIMIT 3) k")" "preview:ua:preview:whatsapp,bot:ua:library,bot:no_user_agent"
  check "expired link uses fallback" "$(req "${H[@]}" "http://127.0.0.1:$port/c/$tgone")" "302 https://shop.example/ended"
  req "${H[@]}" -H "X-Forwarded-For: 198.51.100.23" "http://127.0.0.1:$port/c/$t1" >/dev/null
  req "${H[@]}" -H "X-Forwarded-For: 198.51.100.24" "http://127.0.0.1:$port2/c/$t1" >/dev/null
  check "X-Forwarded-For trusted, then untrusted" "$(sql "SELECT string_agg(host(ip), ',' ORDER BY id) FROM (SELECT k.id, k.ip FROM smslink.click k JOIN smslink.link l ON l.id = k.link_id WHERE l.token = '$t1' ORDER BY k.id DESC LIMIT 2) x")" "198.51.100.23,127.0.0.1"
  # Limits: path and header sizes, slow clients, connection cap.
  check "path over --max-path-bytes: 414" "$(req "${H[@]}" "http://127.0.0.1:$port/c/$(printf 'a%.0s' $(seq 1 600))" | cut -c1-3)" "414"
  check "head over --max-header-bytes: 431" "$(req "${H[@]}" -H "X-Pad: $(printf 'p%.0s' $(seq 1 20000))" "http://127.0.0.1:$port/c/$t1" | cut -c1-3)" "431"
  exec 7<>"/dev/tcp/127.0.0.1/$port2"
  printf 'GET /c/%s HTTP/1.1\r\nHost: go.e2e.example\r\n' "$t1" >&7
  check "connection cap: a second client waits" "$(req -m 1 "${H[@]}" "http://127.0.0.1:$port2/c/$t1")" "000 "
  local t0=$SECONDS got
  got=$(timeout 10 cat <&7 | wc -c); exec 7<&-
  check "slow client: half-sent head dropped after --header-timeout-ms" "$got $((SECONDS - t0 <= 5))" "0 1"
  check "connection cap: slot free again" "$(req "${H[@]}" "http://127.0.0.1:$port2/c/$t1" | cut -c1-3)" "302"
  local tls=(--cacert "$ROOT/target/e2e-cert.pem" --resolve "go.e2e.example:$port3:127.0.0.1")
  check "HTTPS (rustls), HTTP/1.1" "$(curl -s -o /dev/null -m 5 -w '%{http_code} %{http_version} %{redirect_url}' --http1.1 "${tls[@]}" -A "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148" "https://go.e2e.example:$port3/c/$t1")" "302 1.1 https://shop.example/e2e?x=1"
  check "HTTPS (rustls), HTTP/2" "$(curl -s -o /dev/null -m 5 -w '%{http_code} %{http_version}' --http2 "${tls[@]}" "https://go.e2e.example:$port3/c/$t1")" "302 2"
  check "HTTPS: plain HTTP to the TLS port fails" "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port3/healthz")" "000"
  check "proxy role cannot read tables" "$(psql_q -At -d "$db" -U e2e_redirector -c "SELECT count(*) FROM smslink.click" 2>&1 | grep -c 'permission denied')" "1"
  # Conversions: the landing page learns the click id; the shop posts it back, signed.
  local t4 landing kid sig q
  t4=$(sql "SELECT l.token FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id JOIN smslink.subscriber s ON s.id = m.subscriber_id WHERE s.external_key = 'e2e-4'")
  landing=$(req "${H[@]}" "http://127.0.0.1:$port/c/$t4")
  kid=$(sed -n 's/.*smsclid=\([0-9]*\).*/\1/p' <<<"$landing")
  check "landing URL: macros and click id" "$landing" "302 https://shop.example/land?sub=e2e-4&smsclid=$kid"
  sign() { sql "SELECT smslink.sign_postback(b.id, '$1') FROM smslink.brand b WHERE b.name = 'E2E'"; }
  sig=$(sign "{\"click_id\": \"$kid\", \"value\": \"25.00\", \"currency\": \"USD\", \"external_id\": \"e2e-order-1\"}")
  q="click_id=$kid&value=25.00&currency=USD&external_id=e2e-order-1"
  check "postback: unsigned 401" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/p?$q")" "401"
  check "postback: tampered 401" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/p?${q/25.00/250.00}&sig=$sig")" "401"
  check "postback: refusals write nothing" "$(sql "SELECT count(*) FROM smslink.conversion")" "0"
  out=$(curl -s "http://127.0.0.1:$port/p?$q&sig=$sig")
  check "postback: GET recorded" "$(sql "SELECT format('{\"conversion_id\":%s}', id) || '|' || value || '|' || (click_id = $kid) || '|' || (properties->>'source') FROM smslink.conversion WHERE external_id = 'e2e-order-1'")" "$out|25.00|true|postback"
  check "postback: POST form replay, same id" "$(curl -s -d "sig=$sig&external_id=e2e-order-1&currency=USD&value=25.00&click_id=$kid" "http://127.0.0.1:$port/p")" "$out"
  check "postback: POST JSON is 415" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$port/p")" "415"
  sig=$(sign "{\"click_id\": \"$kid\", \"value\": \"5\", \"currency\": \"XYZ\", \"external_id\": \"e2e-order-2\"}")
  check "postback: signed but invalid 400" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/p?click_id=$kid&value=5&currency=XYZ&external_id=e2e-order-2&sig=$sig")" "400"
  sig=$(sign "{\"click_id\": \"$kid\", \"value\": \"30.00\", \"currency\": \"USD\", \"external_id\": \"e2e-order-1\"}")
  check "postback: conflicting repeat 409" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/p?click_id=$kid&value=30.00&currency=USD&external_id=e2e-order-1&sig=$sig")" "409"
  sig=$(sign "{\"click_id\": \"$kid\", \"event\": \"signup\", \"external_id\": \"e2e-signup-1\"}")
  check "pixel: 1x1 GIF, recorded" "$(curl -s -o "$ROOT/target/px.gif" -w '%{http_code} %{content_type} %{size_download}' "http://127.0.0.1:$port/px.gif?click_id=$kid&event=signup&external_id=e2e-signup-1&sig=$sig") $(head -c 6 "$ROOT/target/px.gif") $(sql "SELECT event || ':' || (properties->>'source') FROM smslink.conversion WHERE external_id = 'e2e-signup-1'")" "200 image/gif 43 GIF89a signup:pixel"
  check "pixel: tampered 401, still a GIF" "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "http://127.0.0.1:$port/px.gif?click_id=$kid&event=purchase&external_id=e2e-signup-1&sig=$sig")" "401 image/gif"
  # Signed outside the database, exactly as docs/conversions.md says (openssl, sorted RFC 3986 pairs).
  local secret canonical
  secret=$(sql "SELECT p.secret FROM smslink_secret.postback_secret p JOIN smslink.brand b ON b.id = p.brand_id WHERE b.name = 'E2E'")
  canonical="click_id=$kid&coupon=SPRING%20SALE&currency=EUR&external_id=e2e-order-9&value=7.00"
  sig=$(printf '%s' "$canonical" | openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')
  check "postback: signed with openssl (documented algorithm)" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/p?value=7.00&external_id=e2e-order-9&currency=EUR&coupon=SPRING+SALE&click_id=$kid&sig=$sig")" "200"
  check "conversions written: 3" "$(sql "SELECT count(*) FROM smslink.conversion")" "3"
  # Hardening. Raw sockets come from python3 (standard library only): bash cannot bind a client
  # address or send half a request and then watch for the close. Every bound below is generous
  # against the failure it detects (a connection never closed, a request that queued).
  probe() { python3 - "$@" <<'PY'
import socket, sys, time

def connect(port, src="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))

def wait_close(s, until):
    """Reads until the server closes; returns (closed?, bytes read)."""
    data = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return False, data
        s.settimeout(left)
        try:
            b = s.recv(4096)
        except socket.timeout:
            return False, data
        except ConnectionResetError:
            return True, data
        if not b:
            return True, data
        data += b

def request(s, path, host="go.e2e.example"):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (iPhone) Mobile/15E148\r\n\r\n".encode())
    s.settimeout(5)
    try:
        head = s.recv(4096).split(b"\r\n", 1)[0].decode()
    except OSError:
        return "none"
    return head.split(" ")[1] if head.startswith("HTTP/") else "none"

cmd, port = sys.argv[1], int(sys.argv[2])
if cmd == "deadline":
    # deadline PORT LOW BOUND KIND...: one connection per KIND, all opened at once; each must be
    # closed by the server, without an answer, after LOW and before BOUND seconds.
    low, bound = float(sys.argv[3]), float(sys.argv[4])
    sends = {"silent": b"", "h2-half-preface": b"PRI * HTTP/2.0\r\n",
             "h1-half-head": b"GET / HTTP/1.1\r\nHost: x\r\n", "tls-half-hello": b"\x16\x03\x01\x00\xc8\x01"}
    conns = []
    start = time.monotonic()
    for kind in sys.argv[5:]:
        s = connect(port)
        s.sendall(sends[kind])
        conns.append((kind, s))
    out = []
    for kind, s in conns:
        closed, data = wait_close(s, start + bound)
        late = time.monotonic() - start >= low
        out.append(f"{kind}:" + ("closed" if closed and not data and late else f"closed={closed},bytes={len(data)},late={late}"))
    print(" ".join(out))
elif cmd == "slowbody":
    # A POST /p whose body trickles in, a byte every 0.2 s: the status line and whether the
    # server closed the connection afterwards.
    s = connect(port)
    s.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              b"Content-Length: 200\r\n\r\nclick_id=1")
    data, closed, until = b"", False, time.monotonic() + 10
    while time.monotonic() < until:
        s.settimeout(0.2)
        try:
            b = s.recv(4096)
        except socket.timeout:
            if not data:
                try:
                    s.send(b"x")
                except OSError:
                    pass
            continue
        except ConnectionResetError:
            closed = True
            break
        if not b:
            closed = True
            break
        data += b
    print(data.split(b"\r\n", 1)[0].decode(), "closed" if closed else "open")
elif cmd == "perip":
    # perip PORT TOKEN: three idle connections from 127.0.0.2 fill its cap of 3; a fourth from
    # there is closed at once (the first-request deadline is 20 s, the bound 10 s); 127.0.0.3
    # still gets its redirect; a trusted peer (127.0.0.4) may hold more than 3.
    token = sys.argv[3]
    held = [connect(port, "127.0.0.2") for _ in range(3)]
    closed, data = wait_close(connect(port, "127.0.0.2"), time.monotonic() + 10)
    fourth = "refused" if closed and not data else f"closed={closed},bytes={len(data)}"
    other = request(connect(port, "127.0.0.3"), f"/c/{token}")
    trusted = [connect(port, "127.0.0.4") for _ in range(5)]
    served = sum(request(s, "/metrics") == "200" for s in trusted)
    print(f"fourth:{fourth} other:{other} trusted:{served}")
PY
  }
  check "deadline: silent, half HTTP/2 preface, half HTTP/1 head closed (--first-request-timeout-ms 1500)" \
    "$(probe deadline "$port4" 1.4 8 silent h2-half-preface h1-half-head)" \
    "silent:closed h2-half-preface:closed h1-half-head:closed"
  check "deadline: stalled TLS handshake closed (--first-request-timeout-ms 2000)" \
    "$(probe deadline "$port3" 1.9 8 silent tls-half-hello)" "silent:closed tls-half-hello:closed"
  check "deadline: counted" "$(curl -s -m 5 "http://127.0.0.1:$admin4/metrics" | awk '/^smslink_proxy_connection_timeouts_total\{reason="first_request"\}/ {print $2}')" "3"
  check "deadline: a tap after it still served" "$(req "${H[@]}" "http://127.0.0.1:$port4/c/$t1")" "302 https://shop.example/e2e?x=1"
  check "slow POST body: 408, connection closed (--body-timeout-ms 1000)" "$(probe slowbody "$port4")" "HTTP/1.1 408 Request Timeout closed"
  head -c 20000 /dev/zero | tr '\0' 'a' > "$ROOT/target/e2e-big-body"
  check "POST body over 16 KiB: 413" "$(curl -s -o /dev/null -m 5 -w '%{http_code}' --data-binary @"$ROOT/target/e2e-big-body" "http://127.0.0.1:$port4/p")" "413"
  check "per-address cap: 4th closed, other address served, trusted peer exempt" \
    "$(probe perip "$port5" "$t1")" "fourth:refused other:302 trusted:5"
  check "per-address cap: counted" "$(curl -s -m 5 "http://127.0.0.1:$port5/metrics" | awk '/^smslink_proxy_connections_refused_total\{reason="per_ip"\}/ {print $2}')" "1"
  check "connections_open gauge exported" "$(curl -s -m 5 "http://127.0.0.1:$port5/metrics" | awk '/^smslink_proxy_connections_open / {print ($2 >= 1)}')" "1"
  # Admin listener: /metrics and /healthz there, and not on the public listener.
  check "admin listener: /metrics, /healthz" "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$admin4/metrics") $(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$admin4/healthz")" "200 200"
  check "admin listener: not on the public one, and no taps there" "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port4/metrics") $(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port4/healthz") $(req "${H[@]}" "http://127.0.0.1:$admin4/c/$t1" | cut -c1-3)" "404 404 404"
  # Postback budget: a lock on the conversion table makes signed postbacks wait in the
  # database; two of them fill --postback-concurrency 2, and then every postback and pixel is
  # refused at once (503 + Retry-After, within curl's 3 s while the lock is held for 8 s) while
  # taps and /healthz are served. The two waiting ones are recorded once the lock goes.
  local holder waiters=() flood=() w codes
  psql_q -At -d "$db" -c "BEGIN" -c "LOCK TABLE smslink.conversion IN ACCESS EXCLUSIVE MODE" \
    -c "SELECT pg_sleep(8)" -c "COMMIT" >/dev/null 2>&1 & holder=$!
  for i in $(seq 1 50); do
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE relation = 'smslink.conversion'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && break
    sleep 0.1
  done
  for i in 1 2; do
    sig=$(sign "{\"click_id\": \"$kid\", \"value\": \"1.00\", \"currency\": \"USD\", \"external_id\": \"e2e-flood-$i\"}")
    curl -s -o "$ROOT/target/e2e-flood-$i.out" -m 20 -w '%{http_code}' "http://127.0.0.1:$port4/p?click_id=$kid&value=1.00&currency=USD&external_id=e2e-flood-$i&sig=$sig" > "$ROOT/target/e2e-flood-$i.code" &
    waiters+=($!)
  done
  for i in $(seq 1 50); do
    [ "$(curl -s -m 5 "http://127.0.0.1:$admin4/metrics" | awk '/^smslink_proxy_postbacks_in_flight / {print $2}')" = 2 ] && break
    sleep 0.1
  done
  for i in $(seq 1 20); do
    curl -s -o /dev/null -m 3 -w '%{http_code}\n' "http://127.0.0.1:$port4/p?click_id=$kid&junk=$i" > "$ROOT/target/e2e-flood-junk-$i.code" &
    flood+=($!)
  done
  out=$(curl -s -D - -o /dev/null -m 3 "http://127.0.0.1:$port4/p?click_id=$kid&junk=x" | tr -d '\r' | grep -iE '^(HTTP|retry-after)' | tr '\n' ' ')
  check "postback budget full: refused at once, 503 + Retry-After" "$out" "HTTP/1.1 503 Service Unavailable retry-after: 1 "
  check "postback budget full: pixel refused at once" "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$port4/px.gif?click_id=$kid")" "503"
  check "postback budget full: a tap is still served" "$(req -m 3 "${H[@]}" "http://127.0.0.1:$port4/c/$t1")" "302 https://shop.example/e2e?x=1"
  check "postback budget full: /healthz still 200" "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$admin4/healthz")" "200"
  for w in "${flood[@]}"; do wait "$w" || true; done
  codes=$(cat "$ROOT"/target/e2e-flood-junk-*.code | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
  check "postback flood: all 20 refused at once" "$codes" "503x20 "
  check "postback flood: shed counted" "$(curl -s -m 5 "http://127.0.0.1:$admin4/metrics" | awk '/^smslink_proxy_postbacks_shed_total / {print $2}')" "22"
  wait "$holder" || true
  for w in "${waiters[@]}"; do wait "$w" || true; done
  check "postback budget: the waiting two recorded after the lock" "$(cat "$ROOT/target/e2e-flood-1.code") $(cat "$ROOT/target/e2e-flood-2.code") $(sql "SELECT count(*) FROM smslink.conversion WHERE external_id LIKE 'e2e-flood-%'")" "200 200 2"
  rm -f "$ROOT"/target/e2e-flood-* "$ROOT/target/e2e-big-body"
  # Database down: 503 with Retry-After, then recovery once it is back.
  as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  out=$(curl -s -D - -o /dev/null -m 5 "${H[@]}" "http://127.0.0.1:$port/c/$t1" | tr -d '\r' | grep -iE '^(HTTP|retry-after)' | tr '\n' ' ')
  check "database down: 503 + Retry-After" "$out" "HTTP/1.1 503 Service Unavailable retry-after: 1 "
  check "database down: healthz 503" "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port/healthz")" "503"
  cluster_start || return 1
  out=""
  for i in $(seq 1 20); do
    out=$(req "${H[@]}" "http://127.0.0.1:$port/c/$t1")
    [ "$out" = "302 https://shop.example/e2e?x=1" ] && break
    sleep 0.5
  done
  check "recovers when the database is back" "$out" "302 https://shop.example/e2e?x=1"
  local metrics; metrics=$(curl -s -m 5 "http://127.0.0.1:$port/metrics")
  check "metrics: 302s counted" "$(echo "$metrics" | awk '/^smslink_proxy_requests_total\{route="redirect",status="302"\}/ {print ($2 >= 5)}')" "1"
  check "metrics: 404s counted" "$(echo "$metrics" | awk '/^smslink_proxy_requests_total\{route="redirect",status="404"\}/ {print $2}')" "4"
  check "metrics: database errors counted" "$(echo "$metrics" | awk '/^smslink_proxy_database_errors_total/ {print ($2 >= 2)}')" "1"
  check "metrics: latency histogram" "$(echo "$metrics" | grep -c '^smslink_proxy_request_duration_seconds_bucket{route="redirect",le="0.01"}')" "1"
  check "metrics: pool gauges" "$(echo "$metrics" | grep -cE '^smslink_proxy_pool_connections\{state="(in_use|idle|waiting)"\}')" "3"
  kill -TERM "$pid" "$pid2" "$pid3" "$pid4" "$pid5"
  local code=0 code4=0; wait "$pid" || code=$?; wait "$pid2" || true; wait "$pid3" || true
  wait "$pid4" || code4=$?; wait "$pid5" || true
  check "SIGTERM: clean exit" "$code" "0"
  check "SIGTERM: clean exit with an admin listener" "$code4" "0"
  [ "$fails" = 0 ] || { tail -n 20 "$log"; return 1; }
}

# The BI path: Debian's PostgreSQL JDBC driver against the metric functions and views, over TCP
# on 127.0.0.1 (cluster_start listens there as well as on the socket), with bound parameters,
# result-set metadata, known values, SQLSTATEs and column descriptions (tests/jdbc).
jdbc() {
  ensure_packages default-jdk-headless libpostgresql-jdbc-java || return 1
  local db=smslink_jdbc jar=/usr/share/java/postgresql.jar out="$ROOT/target/jdbc"
  command -v javac >/dev/null && [ -f "$jar" ] || { echo "javac or $jar missing"; return 1; }
  ensure_cluster || return 1
  fresh_db "$db" || return 1
  psql_q -d "$db" -f tests/jdbc/setup.sql || return 1
  rm -rf "$out"; mkdir -p "$out"
  javac -d "$out" -cp "$jar" tests/jdbc/MetricsJdbcTest.java || return 1
  java -cp "$out:$jar" MetricsJdbcTest "jdbc:postgresql://127.0.0.1:$PGPORT/$db?user=postgres&ApplicationName=smslink-jdbc-test"
}

# smslink_core::stats against SciPy, statsmodels and mpmath: tests/stats/reference.py writes 300
# seeded A/B cases, 200 Welch cases (statsmodels on raw samples) and 200 MDE cases (a 40-digit
# mpmath solve) with their expected values, and core/tests/stats_reference.rs checks every number
# to 1e-9 relative (1e-12 absolute near 0). The Python packages live in a venv under target/,
# installed from PyPI once.
stats_reference() {
  local venv="$ROOT/target/stats-venv" out="$ROOT/target/stats-reference.json"
  if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      rm -rf "$venv"
      ensure_packages python3-venv python3-pip || return 1
      python3 -m venv "$venv" || return 1
    fi
  fi
  if ! "$venv/bin/python" -c "import scipy, statsmodels, numpy, mpmath" 2>/dev/null; then
    log "installing scipy, statsmodels, numpy, mpmath into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check scipy statsmodels numpy mpmath || return 1
  fi
  "$venv/bin/python" tests/stats/reference.py "$out" || return 1
  SMSLINK_STATS_REFERENCE="$out" cargo test -q -p smslink-core --release --test stats_reference
}

# A long attribution call stops promptly when cancelled (its loops check for interrupts). The
# history is made big enough that the call is still running after a second; the bound checked
# is generous (5 s, for a stalling machine); the figure measured is printed.
cancel_check() {
  ensure_cluster || return 1
  local db=smslink_cancel log="$ROOT/target/cancel.log" pid t0 t1 state
  fresh_db "$db" || return 1
  psql_q -d "$db" <<'SQL' || return 1
SELECT smslink.create_brand('Cancel') AS b \gset
INSERT INTO smslink.subscriber (brand_id, external_key)
SELECT :b, 'c' || i FROM generate_series(1, 300000) i;
INSERT INTO smslink.touchpoint (brand_id, subscriber_id, channel, kind, occurred_at, external_id)
SELECT :b, s.id, 'email', 'click', '2026-01-01'::timestamptz + (s.id % 86400) * interval '1 second', 't' || s.id
  FROM smslink.subscriber s WHERE s.brand_id = :b;
INSERT INTO smslink.conversion (brand_id, subscriber_id, event, occurred_at, external_id)
SELECT :b, s.id, 'purchase', '2026-01-02'::timestamptz + (s.id % 86400) * interval '1 second', 'o' || s.id
  FROM smslink.subscriber s WHERE s.brand_id = :b;
ANALYZE;
SQL
  "$PGBIN/psql" -X -h "$PGSOCK" -p "$PGPORT" -U postgres -d "$db" -At \
    -c "SELECT count(*) FROM smslink.attribute('linear', '2026-01-01', '2026-02-01', click_window => '30 days')" \
    >"$log" 2>&1 & pid=$!
  # Wait (bounded) until the call has been running for a second.
  for _ in $(seq 1 300); do
    state=$(psql_q -d "$db" -At -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND query LIKE '%smslink.attribute(%' AND state = 'active' AND now() - query_start > interval '1 second' AND pid <> pg_backend_pid()")
    [ "$state" = 1 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$state" = 1 ] || { echo "the attribution call did not run for a second (history too small?)"; cat "$log"; return 1; }
  t0=$(date +%s%N)
  psql_q -d "$db" -At -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = '$db' AND query LIKE '%smslink.attribute(%' AND pid <> pg_backend_pid()" >/dev/null || return 1
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  t1=$(date +%s%N)
  wait "$pid" 2>/dev/null
  echo "cancelled attribute() ended $(( (t1 - t0) / 1000000 )) ms after pg_cancel_backend: $(tr '\n' ' ' < "$log")"
  grep -q "canceling statement due to user request" "$log" || { echo "the call was not cancelled"; return 1; }
  [ $(( (t1 - t0) / 1000000 )) -le 5000 ] || { echo "cancel took more than 5 s"; return 1; }
  psql_q -d postgres -c "DROP DATABASE $db" >/dev/null
}

step "fmt+clippy" hygiene
step "core tests" core_tests
step "stats vs scipy" stats_reference
step "pg_test" pg_tests
step "pg_regress" regress
step "dump/restore" dump_restore
step "click concurrency" concurrency
step "attribution vs SQL" history_check
step "proxy e2e" proxy_e2e
step "faults" bash scripts/faults.sh
step "cancel" cancel_check
step "jdbc" jdbc

echo
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILED" = 0 ]; then
  echo "SUMMARY: all test tiers passed (${#RESULTS[@]} of ${#RESULTS[@]})"
else
  echo "SUMMARY: FAILED"
  exit 1
fi
