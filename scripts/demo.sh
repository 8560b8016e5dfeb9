#!/usr/bin/env bash
# `make demo`: a 10,000-message campaign end to end on a private local cluster.
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_cargo_pgrx
install_extension release
cluster_start
trap cluster_stop EXIT
fresh_db smslink_demo
log "running demo/demo.sql"
psql_q -d smslink_demo -f demo/demo.sql
log "demo finished (re-run to start over; docs/operations.md shows how to look around)"
