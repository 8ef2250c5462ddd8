#!/usr/bin/env bash
# Build (or reuse) the e2e node binaries: kubelet, kube-scheduler,
# kube-controller-manager and kube-proxy from k8s.io/kubernetes (the version
# pinned in hack/testenv/node/go.mod), plus the pod sandbox ("pause") program
# and its image archive - compiled from Go modules, nothing downloaded but
# modules. Same scheme as build-testbin.sh.
#
# stdout: ONLY the absolute path of the node bin directory (progress on stderr)
#
#   export STEWARD_NODEBIN="$(bash hack/testenv/build-node.sh)"
#
# Cache: ${STEWARD_CACHE:-$HOME/.cache/steward}/nodebin/<k8s>-<hash>/ where
# <hash> covers node/go.mod, node/go.sum, node/pause/main.go, imagetar.py, this
# script, hack/lib/build.sh and the Go toolchain; complete by construction,
# concurrent runs serialise on a lock (hack/lib/build.sh).
#
# Environment: STEWARD_CACHE, GO (go binary), the usual GOCACHE/GOMODCACHE/
# GOPROXY. GOTOOLCHAIN is forced to local, CGO_ENABLED to 0.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=lib/build.sh
source "$here/../lib/build.sh"
build_init build-node
mod="$here/node"
imagetar="$here/../image/imagetar.py"
PY=$(command -v python3) || die "python3 not found"

k8s_version=$(modver "$mod/go.mod" k8s.io/kubernetes)
[[ -n "$k8s_version" ]] || die "cannot read the kubernetes version from $mod/go.mod"

build_hash "$here" node/go.mod node/go.sum node/pause/main.go ../image/imagetar.py
binaries=(kubelet kube-scheduler kube-controller-manager kube-proxy pause)
data_files=(pause.tar pause.tag)
# The sandbox image containerd is told to use (sandbox_image); never pulled.
pause_tag="steward.local/pause:${hash}"
cache_open nodebin "${k8s_version}-${hash}"

log "building kubelet, kube-scheduler, kube-controller-manager, kube-proxy $k8s_version + pause"
log "go: $go_id; module: $mod; output: $bin_dir"
k8s_ldflags "$mod" "$k8s_version"
# One invocation: the shared packages compile once (and GOCACHE entries are
# shared with build-testbin.sh, which uses the same module versions).
go_build "$mod" "$tmp/" \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-proxy \
  ./pause

"$PY" "$imagetar" --tag "$pause_tag" --file-layer "$tmp/pause:/pause" \
  --entrypoint '["/pause"]' --user 65535:65535 -o "$tmp/pause.tar" \
  || die "cannot pack the pause image"
echo "$pause_tag" >"$tmp/pause.tag"

versions() {
  "$tmp/kubelet" --version
  "$tmp/kube-scheduler" --version
  "$tmp/kube-controller-manager" --version
  "$tmp/kube-proxy" --version
  echo "pause image: $pause_tag"
}
write_versions versions
expect_version kubelet -x "Kubernetes $k8s_version"
cache_publish
