# Shared set-up for the Makefile targets. Source it; it defines functions only.
# Works on a fresh Debian 12 machine, as root or as an ordinary user with sudo.
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

toml() { sed -n "s/^$1 *= *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" "$ROOT/pgrx.toml" | head -n1; }
CARGO_PGRX_VERSION="$(toml cargo_pgrx_version)"
PG_MAJOR="$(toml pg_major)"
PG_CONFIG="$(toml pg_config)"
PGPORT="${SMSLINK_PGPORT:-$(toml port)}"
PGBIN="$("$PG_CONFIG" --bindir 2>/dev/null || echo "/usr/lib/postgresql/$PG_MAJOR/bin")"
PGDATA="${SMSLINK_PGDATA:-$ROOT/target/pgdata}"
PGSOCK="/tmp/smslink-$PGPORT"
export PGHOST="$PGSOCK" PGPORT PGUSER=postgres

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

# Runs a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ensure_packages [EXTRA...]: the build and test packages, plus any extra ones a command needs.
ensure_packages() {
  local want=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo pkg-config libssl-dev curl openssl "$@")
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # The packaged cluster is not ours: we start our own on a private port.
  [ -x "$PG_CONFIG" ] || die "pg_config not found at $PG_CONFIG (see pgrx.toml)"
}

ensure_cargo_pgrx() {
  command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup first)"
  grep -q "^pgrx = \"=$CARGO_PGRX_VERSION\"" Cargo.toml \
    || die "Cargo.toml pins a pgrx other than $CARGO_PGRX_VERSION (pgrx.toml); make them agree"
  if ! cargo pgrx --version 2>/dev/null | grep -q " $CARGO_PGRX_VERSION\$"; then
    log "installing cargo-pgrx $CARGO_PGRX_VERSION (about 5-8 minutes, once)"
    cargo install cargo-pgrx --version "$CARGO_PGRX_VERSION" --locked
  fi
  local cfg="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
  if ! grep -q "pg$PG_MAJOR *= *\"$PG_CONFIG\"" "$cfg" 2>/dev/null; then
    log "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG" >/dev/null
  fi
}

# Builds and installs the extension into the system PostgreSQL. $1: "release" or "debug".
install_extension() {
  local profile=()
  [ "${1:-debug}" = release ] && profile=(--release)
  log "building and installing the extension (${1:-debug})"
  if [ -z "$SUDO" ]; then
    cargo pgrx install "${profile[@]}" --pg-config "$PG_CONFIG" >/dev/null
  else
    cargo pgrx install "${profile[@]}" --sudo --pg-config "$PG_CONFIG" >/dev/null
  fi
}

cluster_start() {
  mkdir -p "$ROOT/target"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
    as_owner "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  mkdir -p "$PGSOCK"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGSOCK"
  cluster_stop quiet
  log "starting PostgreSQL $PG_MAJOR on port $PGPORT (socket $PGSOCK)"
  # RUST_BACKTRACE=1 as in a developer's shell: the regress test "privileges" checks that no
  # error a client sees carries a Rust backtrace even then.
  RUST_BACKTRACE=1 as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
    -o "-p $PGPORT -k $PGSOCK -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=2GB" >/dev/null \
    || { tail -n 30 "$PGDATA/server.log" >&2; die "PostgreSQL did not start"; }
}

cluster_stop() {
  if [ -f "$PGDATA/postmaster.pid" ]; then
    [ "${1:-}" = quiet ] || log "stopping PostgreSQL"
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

psql_q() { "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -q "$@"; }

# Recreates database $1 with the extension installed.
fresh_db() {
  PGOPTIONS="-c client_min_messages=warning" psql_q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  psql_q -d "$1" -c "CREATE EXTENSION smslink"
}

# proxy_metric PORT NAME: the value of one unlabelled Prometheus metric of the proxy on PORT.
proxy_metric() {
  curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

# wait_edge_warm PORT DB [SECONDS]: waits until the edge proxy on PORT caches every link of DB.
wait_edge_warm() {
  local want got i
  want=$(psql_q -At -d "$2" -c "SELECT count(*) FROM smslink.link") || return 1
  for i in $(seq 1 $((${3:-30} * 5))); do
    got=$(proxy_metric "$1" smslink_proxy_cache_links)
    [ "${got:-0}" -ge "$want" ] 2>/dev/null && return 0
    sleep 0.2
  done
  echo "the edge cache on port $1 holds ${got:-0} of $want links" >&2; return 1
}

# wait_spool_drained PORT [SECONDS]: waits until the edge proxy on PORT has shipped every
# spooled click to the database.
wait_spool_drained() {
  local got i
  for i in $(seq 1 $((${2:-30} * 5))); do
    got=$(proxy_metric "$1" smslink_proxy_spool_pending)
    [ "$got" = 0 ] && return 0
    sleep 0.2
  done
  echo "the spool of the proxy on port $1 still holds ${got:-?} clicks" >&2; return 1
}
