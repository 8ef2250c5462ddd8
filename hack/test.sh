#!/usr/bin/env bash
# Bring up the real parts the tests use (all idempotent and cached under
# $STEWARD_CACHE), then run pytest. Under CI=true a part that cannot be
# brought up fails the run; elsewhere the tests that need it skip.
set -uo pipefail
cd "$(dirname "$0")/.."
export STEWARD_CACHE="${STEWARD_CACHE:-$HOME/.cache/steward}"
mkdir -p "$STEWARD_CACHE"
strict="${CI:-false}"

step() {  # step NAME CMD... : run, time, and fail hard under CI
  local name=$1; shift
  local t0=$SECONDS
  echo "==> $name" >&2
  if "$@"; then
    echo "==> $name: ok ($((SECONDS - t0))s)" >&2
  else
    echo "==> $name: FAILED ($((SECONDS - t0))s)" >&2
    if [ "$strict" = "true" ]; then exit 1; fi
  fi
}

if [ -f hack/docker/ensure-dockerd.sh ]; then
  step "docker engine" bash hack/docker/ensure-dockerd.sh
  step "test images" bash hack/docker/build-test-images.sh
fi
if [ -f hack/testenv/build-testbin.sh ] && [ -z "${STEWARD_TESTBIN:-}" ]; then
  echo "==> control plane binaries" >&2
  t0=$SECONDS
  if bin=$(bash hack/testenv/build-testbin.sh); then
    export STEWARD_TESTBIN="$bin"
    echo "==> control plane binaries: $bin ($((SECONDS - t0))s)" >&2
  else
    echo "==> control plane binaries: FAILED ($((SECONDS - t0))s)" >&2
    if [ "$strict" = "true" ]; then exit 1; fi
  fi
fi
# A real kubelet node (tests/e2e/node): Debian packages, node binaries + pause
# image, the operator image. Each is cached; STEWARD_NODEBIN and
# STEWARD_OPERATOR_IMAGE tell the tests where the results are.
if [ -f hack/testenv/build-node.sh ] && [ "$(id -u)" -eq 0 ]; then
  step "node packages" bash hack/testenv/node/ensure-packages.sh
  if [ -z "${STEWARD_NODEBIN:-}" ]; then
    echo "==> node binaries" >&2
    t0=$SECONDS
    if bin=$(bash hack/testenv/build-node.sh); then
      export STEWARD_NODEBIN="$bin"
      echo "==> node binaries: $bin ($((SECONDS - t0))s)" >&2
    else
      echo "==> node binaries: FAILED ($((SECONDS - t0))s)" >&2
      if [ "$strict" = "true" ]; then exit 1; fi
    fi
  fi
fi
if [ -f hack/image/build-image.sh ] && [ -z "${STEWARD_OPERATOR_IMAGE:-}" ]; then
  echo "==> operator image" >&2
  t0=$SECONDS
  if img=$(bash hack/image/build-image.sh); then
    export STEWARD_OPERATOR_IMAGE="$img"
    echo "==> operator image: $img ($((SECONDS - t0))s)" >&2
  else
    echo "==> operator image: FAILED ($((SECONDS - t0))s)" >&2
    if [ "$strict" = "true" ]; then exit 1; fi
  fi
fi

# Go-built tools the tests run: the GitOps health checkers (Argo CD's Lua VM,
# kstatus, Flux's CEL) and Helm 4. Built before pytest so that a cold build
# never runs inside a test's timeout.
build_tool() {  # build_tool NAME VAR SCRIPT
  local name=$1 var=$2 script=$3
  [ -f "$script" ] || return 0
  [ -n "${!var:-}" ] && return 0
  echo "==> $name" >&2
  local t0=$SECONDS bin
  if bin=$(bash "$script"); then
    export "$var=$bin"
    echo "==> $name: $bin ($((SECONDS - t0))s)" >&2
  else
    echo "==> $name: FAILED ($((SECONDS - t0))s)" >&2
    if [ "$strict" = "true" ]; then exit 1; fi
  fi
}
build_tool "gitops health tools" STEWARD_GITOPS_BIN hack/gitops/build.sh
build_tool "helm 4" STEWARD_HELM4_BIN hack/helm4/build-helm4.sh

.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
