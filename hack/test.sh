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
# A cached build whose script prints where its result is: exported as VAR for the
# tests (unless VAR is set already), timed, and fatal under CI when it fails.
build() {  # build NAME VAR SCRIPT
  local name=$1 var=$2 script=$3
  [ -f "$script" ] || return 0
  [ -n "${!var:-}" ] && return 0
  echo "==> $name" >&2
  local t0=$SECONDS out
  if out=$(bash "$script"); then
    export "$var=$out"
    echo "==> $name: $out ($((SECONDS - t0))s)" >&2
  else
    echo "==> $name: FAILED ($((SECONDS - t0))s)" >&2
    if [ "$strict" = "true" ]; then exit 1; fi
  fi
}

build "control plane binaries" STEWARD_TESTBIN hack/testenv/build-testbin.sh
# A real kubelet node (tests/e2e/node): Debian packages, node binaries + pause
# image, the operator image. Each is cached; STEWARD_NODEBIN and
# STEWARD_OPERATOR_IMAGE tell the tests where the results are.
if [ -f hack/testenv/build-node.sh ] && [ "$(id -u)" -eq 0 ]; then
  step "node packages" bash hack/testenv/node/ensure-packages.sh
  build "node binaries" STEWARD_NODEBIN hack/testenv/build-node.sh
fi
build "operator image" STEWARD_OPERATOR_IMAGE hack/image/build-image.sh
# Go-built tools the tests run: the GitOps health checkers (Argo CD's Lua VM,
# kstatus, Flux's CEL) and Helm 4. Built before pytest so that a cold build
# never runs inside a test's timeout.
build "gitops health tools" STEWARD_GITOPS_BIN hack/gitops/build.sh
build "helm 4" STEWARD_HELM4_BIN hack/helm4/build-helm4.sh

# The whole suite (no arguments) runs as three pytest sessions side by side (on two cores
# that works because most tests wait on real parts rather than compute), then ALONE:
#   unit      tests/unit: pure (no cluster, engine, sandbox or shared port), mostly CPU;
#   operator  the operator suites and admission policies on their own control plane;
#   machine   everything else: the kubelet node, the network-namespace labs, the Helm
#             chart and RBAC suites and the runtimes on this host, on another one.
# Each session has its own leak-check marker, cgroup parent and sandbox uid range
# (STEWARD_TEST_SHARD, tests/support/processes.py), so none takes another's processes
# for leaks. The kubelet node and the netns labs both touch machine-wide state
# (sysctls, bridges, KUBE-* chains), so they share the machine session. The
# background sessions' reports are printed after the foreground one.
# STEWARD_SERIAL=1, or any pytest arguments, runs one pytest as given.
# Balanced by measurement: with the chart and RBAC suites here too, a warm run took
# operator 1,065 s beside machine 704 s.
OPERATOR_SHARD=(
  tests/e2e/steward_operator
  tests/e2e/test_admission_policy.py
)
# Suites that restart the Docker engine every other session uses: run alone, after.
ALONE=(tests/e2e/steward_operator/test_runtime_faults.py)
if [ "$#" -eq 0 ] && [ "${STEWARD_SERIAL:-0}" != "1" ]; then
  logs=$(mktemp -d "${TMPDIR:-/tmp}/steward-shards.XXXXXX")
  STEWARD_TEST_NO_SANDBOX=1 .venv/bin/pytest -p no:cacheprovider tests/unit \
    >"$logs/unit" 2>&1 &
  unit_pid=$!
  not_alone=()
  for path in "${ALONE[@]}"; do not_alone+=("--ignore=$path"); done
  STEWARD_TEST_SHARD=1 .venv/bin/pytest -p no:cacheprovider "${not_alone[@]}" \
    "${OPERATOR_SHARD[@]}" >"$logs/operator" 2>&1 &
  operator_pid=$!
  trap 'kill -INT "$unit_pid" "$operator_pid" 2>/dev/null; wait; rm -rf "$logs"' EXIT
  ignore=(--ignore=tests/unit "${not_alone[@]}")
  for path in "${OPERATOR_SHARD[@]}"; do ignore+=("--ignore=$path"); done
  echo "==> machine tests (operator and unit tests run beside them; their reports follow)"
  STEWARD_TEST_SHARD=0 .venv/bin/pytest "${ignore[@]}"
  machine_rc=$?
  wait "$operator_pid"
  operator_rc=$?
  wait "$unit_pid"
  unit_rc=$?
  echo "==> operator tests (run beside the rest): ${OPERATOR_SHARD[*]}"
  cat "$logs/operator"
  echo "==> tests/unit (run beside the rest)"
  cat "$logs/unit"
  echo "==> alone (they restart the Docker engine): ${ALONE[*]}"
  STEWARD_TEST_SHARD=0 .venv/bin/pytest -p no:cacheprovider "${ALONE[@]}"
  alone_rc=$?
  echo "==> exit codes: machine $machine_rc, operator $operator_rc, unit $unit_rc, alone $alone_rc"
  for code in "$machine_rc" "$operator_rc" "$unit_rc" "$alone_rc"; do
    if [ "$code" -eq 5 ]; then
      echo "pytest collected no tests: that is a failure" >&2
      exit 1
    fi
  done
  for code in "$machine_rc" "$operator_rc" "$unit_rc" "$alone_rc"; do
    [ "$code" -ne 0 ] && exit "$code"
  done
  exit 0
fi
.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
