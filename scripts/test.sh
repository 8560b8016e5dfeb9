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

core_tests() { cargo test -q -p smslink-core --release; }

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
