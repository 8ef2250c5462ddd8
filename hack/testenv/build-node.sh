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
# script and the Go toolchain. Built in a temporary sibling, the .complete
# marker written last, renamed into place atomically; concurrent runs
# serialise on a flock'ed lock file.
#
# Environment: STEWARD_CACHE, GO (go binary), the usual GOCACHE/GOMODCACHE/
# GOPROXY. GOTOOLCHAIN is forced to local, CGO_ENABLED to 0.
set -euo pipefail
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/node"
imagetar="$here/../image/imagetar.py"
script="$here/$(basename "${BASH_SOURCE[0]}")"
log() { printf 'build-node: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export GOTOOLCHAIN=local CGO_ENABLED=0

GO=${GO:-}
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
  else die "no Go toolchain found (set GO=/path/to/go)"
  fi
fi
GO=$(command -v "$GO") || die "Go toolchain '$GO' not found or not executable"
command -v flock >/dev/null 2>&1 || die "flock(1) not found (util-linux)"
PY=$(command -v python3) || die "python3 not found"

modver() { awk -v m="$1" '$1 == m && $2 ~ /^v[0-9]/ {print $2; exit}' "$mod/go.mod"; }
k8s_version=$(modver k8s.io/kubernetes)
[[ -n "$k8s_version" ]] || die "cannot read the kubernetes version from $mod/go.mod"

go_id=$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')
hash=$( { cat "$mod/go.mod" "$mod/go.sum" "$mod/pause/main.go" "$imagetar" "$script"; echo "$go_id"; } \
  | sha256sum | cut -c1-12)
key="${k8s_version}-${hash}"
cache_root="${STEWARD_CACHE:-$HOME/.cache/steward}/nodebin"
bin_dir="$cache_root/$key"
marker="$bin_dir/.complete"
binaries=(kubelet kube-scheduler kube-controller-manager kube-proxy pause)
# The sandbox image containerd is told to use (sandbox_image); never pulled.
pause_tag="steward.local/pause:${hash}"

complete() {
  [[ -f "$marker" && -s "$bin_dir/pause.tar" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}
if complete; then log "reusing $bin_dir"; echo "$bin_dir" >&3; exit 0; fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$key"
if ! flock -n 9; then
  log "another build of $key is running; waiting for its lock"
  flock 9
fi
if complete; then log "reusing $bin_dir (built concurrently)"; echo "$bin_dir" >&3; exit 0; fi
[[ -e "$bin_dir" ]] && { log "removing incomplete $bin_dir"; rm -rf "$bin_dir"; }
rm -rf "$cache_root/.tmp-$key."*
tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "building kubelet, kube-scheduler, kube-controller-manager, kube-proxy $k8s_version + pause"
log "go: $go_id; module: $mod; output: $bin_dir"
k8s_minor=${k8s_version#v1.}; k8s_minor=${k8s_minor%%.*}
build_date=$(cd "$mod" && "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
ldflags=(-s -w)
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=(
    -X "$pkg.gitVersion=$k8s_version"
    -X "$pkg.gitMajor=1"
    -X "$pkg.gitMinor=$k8s_minor"
    -X "$pkg.gitTreeState=clean"
    -X "$pkg.buildDate=$build_date"
  )
done

start=$(date +%s)
# One invocation: the shared packages compile once (and GOCACHE entries are
# shared with build-testbin.sh, which uses the same module versions).
(
  cd "$mod"
  "$GO" build -mod=readonly -trimpath -ldflags "${ldflags[*]}" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-proxy \
    ./pause
) || die "go build failed"

"$PY" "$imagetar" --tag "$pause_tag" --file-layer "$tmp/pause:/pause" \
  --entrypoint '["/pause"]' --user 65535:65535 -o "$tmp/pause.tar" \
  || die "cannot pack the pause image"
echo "$pause_tag" > "$tmp/pause.tag"

{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start ))s with $go_id"
  "$tmp/kubelet" --version
  "$tmp/kube-scheduler" --version
  "$tmp/kube-controller-manager" --version
  "$tmp/kube-proxy" --version
  echo "pause image: $pause_tag"
} > "$tmp/VERSIONS" 2>&1 || { cat "$tmp/VERSIONS"; die "a built binary does not run"; }
grep -qx "Kubernetes $k8s_version" "$tmp/VERSIONS" || { cat "$tmp/VERSIONS"; die "wrong version"; }
cat "$tmp/VERSIONS" >&2

chmod 755 "$tmp"
touch "$tmp/.complete"
mv -T "$tmp" "$bin_dir"
trap - EXIT
log "done in $(( $(date +%s) - start ))s: $bin_dir ($(du -sh "$bin_dir" | cut -f1))"
for old in "$cache_root"/v*; do
  [[ -d "$old" && "$old" != "$bin_dir" ]] && log "note: older nodebin $old can be removed if unused"
done
echo "$bin_dir" >&3
