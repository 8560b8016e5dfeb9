#!/usr/bin/env bash
# `make bench-attribution`, `make bench-metrics` and `make bench-retention`: on a generated year
# of history, the attribution functions (bench/history/attribution.sql), the metric functions
# (bench/history/metrics.sql) or smslink.apply_retention (bench/history/retention.sql, on a copy
# of the history) against hand-written SQL doing the same work, timed in the same run.
#
#   scripts/bench-history.sh attribution|metrics|retention
#
# The history (scale 1: 1 M subscribers, 10 M messages, ~1 M clicks, 100 k conversions, 300 k
# email touchpoints) lives in database smslink_history and takes a few minutes to generate; it
# is made only when that database is missing, was made at another scale or by another
# version of the generator, or was created from another build of the extension's SQL (a
# database keeps the functions of its CREATE EXTENSION). public.bench_meta records all three.
#
# Environment:
#   BENCH_SCALE (1)       history scale; 0.01 gives a quick run
#   BENCH_ROUNDS (5)      counted rounds, after one warm-up round
#   BENCH_FROM, BENCH_TO  the conversion window (2026-06-01 .. 2026-07-01 UTC)
#   BENCH_DB              database name (smslink_history)
#   BENCH_REGEN=1         regenerate the history even if it looks current
#   BENCH_REUSE=1         reuse the history even if the extension's SQL changed since
#   BENCH_BASELINES_ONLY=1  time only the hand-written queries
#   BENCH_JIT=on          keep JIT on (default off for both sides: see bench/history/attribution.sql)
#   BENCH_SKIP_INSTALL=1  do not build and install the extension
#   SMSLINK_PGPORT, SMSLINK_PGDATA  another cluster (see scripts/common.sh)
source "$(dirname "$0")/common.sh"
WHAT="${1:-attribution}"
case "$WHAT" in attribution|metrics|retention) ;; *) die "usage: scripts/bench-history.sh attribution|metrics|retention" ;; esac
SCALE="${BENCH_SCALE:-1}"
DB="${BENCH_DB:-smslink_history}"
FROM="${BENCH_FROM:-2026-06-01 00:00+00}"
TO="${BENCH_TO:-2026-07-01 00:00+00}"
ROUNDS="${BENCH_ROUNDS:-5}"

ensure_packages
if [ -z "${BENCH_SKIP_INSTALL:-}" ]; then
  ensure_cargo_pgrx
  install_extension release
fi
cluster_start
trap cluster_stop EXIT

gen_fp="$(grep -v '^[[:space:]]*--' "$ROOT/bench/history/generate.sql" | md5sum | cut -c1-12)"
ext_fp="$(cat "$("$PG_CONFIG" --sharedir)/extension"/smslink--*.sql 2>/dev/null | md5sum | cut -c1-12)"
meta() {
  psql_q -d "$DB" -At -c "SELECT value FROM public.bench_meta WHERE key = '$1'" 2>/dev/null || true
}
regen=""
if [ -n "${BENCH_REGEN:-}" ]; then
  regen="BENCH_REGEN is set"
elif [ -z "$(psql_q -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  regen="database $DB does not exist"
elif [ -z "$(meta scale)" ]; then
  regen="database $DB holds no complete history (no bench_meta)"
elif ! awk -v a="$(meta scale)" -v b="$SCALE" 'BEGIN { exit !(a + 0 == b + 0) }'; then
  regen="database $DB holds scale $(meta scale), not $SCALE"
elif [ "$(meta generator)" != "$gen_fp" ]; then
  regen="bench/history/generate.sql changed since $DB was generated"
elif [ "$(meta ext_sql)" != "$ext_fp" ] && [ -z "${BENCH_REUSE:-}" ]; then
  regen="the installed extension SQL changed since $DB was generated (BENCH_REUSE=1 keeps it)"
fi
if [ -n "$regen" ]; then
  log "generating the history: $regen"
  bash "$ROOT/scripts/gen-history.sh" --fresh "$DB" "$SCALE"
else
  log "reusing the history in $DB (scale $SCALE, generated $(meta generated_at))"
fi

if [ "$WHAT" = retention ]; then
  copy="${DB}_retention"
  log "apply_retention vs hand-written SQL on a copy of $DB ($copy), ${BENCH_ROUNDS:-3} rounds"
  psql_q -d postgres -c "DROP DATABASE IF EXISTS $copy" -c "CREATE DATABASE $copy TEMPLATE $DB"
  status=0
  psql_q -d "$copy" -v rounds="${BENCH_ROUNDS:-3}" -f "$ROOT/bench/history/retention.sql" || status=$?
  psql_q -d postgres -c "DROP DATABASE IF EXISTS $copy"
  exit $status
fi
if [ "$WHAT" = metrics ]; then
  log "metric functions vs hand-written SQL, $ROUNDS rounds"
  psql_q -d "$DB" -v rounds="$ROUNDS" -f "$ROOT/bench/history/metrics.sql"
  exit 0
fi
log "attribution over [$FROM, $TO): smslink.attribute vs hand-written SQL, $ROUNDS rounds"
baselines_only=false
[ -n "${BENCH_BASELINES_ONLY:-}" ] && baselines_only=true
psql_q -d "$DB" -v from="$FROM" -v to="$TO" -v rounds="$ROUNDS" -v baselines_only="$baselines_only" \
  -v jit="${BENCH_JIT:-off}" \
  -f "$ROOT/bench/history/attribution.sql"
