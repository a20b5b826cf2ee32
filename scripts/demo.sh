#!/usr/bin/env bash
# scripts/demo.sh — THE one command to see Vigil work, on a fresh machine.
#
# Brings up PostgreSQL (the server on 127.0.0.1:5432 if one answers, else a private cluster) and
# an OpenBao dev server with scripts/backends.sh; (re)creates the database vigil_demo; builds and
# starts Vigil; stores a GitHub token for two tenants in OpenBao; creates tenants acme and globex
# with bindings to those secrets (and initech); sends 90 minutes of normal traffic for each (event
# time), then a burst of 60 calls for acme in the current minute and one call by initech's agent
# naming globex's repository; shows what Vigil found, the incident, the rotations, and that only
# the attacked tenants' secrets got a new version. acme's agent also holds a dynamic database
# credential from OpenBao's database engine (on the same PostgreSQL): the demo logs in with it
# before the attack and shows the login refused after it. Then it keeps Vigil running for you to
# explore until Ctrl-C, which stops Vigil and the backends this script started.
#
# Environment:
#   VIGIL_LISTEN=127.0.0.1:8080   where Vigil listens
#   KEEP_BACKENDS=1               leave the backends running on exit
#   DEMO_NO_WAIT=1                do not wait for Ctrl-C: shut down after the demo and exit 0
#                                 only if every check passed (for automation)
#   VIGIL_BIN=PATH                use this vigil binary instead of cargo build --release
# Needs: the Rust toolchain, python3, curl, jq, PostgreSQL (curl/jq/PostgreSQL are installed
# with apt when missing and this runs as root, or with sudo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BACKENDS_DIR=$ROOT/.backends
LOG=$BACKENDS_DIR/logs/vigil.log
LISTEN=${VIGIL_LISTEN:-127.0.0.1:8080}
DEMO_DB=vigil_demo

if [ -t 1 ]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' Y=$'\033[33m' N=$'\033[0m'; else B="" G="" R="" Y="" N=""; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '%sWARNING: %s%s\n' "$Y" "$*" "$N" >&2; }
die() {
  printf '%sERROR: %s%s\n' "$R" "$*" "$N" >&2
  exit 1
}

# ---------------------------------------------------------------- prerequisites
apt_get() {
  if [ "$(id -u)" = 0 ]; then
    apt-get "$@"
  elif command -v sudo >/dev/null; then
    sudo apt-get "$@"
  else
    return 1
  fi
}
need() { # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null && return 0
  command -v apt-get >/dev/null || die "$1 is missing: install $2"
  say "installing $2 (for $1)"
  { apt_get update -q && DEBIAN_FRONTEND=noninteractive apt_get install -y -q --no-install-recommends "$2"; } >/dev/null ||
    die "$1 is missing and 'apt-get install $2' failed: install $2"
  command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}
command -v cargo >/dev/null || die "cargo is missing: install the Rust toolchain (https://rustup.rs)"
command -v python3 >/dev/null || die "python3 is missing: apt-get install python3"
need curl curl
need jq jq

case $LISTEN in
  \[*\]:*) HOST=${LISTEN%]:*}; HOST=${HOST#[}; PORT=${LISTEN##*:} ;;
  *:*) HOST=${LISTEN%:*}; PORT=${LISTEN##*:} ;;
  *) die "VIGIL_LISTEN must be HOST:PORT, got '$LISTEN'" ;;
esac
case $HOST in 0.0.0.0 | "" | "::") HOST=127.0.0.1 ;; esac
case $HOST in *:*) API="http://[$HOST]:$PORT" ;; *) API="http://$HOST:$PORT" ;; esac
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  die "$HOST:$PORT is already in use (another demo still running?): stop it, or set VIGIL_LISTEN=127.0.0.1:8081"
fi

# ---------------------------------------------------------------- cleanup
VIGIL_PID=""
STARTED=""
CLEANED=0
# shellcheck disable=SC2317  # invoked from traps
cleanup() {
  [ "$CLEANED" = 1 ] && return 0
  CLEANED=1
  local i
  if [ -n "$VIGIL_PID" ] && kill -0 "$VIGIL_PID" 2>/dev/null; then
    say "stopping vigil (pid $VIGIL_PID)"
    kill -TERM "$VIGIL_PID" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$VIGIL_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$VIGIL_PID" 2>/dev/null; then
      warn "vigil did not stop within 15 s; killing it"
      kill -KILL "$VIGIL_PID" 2>/dev/null || true
    fi
    wait "$VIGIL_PID" 2>/dev/null || true
  fi
  if [ -n "$STARTED" ]; then
    if [ "${KEEP_BACKENDS:-0}" = 1 ]; then
      say "leaving backends running (KEEP_BACKENDS=1): $STARTED — stop them with: scripts/backends.sh stop"
    else
      say "stopping backends: $STARTED"
      BACKENDS="$STARTED" scripts/backends.sh stop "$BACKENDS_DIR" || true
    fi
  fi
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'echo; say "interrupted: shutting down"; cleanup; exit 0' INT TERM

# ---------------------------------------------------------------- backends
say "starting PostgreSQL and OpenBao (scripts/backends.sh)"
BACKENDS="postgres vault" scripts/backends.sh start "$BACKENDS_DIR" >/dev/null
STARTED=$(tr '\n' ' ' <"$BACKENDS_DIR/started" | sed 's/ *$//')
# shellcheck disable=SC1091
. "$BACKENDS_DIR/env"
VAULT=$VIGIL_TEST_VAULT_ADDR
VAULT_TOKEN=$VIGIL_TEST_VAULT_TOKEN
need psql postgresql-client

say "creating a fresh database $DEMO_DB (the demo starts from a clean slate each run)"
DEMO_DATABASE_URL=$(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$VIGIL_TEST_DATABASE_URL" "$DEMO_DB")
if [ -n "$(psql "$VIGIL_TEST_DATABASE_URL" -XAtqc "SELECT 1 FROM pg_database WHERE datname = '$DEMO_DB'")" ]; then
  psql "$VIGIL_TEST_DATABASE_URL" -XAtqc "DROP DATABASE $DEMO_DB WITH (FORCE)" >/dev/null
fi
psql "$VIGIL_TEST_DATABASE_URL" -XAtqc "CREATE DATABASE $DEMO_DB" >/dev/null
info "$DEMO_DATABASE_URL"

# ---------------------------------------------------------------- vigil
if [ -n "${VIGIL_BIN:-}" ]; then
  BIN=$VIGIL_BIN
  say "using the prebuilt $BIN (VIGIL_BIN; no cargo build)"
  [ -x "$BIN" ] || die "VIGIL_BIN=$BIN is not an executable"
else
  say "building vigil (cargo build --release)"
  cargo build --release
  BIN=$ROOT/target/release/vigil
  [ -x "$BIN" ] || die "$BIN not found after cargo build --release"
fi

VIGIL_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
VIGIL_REDACTION_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export VIGIL_DATABASE_URL=$DEMO_DATABASE_URL
export VIGIL_LISTEN=$LISTEN
export VIGIL_ADMIN_TOKEN VIGIL_REDACTION_KEY
export VIGIL_VAULT_ADDR=$VAULT
export VIGIL_VAULT_TOKEN=$VAULT_TOKEN
ADMIN=$VIGIL_ADMIN_TOKEN

say "vigil migrate"
"$BIN" migrate

DASHBOARD_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
say "vigil user add responder --role responder (dashboard login)"
printf '%s\n' "$DASHBOARD_PASSWORD" | "$BIN" user add responder --role responder

say "vigil serve (log: $LOG)"
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
# own session: Ctrl-C reaches this script only, and cleanup() stops vigil with SIGTERM
setsid "$BIN" serve >>"$LOG" 2>&1 </dev/null &
VIGIL_PID=$!
ready=0
for ((i = 0; i < 600; i++)); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/readyz" || true)" = 200 ]; then
    ready=1
    break
  fi
  if ! kill -0 "$VIGIL_PID" 2>/dev/null; then
    tail -n 30 "$LOG" >&2 || true
    die "vigil serve exited during startup (log above, full log in $LOG)"
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || {
  tail -n 30 "$LOG" >&2 || true
  die "vigil did not answer GET /readyz with 200 within 60 s (log in $LOG)"
}
info "ready at $API (pid $VIGIL_PID)"

# ---------------------------------------------------------------- HTTP helpers
CODE="" BODY=""
# api METHOD PATH TOKEN [BODY|@FILE]: sets CODE and BODY
api() {
  local out args=(-sS -X "$1" -H "Authorization: Bearer $3" -w '\n%{http_code}')
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  out=$(curl "${args[@]}" "$API$2") || die "curl $1 $API$2 failed"
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
# bao METHOD PATH [BODY]: the OpenBao HTTP API with the root token; sets CODE and BODY
bao() {
  local out args=(-sS -X "$1" -H "X-Vault-Token: $VAULT_TOKEN" -w '\n%{http_code}')
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  out=$(curl "${args[@]}" "$VAULT$2") || die "curl $1 $VAULT$2 failed"
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
expect() { # expect CODE WHAT
  [ "$CODE" = "$1" ] && return 0
  printf '%s\n' "$BODY" | jq . 2>/dev/null >&2 || printf '%s\n' "$BODY" >&2
  die "$2: expected HTTP $1, got $CODE"
}
kv_version() { # kv_version TENANT -> current_version of secret/tenants/TENANT/github
  bao GET "/v1/secret/metadata/tenants/$1/github"
  expect 200 "read OpenBao metadata of tenants/$1/github"
  jq -r .data.current_version <<<"$BODY"
}

# pg_login USER PASSWORD: logs in to the demo's PostgreSQL over TCP as USER; prints
# current_user, or the server's refusal (and fails)
pg_login() {
  PGPASSWORD=$2 PGCONNECT_TIMEOUT=5 psql "host=$PG_HOST port=$PG_PORT user=$1 dbname=$PG_DB sslmode=disable" \
    -XAtqc 'SELECT current_user' 2>&1
}

# ---------------------------------------------------------------- secrets, tenants, bindings
say "OpenBao's database engine on the demo's PostgreSQL: role demo-acme issues acme's agent its database credential"
read -r PG_HOST PG_PORT PG_DB PG_USER PG_PASSWORD < <(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(p.hostname or "127.0.0.1", p.port or 5432, (p.path or "/postgres").lstrip("/") or "postgres",
      u.unquote(p.username or "postgres"), u.unquote(p.password or "unused-with-trust-auth"))' "$VIGIL_TEST_DATABASE_URL")
bao POST /v1/sys/mounts/database '{"type": "database"}'
[ "$CODE" = 204 ] || grep -q "already in use" <<<"$BODY" || expect 204 "mount OpenBao's database engine"
bao POST /v1/database/config/vigil-demo "$(jq -nc --arg url "postgresql://{{username}}:{{password}}@$PG_HOST:$PG_PORT/$PG_DB?sslmode=disable" \
  --arg u "$PG_USER" --arg p "$PG_PASSWORD" \
  '{plugin_name: "postgresql-database-plugin", connection_url: $url, username: $u, password: $p, allowed_roles: "demo-acme"}')"
[ "${CODE:0:1}" = 2 ] || expect 204 "configure database/config/vigil-demo"
bao POST /v1/database/roles/demo-acme "$(jq -nc '{db_name: "vigil-demo", default_ttl: "1h",
  creation_statements: ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"';"]}')"
[ "${CODE:0:1}" = 2 ] || expect 204 "create database/roles/demo-acme"
bao GET /v1/database/creds/demo-acme
expect 200 "issue acme's agent a database credential (database/creds/demo-acme)"
AGENT_DB_USER=$(jq -r .data.username <<<"$BODY")
AGENT_DB_PASSWORD=$(jq -r .data.password <<<"$BODY")
info "acme's agent holds database user $AGENT_DB_USER (password not shown), lease $(jq -r .lease_id <<<"$BODY")"
if LOGIN=$(pg_login "$AGENT_DB_USER" "$AGENT_DB_PASSWORD"); then
  info "login with it before the attack: ok (current_user = $LOGIN)"
else
  die "the agent's fresh database credential cannot log in: $LOGIN"
fi

TENANTS=(acme globex initech)
declare -A INGEST
say "storing a GitHub token per tenant in OpenBao (KV v2, mount secret/)"
for t in "${TENANTS[@]}"; do
  bao POST "/v1/secret/data/tenants/$t/github" \
    "$(jq -nc --arg v "ghp_demo_placeholder_${t}_$(python3 -c 'import secrets; print(secrets.token_hex(8))')" '{data: {token: $v}}')"
  expect 200 "write secret/tenants/$t/github"
  info "secret/tenants/$t/github -> version $(jq -r .data.version <<<"$BODY")"
done

say "creating tenants and credential bindings"
for t in "${TENANTS[@]}"; do
  case $t in acme) name="Acme Corp" ;; globex) name="Globex Corporation" ;; initech) name="Initech" ;; *) name=$t ;; esac
  api POST /v1/tenants "$ADMIN" "$(jq -nc --arg id "$t" --arg n "$name" '{id: $id, display_name: $n}')"
  expect 201 "POST /v1/tenants ($t)"
  INGEST[$t]=$(jq -r .ingest_token <<<"$BODY")
  info "tenant $t: mode $(jq -r .mode <<<"$BODY"), ingest token ${INGEST[$t]:0:12}…"
  bindings=$(jq -nc --arg p "tenants/$t/github" '[{tools: "github.*", secrets: [{backend: "vault", kind: "kv2", mount: "secret", path: $p}]}]')
  if [ "$t" = acme ]; then
    bindings=$(jq -c '. + [{tools: "*", secrets: [{backend: "vault", kind: "lease_prefix", prefix: "database/creds/demo-acme"}]}]' <<<"$bindings")
  fi
  api PUT "/v1/tenants/$t/bindings" "$ADMIN" "$(jq -nc --argjson b "$bindings" '{bindings: $b}')"
  expect 200 "PUT /v1/tenants/$t/bindings"
  info "tenant $t: github.* -> vault kv2 secret/tenants/$t/github (replaces the stored copy)"
  [ "$t" = acme ] && info "tenant $t: * -> vault lease_prefix database/creds/demo-acme (revokes the agent's database credential)"
done

# ---------------------------------------------------------------- traffic
WORK=$(mktemp -d)
trap 'rc=$?; rm -rf "$WORK"; cleanup; exit $rc' EXIT
# gen_events MODE TENANT OUTDIR: writes batch-NNN.json files of at most 500 events
#   history: 90 minutes ending 2 minutes ago, about 2 github.list_issues calls a minute, jittered
#   burst:   60 github.list_issues calls, all timestamped now
gen_events() {
  python3 - "$@" <<'PY'
import json, os, random, sys, time
from datetime import datetime, timezone

mode, tenant, outdir = sys.argv[1:4]
now = time.time()
repo = {"acme": "acme/web", "globex": "globex/api"}.get(tenant, tenant + "/app")
if mode == "leak":
    # a prompt-injected agent reaching for another tenant's repository
    repo = sys.argv[4]

def ts(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

def event(eid, t, i):
    return {
        "event_id": eid,
        "tenant_id": tenant,
        "timestamp": ts(t),
        "tool": "github.list_issues",
        "params": {"repo": repo, "page": random.choice([1, 1, 1, 2, 3])},
        "outcome": "success",
        "duration_ms": random.randint(80, 400),
        "agent_id": tenant + "-triage-bot",
        "session_id": "%s-s-%d" % (tenant, i // 15),
    }

events = []
if mode == "history":
    start = now - 92 * 60
    n = 0
    for minute in range(90):
        k = random.choice([1, 2, 2, 2, 3])
        for j in range(k):
            t = start + minute * 60 + (j + 0.5) * 60 / k + random.uniform(-8, 8)
            events.append(event("%s-h-%d" % (tenant, n), t, minute))
            n += 1
    events.sort(key=lambda e: e["timestamp"])
elif mode == "burst":
    events = [event("%s-b-%d" % (tenant, n), now, 90) for n in range(60)]
elif mode == "leak":
    events = [event("%s-x-0" % tenant, now, 90)]
else:
    sys.exit("unknown mode " + mode)

for b in range(0, len(events), 500):
    with open(os.path.join(outdir, "batch-%03d.json" % (b // 500)), "w") as f:
        json.dump({"events": events[b:b + 500]}, f)
print(len(events))
PY
}
print_findings() { # the findings of a 202 body, grouped by detector and action
  jq -r '.findings | if length == 0 then "    (no findings)" else
    group_by([.detector, .action]) | map("    \(length) × \(.[0].detector)  severity=\(.[0].severity)  action=\(.[0].action)  incident=\(.[0].incident_id)  first event=\(.[0].event_id)") | .[] end' <<<"$BODY"
}

say "sending 90 minutes of normal traffic per tenant (event time, ~2 github.list_issues calls/min)"
for t in "${TENANTS[@]}"; do
  mkdir -p "$WORK/$t-history"
  total=$(gen_events history "$t" "$WORK/$t-history")
  accepted=0 nfind=0
  for f in "$WORK/$t-history"/batch-*.json; do
    api POST /v1/events "${INGEST[$t]}" "@$f"
    expect 202 "POST /v1/events (history of $t)"
    accepted=$((accepted + $(jq -r '.accepted' <<<"$BODY")))
    nfind=$((nfind + $(jq -r '.findings | length' <<<"$BODY")))
  done
  info "$t: $total events generated, $accepted accepted, $nfind findings"
done

ACME_BEFORE=$(kv_version acme)
GLOBEX_BEFORE=$(kv_version globex)
say "OpenBao before the burst: acme secret version $ACME_BEFORE, globex secret version $GLOBEX_BEFORE"

say "burst: 60 github.list_issues calls for acme in the current minute (one batch)"
mkdir -p "$WORK/acme-burst"
gen_events burst acme "$WORK/acme-burst" >/dev/null
api POST /v1/events "${INGEST[acme]}" "@$WORK/acme-burst/batch-000.json"
expect 202 "POST /v1/events (burst)"
info "accepted $(jq -r .accepted <<<"$BODY"), duplicates $(jq -r .duplicates <<<"$BODY"); findings in the 202 response:"
print_findings

say "waiting for acme's rotations (GET /v1/rotations?tenant=acme, up to 20 s)"
ROTATIONS=""
for ((i = 0; i < 40; i++)); do
  api GET "/v1/rotations?tenant=acme" "$ADMIN"
  expect 200 "GET /v1/rotations"
  ROTATIONS=$(jq -c 'if (.rotations | length) >= 2 and all(.rotations[]; .status != "pending" and .status != "running")
                     then .rotations else empty end' <<<"$BODY")
  [ -n "$ROTATIONS" ] && break
  sleep 0.5
done
ok=1
if [ -n "$ROTATIONS" ]; then
  jq '.[] | {id, status, secret, attempts, effect, verified, result, error} | with_entries(select(.value != null))' <<<"$ROTATIONS"
else
  ok=0
  warn "acme's two rotations did not both reach succeeded/failed within 20 s; rotations now:"
  jq '.rotations | map({id, status, tools, secret, error})' <<<"$BODY"
fi

say "acme's incident (GET /v1/incidents?tenant=acme)"
api GET "/v1/incidents?tenant=acme" "$ADMIN"
expect 200 "GET /v1/incidents"
if [ "$(jq '.incidents | length' <<<"$BODY")" = 0 ]; then
  ok=0
  warn "no incident for acme"
else
  jq '.incidents[0] | {id, status, severity, opened_at, summary, rotations, containment,
      findings: [.findings[:5][] | {detector, severity, tool, event_id, observed, expected, threshold, p_value, explanation}],
      more_findings: ((.findings | length) - 5 | if . > 0 then . else 0 end)}' <<<"$BODY"
  info "what each rotation achieved (containment):"
  jq -r '.incidents[0].containment[] | "      \(.secret): \(.meaning // .status)"' <<<"$BODY"
fi

say "cross-tenant: initech's agent, prompt-injected, lists the issues of globex/api (one call)"
INITECH_BEFORE=$(kv_version initech)
mkdir -p "$WORK/initech-leak"
gen_events leak initech "$WORK/initech-leak" globex/api >/dev/null
api POST /v1/events "${INGEST[initech]}" "@$WORK/initech-leak/batch-000.json"
expect 202 "POST /v1/events (cross-tenant call)"
info "findings in the 202 response:"
print_findings
INITECH_AFTER=$INITECH_BEFORE
for ((i = 0; i < 40; i++)); do
  INITECH_AFTER=$(kv_version initech)
  [ "$INITECH_AFTER" != "$INITECH_BEFORE" ] && break
  sleep 0.5
done

ACME_AFTER=$(kv_version acme)
GLOBEX_AFTER=$(kv_version globex)
say "OpenBao after"
check() { # check DESCRIPTION CONDITION...
  local d=$1
  shift
  if "$@"; then printf '    %s✓ %s%s\n' "$G" "$d" "$N"; else
    printf '    %s✗ %s%s\n' "$R" "$d" "$N"
    ok=0
  fi
}
check "acme:   version $ACME_BEFORE -> $ACME_AFTER (expected +1: rotated)" test "$ACME_AFTER" -eq $((ACME_BEFORE + 1))
check "globex: version $GLOBEX_BEFORE -> $GLOBEX_AFTER (expected unchanged)" test "$GLOBEX_AFTER" -eq "$GLOBEX_BEFORE"
check "initech: version $INITECH_BEFORE -> $INITECH_AFTER (expected +1: its agent reached for globex)" test "$INITECH_AFTER" -eq $((INITECH_BEFORE + 1))
rotation_of() { # rotation_of KIND FIELD: a field of acme's rotation of that kind
  [ -n "$ROTATIONS" ] && jq -r --arg k "$1" --arg f "$2" '[.[] | select(.secret.kind == $k)][0][$f] // "none"' <<<"$ROTATIONS" || echo none
}
check "kv2 rotation: $(rotation_of kv2 status), $(rotation_of kv2 effect) (expected succeeded, stored_copy_replaced)" \
  test "$(rotation_of kv2 status) $(rotation_of kv2 effect)" = "succeeded stored_copy_replaced"
check "lease_prefix rotation: $(rotation_of lease_prefix status), $(rotation_of lease_prefix effect), verified $(rotation_of lease_prefix verified) (expected succeeded, revoked, verified true)" \
  test "$(rotation_of lease_prefix status) $(rotation_of lease_prefix effect) $(rotation_of lease_prefix verified)" = "succeeded revoked true"

say "the database credential acme's agent held, after the attack"
if LOGIN=$(pg_login "$AGENT_DB_USER" "$AGENT_DB_PASSWORD"); then
  check "login as $AGENT_DB_USER refused (it still logs in: $LOGIN)" false
else
  info "$(grep -m1 . <<<"$LOGIN")"
  check "login as $AGENT_DB_USER refused after Vigil's lease_prefix rotation" true
fi

# ---------------------------------------------------------------- explore
say "Vigil is running"
cat <<EOF
    API:          $API   (OpenAPI: $API/v1/openapi.json, metrics: $API/metrics)
    dashboard:    $API/   (user: responder, password: $DASHBOARD_PASSWORD)
    admin token:  $ADMIN
    acme ingest:  ${INGEST[acme]}
    globex ingest: ${INGEST[globex]}
    OpenBao:      $VAULT   (root token: $VAULT_TOKEN)
    log:          $LOG

    Try:
      export VIGIL=$API ADMIN=$ADMIN
      curl -s -H "Authorization: Bearer \$ADMIN" "\$VIGIL/v1/incidents?tenant=acme" | jq
      curl -s -H "Authorization: Bearer \$ADMIN" "\$VIGIL/v1/rotations?tenant=acme" | jq
      curl -s -H "Authorization: Bearer \$ADMIN" "\$VIGIL/v1/tenants/acme/baseline" | jq
      curl -s -H "Authorization: Bearer \$ADMIN" "\$VIGIL/v1/audit?tenant=acme" | jq
      curl -s -X POST -H "Authorization: Bearer \$ADMIN" -H 'Content-Type: application/json' \\
           -d '{"tools":"github.*","reason":"manual test"}' "\$VIGIL/v1/tenants/globex/rotate" | jq
      curl -s -X POST -H "Authorization: Bearer ${INGEST[globex]}" -H 'Content-Type: application/json' \\
           -d '{"events":[{"event_id":"try-1","timestamp":"'\$(date -u +%Y-%m-%dT%H:%M:%SZ)'","tool":"github.list_issues","params":{"repo":"globex/api","page":1},"outcome":"success"}]}' \\
           "\$VIGIL/v1/events" | jq
      curl -s -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT/v1/secret/metadata/tenants/acme/github" | jq .data.current_version
EOF
if [ "$ok" = 1 ]; then
  printf '\n%sdemo checks passed%s\n' "$G" "$N"
else
  printf '\n%sdemo checks FAILED (see above and %s)%s\n' "$R" "$LOG" "$N"
fi

if [ "${DEMO_NO_WAIT:-0}" = 1 ]; then
  if [ "$ok" = 1 ]; then exit 0; else exit 1; fi
fi
printf '\nPress Ctrl-C to stop Vigil%s.\n' "$([ -n "$STARTED" ] && echo " and the backends this script started ($STARTED)")"
rc=0
wait "$VIGIL_PID" || rc=$?
VIGIL_PID=""
die "vigil exited by itself (code $rc); see $LOG"
