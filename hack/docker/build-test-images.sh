#!/usr/bin/env bash
# Build the images the container tests run, locally (no registry is reachable):
#   steward-test/busybox:<deb version>-r<rev>   docker import of Debian's busybox-static
#   steward-test/python:<hash>                  debootstrap minbase + python3, plus this
#                                               project's wheel and its light deps
# Root filesystems, downloaded wheels and tarballs are cached outside the clone
# under ${STEWARD_CACHE:-~/.cache/steward}/images, keyed by content, so a second
# run only checks that the tags exist. Prints NAME=IMAGE lines on stdout (also
# written to $STEWARD_CACHE/images/test-images.env); progress goes to stderr.
#
# Usage: build-test-images.sh [all|busybox|python]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${STEWARD_CACHE:-$HOME/.cache/steward}"
IMAGES="$CACHE/images"
WHAT="${1:-all}"
REV=1 # bump to force a rebuild of every image
KEY_MIRROR=http://deb.debian.org/debian # a constant of the python-base cache key, not a mirror
SUITE=bookworm
PYVER=3.11
PY="${STEWARD_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
mkdir -p "$IMAGES"

log() { echo "build-test-images: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
sha() { sha256sum | cut -c1-16; }
tag_safe() { tr -c 'A-Za-z0-9_.\n-' '-' <<<"$1"; }

apt_install() {
    if ! apt-cache show "$@" >/dev/null 2>&1; then apt-get update -qq; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# One build at a time per cache (parallel test sessions share it).
exec 9>"$IMAGES/.lock"
flock 9

TMP="$(mktemp -d "$IMAGES/tmp.XXXXXX")"
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    if [ -n "${CID:-}" ]; then docker rm -f "$CID" >/dev/null 2>&1 || true; fi
    # A failed debootstrap can leave proc/sys mounted inside its target.
    awk -v t="$TMP/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

build_busybox() {
    local ver key tag tarball root
    ver="$(apt-cache show --no-all-versions busybox-static 2>/dev/null | sed -n 's/^Version: //p' | head -n1)"
    if [ -z "$ver" ]; then
        apt-get update -qq
        ver="$(apt-cache show --no-all-versions busybox-static | sed -n 's/^Version: //p' | head -n1)"
    fi
    key="$(tag_safe "${ver#*:}")-r$REV"
    tag="steward-test/busybox:$key"
    tarball="$IMAGES/busybox-$key.tar"
    if ! have_image "$tag"; then
        if [ ! -s "$tarball" ]; then
            log "building busybox rootfs ($ver)"
            root="$TMP/busybox"
            mkdir -p "$root" "$TMP/deb"
            chmod 777 "$TMP/deb" # apt-get download drops privileges to _apt
            (cd "$TMP/deb" && apt-get download -qq "busybox-static=$ver" >&2 2>/dev/null)
            dpkg -x "$TMP"/deb/busybox-static_*.deb "$root"
            rm -rf "${root:?}/usr/share"
            # `busybox --install -s` semantics: one symlink per applet, at its usual path.
            "$root/bin/busybox" --list-full | while read -r applet; do
                mkdir -p "$root/$(dirname "$applet")"
                [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
            done
            mkdir -p "$root/etc" "$root/tmp" "$root/www" "$root/proc" "$root/sys" "$root/dev"
            chmod 1777 "$root/tmp"
            printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
            printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
            echo "steward-test ok" >"$root/www/index.html"
            tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$tarball.part" .
            mv "$tarball.part" "$tarball"
        fi
        log "importing $tag"
        docker import --change 'CMD ["/bin/sh"]' "$tarball" "$tag" >/dev/null
    fi
    echo "STEWARD_TEST_BUSYBOX_IMAGE=$tag"
}

APT_ETC=/etc/apt
APT_LISTS=/var/lib/apt/lists

apt_source_files() {
    # The files apt reads, in apt's order: sources.list, then sources.list.d/ by name.
    [ -f "$APT_ETC/sources.list" ] && echo "$APT_ETC/sources.list"
    find "$APT_ETC/sources.list.d" -maxdepth 1 -type f \( -name '*.list' -o -name '*.sources' \) \
        2>/dev/null | LC_ALL=C sort
}

mirror_in() {
    # Print every http(s) URI serving "deb" $SUITE with component main in FILE
    # (one-line sources.list format for *.list, deb822 stanzas for *.sources).
    case "$1" in
        *.sources) awk -v s="$SUITE" '
            function flush() {
                if (types ~ "(^| )deb( |$)" && suites ~ "(^| )" s "( |$)" &&
                    comps ~ "(^| )main( |$)" && tolower(enabled) != "no") {
                    n = split(uris, u, " ")
                    for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) print u[i]
                }
                types = suites = comps = uris = enabled = key = ""
            }
            /^#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { v = $0; sub(/^[ \t]+/, "", v); val[key] = val[key] " " v; set(key); next }
            {
                key = tolower($0); sub(/:.*/, "", key)
                v = $0; sub(/^[^:]*:[ \t]*/, "", v); val[key] = v; set(key)
            }
            function set(k) {
                if (k == "types") types = val[k]
                else if (k == "suites") suites = val[k]
                else if (k == "components") comps = val[k]
                else if (k == "uris") uris = val[k]
                else if (k == "enabled") enabled = val[k]
            }
            END { flush() }
        ' "$1" ;;
        *) awk -v s="$SUITE" '
            { sub(/#.*/, "") }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($i ~ /^https?:\/\// && $(i + 1) == s) {
                    for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; break }
                }
            }
        ' "$1" ;;
    esac
}

not_debian() {
    # True when apt's downloaded Release file for mirror $1 names another Origin than Debian
    # (a third-party repository that also serves "$SUITE main"); unknown counts as Debian.
    local f
    f="$APT_LISTS/$(sed -E 's#^[a-z]+://##; s#/+$##; s#/#_#g' <<<"$1")_dists_${SUITE}_InRelease"
    [ -f "$f" ] || f="${f%InRelease}Release"
    [ -f "$f" ] && ! grep -qx 'Origin: Debian' "$f"
}

apt_mirror() {
    # The first http(s) Debian mirror apt is configured with for "$SUITE main".
    local f m candidates
    candidates="$(apt_source_files | while read -r f; do mirror_in "$f"; done)"
    for m in $candidates; do
        not_debian "$m" && continue
        echo "${m%/}"
        return 0
    done
    log "no http(s) Debian mirror for '$SUITE main' in $APT_ETC/sources.list or" \
        "$APT_ETC/sources.list.d/*.list|*.sources: configure one (e.g. a deb822 stanza" \
        "'Types: deb / URIs: http://<mirror>/debian / Suites: $SUITE / Components: main')"
    return 1
}

build_python_base() {
    # Sets BASE_TAG: debootstrap minbase with python3, imported as an image.
    local mirror key tarball root
    # The rootfs is Debian's $SUITE whichever mirror serves it: the key names no mirror.
    # (The fixed word stands where the mirror used to be, so caches built before stay valid.)
    key="$(printf '%s\n' "$SUITE" minbase python3 "$KEY_MIRROR" "$REV" | sha)"
    BASE_TAG="steward-test/python-base:$key"
    tarball="$IMAGES/python-base-$SUITE-$key.tar"
    have_image "$BASE_TAG" && return 0
    if [ ! -s "$tarball" ]; then
        mirror="$(apt_mirror)" || exit 1
        command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
        log "debootstrap $SUITE minbase + python3 from $mirror (about a minute)"
        root="$TMP/rootfs"
        debootstrap --variant=minbase --include=python3 "$SUITE" "$root" "$mirror" >"$TMP/debootstrap.log" 2>&1 || {
            tail -n 30 "$TMP/debootstrap.log" >&2
            exit 1
        }
        rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/* "${root:?}"/usr/share/doc "${root:?}"/usr/share/man
        tar -C "$root" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
    fi
    log "importing $BASE_TAG"
    docker import --change 'CMD ["python3"]' "$tarball" "$BASE_TAG" >/dev/null
}

fetch_deps() {
    # Sets DEPS_DIR: cp311 manylinux wheels of the pure runtime deps pyentry needs,
    # pinned to the versions of the host venv so both sides agree.
    local reqs key
    reqs="$("$PY" - <<'PYEOF'
from importlib.metadata import version
for name in ("pydantic", "PyYAML", "psutil", "requests"):
    print(f"{name}=={version(name)}")
PYEOF
)"
    key="$(printf '%s\n' "$reqs" "cp311-manylinux-x86_64" | sha)"
    DEPS_DIR="$CACHE/wheels/py$PYVER-$key"
    DEPS_KEY="$key"
    [ -f "$DEPS_DIR/.complete" ] && return 0
    log "downloading wheels: ${reqs//$'\n'/ }"
    rm -rf "$DEPS_DIR"
    mkdir -p "$DEPS_DIR"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_5_x86_64 \
        --platform manylinux2010_x86_64 --platform manylinux_2_12_x86_64 --platform any \
        -d "$DEPS_DIR" $reqs >&2
    touch "$DEPS_DIR/.complete"
}

source_hash() {
    # Content hash of what goes into the project's wheel.
    (cd "$ROOT" && find pyproject.toml operator/steward -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum) | sha
}

build_python() {
    local src key tag stage site
    build_python_base
    fetch_deps
    src="$(source_hash)"
    key="$(printf '%s\n' "$BASE_TAG" "$DEPS_KEY" "$src" "$REV" | sha)"
    tag="steward-test/python:$key"
    if ! have_image "$tag"; then
        log "building $tag (steward sources $src)"
        # Build the wheel from a copy so the shared tree gets no build/ or egg-info writes.
        mkdir -p "$TMP/src" "$TMP/wheel"
        cp "$ROOT/pyproject.toml" "$TMP/src/"
        [ -f "$ROOT/README.md" ] && cp "$ROOT/README.md" "$TMP/src/" || echo "Steward" >"$TMP/src/README.md"
        mkdir -p "$TMP/src/operator"
        (cd "$ROOT/operator" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - steward) | tar -C "$TMP/src/operator" -xf -
        stage="$TMP/stage"
        site="$stage/usr/local/lib/python$PYVER/dist-packages"
        mkdir -p "$site" "$stage/usr/local/bin"
        # Build isolation fetches setuptools/wheel from PyPI (pip caches them); the
        # venv's own setuptools comes next; the pure-Python package copied as is last.
        if ! "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$TMP/wheel" "$TMP/src" >"$TMP/pip.log" 2>&1 &&
            ! "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$TMP/wheel" "$TMP/src" >>"$TMP/pip.log" 2>&1; then
            tail -n 20 "$TMP/pip.log" >&2
            log "no wheel could be built: copying operator/steward into the image instead"
            cp -r "$TMP/src/operator/steward" "$site/"
        fi
        # Wheels are zip files; unpacking them is what pip install does for these.
        for whl in "$DEPS_DIR"/*.whl "$TMP"/wheel/*.whl; do
            [ -f "$whl" ] || continue
            "$PY" -m zipfile -e "$whl" "$site"
        done
        ln -s /usr/bin/python3 "$stage/usr/local/bin/python"
        CID="$(docker create "$BASE_TAG" true)"
        tar -C "$stage" --numeric-owner --owner=0 --group=0 -cf - . | docker cp - "$CID:/"
        docker commit \
            --change 'ENV PYTHONUNBUFFERED=1' --change 'CMD ["python3"]' \
            --change "LABEL steward.dev/test-image-source=$src" \
            "$CID" "$tag" >/dev/null
        docker rm "$CID" >/dev/null
        CID=""
    fi
    prune_python "$tag"
    echo "STEWARD_TEST_PYTHON_IMAGE=$tag"
}

prune_python() {
    # Each change to the sources makes a new tag: keep the newest few, drop the rest
    # (an image a container still uses is refused by Docker and simply stays).
    local keep="$1" old
    docker image ls steward-test/python --format '{{.Tag}}' | grep -v "^$keep\$" | tail -n +3 |
        while read -r old; do
            docker image rm "steward-test/python:$old" >/dev/null 2>&1 || true
        done
}

out="$TMP/out.env"
: >"$out"
case "$WHAT" in
    all) build_busybox >>"$out"; build_python >>"$out" ;;
    busybox) build_busybox >>"$out" ;;
    python) build_python >>"$out" ;;
    *) log "usage: $0 [all|busybox|python]"; exit 2 ;;
esac
cat "$out"
[ "$WHAT" = all ] && cp "$out" "$IMAGES/test-images.env"
exit 0
