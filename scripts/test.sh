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

# pg_dump/restore of the regress database keeps every row, and (with the keys restored as
# docs/operations.md says) every token still resolves. Runs on the cluster regress started.
dump_restore() {
  local dump="$ROOT/target/smslink_regress.dump" keys="$ROOT/target/token_keys.csv" before after
  rm -f "$dump" "$keys"
  "$PGBIN/pg_dump" -Fc -d smslink_regress -f "$dump" || return 1
  psql_q -d smslink_regress -c "\\copy smslink.token_key TO '$keys' CSV" || return 1
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS smslink_restored" -c "CREATE DATABASE smslink_restored" || return 1
  "$PGBIN/pg_restore" --exit-on-error -d smslink_restored "$dump" || return 1
  psql_q -d smslink_restored -c "TRUNCATE smslink.token_key" \
    -c "\\copy smslink.token_key FROM '$keys' CSV" \
    -c "SELECT setval('smslink.token_key_version_seq', (SELECT max(version) FROM smslink.token_key))" >/dev/null || return 1
  before="$(psql_q -d smslink_regress -f tests/dump_restore/fingerprint.sql)" || return 1
  after="$(psql_q -d smslink_restored -f tests/dump_restore/fingerprint.sql)" || return 1
  echo "before: $before"
  echo "after:  $after"
  [ -n "$before" ] && [ "$before" = "$after" ] || { echo "dump/restore changed the data"; return 1; }
}

# 32 concurrent clients send 20,000 clicks (10 per message, shuffled) over 2,000 messages, each
# click its own transaction: every click is logged and each message gets exactly one first click.
concurrency() {
  local dir="$ROOT/target/concurrency" clients=32 expected
  rm -rf "$dir"; mkdir -p "$dir"
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres \
    -c "DROP DATABASE IF EXISTS smslink_concurrency" -c "CREATE DATABASE smslink_concurrency" || return 1
  psql_q -d smslink_concurrency -c "CREATE EXTENSION smslink" || return 1
  psql_q -d smslink_concurrency -f tests/concurrency/setup.sql || return 1
  psql_q -At -d smslink_concurrency -c "
    SELECT format('SELECT 1 FROM smslink.track_click(%L, %L, %L, %L, NULL, NULL, NULL);',
                  l.token, 'c.conc.example', 'GET', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) Mobile/15E148')
      FROM smslink.link l, generate_series(1, 10) ORDER BY random()" > "$dir/all.sql" || return 1
  split -n "l/$clients" -d -a 2 "$dir/all.sql" "$dir/client." || return 1
  local pids=() f
  for f in "$dir"/client.*; do
    timeout 300 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d smslink_concurrency -f "$f" >/dev/null &
    pids+=($!)
  done
  local failed=0 p
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" = 0 ] || { echo "a client failed"; return 1; }
  expected="clicks 20000 human 20000 clicked_messages 2000 first_clicks 2000 messages_without_exactly_one_first 0 first_click_at_set 2000 first_click_matches 2000"
  local got
  got="$(psql_q -d smslink_concurrency -f tests/concurrency/check.sql)" || return 1
  echo "got:      $got"
  echo "expected: $expected"
  [ "$got" = "$expected" ]
}

step "fmt+clippy" hygiene
step "core tests" core_tests
step "pg_test" pg_tests
step "pg_regress" regress
step "dump/restore" dump_restore
step "click concurrency" concurrency

echo
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILED" = 0 ]; then
  echo "SUMMARY: all test tiers passed (${#RESULTS[@]} of ${#RESULTS[@]})"
else
  echo "SUMMARY: FAILED"
  exit 1
fi
