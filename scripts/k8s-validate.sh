#!/usr/bin/env bash
# scripts/k8s-validate.sh — offline checks of the deployment files; scripts/test.sh runs it.
#
#   deploy/kubernetes/   every object against the JSON schema of Kubernetes $KUBERNETES_VERSION,
#                        strictly (unknown fields and kinds are errors), from the schemas the PyPI
#                        package kubernetes-validate carries; with kubectl on PATH, also what
#                        `kubectl kustomize` renders from kustomization.yaml. Then what a schema
#                        cannot say (scripts/lib/deploy_checks.py): non-root numeric users,
#                        read-only roots, no privileges, resources, probes, replicas 3, the PDB,
#                        Service and NetworkPolicy selecting the pods, secrets only as files.
#   docker-compose.yml   against the compose-spec schema check-jsonschema carries
#                        (vendor.compose-spec), then its replicas' structure.
#   Dockerfile           FROM rust:<rust-toolchain.toml's channel>, numeric USER equal to the
#                        pods' runAsUser:runAsGroup, HEALTHCHECK.
# Every check is proven able to fail each run: the Python checks break the files in memory one
# way at a time (--self-test) and the compose schema is shown a broken copy; a break that goes
# unreported fails the script.
#
# Installs its two validators, pinned, into the repo's venv (scripts/lib/venv.sh: the venv
# scripts/backends.sh uses, BACKENDS_VENV to move it; BACKENDS_NO_INSTALL=1 forbids installing).
# Needs no network once they are installed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The oldest Kubernetes minor still maintained upstream when this was written; kubernetes-validate
# 1.37.0 carries the schemas of 1.25 to 1.37.
KUBERNETES_VERSION=1.35.0
SPECS=("kubernetes-validate==1.37.0" "check-jsonschema==0.39.0")

log() { printf '[k8s-validate] %s\n' "$*" >&2; }
die() {
  printf '[k8s-validate] ERROR: %s\n' "$*" >&2
  exit 1
}
VENV=${BACKENDS_VENV:-$ROOT/.venv}
VENV_LOG=$(mktemp "${TMPDIR:-/tmp}/vigil-k8s-validate-install.XXXXXX")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-k8s-validate.XXXXXX")
# the pip log is kept when the run failed (die names it when pip did)
cleanup() {
  local rc=$?
  rm -rf "$WORK"
  [ "$rc" != 0 ] || rm -f "$VENV_LOG"
}
trap cleanup EXIT
# shellcheck source=scripts/lib/venv.sh
. "$ROOT/scripts/lib/venv.sh"
ensure_venv "${SPECS[@]}"

rendered=()
if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/kubernetes >"$WORK/rendered.yaml" || die "kubectl kustomize deploy/kubernetes failed"
  rendered=(--rendered "$WORK/rendered.yaml")
else
  log "kubectl not found: each manifest is validated, the kustomize rendering is not"
fi
"$VENV/bin/python" scripts/lib/deploy_checks.py --kubernetes-version "$KUBERNETES_VERSION" "${rendered[@]}" --self-test ||
  die "deployment files: see the FAIL lines above"

"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml ||
  die "docker-compose.yml does not match the compose-spec schema"
# the schema check can fail: a misspelt service key must be refused
sed 's/^    stop_grace_period:/    stop_grace_periode:/' docker-compose.yml >"$WORK/docker-compose.yml"
cmp -s docker-compose.yml "$WORK/docker-compose.yml" && die "self-test: found no stop_grace_period to misspell in docker-compose.yml"
if "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$WORK/docker-compose.yml" >/dev/null 2>&1; then
  die "self-test: the compose-spec schema accepted a misspelt key (stop_grace_periode)"
fi
echo "ok: docker-compose.yml matches the compose-spec schema (and a misspelt key is refused)"
