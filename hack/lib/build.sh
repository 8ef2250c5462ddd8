# shellcheck shell=bash
# Sourced (never run) by the scripts that build, or reuse, Go tools in the
# steward cache: hack/testenv/build-testbin.sh, hack/testenv/build-node.sh,
# hack/gitops/build.sh, hack/helm4/build-helm4.sh.
#
# The scheme: ${STEWARD_CACHE:-$HOME/.cache/steward}/<kind>/<key>/, where the
# key ends with a hash of every input of the build (build_hash). A directory
# there is complete by construction: built in a temporary sibling, its marker
# (.complete) written last, then renamed into place atomically. Concurrent
# runs serialise on a flock'ed lock file. The script's stdout gets ONLY the
# bin directory; all other output goes to stderr.
#
# A script sources this file, then, in this order:
#   build_init NAME           log prefix NAME, stdout kept on fd 3, $GO, $go_id
#   modver GO_MOD MODULE      the version GO_MOD pins for MODULE (any time)
#   build_hash DIR FILE...    $hash: FILEs (relative to DIR), this file, the
#                             script and the Go toolchain
#   cache_open KIND KEY       a complete $bin_dir is printed and the script
#                             exits 0; else takes the lock and makes $tmp.
#                             Complete: .complete, "${binaries[@]}"
#                             executable, "${data_files[@]}" non-empty
#   k8s_ldflags DIR VERSION   add Kubernetes' version stamps to ldflags
#   go_build DIR OUT PKG...   go build in DIR with "${ldflags[*]}" into OUT
#   write_versions CMD...     $tmp/VERSIONS: a "built:" line, then CMD's output
#   expect_version WHAT GREP_ARG...   VERSIONS must match, or WHAT is wrong
#   cache_publish             mark $tmp complete, move it to $bin_dir, print it

build_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
build_script=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)/$(basename "${BASH_SOURCE[1]}")
# Hashes of the builds that scripts made before a change that does not change
# what they build (see the file).
build_aliases="$(dirname "$build_lib")/cache-aliases"
build_name=$(basename "$build_script" .sh)
binaries=()
data_files=()
ldflags=(-s -w)

log() { printf '%s: %s\n' "$build_name" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build_init() {
  build_name=$1
  # Everything written to stdout by us or by the tools goes to stderr; the bin
  # directory is printed on the saved stdout (fd 3) at the very end.
  exec 3>&1 1>&2
  export GOTOOLCHAIN=local CGO_ENABLED=0
  GO=${GO:-}
  if [[ -z "$GO" ]]; then
    if command -v go >/dev/null 2>&1; then GO=$(command -v go)
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else die "no Go toolchain found (set GO=/path/to/go)"
    fi
  fi
  local go_bin
  go_bin=$(command -v "$GO") || die "Go toolchain '$GO' not found or not executable"
  GO=$go_bin
  command -v flock >/dev/null 2>&1 || die "flock(1) not found (util-linux)"
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"
  go_id=$("$GO" env GOVERSION GOOS GOARCH | tr '\n' ' ')
}

modver() { awk -v m="$2" '$1 == m && $2 ~ /^v[0-9]/ {print $2; exit}' "$1"; }

build_hash() {
  local dir=$1 f
  shift
  for f in "$@"; do [[ -f "$dir/$f" ]] || die "missing build input $dir/$f"; done
  inputs_digest=$(
    {
      for f in "$@"; do printf '%s\n' "$f"; cat "$dir/$f"; done
      cat "$build_lib" "$build_script"
      printf '%s\n' "$go_id"
    } | sha256sum | cut -d' ' -f1
  )
  hash=$(awk -v d="$inputs_digest" '$1 == d {print $2; exit}' "$build_aliases")
  hash=${hash:-${inputs_digest:0:12}}
}

cache_complete() {
  [[ -f "$bin_dir/.complete" ]] || return 1
  local f
  for f in "${binaries[@]}"; do [[ -x "$bin_dir/$f" ]] || return 1; done
  for f in "${data_files[@]}"; do [[ -s "$bin_dir/$f" ]] || return 1; done
}

cache_open() {
  cache_root="${STEWARD_CACHE:-$HOME/.cache/steward}/$1"
  key=$2
  bin_dir="$cache_root/$key"
  if cache_complete; then
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
  if cache_complete; then
    log "reusing $bin_dir (built concurrently)"
    echo "$bin_dir" >&3
    exit 0
  fi
  # Only an interrupted manual copy could leave an incomplete dir: start over.
  if [[ -e "$bin_dir" ]]; then
    log "removing incomplete $bin_dir"
    rm -rf "$bin_dir"
  fi
  # Temp dirs of builds of this key that were killed (we hold the lock now).
  rm -rf "$cache_root/.tmp-$key."*
  tmp=$(mktemp -d "$cache_root/.tmp-$key.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "no complete $bin_dir (inputs $inputs_digest): building it"
  build_start=$(date +%s)
}

k8s_ldflags() {
  local dir=$1 version=$2 minor build_date pkg
  minor=${version#v1.}
  minor=${minor%%.*}
  build_date=$(cd "$dir" && "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  # kubectl reports its client version from client-go, the servers from
  # component-base; set both, as kubernetes' hack/lib/version.sh does.
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=(
      -X "$pkg.gitVersion=$version"
      -X "$pkg.gitMajor=1"
      -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean"
      -X "$pkg.buildDate=$build_date"
    )
  done
}

go_build() {
  local dir=$1 out=$2
  shift 2
  (cd "$dir" && "$GO" build -mod=readonly -trimpath -ldflags "${ldflags[*]}" -o "$out" "$@") \
    || die "go build failed"
}

write_versions() {
  {
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - build_start))s with $go_id"
    "$@"
  } >"$tmp/VERSIONS" 2>&1 || { cat "$tmp/VERSIONS"; die "a built binary does not run"; }
  cat "$tmp/VERSIONS"
}

expect_version() {
  local what=$1
  shift
  grep -q "$@" "$tmp/VERSIONS" || die "$what reports the wrong version"
}

cache_publish() {
  chmod 755 "$tmp"
  touch "$tmp/.complete" # the marker written last ...
  mv -T "$tmp" "$bin_dir" # ... then published atomically
  trap - EXIT
  log "done in $(($(date +%s) - build_start))s: $bin_dir ($(du -sh "$bin_dir" | cut -f1))"
  # Older builds are never deleted automatically (another checkout may use them).
  local marker old
  for marker in "$cache_root"/*/.complete; do
    old=${marker%/.complete}
    if [[ -f "$marker" && "$old" != "$bin_dir" ]]; then
      log "note: older build $old ($(du -sh "$old" | cut -f1)) can be removed if unused"
    fi
  done
  echo "$bin_dir" >&3
}
