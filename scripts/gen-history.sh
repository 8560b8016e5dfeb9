#!/usr/bin/env bash
# Generates a realistic, deterministic year of history (bench/history/generate.sql) into a
# database of the running local cluster (scripts/common.sh: SMSLINK_PGPORT, SMSLINK_PGDATA).
#
#   scripts/gen-history.sh [--fresh] DB [SCALE]
#
# --fresh drops and recreates DB with the extension first; without it, DB must exist, have the
# extension, and hold no smslink data yet. SCALE defaults to 1 (1 M subscribers, 10 M messages,
# ~1 M clicks, ~100 k conversions, ~300 k email touchpoints; a few minutes); 0.001 is instant.
# The cluster must be running (cluster_start). Records the scale and fingerprints of the
# generator and of the installed extension script in public.bench_meta.
source "$(dirname "$0")/common.sh"

fresh=0
if [ "${1:-}" = --fresh ]; then fresh=1; shift; fi
db="${1:?usage: scripts/gen-history.sh [--fresh] DB [SCALE]}"
scale="${2:-1}"
[[ "$scale" =~ ^[0-9]*\.?[0-9]+$ ]] || die "SCALE must be a positive number (got $scale)"
[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB must be a plain lower-case identifier (got $db)"

# Fingerprints: of this generator, and of the extension script the database is created from (a
# database keeps the functions of the CREATE EXTENSION it had, whatever is installed later).
# (comment lines do not count: editing a comment does not force a regeneration)
gen_fp() { grep -v '^[[:space:]]*--' "$ROOT/bench/history/generate.sql" | md5sum | cut -c1-12; }
ext_fp() {
  local dir; dir="$("$PG_CONFIG" --sharedir)/extension"
  cat "$dir"/smslink--*.sql 2>/dev/null | md5sum | cut -c1-12
}

psql_q -d postgres -c "SELECT 1" >/dev/null 2>&1 || die "no PostgreSQL on $PGHOST port $PGPORT: start the cluster first"
if [ "$fresh" = 1 ]; then
  log "recreating database $db"
  fresh_db "$db"
fi
log "generating history into $db at scale $scale"
start=$(date +%s)
psql_q -d "$db" -v scale="$scale" -v generator="$(gen_fp)" -v ext_sql="$(ext_fp)" \
  ${REAL_TOKENS:+-v real_tokens="$REAL_TOKENS"} -f "$ROOT/bench/history/generate.sql"
log "history generated in $(( $(date +%s) - start )) s"
