#!/usr/bin/env bash
# `make bench`: benchmarks as ratios against baselines measured in the same run.
#   1. the token codec in core (encode/decode vs raw FF1; forged-token acceptance);
#   2. prepare_messages (100,000 messages) vs a bare INSERT of the same rows.
# BENCH_N and BENCH_ROUNDS override the defaults (100000, 3).
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_cargo_pgrx
log "token codec (core)"
cargo bench -q -p smslink-core --bench tokens
install_extension release
cluster_start
trap cluster_stop EXIT
fresh_db smslink_bench
log "prepare_messages vs bare INSERT"
psql_q -d smslink_bench -v n="${BENCH_N:-100000}" -v rounds="${BENCH_ROUNDS:-3}" -f bench/prepare_messages.sql
