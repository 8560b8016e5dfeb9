#!/usr/bin/env bash
# `make test`: every tier, then one summary line. Exits non-zero on any failure.
source "$(dirname "$0")/common.sh"

declare -a RESULTS=()
FAILED=0
step() { # step NAME COMMAND...
  local name="$1"; shift
  log "$name"
  if "$@"; then RESULTS+=("$name: ok"); else RESULTS+=("$name: FAILED"); FAILED=1; fi
}

ensure_packages
ensure_cargo_pgrx

hygiene() {
  cargo fmt --all -- --check && cargo clippy --all-targets -q -- -D warnings
}

core_tests() { cargo test -q -p smslink-core --release; }

pg_tests() {
  if [ "$(id -u)" = 0 ]; then
    # The test server runs as postgres, which must own its data directory's parent.
    mkdir -p "$ROOT/target/pgrx-test-data"
    chown postgres:postgres "$ROOT/target/pgrx-test-data"
    cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$ROOT/target/pgrx-test-data"
  else
    cargo pgrx test "pg$PG_MAJOR"
  fi
}

regress() {
  install_extension debug
  cluster_start
  trap cluster_stop EXIT
  local pgxs regress_bin out="$ROOT/target/regress"
  pgxs="$("$PG_CONFIG" --pgxs)"
  regress_bin="$(dirname "$pgxs")/../test/regress/pg_regress"
  rm -rf "$out"; mkdir -p "$out"
  local tests
  tests=$(sed -n 's/^test: //p' tests/pg_regress/schedule)
  "$regress_bin" --use-existing --host="$PGSOCK" --port="$PGPORT" --user=postgres \
    --inputdir=tests/pg_regress --outputdir="$out" --dbname=smslink_regress $tests \
    || { cat "$out/regression.diffs" 2>/dev/null | head -n 200; return 1; }
}

step "fmt+clippy" hygiene
step "core tests" core_tests
step "pg_test" pg_tests
step "pg_regress" regress

echo
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILED" = 0 ]; then
  echo "SUMMARY: all test tiers passed (${#RESULTS[@]} of ${#RESULTS[@]})"
else
  echo "SUMMARY: FAILED"
  exit 1
fi
