#!/usr/bin/env bash
# Build (or reuse) the GitOps health tools from this Go module:
#   argo-health  runs an Argo CD health script (Lua) with gopher-lua, as Argo CD does
#   kstatus      runs sigs.k8s.io/cli-utils kstatus (Flux health checks, Helm 4 --wait)
#   flux-cel     evaluates a Flux Kustomization healthCheckExprs entry (cel-go), as Flux does
#
# stdout: ONLY the absolute path of the bin directory (progress goes to stderr)
#
#   export STEWARD_GITOPS_BIN="$(bash hack/gitops/build.sh)"
#
# Cache: ${STEWARD_CACHE:-$HOME/.cache/steward}/gitops/<cli-utils>-<hash>/ where
# <hash> covers go.mod, go.sum, the Go sources, this script, hack/lib/build.sh
# and the Go toolchain; complete by construction, concurrent runs serialise on
# a lock (hack/lib/build.sh).
#
# Environment: STEWARD_CACHE (cache root), GO (go binary); GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=lib/build.sh
source "$here/../lib/build.sh"
build_init gitops-build

cliutils_version=$(modver "$here/go.mod" sigs.k8s.io/cli-utils)
[[ -n "$cliutils_version" ]] || die "cannot read the cli-utils version from $here/go.mod"

mapfile -t sources < <(cd "$here" && find cmd -name '*.go' -type f | LC_ALL=C sort)
((${#sources[@]} > 0)) || die "no Go sources under $here/cmd"
build_hash "$here" go.mod go.sum "${sources[@]}"
binaries=(argo-health kstatus flux-cel)
cache_open gitops "cliutils-${cliutils_version}-${hash}"

log "building ${binaries[*]} (cli-utils $cliutils_version) with $go_id into $bin_dir"
go_build "$here" "$tmp/" ./cmd/...

# Smoke-check: every tool answers on a trivial object.
probe='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","generation":1}}'
printf 'return {status="Healthy", message=obj.kind}\n' >"$tmp/probe.lua"
"$tmp/argo-health" "$tmp/probe.lua" <<<"$probe" | grep -q '"Healthy"' \
  || die "argo-health does not run"
"$tmp/kstatus" <<<"$probe" | grep -q '"Current"' || die "kstatus does not run"
printf '{"current": "metadata.generation == 1"}\n' >"$tmp/probe.json"
"$tmp/flux-cel" "$tmp/probe.json" <<<"$probe" | grep -q '"Current"' || die "flux-cel does not run"
rm -f "$tmp/probe.lua" "$tmp/probe.json"

write_versions echo "cli-utils $cliutils_version"
cache_publish
