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

.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
