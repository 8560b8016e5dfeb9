#!/usr/bin/env bash
# `make bench`: benchmarks as ratios against baselines measured in the same run.
#   1. the token codec in core (encode/decode vs raw FF1; forged-token acceptance);
#   2. prepare_messages (100,000 messages) vs a bare INSERT of the same rows;
#   3. choose_variant vs a built-in function call; incrementality vs hand-written SQL.
# BENCH_N and BENCH_ROUNDS override the defaults (100000, 3).
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_cargo_pgrx
log "token codec (core)"
cargo bench -q -p smslink-core --bench tokens
cargo bench -q -p smslink-core --bench classify
install_extension release
cluster_start
trap cluster_stop EXIT
fresh_db smslink_bench
log "prepare_messages vs bare INSERT"
psql_q -d smslink_bench -v n="${BENCH_N:-100000}" -v rounds="${BENCH_ROUNDS:-3}" -f bench/prepare_messages.sql
log "choose_variant vs a built-in function call (200,000 calls per round, one session)"
fresh_db smslink_bench_bandit
psql_q -d smslink_bench_bandit -v rounds="${BENCH_ROUNDS:-3}" -f bench/choose_variant.sql

# 3. track_click against the durability ceiling, in the database (no HTTP): pgbench, same client
#    count and duration for (b) a primary-key lookup plus a one-row insert into a table shaped like
#    smslink.click, (a) track_click with valid tokens, (d) track_click with forged tokens. Each
#    script first fetches its token by a random number, identically.
CLIENTS="${BENCH_CLIENTS:-8}"
SECS="${BENCH_SECONDS:-15}"
log "track_click vs lookup+insert baseline (pgbench, $CLIENTS clients, ${SECS}s each)"
fresh_db smslink_bench_click
psql_q -d smslink_bench_click -f bench/track_click/setup.sql
out="$ROOT/target/bench-track"; rm -rf "$out"; mkdir -p "$out"
[ "$(id -u)" = 0 ] && chmod 777 "$out"
declare -A TPS P50 P99
for name in baseline track_click forged; do
  "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -l --log-prefix="$out/$name" \
    -f "bench/track_click/$name.pgbench" smslink_bench_click > "$out/$name.txt" 2>&1 \
    || { cat "$out/$name.txt"; die "pgbench $name failed"; }
  TPS[$name]=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out/$name.txt" | tail -n1)
  # Per-transaction latencies (µs, third column) from pgbench's logs.
  cat "$out/$name".[0-9]* | awk '{print $3}' | sort -n > "$out/$name.lat"
  n=$(wc -l < "$out/$name.lat")
  P50[$name]=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.2f", $1 / 1000}' "$out/$name.lat")
  P99[$name]=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.2f", $1 / 1000}' "$out/$name.lat")
done
printf '\n%-34s %12s %10s %10s\n' "script ($CLIENTS clients, ${SECS}s)" "tps" "p50 ms" "p99 ms"
for name in baseline track_click forged; do
  printf '%-34s %12.0f %10s %10s\n' "$name" "${TPS[$name]}" "${P50[$name]}" "${P99[$name]}"
done
awk -v a="${TPS[track_click]}" -v b="${TPS[baseline]}" -v d="${TPS[forged]}" 'BEGIN {
  printf "\ntrack_click / baseline (a/b): %.2f   forged / track_click (d/a): %.2f\n", a / b, d / a }'
psql_q -d smslink_bench_click -At -c "SELECT 'clicks logged: ' || count(*) FROM smslink.click" \
  -c "SELECT 'rejected: ' || string_agg(reason || '=' || count, ', ') FROM smslink.rejected_requests()"

# 4. Last, so that its bulk load (and the autovacuum after it) does not share the machine with
#    the pgbench runs above.
log "incrementality on a 1,000,000-subscriber campaign with a 10% holdout vs hand-written SQL"
fresh_db smslink_bench_holdout
psql_q -d smslink_bench_holdout -v rounds="${BENCH_ROUNDS:-3}" -v n="${BENCH_HOLDOUT_N:-1000000}" -f bench/incrementality.sql
