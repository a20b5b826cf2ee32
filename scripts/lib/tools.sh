# scripts/lib/tools.sh — sourced (not run) by the scripts that need a pinned cargo subcommand:
# scripts/deny.sh (cargo-deny) and scripts/fuzz.sh (cargo-fuzz). They set ROOT first.

# cargo_tool NAME VERSION: puts $ROOT/.tools/bin first on PATH and installs cargo-NAME VERSION
# there (one-time) unless `cargo NAME --version` already reports that version.
cargo_tool() {
  local name=$1 version=$2 tools="$ROOT/.tools"
  export PATH="$tools/bin:$PATH"
  if ! cargo "$name" --version 2>/dev/null | grep -q "$version"; then
    echo "[$name] installing cargo-$name $version into $tools (one-time)" >&2
    cargo install --quiet --locked --root "$tools" "cargo-$name" --version "$version"
  fi
}
