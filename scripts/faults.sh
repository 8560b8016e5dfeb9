#!/usr/bin/env bash
# The "faults" tier: the redirect proxy's promises under faults, on loopback, bounded in time.
#   1. kill -9 of the proxy during a load, restart on the same spool: every 302 is one click row;
#   2. PostgreSQL stopped hard during a load, started 5 s later: no failed tap on a cached link,
#      every acknowledged click exactly once;
#   3. PostgreSQL frozen (SIGSTOP) for 5 s: no failed tap, the freeze's p99 against before;
#   4. 5,000 idle connections and 500 half HTTP/2 prefaces: a new client is still answered, the
#      idle ones are closed by the first-request deadline;
#   5. a flood of unsigned postbacks: taps keep their latency and get no error;
#   6. the same click stream through the database path and the edge path: identical click rows.
# It runs its own PostgreSQL cluster (it stops and freezes it), builds the proxy and the load
# generator (proxy/src/bin/smslink-load.rs) in release, and exits non-zero on any failure.
# House rule: no timing assertions. Latency targets of the issue (3, 4, 5) are printed as
# "info"; what is asserted is the failure mode, with a wide margin (said at each check).
# SMSLINK_EXTENSION_INSTALLED=1 skips installing the extension (make test has done it).
# SMSLINK_FAULTS_ONLY="1 4" runs only those checks.
SMSLINK_PGPORT="${SMSLINK_FAULTS_PGPORT:-28817}"
SMSLINK_PGDATA="$(cd "$(dirname "$0")/.." && pwd)/target/pgdata-faults"
export SMSLINK_PGPORT SMSLINK_PGDATA
source "$(dirname "$0")/common.sh"

DIR="$ROOT/target/faults"
BIN="$ROOT/target/release/smslink-proxy"
LOAD="$ROOT/target/release/smslink-load"
DB=faults
HOSTNAME_LINKS=f.faults.example
declare -a STARTED=() FROZEN=() RESULTS=()
FAILS=0

cleanup() {
  local p
  # A frozen server must never outlive the script, whatever failed.
  for p in "${FROZEN[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
  cluster_stop quiet
}
trap cleanup EXIT

check() { # check NAME GOT WANT
  if [ "$2" = "$3" ]; then echo "  ok   $1"; else echo "  FAIL $1: got [$2] want [$3]"; FAILS=$((FAILS + 1)); fi
}
# holds NAME TRUTH DETAIL: TRUTH is a comparison already evaluated to 1 or 0.
holds() {
  if [ "$2" = 1 ]; then echo "  ok   $1 ($3)"; else echo "  FAIL $1 ($3)"; FAILS=$((FAILS + 1)); fi
}
info() { echo "  info $*"; }
now_ms() { date +%s%3N; }
sleep_until_ms() { local d; d=$(( $1 - $(now_ms) )); [ "$d" -gt 0 ] && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"; return 0; }
sql() { psql_q -At -d "${2:-$DB}" -c "$1"; }
js() { jq -r "$1" "$2"; }
# lt A B: 1 when the decimal A is less than B (0 when A is null or empty).
lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "null" && a != "" && a + 0 < b + 0) ? 1 : 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "null") printf "%.2f", a / b; else print "n/a" }'; }

# start_proxy NAME PORT DB [ARGS...]: starts a proxy logged in as the tier's proxy role, waits
# (10 s at most) for /healthz, and sets PROXY_PID.
start_proxy() {
  local name="$1" port="$2" db="$3"; shift 3
  SMSLINK_DATABASE_URL="host=$PGSOCK port=$PGPORT user=faults_redirector dbname=$db" \
    "$BIN" --listen "127.0.0.1:$port" "$@" >>"$DIR/$name.log" 2>&1 &
  PROXY_PID=$!
  STARTED+=("$PROXY_PID")
  local i
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "  proxy $name did not become healthy:"; tail -n 20 "$DIR/$name.log"
  return 1
}
stop_proxy() { kill -TERM "$1" 2>/dev/null || true; timeout 15 tail --pid="$1" -f /dev/null || kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
metric() { curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }

# wait_warm PORT DB: until the cache holds every live link of DB (30 s at most).
wait_warm() {
  local want got i
  want=$(sql "SELECT count(*) FROM smslink.link WHERE expires_at IS NULL OR expires_at > now()" "$2") || return 1
  for i in $(seq 1 300); do
    got=$(metric "$1" smslink_proxy_cache_links)
    [ -n "$got" ] && [ "$(awk -v g="$got" -v w="$want" 'BEGIN { print (g + 0 >= w + 0) }')" = 1 ] && return 0
    sleep 0.1
  done
  echo "  cache not warm after 30 s: smslink_proxy_cache_links=[$got], live links $want"
  return 1
}
# wait_drained PORT: until the spool is shipped (30 s at most); prints how long it took.
wait_drained() {
  local got i t0; t0=$(now_ms)
  for i in $(seq 1 300); do
    got=$(metric "$1" smslink_proxy_spool_pending)
    if [ "$got" = 0 ]; then info "spool drained in $(( $(now_ms) - t0 )) ms"; return 0; fi
    sleep 0.1
  done
  echo "  spool not drained after 30 s: smslink_proxy_spool_pending=[$got]"
  return 1
}

# verify_acked PREFIX FILE: every acknowledged tag is exactly one click row, no tag twice.
# Prints "acked N missing M duplicated D rows R".
verify_acked() {
  psql_q -At -d "$DB" <<SQL
CREATE TEMP TABLE acked (tag text PRIMARY KEY);
\\copy acked FROM '$2'
WITH tagged AS (SELECT substr(referrer, length('https://load.test/') + 1) AS tag FROM smslink.click
               WHERE referrer LIKE 'https://load.test/$1%')
SELECT format('acked %s missing %s duplicated %s rows %s',
    (SELECT count(*) FROM acked),
    (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM tagged r WHERE r.tag = a.tag)),
    (SELECT count(*) FROM (SELECT tag FROM tagged GROUP BY tag HAVING count(*) > 1) d),
    (SELECT count(*) FROM tagged));
SQL
}
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$2"; }
# unanswered_rows NAME OUT: a row whose tap was not acknowledged may only come from a tap that
# got no answer at all (the connection broke or timed out after the click was spooled): a tap
# answered with an error must leave no row. Checked as a count.
unanswered_rows() {
  local extra no_answer
  extra=$(( $(field rows "$2") - $(field acked "$2") ))
  no_answer=$(js '.io_errors + .timeouts' "$DIR/$1.json")
  holds "$1: rows beyond the acknowledged ones only for taps with no answer" \
    "$( [ "$extra" -ge 0 ] && [ "$extra" -le "$no_answer" ] && echo 1 || echo 0)" "$extra extra rows, $no_answer taps without an answer"
}

# taps NAME PORT RATE SECONDS [EXTRA...]: a tagged tap load on the load campaign (tokens from
# $TOKENS, default those of the database $DB); writes
# $DIR/NAME.json and $DIR/NAME.acked. Bounded: the loader stops after SECONDS and its requests
# time out after 3 s; `timeout` is the backstop.
taps() {
  local name="$1" port="$2" rate="$3" secs="$4"; shift 4
  timeout $((secs + 60)) "$LOAD" taps --url-base "http://127.0.0.1:$port" --tokens "${TOKENS:-$DIR/tokens}" \
    --host "$HOSTNAME_LINKS" --connections 16 --rate "$rate" --duration-s "$secs" \
    --max-requests $((rate * secs)) --timeout-ms 3000 --tag-prefix "$name-" \
    --acked "$DIR/$name.acked" --out "$DIR/$name.json" "$@" 2>>"$DIR/$name.load.log"
}
summary() { # summary JSON: one line of the loader's counts
  jq -r '"\(.requests) requests: \(.redirects) redirected, \(.errors) errors (status \(.status | tostring), \(.connect_errors) connect, \(.io_errors) io, \(.timeouts) timeouts), p50 \(.latency.p50_ms) p99 \(.latency.p99_ms) max \(.latency.max_ms) ms, \(.achieved_rate | floor)/s, \(.reconnects) reconnects"' "$1"
}

# --- the checks --------------------------------------------------------------------------------

# 1. kill -9 during a load, then a restart on the same spool and port. A 302 promises the click
# is on disk: every acknowledged tag must come out as exactly one row once the spool is shipped,
# and replaying the spool after the crash must not duplicate any.
kill_during_load() {
  local port=18201 spool="$DIR/spool-kill" pid load pending out
  start_proxy kill "$port" "$DB" --spool-dir "$spool" || return 1
  pid=$PROXY_PID
  wait_warm "$port" "$DB" || return 1
  taps kill "$port" 400 8 & load=$!; STARTED+=("$load")
  sleep 3
  pending=$(metric "$port" smslink_proxy_spool_pending)
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  info "killed the proxy (-9) 3 s into the load, spool_pending was [$pending]"
  start_proxy kill "$port" "$DB" --spool-dir "$spool" || return 1
  pid=$PROXY_PID
  wait "$load" || { echo "  the load generator failed"; return 1; }
  info "load: $(summary "$DIR/kill.json")"
  wait_drained "$port" || return 1
  out=$(verify_acked kill- "$DIR/kill.acked") || return 1
  info "$out"
  holds "kill -9: the load was acknowledged (> 50 % redirected)" \
    "$(lt "$(js .requests "$DIR/kill.json")" "$(awk -v a="$(field acked "$out")" 'BEGIN { print 2 * a }')")" "$(field acked "$out") of $(js .requests "$DIR/kill.json")"
  check "kill -9: every acknowledged tap is a click row" "$(field missing "$out")" 0
  check "kill -9: no click row twice" "$(field duplicated "$out")" 0
  unanswered_rows kill "$out"
  stop_proxy "$pid"
}

# 2. PostgreSQL stopped hard 2 s into a 10 s load and started again 5 s later. Cached links are
# answered from the spool: zero non-3xx and zero connection errors over the whole run, then
# every acknowledged click exactly once after the drain.
postgres_down() {
  local port=18202 pid t0 out
  start_proxy down "$port" "$DB" --spool-dir "$DIR/spool-down" || return 1
  pid=$PROXY_PID
  wait_warm "$port" "$DB" || return 1
  t0=$(( $(now_ms) + 1000 ))
  taps down "$port" 300 10 --start-unix-ms "$t0" & local load=$!; STARTED+=("$load")
  sleep_until_ms $((t0 + 2000))
  as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null || { echo "  pg_ctl stop failed"; return 1; }
  local down=$(( $(now_ms) - t0 ))
  info "PostgreSQL stopped (immediate) at +$down ms"
  sleep_until_ms $((t0 + 7000))
  cluster_start 2>/dev/null || return 1
  local up=$(( $(now_ms) - t0 ))
  info "PostgreSQL started again (recovery done) at +$up ms"
  wait "$load" || { echo "  the load generator failed"; return 1; }
  info "load: $(summary "$DIR/down.json")"
  info "the whole seconds while it was down: $(jq -r --argjson a "$down" --argjson b "$up" '[.seconds[] | select(.from_ms >= $a and .to_ms <= $b)] | "\(map(.count) | add) taps, \(map(.errors) | add) errors, worst p99 of a second \(map(.p99_ms) | max) ms, max \(map(.max_ms) | max) ms"' "$DIR/down.json")"
  check "database down: every tap redirected (no non-3xx, no connection error)" \
    "$(js '.errors' "$DIR/down.json") $(js '.redirects == .requests and .requests > 0' "$DIR/down.json")" "0 true"
  wait_drained "$port" || return 1
  out=$(verify_acked down- "$DIR/down.acked") || return 1
  info "$out"
  check "database down: every acknowledged click exactly once" "$(field missing "$out") $(field duplicated "$out")" "0 0"
  unanswered_rows down "$out"
  stop_proxy "$pid"
}

# 3. PostgreSQL frozen (SIGSTOP to the postmaster and every backend) for 5 s. Zero errors. The
# issue's target is a freeze p99 within 5x of the normal p99: printed, not asserted (timing).
# Asserted, against the failure mode of taps waiting on the frozen database: no tap during the
# freeze took as long as the proxy's request timeout (2 s, the default).
postgres_frozen() {
  local port=18203 pid t0 pm out p99b p99f maxf
  start_proxy frozen "$port" "$DB" --spool-dir "$DIR/spool-frozen" || return 1
  pid=$PROXY_PID
  wait_warm "$port" "$DB" || return 1
  t0=$(( $(now_ms) + 1000 ))
  taps frozen "$port" 300 10 --start-unix-ms "$t0" --window before=500:2000 --window freeze=2000:7000 \
    --window after=7000:10000 & local load=$!; STARTED+=("$load")
  sleep_until_ms $((t0 + 2000))
  pm=$(head -n 1 "$PGDATA/postmaster.pid")
  FROZEN=("$pm" $(ps -o pid= --ppid "$pm"))
  kill -STOP "${FROZEN[@]}"
  info "froze ${#FROZEN[@]} PostgreSQL processes at +$(( $(now_ms) - t0 )) ms"
  sleep_until_ms $((t0 + 7000))
  kill -CONT "${FROZEN[@]}"; FROZEN=()
  info "thawed at +$(( $(now_ms) - t0 )) ms"
  wait "$load" || { echo "  the load generator failed"; return 1; }
  info "load: $(summary "$DIR/frozen.json")"
  p99b=$(js .windows.before.p99_ms "$DIR/frozen.json"); p99f=$(js .windows.freeze.p99_ms "$DIR/frozen.json")
  maxf=$(js .windows.freeze.max_ms "$DIR/frozen.json")
  info "p99 before the freeze $p99b ms, during it $p99f ms (max $maxf ms): ratio $(ratio "$p99f" "$p99b") (target <= 5)"
  check "database frozen: zero errors" "$(js '.errors' "$DIR/frozen.json") $(js '.requests > 0' "$DIR/frozen.json")" "0 true"
  holds "database frozen: no tap waited for the database (max < 2000 ms request timeout)" "$(lt "$maxf" 2000)" "max $maxf ms"
  wait_drained "$port" || return 1
  out=$(verify_acked frozen- "$DIR/frozen.acked") || return 1
  info "$out"
  check "database frozen: every acknowledged click exactly once" "$(field missing "$out") $(field duplicated "$out")" "0 0"
  unanswered_rows frozen "$out"
  stop_proxy "$pid"
}

# 4. 5,000 connections that send nothing and 500 that send half an HTTP/2 preface, from 32
# loopback addresses (under the per-address cap), against a 2 s first-request deadline. A new
# client must still be answered: the issue's target is 100 ms (printed); asserted is < 2 s, far
# from the failure mode (waiting for a free slot, i.e. for the deadline or forever). The idle
# connections must be held until the deadline and closed by it. Both bounds are wide: a server
# timer never fires early, so fewer than 1 % may be gone within 1.5 s of connect (which also
# proves the flood was in place and not refused at once); >= 99 % must be gone within
# deadline + 3 s. The connects are paced at 5,000/s: unpaced, they overflow the accept queue and
# the kernel retries the dropped ones a second later, which measures the backlog, not the proxy.
idle_flood() {
  local port=18204 pid i code t worst=0 codes="" times="" token out
  local tap=(-s -o /dev/null -m 5 -w '%{http_code} %{time_total}' -H "Host: $HOSTNAME_LINKS"
    -A "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148")
  # The edge path, as an exposed proxy would run; warm, so that the first probe does not pay
  # for the cache or for a database session.
  start_proxy idle "$port" "$DB" --first-request-timeout-ms 2000 --spool-dir "$DIR/spool-idle" || return 1
  pid=$PROXY_PID
  wait_warm "$port" "$DB" || return 1
  token=$(head -n 1 "$DIR/tokens")
  info "a tap before the flood: $(curl "${tap[@]}" "http://127.0.0.1:$port/c/$token")"
  rm -f "$DIR/idle.ready"
  timeout 60 "$LOAD" idle --addr "127.0.0.1:$port" --connections 5000 --preface-connections 500 \
    --bind-from 127.0.0.2 --bind-count 32 --connect-rate 5000 --hold-s 15 --within-ms 1500 \
    --within-ms 5000 --ready "$DIR/idle.ready" --out "$DIR/idle.json" 2>>"$DIR/idle.load.log" & local load=$!
  STARTED+=("$load")
  for i in $(seq 1 200); do [ -s "$DIR/idle.ready" ] && break; sleep 0.1; done
  [ -s "$DIR/idle.ready" ] || { echo "  the idle connections were not in place after 20 s"; return 1; }
  for i in 1 2 3 4 5; do
    out=$(curl "${tap[@]}" "http://127.0.0.1:$port/c/$token")
    code=${out% *}; t=$(awk -v s="${out#* }" 'BEGIN { printf "%.1f", s * 1000 }')
    codes="$codes$code "; times="$times$t "
    worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
    sleep 0.1
  done
  wait "$load" || { echo "  the idle load generator failed"; return 1; }
  local j="$DIR/idle.json"
  info "idle: $(jq -r '"\(.connected) connected (\(.connect_errors) errors) in \(.connect_phase_ms | floor) ms, \(.open_after_connect) open once all were connected, peak \(.peak_open) open; closed: \(.all.closed), 50% by \(.all.closed_p50_ms) ms, 99% by \(.all.closed_p99_ms) ms, all by \(.all.closed_all_ms) ms (half prefaces: all by \(.preface.closed_all_ms) ms)"' "$j")"
  info "new client during the flood: statuses ${codes% }, times ${times% } ms (target 100 ms)"
  check "idle flood: every connection opened" "$(js .connected "$j")" 5500
  check "idle flood: a new client is answered 302" "${codes% }" "302 302 302 302 302"
  holds "idle flood: the new client is not kept waiting (< 2000 ms)" "$(lt "$worst" 2000)" "slowest $worst ms"
  holds "idle flood: held until the deadline (< 1 % closed within 1.5 s)" \
    "$(js '(.all.closed_within["1500"] * 100 < .all.connections) | if . then 1 else 0 end' "$j")" \
    "$(js '.all.closed_within["1500"]' "$j") of $(js .all.connections "$j")"
  holds "idle flood: closed by the deadline (>= 99 % within deadline + 3 s)" \
    "$(js '(.all.closed_within["5000"] * 100 >= .all.connections * 99) | if . then 1 else 0 end' "$j")" \
    "$(js '.all.closed_within["5000"]' "$j") of $(js .all.connections "$j") within 5000 ms"
  stop_proxy "$pid"
}

# 5. Taps at a moderate fixed rate, without and then with a concurrent flood of unsigned
# postbacks at full speed, on the database path (the path that shares the database with
# postbacks; edge-path taps never touch it). The issue's target, flood p99 <= 2x quiet p99, is
# printed, not asserted (timing). Asserted: zero tap errors during the flood and, against the
# failure mode of taps queueing behind postbacks for database connections (503s, or waits up to
# the 2 s request timeout), a flood p99 under 500 ms. (50 ms would be the target's order of
# magnitude, but a 2-core machine under other load, with a debug build of the extension, shows
# tap p99s of 50-130 ms with no postback in sight.)
postback_flood() {
  local port=18205 pid flood qa qb
  start_proxy flood "$port" "$DB" || return 1
  pid=$PROXY_PID
  # Warm-up: the pool's sessions load and compile the classifier on their first clicks.
  taps warmup "$port" 200 2 || { echo "  the load generator failed"; return 1; }
  taps quiet "$port" 200 5 || { echo "  the load generator failed"; return 1; }
  timeout 60 "$LOAD" postbacks --url-base "http://127.0.0.1:$port" --connections 32 --duration-s 7 \
    --max-requests 2000000 --timeout-ms 3000 --out "$DIR/postbacks.json" 2>>"$DIR/postbacks.load.log" & flood=$!
  STARTED+=("$flood")
  sleep 1
  taps flooded "$port" 200 5 || { echo "  the load generator failed"; return 1; }
  wait "$flood" || { echo "  the postback flood failed"; return 1; }
  qa=$(js .latency.p99_ms "$DIR/quiet.json"); qb=$(js .latency.p99_ms "$DIR/flooded.json")
  info "taps without the flood: $(summary "$DIR/quiet.json")"
  info "taps with the flood:    $(summary "$DIR/flooded.json")"
  info "flood: $(jq -r '"\(.requests) postbacks, status \(.status | tostring), \(.connect_errors) connect errors, \(.timeouts) timeouts, \(.achieved_rate | floor)/s"' "$DIR/postbacks.json")"
  info "tap p99 $qa ms quiet, $qb ms flooded: ratio $(ratio "$qb" "$qa") (target <= 2)"
  check "postback flood: zero tap errors" "$(js .errors "$DIR/flooded.json") $(js '.requests > 0' "$DIR/flooded.json")" "0 true"
  holds "postback flood: tap p99 under 500 ms" "$(lt "$qb" 500)" "p99 $qb ms"
  stop_proxy "$pid"
}

# request_times DB TIMES: clicks of the stream whose clicked_at is not between the moment its
# request was sent and the moment its answer was complete (1 ms of slack for rounding), as
# "N outside". The exact form of "the click keeps its original request time".
request_times() {
  psql_q -At -d "$1" <<SQL
CREATE TEMP TABLE span (i int PRIMARY KEY, sent bigint NOT NULL, done bigint NOT NULL);
\\copy span FROM '$2'
SELECT count(*) FILTER (WHERE k.clicked_at < to_timestamp(s.sent / 1e6) - interval '1 ms'
                           OR k.clicked_at > to_timestamp(s.done / 1e6) + interval '1 ms') || ' outside'
  FROM smslink.click k
  JOIN smslink.campaign c ON c.id = k.campaign_id
  JOIN span s ON s.i = substring(k.referrer FROM 's([0-9]+)\$')::int
 WHERE c.name = 'stream';
SQL
}

# 6. The same click stream (tests/faults/stream.sql: 200 requests, bots, previews, HEAD,
# prefetch, burst and timing signals, X-Forwarded-For through a trusted proxy) sent one request
# at a time, at the same pace and relative to the same delivery times, through the database
# path and through the edge path, into two databases made the same way: the rows must agree
# on everything but ids and absolute times. Timing, exactly: in each run, every click's time
# lies within its own request (sent .. answered, from the load generator's clock); across the
# runs, seconds since delivery agree within 0.5 s (the pacing is the same, but a loaded 2-core
# machine can hold back one request of one run by 100 ms or more).
same_rows() {
  local mode port db pid t0 args out
  for mode in dbpath edge; do
    db="faults_$mode"; port=18206; args=(--trusted-proxies 127.0.0.1/32)
    [ "$mode" = edge ] && { port=18207; args+=(--spool-dir "$DIR/spool-$mode"); }
    fresh_db "$db" || return 1
    psql_q -d "$db" -f tests/faults/setup.sql >/dev/null || return 1
    start_proxy "rows-$mode" "$port" "$db" "${args[@]}" || return 1
    pid=$PROXY_PID
    if [ "$mode" = edge ]; then wait_warm "$port" "$db" || return 1; fi
    # Warm-up on the load campaign: each pooled session compiles the classifier on its first
    # click, which would otherwise delay the first requests of the stream and shift its timing.
    sql "SELECT l.token FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
           JOIN smslink.campaign c ON c.id = m.campaign_id WHERE c.name = 'load'" "$db" >"$DIR/tokens-$mode" || return 1
    TOKENS="$DIR/tokens-$mode" taps "warm-$mode" "$port" 100 2 || { echo "  warm-up failed"; return 1; }
    if [ "$mode" = edge ]; then wait_drained "$port" || return 1; fi
    psql_q -At -F $'\t' -d "$db" -f tests/faults/stream.sql >"$DIR/stream-$mode.tsv" || return 1
    t0=$(( $(now_ms) + 1500 ))
    psql_q -d "$db" -v t0="$t0" -f tests/faults/deliver.sql >/dev/null || return 1
    timeout 60 "$LOAD" replay --url-base "http://127.0.0.1:$port" --stream "$DIR/stream-$mode.tsv" \
      --interval-ms 20 --start-unix-ms "$t0" --codes "$DIR/codes-$mode" --times "$DIR/times-$mode" \
      --out "$DIR/replay-$mode.json" \
      2>>"$DIR/replay.load.log" || { echo "  replay through the $mode proxy failed"; return 1; }
    if [ "$mode" = edge ]; then wait_drained "$port" || return 1; fi
    psql_q -At -d "$db" -f tests/faults/rows.sql >"$DIR/rows-$mode" || return 1
    out=$(request_times "$db" "$DIR/times-$mode") || return 1
    check "same stream, $mode: every click time lies within its request (from send to answer)" "$out" "0 outside"
    info "$mode: $(jq -r '"\(.requests) requests, status \(.status | tostring), p99 \(.latency.p99_ms) ms"' "$DIR/replay-$mode.json"), $(wc -l <"$DIR/rows-$mode") rows, classes $(cut -d'|' -f2 "$DIR/rows-$mode" | sort | uniq -c | awk '{printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1}')"
    stop_proxy "$pid"
  done
  check "same stream: the same answers from both paths" "$(cmp -s "$DIR/codes-dbpath" "$DIR/codes-edge" && echo same || echo differ)" same
  check "same stream: one row per request, both paths" "$(wc -l <"$DIR/rows-dbpath") $(wc -l <"$DIR/rows-edge")" \
    "$(wc -l <"$DIR/stream-edge.tsv") $(wc -l <"$DIR/stream-edge.tsv")"
  local diffs
  diffs=$(awk -F'|' -v tol=0.5 '
    NR == FNR { a[FNR] = $0; n = FNR; next }
    { b = $0; split(a[FNR], x, "|"); split(b, y, "|"); ok = 1
      for (i = 1; i < NF; i++) if (x[i] != y[i]) ok = 0
      s = x[NF]; t = y[NF]
      if ((s == "null") != (t == "null")) ok = 0
      else if (s != "null") { d = (s > t) ? s - t : t - s; if (d > maxd) maxd = d; if (d > tol) ok = 0 }
      if (!ok) { bad++; if (bad <= 5) print "    dbpath: " a[FNR] "\n    edge:   " b } }
    END { if (FNR != n) print "    row counts differ"; printf "%d %.3f\n", bad, maxd }' "$DIR/rows-dbpath" "$DIR/rows-edge")
  local last; last=$(tail -n 1 <<<"$diffs")
  [ "${last% *}" = 0 ] || head -n -1 <<<"$diffs"
  info "largest difference in seconds since delivery: ${last#* } s (tolerance 0.5 s)"
  check "same stream: identical rows (class, reasons, is_first, device, method, expired, link, timing)" "${last% *}" 0
  local fields; fields=$(cut -d'|' -f2,3,4 "$DIR/rows-edge" | sort -u | wc -l)
  info "the stream covered $fields distinct (class, reasons, is_first) combinations"
}

# --- set-up and run ----------------------------------------------------------------------------

ensure_packages jq
# 5,500 idle sockets in one proxy and one load generator: the soft limit is often 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 12000 ] || die "need 12,000 open files (ulimit -Hn is $(ulimit -Hn))"
log "building smslink-proxy and smslink-load (release)"
cargo build --release -q -p smslink-proxy --bins
if [ "${SMSLINK_EXTENSION_INSTALLED:-0}" != 1 ]; then install_extension debug; fi
rm -rf "$DIR"; mkdir -p "$DIR"
cluster_start
PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql_q -d "$DB" -c "CREATE EXTENSION smslink" -f tests/faults/setup.sql >/dev/null
# Every tap of checks 1-5 comes from 127.0.0.1 across 2,000 messages: the burst signals would
# (rightly) call that address a scanner and cost a lookup per click; they are not what these
# checks are about. Check 6 keeps them on, in its own databases.
psql_q -d "$DB" -c "ALTER DATABASE $DB SET smslink.classifier_burst_ip_messages = 0" \
  -c "ALTER DATABASE $DB SET smslink.classifier_burst_token_ips = 0" >/dev/null
sql "SELECT l.token FROM smslink.link l JOIN smslink.message m ON m.id = l.message_id
       JOIN smslink.campaign c ON c.id = m.campaign_id WHERE c.name = 'load'" >"$DIR/tokens"

HELP="$("$BIN" --help)"
has_flag() { grep -q -- "$1" <<<"$HELP"; }
run_check() { # run_check NUMBER NAME FUNCTION [REQUIRED-FLAG...]
  local number="$1" name="$2" fn="$3" flag before=$FAILS; shift 3
  if [ -n "${SMSLINK_FAULTS_ONLY:-}" ] && [[ " $SMSLINK_FAULTS_ONLY " != *" $number "* ]]; then return 0; fi
  log "faults $number: $name"
  for flag in "$@"; do
    if ! has_flag "$flag"; then
      echo "  FAIL the proxy has no $flag (smslink-proxy --help)"; FAILS=$((FAILS + 1))
      RESULTS+=("$number $name: FAILED (no $flag)"); return 0
    fi
  done
  local t0=$SECONDS
  if ! "$fn"; then echo "  FAIL $name: the check could not run to the end"; FAILS=$((FAILS + 1)); fi
  if [ "$FAILS" = "$before" ]; then RESULTS+=("$number $name: ok ($((SECONDS - t0)) s)"); else RESULTS+=("$number $name: FAILED"); fi
}
run_check 1 "kill -9 during load" kill_during_load --spool-dir
run_check 2 "PostgreSQL stopped hard" postgres_down --spool-dir
run_check 3 "PostgreSQL frozen" postgres_frozen --spool-dir
run_check 4 "idle connection flood" idle_flood --first-request-timeout-ms --spool-dir
run_check 5 "postback flood" postback_flood
run_check 6 "database path vs edge path rows" same_rows --spool-dir

echo
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILS" = 0 ]; then echo "faults: all checks passed"; else echo "faults: $FAILS failed"; exit 1; fi
