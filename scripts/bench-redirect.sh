#!/usr/bin/env bash
# `make bench-redirect`: the click path over real HTTP on loopback, against the machine's limits,
# all in one run with the same client count and duration:
#   (a) wrk -> smslink-proxy -> smslink.track_click, random valid tokens;
#   (b) pgbench: a primary-key lookup plus a one-row insert into a table shaped like
#       smslink.click, one round trip per click (the durability ceiling);
#   (c) wrk -> nginx answering `return 302` (the HTTP ceiling);
#   (d) wrk -> smslink-proxy with forged tokens;
#   (e) wrk -> smslink-proxy paced to half of (a)'s rate, for p99 at half peak.
#   (f) as (a), with the sessions' smslink.classifier_context off: the classifier's cost is 1 - a/f.
#   (g) wrk -> smslink-proxy on the edge path: warm link cache, durable spool (grouped fsync),
#       shipper ingesting in bulk. Reported: the HTTP rate, the rate the shipper committed during
#       the same run, and the time the spool took to drain after it; the sustained edge rate is
#       the smaller of the two rates. Then (g) paced at half its peak, for its p99.
# Rounds alternate (b, a, c, d, f, g) and the median round is reported. Every run is bounded by
# BENCH_SECONDS. Knobs: BENCH_CLIENTS (32), BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_POOL
# (proxy pool size, 2), BENCH_OUT (target/bench-redirect), BENCH_LAYOUT (split or shared).
#
# Layout. An edge proxy runs far from the database, and a load test's clients are not on the
# database server either. BENCH_LAYOUT=split (the default on a machine with 2 or more CPUs)
# plays two machines on one: PostgreSQL (postmaster and every backend) runs on the first half
# of the CPUs, and everything else (wrk, pgbench, the proxies, nginx) on the second half, for
# every configuration alike. BENCH_LAYOUT=shared lets the scheduler put anything anywhere, so
# that the database's work and the HTTP side's take CPU from each other.
source "$(dirname "$0")/common.sh"
ensure_packages wrk nginx
ensure_cargo_pgrx
CLIENTS="${BENCH_CLIENTS:-32}"
SECS="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
POOL="${BENCH_POOL:-2}"
OUT="${BENCH_OUT:-$ROOT/target/bench-redirect}"
PROXY_PORT=18190
NGINX_PORT=18191
BASE_PORT=18192
EDGE_PORT=18193
DB=smslink_bench_http

NCPU=$(nproc)
LAYOUT="${BENCH_LAYOUT:-$([ "$NCPU" -ge 2 ] && echo split || echo shared)}"
case "$LAYOUT" in
  split)
    [ "$NCPU" -ge 2 ] || die "BENCH_LAYOUT=split needs 2 or more CPUs"
    DB_CPUS="0-$((NCPU / 2 - 1))"; LOAD_CPUS="$((NCPU / 2))-$((NCPU - 1))" ;;
  shared) DB_CPUS="0-$((NCPU - 1))"; LOAD_CPUS="$DB_CPUS" ;;
  *) die "BENCH_LAYOUT is split or shared, not $LAYOUT" ;;
esac
# on_load CMD...: runs CMD on the load side's CPUs (in the foreground: servers started in the
# background call taskset themselves, so that $! is the server and cleanup can stop it).
on_load() { taskset -c "$LOAD_CPUS" "$@"; }

install_extension release
log "building smslink-proxy (release)"
cargo build -q --release -p smslink-proxy
rm -rf "$OUT"; mkdir -p "$OUT/nginx-tmp"
[ "$(id -u)" = 0 ] && chmod 777 "$OUT"
cluster_start
# The postmaster and its running processes move to the database's CPUs; backends forked later
# inherit them.
for p in $(pgrep -u postgres -f "$PGDATA" ; pgrep -u postgres -P "$(head -n1 "$PGDATA/postmaster.pid")"); do
  taskset -a -p -c "$DB_CPUS" "$p" >/dev/null 2>&1 || true
done
log "layout: $LAYOUT (database on CPUs $DB_CPUS, load and proxies on CPUs $LOAD_CPUS)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cluster_stop
}
trap cleanup EXIT

fresh_db "$DB"
psql_q -d "$DB" -f bench/track_click/setup.sql
psql_q -d "$DB" -c "DROP ROLE IF EXISTS bench_redirector" \
  -c "CREATE ROLE bench_redirector LOGIN IN ROLE smslink_proxy" \
  -c "DROP ROLE IF EXISTS bench_redirector_base" \
  -c "CREATE ROLE bench_redirector_base LOGIN IN ROLE smslink_proxy" \
  -c "ALTER ROLE bench_redirector_base SET smslink.classifier_context = off"
psql_q -d "$DB" -At -c "SELECT token FROM bench.token ORDER BY i" > "$OUT/tokens.txt"
psql_q -d "$DB" -At -c "SELECT token FROM bench.forged ORDER BY i" > "$OUT/forged.txt"
read -r LO HI < <(psql_q -d "$DB" -At -F ' ' -c "SELECT min(id), max(id) FROM smslink.link")

SMSLINK_DATABASE_URL="host=$PGSOCK port=$PGPORT user=bench_redirector dbname=$DB" RUST_LOG=warn \
  taskset -c "$LOAD_CPUS" "$ROOT/target/release/smslink-proxy" --listen "127.0.0.1:$PROXY_PORT" --pool-size "$POOL" \
  --trusted-proxies 127.0.0.1/32 \
  >"$OUT/proxy.log" 2>&1 & PIDS+=($!)
# (f): the same proxy whose sessions classify from the request alone (no database context).
SMSLINK_DATABASE_URL="host=$PGSOCK port=$PGPORT user=bench_redirector_base dbname=$DB" RUST_LOG=warn \
  taskset -c "$LOAD_CPUS" "$ROOT/target/release/smslink-proxy" --listen "127.0.0.1:$BASE_PORT" --pool-size "$POOL" \
  --trusted-proxies 127.0.0.1/32 \
  >"$OUT/proxy-base.log" 2>&1 & PIDS+=($!)
# (g): the edge path, its spool on this machine's disk.
SMSLINK_DATABASE_URL="host=$PGSOCK port=$PGPORT user=bench_redirector dbname=$DB" RUST_LOG=warn \
  taskset -c "$LOAD_CPUS" "$ROOT/target/release/smslink-proxy" --listen "127.0.0.1:$EDGE_PORT" --pool-size "$POOL" \
  --trusted-proxies 127.0.0.1/32 --spool-dir "$OUT/spool" \
  >"$OUT/proxy-edge.log" 2>&1 & PIDS+=($!)
sed -e "s#@DIR@#$OUT#g" -e "s#@PORT@#$NGINX_PORT#g" bench/redirect/nginx.conf.in > "$OUT/nginx.conf"
taskset -c "$LOAD_CPUS" nginx -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" >"$OUT/nginx.log" 2>&1 & PIDS+=($!)
for url in "http://127.0.0.1:$PROXY_PORT/healthz" "http://127.0.0.1:$BASE_PORT/healthz" "http://127.0.0.1:$EDGE_PORT/healthz" "http://127.0.0.1:$NGINX_PORT/"; do
  ok=""
  for _ in $(seq 1 50); do
    curl -s -o /dev/null -m 2 "$url" && { ok=1; break; }
    sleep 0.2
  done
  [ -n "$ok" ] || { tail -n 20 "$OUT"/*.log; die "$url did not come up"; }
done
# Answers from a stale server left on these ports would be measured instead of ours.
for p in "${PIDS[@]}"; do
  kill -0 "$p" 2>/dev/null || { tail -n 20 "$OUT"/*.log; die "a server exited at start (port in use?)"; }
done

# wrk_run NAME PORT TOKENS [DELAY_MS]: prints "rps p50 p99 requests status_errors socket_errors".
wrk_run() {
  BENCH_TOKENS="$3" BENCH_DELAY_MS="${4:-0}" timeout $((SECS + 30)) \
    taskset -c "$LOAD_CPUS" wrk -t 2 -c "$CLIENTS" -d "${SECS}s" -s bench/redirect/wrk.lua "http://127.0.0.1:$2" \
    > "$OUT/$1.txt" 2>&1 || { cat "$OUT/$1.txt" >&2; die "wrk $1 failed"; }
  sed -n 's/^RESULT requests=\([0-9]*\) rps=\([0-9.]*\) p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\) max_ms=[0-9.]* status_errors=\([0-9]*\) socket_errors=\([0-9]*\)$/\2 \3 \4 \1 \5 \6/p' "$OUT/$1.txt"
}

pgbench_run() {
  on_load "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -D lo="$LO" -D hi="$HI" \
    -l --log-prefix="$OUT/$1" -f bench/redirect/baseline.pgbench "$DB" > "$OUT/$1.txt" 2>&1 \
    || { cat "$OUT/$1.txt" >&2; die "pgbench failed"; }
  local tps n
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$OUT/$1.txt" | tail -n1)
  cat "$OUT/$1".[0-9]* | awk '{print $3}' | sort -n > "$OUT/$1.lat"
  rm -f "$OUT/$1".[0-9]*
  n=$(wc -l < "$OUT/$1.lat")
  awk -v n="$n" -v tps="$tps" '
    NR == int(n * 0.50) + 1 { p50 = $1 / 1000 }
    NR == int(n * 0.99) + 1 { p99 = $1 / 1000 }
    END { printf "%s %.3f %.3f %d 0 0\n", tps, p50, p99, n }' "$OUT/$1.lat"
}

clicks() { psql_q -d "$DB" -At -c "SELECT count(*) FROM smslink.click"; }
wait_edge_warm "$EDGE_PORT" "$DB" 120 || die "the edge proxy's cache did not fill"

# edge_run NAME [DELAY_MS]: (g), plus "shipped_per_s drain_s" appended to wrk_run's fields.
# The shipper's rate is the clicks it committed during wrk's run, over the run's length.
edge_run() {
  local before after t0 t1 drained res
  before=$(proxy_metric "$EDGE_PORT" smslink_proxy_spool_shipped_total)
  t0=$(date +%s.%N)
  res=$(wrk_run "$1" "$EDGE_PORT" "$OUT/tokens.txt" "${2:-0}")
  t1=$(date +%s.%N)
  after=$(proxy_metric "$EDGE_PORT" smslink_proxy_spool_shipped_total)
  wait_spool_drained "$EDGE_PORT" 60 || die "(g) $1: the spool did not drain within 60 s"
  drained=$(date +%s.%N)
  awk -v r="$res" -v a="$before" -v b="$after" -v t0="$t0" -v t1="$t1" -v d="$drained" \
    'BEGIN { printf "%s %.0f %.2f\n", r, (b - a) / (t1 - t0), d - t1 }'
}

declare -A RES
for r in $(seq 1 "$ROUNDS"); do
  log "round $r of $ROUNDS: $CLIENTS clients, ${SECS}s per run"
  RES[b.$r]=$(pgbench_run "b$r")
  before=$(clicks)
  RES[a.$r]=$(wrk_run "a$r" "$PROXY_PORT" "$OUT/tokens.txt")
  after=$(clicks)
  read -r _ _ _ n _ _ <<< "${RES[a.$r]}"
  # Every answered click is in the table (wrk may stop with a few requests answered but not
  # yet counted, so the table can be a little ahead, never behind).
  [ "$((after - before))" -ge "$n" ] || die "round $r: wrk counted $n redirects but only $((after - before)) clicks were logged"
  RES[c.$r]=$(wrk_run "c$r" "$NGINX_PORT" "$OUT/tokens.txt")
  RES[d.$r]=$(wrk_run "d$r" "$PROXY_PORT" "$OUT/forged.txt")
  RES[f.$r]=$(wrk_run "f$r" "$BASE_PORT" "$OUT/tokens.txt")
  before=$(clicks)
  RES[g.$r]=$(edge_run "g$r")
  after=$(clicks)
  read -r _ _ _ n _ _ _ _ <<< "${RES[g.$r]}"
  [ "$((after - before))" -ge "$n" ] || die "round $r: wrk counted $n edge redirects but only $((after - before)) clicks were logged"
  for k in b a c d f g; do printf '  %s: %s\n' "$k" "${RES[$k.$r]}"; done
done

# The median round by throughput, per configuration.
median() {
  local k=$1 r
  for r in $(seq 1 "$ROUNDS"); do echo "${RES[$k.$r]}"; done | sort -n -k1,1 | sed -n "$(( (ROUNDS + 1) / 2 ))p"
}
declare -A M
for k in a b c d f g; do M[$k]=$(median "$k"); done
read -r A_RPS _ <<< "${M[a]}"

# (e) half of (a)'s peak: a short calibration run measures the per-request time at the paced
# rate, then each connection waits so that all together send half the peak rate.
HALF=$(awk -v a="$A_RPS" 'BEGIN { printf "%.0f", a / 2 }')
DELAY=$(awk -v c="$CLIENTS" -v h="$HALF" 'BEGIN { d = c * 1000 / h; printf "%.3f", (d < 1 ? 1 : d) }')
log "half rate: target $HALF clicks/s"
SAVED=$SECS; SECS=3
read -r cal_rps _ <<< "$(wrk_run e-calibrate "$PROXY_PORT" "$OUT/tokens.txt" "$DELAY")"
SECS=$SAVED
DELAY=$(awk -v c="$CLIENTS" -v h="$HALF" -v r="$cal_rps" -v d="$DELAY" 'BEGIN {
  per = c * 1000 / r - d; x = c * 1000 / h - per; printf "%.3f", (x < 1 ? 1 : x) }')
M[e]=$(wrk_run e "$PROXY_PORT" "$OUT/tokens.txt" "$DELAY")

# (h) = (g) paced at half of (g)'s sustained rate (the smaller of its HTTP and shipping rates).
read -r G_RPS _ _ _ _ _ G_SHIP _ <<< "${M[g]}"
G_SUST=$(awk -v a="$G_RPS" -v b="$G_SHIP" 'BEGIN { print (a < b ? a : b) }')
G_HALF=$(awk -v a="$G_SUST" 'BEGIN { printf "%.0f", a / 2 }')
log "edge half rate: target $G_HALF clicks/s"
DELAY=$(awk -v c="$CLIENTS" -v h="$G_HALF" 'BEGIN { d = c * 1000 / h; printf "%.3f", (d < 1 ? 1 : d) }')
SAVED=$SECS; SECS=3
read -r cal_rps _ <<< "$(edge_run h-calibrate "$DELAY")"
SECS=$SAVED
DELAY=$(awk -v c="$CLIENTS" -v h="$G_HALF" -v r="$cal_rps" -v d="$DELAY" 'BEGIN {
  per = c * 1000 / r - d; x = c * 1000 / h - per; printf "%.3f", (x < 1 ? 1 : x) }')
M[h]=$(edge_run h "$DELAY")

{
  printf '%s\n' "make bench-redirect: $CLIENTS clients, ${SECS}s per run, median of $ROUNDS rounds, proxy pool $POOL, layout $LAYOUT (database on CPUs $DB_CPUS, load on $LOAD_CPUS)"
  printf '%-46s %10s %9s %9s %10s\n' "configuration" "req/s" "p50 ms" "p99 ms" "requests"
  declare -A names=([a]="(a) proxy + track_click" [b]="(b) pgbench lookup + insert (ceiling)" \
         [c]="(c) nginx return 302 (HTTP ceiling)" [d]="(d) proxy, forged tokens" \
         [e]="(e) proxy + track_click at half of (a)" \
         [f]="(f) (a) without the classifier's DB context" \
         [g]="(g) edge path: cache + spool (HTTP rate)" [h]="(h) edge path at half of (g)")
  for k in a b c d e f g h; do
    read -r rps p50 p99 n _ _ <<< "${M[$k]}"
    printf '%-46s %10.0f %9s %9s %10s\n' "${names[$k]}" "$rps" "$p50" "$p99" "$n"
  done
  read -r b_rps _ <<< "${M[b]}"; read -r c_rps _ <<< "${M[c]}"; read -r d_rps _ <<< "${M[d]}"
  read -r e_rps _ e_p99 _ <<< "${M[e]}"; read -r f_rps _ <<< "${M[f]}"
  awk -v a="$A_RPS" -v b="$b_rps" -v c="$c_rps" -v d="$d_rps" -v e="$e_rps" -v p="$e_p99" -v f="$f_rps" 'BEGIN {
    printf "\na/b = %.2f (target >= 0.8)   a/c = %.3f   d/a = %.2f (target >= 3)\n", a / b, a / c, d / a
    printf "a/f = %.2f: the full classifier costs %.0f%% of throughput (target <= 15%%)\n", a / f, 100 * (1 - a / f)
    printf "p99 at %.0f req/s (%.0f%% of peak) = %s ms (target <= 10)\n", e, 100 * e / a, p }'
  read -r g_rps _ _ _ _ _ g_ship g_drain <<< "${M[g]}"
  read -r h_rps _ h_p99 _ _ _ _ _ <<< "${M[h]}"
  awk -v g="$g_rps" -v s="$g_ship" -v dr="$g_drain" -v b="$b_rps" -v c="$c_rps" -v h="$h_rps" -v p="$h_p99" 'BEGIN {
    sus = (g < s ? g : s)
    printf "\n(g) edge path: HTTP %.0f req/s, shipper committed %.0f clicks/s during the run, spool drained %.1f s after it (target <= 10)\n", g, s, dr
    printf "sustained (g) / (b) = %.2f (target >= 2, moonshot 3)   (g) / (c) = %.2f (target >= 0.3)\n", sus / b, g / c
    printf "p99 of (g) at %.0f req/s (half its sustained peak) = %s ms (target <= 5)\n", h, p }'
  psql_q -d "$DB" -At -c "SELECT 'clicks logged: ' || count(*) FROM smslink.click" \
    -c "SELECT 'rejected: ' || string_agg(reason || '=' || count, ', ') FROM smslink.rejected_requests()"
} | tee "$OUT/summary.txt"
