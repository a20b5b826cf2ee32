# shellcheck shell=bash
# scripts/lib/venv.sh — sourced (not run) by the scripts that need pinned Python packages in the
# repo's one venv: scripts/backends.sh (peers and test clients) and scripts/k8s-validate.sh
# (manifest validators). The caller sets VENV (the venv's path) and VENV_LOG (the file pip's
# output is appended to), and defines log and die. BACKENDS_NO_INSTALL=1 forbids installing: a
# missing package is then an error that says what to run.

# pip_has PACKAGE VERSION: the venv has exactly that version installed
pip_has() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$1" "$2" 2>/dev/null
}

# ensure_venv SPEC...: venv at $VENV with these pinned pip specs (NAME==VERSION, NAME[extra]==VERSION)
# installed; makes the venv if there is none.
ensure_venv() {
  local missing=() spec name version
  for spec in "$@"; do
    name=${spec%%==*}
    name=${name%%\[*}
    version=${spec##*==}
    pip_has "$name" "$version" || missing+=("$spec")
  done
  [ ${#missing[@]} = 0 ] && return 0
  [ "${BACKENDS_NO_INSTALL:-0}" = 1 ] && die "$VENV lacks ${missing[*]}: run 'python3 -m venv $VENV && $VENV/bin/pip install ${missing[*]}' (BACKENDS_NO_INSTALL=1 forbids installing here)"
  command -v python3 >/dev/null || die "python3 is required (apt-get install python3 python3-venv)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV" >>"$VENV_LOG" 2>&1 ||
      die "python3 -m venv $VENV failed: install the venv module (apt-get install python3-venv); see $VENV_LOG"
  fi
  log "pip install ${missing[*]} into $VENV (one-time, ~1 min)"
  "$VENV/bin/pip" install -q "${missing[@]}" >>"$VENV_LOG" 2>&1 ||
    die "pip install ${missing[*]} failed (see $VENV_LOG)"
}
