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
# where <hash> covers go.mod, go.sum, this script and the Go toolchain. A
# directory there is complete by construction: it is built in a temporary
# sibling directory, its marker file (.complete) written last, then renamed
# into place atomically. Concurrent runs serialise on a flock'ed lock file.
#
# Environment: STEWARD_CACHE (cache root), GO (go binary), GOFLAGS/GOCACHE/
# GOMODCACHE/GOPROXY are honoured as usual. GOTOOLCHAIN is forced to local.
set -euo pipefail

# Everything written to stdout by us or by the tools goes to stderr; the bin
# directory is printed on the saved stdout (fd 3) at the very end.
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
log() { printf 'build-testbin: %s\n' "$*" >&2; }
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

# Pinned versions come from go.mod (single source of truth).
modver() { awk -v m="$1" '$1 == m && $2 ~ /^v[0-9]/ {print $2; exit}' "$here/go.mod"; }
k8s_version=$(modver k8s.io/kubernetes)
etcd_version=$(modver go.etcd.io/etcd/server/v3)
helm_version=$(modver helm.sh/helm/v3)
staging_version=$(modver k8s.io/client-go)
[[ -n "$k8s_version" && -n "$etcd_version" && -n "$helm_version" ]] \
  || die "cannot read pinned versions from $here/go.mod"

go_id=$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')
hash=$( { cat "$here/go.mod" "$here/go.sum" "$script"; echo "$go_id"; } | sha256sum | cut -c1-12)
key="${k8s_version}-${etcd_version}-${helm_version}-${hash}"
cache_root="${STEWARD_CACHE:-$HOME/.cache/steward}/testbin"
bin_dir="$cache_root/$key"
marker="$bin_dir/.complete"
binaries=(kube-apiserver kubectl etcd helm)

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
# Somebody else may have finished it while we waited.
if complete; then
  log "reusing $bin_dir (built concurrently)"
  echo "$bin_dir" >&3
  exit 0
fi
# Only an interrupted manual copy could leave an incomplete dir: start over.
[[ -e "$bin_dir" ]] && { log "removing incomplete $bin_dir"; rm -rf "$bin_dir"; }
# Temp dirs of builds of this key that were killed (we hold the lock now).
rm -rf "$cache_root/.tmp-$key."*

tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "building kube-apiserver+kubectl $k8s_version, etcd $etcd_version, helm $helm_version"
log "go: $go_id; module: $here; output: $bin_dir"

k8s_minor=${k8s_version#v1.}; k8s_minor=${k8s_minor%%.*}
helm_k8s_minor=${staging_version#v0.}; helm_k8s_minor=${helm_k8s_minor%%.*}
build_date=$(cd "$here" && "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)

ldflags=(-s -w)
# kubectl reports its client version from client-go, kube-apiserver from
# component-base; set both, as kubernetes' hack/lib/version.sh does.
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=(
    -X "$pkg.gitVersion=$k8s_version"
    -X "$pkg.gitMajor=1"
    -X "$pkg.gitMinor=$k8s_minor"
    -X "$pkg.gitTreeState=clean"
    -X "$pkg.buildDate=$build_date"
  )
done
# helm: its version, and the Kubernetes version it assumes for capabilities
# and lint deprecations (helm's Makefile derives it from client-go's version).
ldflags+=(
  -X "helm.sh/helm/v3/internal/version.version=$helm_version"
  -X "helm.sh/helm/v3/internal/version.gitTreeState=clean"
  -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  -X "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
  -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  -X "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
)

start=$(date +%s)
# One invocation for all four so shared packages (client-go, apimachinery,
# grpc, etcd client, ...) are compiled once.
(
  cd "$here"
  "$GO" build -mod=readonly -trimpath -ldflags "${ldflags[*]}" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kubectl \
    go.etcd.io/etcd/server/v3 \
    helm.sh/helm/v3/cmd/helm
) || die "go build failed"
# The etcd main package is the module root go.etcd.io/etcd/server/v3.
mv "$tmp/server" "$tmp/etcd"

# Smoke-check every binary and record what was built.
{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s with $go_id"
  "$tmp/kube-apiserver" --version
  "$tmp/kubectl" version --client
  "$tmp/etcd" --version
  "$tmp/helm" version --short
} > "$tmp/VERSIONS" 2>&1 || { cat "$tmp/VERSIONS"; die "a built binary does not run"; }
grep -qx "Kubernetes $k8s_version" "$tmp/VERSIONS" || { cat "$tmp/VERSIONS"; die "kube-apiserver reports the wrong version"; }
cat "$tmp/VERSIONS" >&2

chmod 755 "$tmp"
touch "$tmp/.complete"          # marker written last ...
mv -T "$tmp" "$bin_dir"          # ... then published atomically
trap - EXIT
log "done in $(( $(date +%s) - start ))s: $bin_dir ($(du -sh "$bin_dir" | cut -f1))"
# Older builds are never deleted automatically (another checkout may use them).
for old in "$cache_root"/v*; do
  [[ -d "$old" && "$old" != "$bin_dir" ]] && log "note: older testbin $old ($(du -sh "$old" | cut -f1)) can be removed if unused"
done
echo "$bin_dir" >&3
