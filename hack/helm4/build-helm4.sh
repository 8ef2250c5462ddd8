#!/usr/bin/env bash
# Build (or reuse) Helm 4 (helm.sh/helm/v4/cmd/helm at the version pinned in
# hack/helm4/go.mod), installed as `helm4` so it never shadows the Helm 3 of
# hack/testenv. Helm 4's --wait uses kstatus, so it waits for custom resources
# (ManagedServices) too.
#
# stdout: ONLY the absolute path of the bin directory (progress goes to stderr)
#
#   export STEWARD_HELM4_BIN="$(bash hack/helm4/build-helm4.sh)"   # "$STEWARD_HELM4_BIN/helm4"
#
# Cache: ${STEWARD_CACHE:-$HOME/.cache/steward}/helm4/<helm>-<hash>/ where <hash>
# covers go.mod, go.sum, this script, hack/lib/build.sh and the Go toolchain;
# complete by construction, concurrent runs serialise on a lock
# (hack/lib/build.sh).
#
# Environment: STEWARD_CACHE (cache root), GO (go binary); GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=lib/build.sh
source "$here/../lib/build.sh"
build_init build-helm4

helm_version=$(modver "$here/go.mod" helm.sh/helm/v4)
[[ -n "$helm_version" ]] || die "cannot read the helm.sh/helm/v4 version from $here/go.mod"

build_hash "$here" go.mod go.sum
binaries=(helm4)
cache_open helm4 "${helm_version}-${hash}"

log "building helm $helm_version with $go_id into $bin_dir"
ldflags+=(
  -X "helm.sh/helm/v4/internal/version.version=$helm_version"
  -X "helm.sh/helm/v4/internal/version.metadata="
  -X "helm.sh/helm/v4/internal/version.gitTreeState=clean"
)
go_build "$here" "$tmp/helm4" helm.sh/helm/v4/cmd/helm

write_versions "$tmp/helm4" version --short
expect_version helm4 "^${helm_version}"
cache_publish
