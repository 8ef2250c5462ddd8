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
# <hash> covers go.mod, go.sum, the Go sources, this script and the Go
# toolchain. A directory there is complete by construction: built in a
# temporary sibling, its marker (.complete) written last, then renamed into
# place atomically. Concurrent runs serialise on a flock'ed lock file.
#
# Environment: STEWARD_CACHE (cache root), GO (go binary); GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
log() { printf 'gitops-build: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export GOTOOLCHAIN=local CGO_ENABLED=0

GO=${GO:-}
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "no Go toolchain found (set GO=/path/to/go)"
  fi
fi
go_bin=$(command -v "$GO") || die "Go toolchain '$GO' not found or not executable"
GO=$go_bin
command -v flock >/dev/null 2>&1 || die "flock(1) not found (util-linux)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"

cliutils_version=$(awk '$1 == "sigs.k8s.io/cli-utils" && $2 ~ /^v[0-9]/ {print $2; exit}' "$here/go.mod")
[[ -n "$cliutils_version" ]] || die "cannot read the cli-utils version from $here/go.mod"

go_id=$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')
mapfile -t sources < <(cd "$here" && find cmd -name '*.go' -type f | LC_ALL=C sort)
(( ${#sources[@]} > 0 )) || die "no Go sources under $here/cmd"
hash=$(
  {
    cat "$here/go.mod" "$here/go.sum" "$script"
    for f in "${sources[@]}"; do printf '%s\n' "$f"; cat "$here/$f"; done
    echo "$go_id"
  } | sha256sum | cut -c1-12
)
key="cliutils-${cliutils_version}-${hash}"
cache_root="${STEWARD_CACHE:-$HOME/.cache/steward}/gitops"
bin_dir="$cache_root/$key"
marker="$bin_dir/.complete"
binaries=(argo-health kstatus flux-cel)

complete() {
  [[ -f "$marker" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}

if complete; then
  log "reusing $bin_dir"
  echo "$bin_dir" >&3
  exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$key"
if ! flock -n 9; then
  log "another build of $key is running; waiting for its lock"
  flock 9
fi
if complete; then
  log "reusing $bin_dir (built concurrently)"
  echo "$bin_dir" >&3
  exit 0
fi
[[ -e "$bin_dir" ]] && { log "removing incomplete $bin_dir"; rm -rf "$bin_dir"; }
rm -rf "$cache_root/.tmp-$key."*

tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "building ${binaries[*]} (cli-utils $cliutils_version) with $go_id into $bin_dir"
start=$(date +%s)
(
  cd "$here"
  "$GO" build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/" ./cmd/...
) || die "go build failed"

# Smoke-check: every tool answers on a trivial object.
probe='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","generation":1}}'
printf 'return {status="Healthy", message=obj.kind}\n' > "$tmp/probe.lua"
"$tmp/argo-health" "$tmp/probe.lua" <<<"$probe" | grep -q '"Healthy"' \
  || die "argo-health does not run"
"$tmp/kstatus" <<<"$probe" | grep -q '"Current"' || die "kstatus does not run"
printf '{"current": "metadata.generation == 1"}\n' > "$tmp/probe.json"
"$tmp/flux-cel" "$tmp/probe.json" <<<"$probe" | grep -q '"Current"' || die "flux-cel does not run"
rm -f "$tmp/probe.lua" "$tmp/probe.json"
echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s with $go_id; cli-utils $cliutils_version" > "$tmp/VERSIONS"

chmod 755 "$tmp"
touch "$tmp/.complete"
mv -T "$tmp" "$bin_dir"
trap - EXIT
log "done in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir" >&3
