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
# covers go.mod, go.sum, this script and the Go toolchain. Complete by
# construction (temporary sibling, .complete marker written last, atomic
# rename); concurrent runs serialise on a flock'ed lock file.
#
# Environment: STEWARD_CACHE (cache root), GO (go binary); GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
log() { printf 'build-helm4: %s\n' "$*" >&2; }
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

helm_version=$(awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v[0-9]/ {print $2; exit}' "$here/go.mod")
[[ -n "$helm_version" ]] || die "cannot read the helm.sh/helm/v4 version from $here/go.mod"

go_id=$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')
hash=$( { cat "$here/go.mod" "$here/go.sum" "$script"; echo "$go_id"; } | sha256sum | cut -c1-12)
key="${helm_version}-${hash}"
cache_root="${STEWARD_CACHE:-$HOME/.cache/steward}/helm4"
bin_dir="$cache_root/$key"
marker="$bin_dir/.complete"

complete() { [[ -f "$marker" && -x "$bin_dir/helm4" ]]; }

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

log "building helm $helm_version with $go_id into $bin_dir"
ldflags=(
  -s -w
  -X "helm.sh/helm/v4/internal/version.version=$helm_version"
  -X "helm.sh/helm/v4/internal/version.metadata="
  -X "helm.sh/helm/v4/internal/version.gitTreeState=clean"
)
start=$(date +%s)
(
  cd "$here"
  "$GO" build -mod=readonly -trimpath -ldflags "${ldflags[*]}" -o "$tmp/helm4" helm.sh/helm/v4/cmd/helm
) || die "go build failed"

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s with $go_id"
  "$tmp/helm4" version --short
} > "$tmp/VERSIONS" 2>&1 || { cat "$tmp/VERSIONS"; die "the built helm4 does not run"; }
grep -q "^${helm_version}" "$tmp/VERSIONS" || { cat "$tmp/VERSIONS"; die "helm4 reports the wrong version"; }
cat "$tmp/VERSIONS" >&2

chmod 755 "$tmp"
touch "$tmp/.complete"
mv -T "$tmp" "$bin_dir"
trap - EXIT
log "done in $(( $(date +%s) - start ))s: $bin_dir ($(du -sh "$bin_dir" | cut -f1))"
echo "$bin_dir" >&3
