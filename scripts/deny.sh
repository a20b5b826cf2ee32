#!/usr/bin/env bash
# scripts/deny.sh — checks the dependency graph against deny.toml with cargo-deny:
#   licenses    every crate's license is on the allow-list
#   bans        no wildcard version requirements; duplicate versions are reported (warnings)
#   sources     every crate comes from crates.io
#   advisories  no crate with a RustSec advisory (vulnerable, unmaintained, yanked) — only when a
#               copy of the RustSec database is at hand, since fetching it needs github.com:
#                 VIGIL_DENY_ADVISORIES=1 scripts/deny.sh   fetches (or updates) it, then checks;
#                 otherwise a copy cargo-deny fetched before ($CARGO_HOME/advisory-dbs) is used
#                 as it is, offline; with none, the check is skipped and the run says so.
# Installs cargo-deny (pinned) into .tools/ at the repo root if it is missing. scripts/test.sh
# runs it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. "$ROOT/scripts/lib/tools.sh"
cargo_tool deny 0.20.2

DB_DIR="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if [ "${VIGIL_DENY_ADVISORIES:-0}" = 1 ]; then
  echo "[deny] advisories: fetching the RustSec database into $DB_DIR" >&2
  cargo deny --locked check
elif compgen -G "$DB_DIR/*/" >/dev/null; then
  echo "[deny] advisories: checked against the local RustSec database in $DB_DIR (not updated; VIGIL_DENY_ADVISORIES=1 updates it)" >&2
  cargo deny --frozen check
else
  echo "[deny] advisories: SKIPPED — no RustSec database in $DB_DIR, and fetching one needs github.com;" \
    "where it is reachable, run VIGIL_DENY_ADVISORIES=1 scripts/deny.sh" >&2
  cargo deny --locked check licenses bans sources
fi
