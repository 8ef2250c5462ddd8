#!/usr/bin/env bash
# Build (or reuse) the e2e control-plane binaries: kube-apiserver, kubectl,
# etcd and helm, compiled from their Go modules at the versions pinned in
# hack/testenv/go.mod - the envtest approach, without downloading any binary.
#
# stdout: ONLY the absolute path of the bin directory (progress goes to stderr)
#
#   export STEWARD_TESTBIN="$(bash hack/testenv/build-testbin.sh)"
#
# Cache: ${STEWARD_CACHE:-$HOME/.cache/steward}/testbin/<k8s>-<etcd>-<helm>-<hash>/
# where <hash> covers go.mod, go.sum, this script, hack/lib/build.sh and the
# Go toolchain; complete by construction, concurrent runs serialise on a lock
# (hack/lib/build.sh).
#
# Environment: STEWARD_CACHE (cache root), GO (go binary), GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=lib/build.sh
source "$here/../lib/build.sh"
build_init build-testbin

# Pinned versions come from go.mod (single source of truth).
k8s_version=$(modver "$here/go.mod" k8s.io/kubernetes)
etcd_version=$(modver "$here/go.mod" go.etcd.io/etcd/server/v3)
helm_version=$(modver "$here/go.mod" helm.sh/helm/v3)
staging_version=$(modver "$here/go.mod" k8s.io/client-go)
[[ -n "$k8s_version" && -n "$etcd_version" && -n "$helm_version" ]] \
  || die "cannot read pinned versions from $here/go.mod"

build_hash "$here" go.mod go.sum
binaries=(kube-apiserver kubectl etcd helm)
cache_open testbin "${k8s_version}-${etcd_version}-${helm_version}-${hash}"

log "building kube-apiserver+kubectl $k8s_version, etcd $etcd_version, helm $helm_version"
log "go: $go_id; module: $here; output: $bin_dir"

k8s_ldflags "$here" "$k8s_version"
# helm: its version, and the Kubernetes version it assumes for capabilities
# and lint deprecations (helm's Makefile derives it from client-go's version).
helm_k8s_minor=${staging_version#v0.}
helm_k8s_minor=${helm_k8s_minor%%.*}
ldflags+=(
  -X "helm.sh/helm/v3/internal/version.version=$helm_version"
  -X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
  -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
  -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
)

# One invocation for all four so shared packages (client-go, apimachinery,
# grpc, etcd client, ...) are compiled once.
go_build "$here" "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3 \
  helm.sh/helm/v3/cmd/helm
# The etcd main package is the module root go.etcd.io/etcd/server/v3.
mv "$tmp/server" "$tmp/etcd"

versions() {
  "$tmp/kube-apiserver" --version
  "$tmp/kubectl" version --client
  "$tmp/etcd" --version
  "$tmp/helm" version --short
}
write_versions versions
expect_version kube-apiserver -x "Kubernetes $k8s_version"
cache_publish
