#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS_PER_TARGET] — runs Vigil's cargo-fuzz targets (fuzz/fuzz_targets/):
#   event   POST /v1/events bodies through JSON parsing and ToolCallEvent::parse
#   otlp    POST /v1/traces bodies (protobuf and JSON) through decoding and the span mapping
#   redact  agent JSON with planted credentials through the Redactor (complete, idempotent)
# Each target runs SECONDS_PER_TARGET seconds (default $VIGIL_FUZZ_SECONDS, else 20: the short
# run of scripts/test.sh). A long run: scripts/fuzz.sh 1800, or one target:
#   FUZZ_TARGETS=redact scripts/fuzz.sh 3600
# Installs cargo-fuzz (pinned) into .tools/ at the repo root if it is missing. The stable
# toolchain runs libFuzzer through RUSTC_BOOTSTRAP=1 (no nightly needed); no sanitizer (the
# code is safe Rust: we look for panics, aborts, timeouts and unbounded allocation, which
# libFuzzer reports with -rss_limit_mb and -malloc_limit_mb). Corpora live in fuzz/corpus/
# (not committed), seeded from fuzz/seeds/ with the dictionary fuzz/dicts/json.dict; a crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${1:-${VIGIL_FUZZ_SECONDS:-20}}
TARGETS=${FUZZ_TARGETS:-event otlp redact}
. "$ROOT/scripts/lib/tools.sh"
cargo_tool fuzz 0.13.2
export RUSTC_BOOTSTRAP=1
# The fuzz build has its own target folder (instrumented artifacts never mix with the main ones).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"
# Line tables are enough for a crash's backtrace and make each instrumented binary (every target
# links all of Vigil) a fraction of the size to write and link.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
# Build every target before fuzzing any, so a build failure is told apart from a finding. A
# linker killed by a signal (a bus error when the disk or memory runs short) is the machine, not
# the code: the build is tried once more after printing what the machine has left.
build() {
  : >fuzz/build.log
  for target in $TARGETS; do
    cargo fuzz build --dev --sanitizer none "$target" >>fuzz/build.log 2>&1 || return 1
  done
}
if ! build; then
  tail -n 20 fuzz/build.log >&2
  echo "[fuzz] build failed; disk and memory now:" >&2
  df -h "$CARGO_TARGET_DIR" >&2 || true
  free -m >&2 || true
  if grep -q 'terminated with signal' fuzz/build.log && build; then
    echo "[fuzz] the second build succeeded" >&2
  else
    tail -n 40 fuzz/build.log >&2
    echo "[fuzz] FAILED to build the fuzz targets (the log in fuzz/build.log)" >&2
    exit 1
  fi
fi
for target in $TARGETS; do
  mkdir -p "fuzz/corpus/$target"
  echo "[fuzz] $target for ${SECS}s" >&2
  log="fuzz/$target.log"
  # The committed seeds (fuzz/seeds/<target>) start the corpus; what the run learns stays in
  # fuzz/corpus/<target>. One dictionary of JSON syntax, field names and credential prefixes.
  if ! cargo fuzz run --dev --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -dict=fuzz/dicts/json.dict -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "[fuzz] $target FAILED: the input is in fuzz/artifacts/$target/, the log in $log" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|Done [0-9]+ runs)' "$log" | sed "s/^/[fuzz] $target: /" >&2 || true
done
echo "[fuzz] all targets ran clean" >&2
