#!/usr/bin/env bash
# scripts/test.sh — THE test command (README and CI use it).
#
# 0. installs headless Chromium for the dashboard's browser tests (scripts/browser.sh);
# 1. starts the real peers with scripts/backends.sh (BACKENDS, default "postgres vault moto
#    alertmanager") and exports what .backends/env says (VIGIL_TEST_DATABASE_URL,
#    VIGIL_TEST_VAULT_ADDR, VIGIL_TEST_AWS_ENDPOINT_URL, VIGIL_TEST_ALERTMANAGER_URL, ...), so the
#    integration tests find them;
# 2. cargo fmt --check, the deployment files (scripts/k8s-validate.sh: Kubernetes manifests,
#    docker-compose.yml, Dockerfile), cargo deny (scripts/deny.sh), cargo clippy -D warnings,
#    cargo test --all-targets; then a short run of every fuzz target (scripts/fuzz.sh;
#    VIGIL_FUZZ_SECONDS per target);
# 3. on exit, stops the backends this run launched (ones it found running are left alone),
#    unless KEEP_BACKENDS=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every stage prints how long the one before it took, and the run ends with the whole table.
RUN_START=$SECONDS
STAGE=""
STAGE_START=$SECONDS
TIMES=""
stage_done() {
  if [ -n "$STAGE" ]; then
    local took=$((SECONDS - STAGE_START))
    printf -- '-------- %s: %ds (disk free: %s)\n' "$STAGE" "$took" "$(df -h --output=avail . | tail -n 1 | tr -d ' ')"
    TIMES+=$(printf '%6ds  %s' "$took" "$STAGE")$'\n'
  fi
  STAGE=""
}
section() {
  stage_done
  printf '\n======== %s ========\n' "$*"
  STAGE="$*"
  STAGE_START=$SECONDS
}

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || {
    echo "ERROR: $tool not found: install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
  }
done
cargo fmt --version >/dev/null 2>&1 || {
  echo "ERROR: rustfmt missing: rustup component add rustfmt" >&2
  exit 1
}
cargo clippy --version >/dev/null 2>&1 || {
  echo "ERROR: clippy missing: rustup component add clippy" >&2
  exit 1
}

BACKENDS_DIR=.backends
STARTED=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stage_done
  if [ -n "$TIMES" ]; then
    printf '\n======== stage times (total %ds) ========\n%s' "$((SECONDS - RUN_START))" "$TIMES"
  fi
  if [ -n "$STARTED" ]; then
    if [ "${KEEP_BACKENDS:-0}" = 1 ]; then
      section "backends kept running (KEEP_BACKENDS=1): $STARTED"
      echo "stop them with: scripts/backends.sh stop"
    else
      section "stopping backends: $STARTED"
      BACKENDS="$STARTED" scripts/backends.sh stop "$BACKENDS_DIR" || true
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "browser (chromium, chromedriver)"
scripts/browser.sh

export BACKENDS=${BACKENDS:-postgres vault moto alertmanager}
section "backends ($BACKENDS)"
scripts/backends.sh start "$BACKENDS_DIR" >/dev/null
STARTED=$(tr '\n' ' ' <"$BACKENDS_DIR/started" | sed 's/ *$//')
# shellcheck disable=SC1091
. "$BACKENDS_DIR/env"
grep '^export' "$BACKENDS_DIR/env" | sed -E "s/(TOKEN|PASSWORD|SECRET[A-Z_]*)='[^']*'/\1='***'/; s#(://[^:/@]+:)[^@]*@#\1***@#"

# Each integration test makes its own database: drop what earlier runs left behind, and what
# this run makes once it passed (a failed run keeps them for a look).
drop_test_databases() {
  for db in $(psql "$VIGIL_TEST_DATABASE_URL" -XAtqc "select datname from pg_database where datname like 'vigil\_test\_%'"); do
    psql "$VIGIL_TEST_DATABASE_URL" -XAtqc "drop database if exists \"$db\" with (force)" >/dev/null
  done
}
drop_test_databases

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "kubernetes manifests (scripts/k8s-validate.sh: schemas of Kubernetes $(sed -n 's/^KUBERNETES_VERSION=//p' scripts/k8s-validate.sh), offline)"
scripts/k8s-validate.sh

section "cargo deny (scripts/deny.sh: licenses, bans, sources; advisories when a RustSec database is at hand)"
scripts/deny.sh

section "cargo clippy --workspace --all-targets -- -D warnings (Vigil and tests/support)"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test --all-targets"
cargo test --all-targets

section "fuzz (scripts/fuzz.sh, ${VIGIL_FUZZ_SECONDS:-20}s per target; VIGIL_FUZZ_SECONDS for longer)"
scripts/fuzz.sh

drop_test_databases
stage_done
printf '\n======== all checks passed ========\n'

