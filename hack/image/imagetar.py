#!/usr/bin/env python3
"""Pack root-filesystem tars into an image archive, without Docker.

The archive is in the ``docker save`` layout (``manifest.json``,
``repositories``, ``<id>.json`` image config, ``<id>/layer.tar`` per layer),
which both ``docker load`` and ``ctr images import`` accept. Layers are plain
uncompressed tars whose paths are relative to ``/`` (``./bin/sh`` or
``bin/sh``), e.g. what ``tar -C ROOTFS -cf layer.tar .`` writes.

    python3 imagetar.py --tag steward/op:1 --layer base.tar --layer app.tar \\
        --entrypoint '["steward"]' --cmd '["--help"]' --user 65532:65532 \\
        --env PYTHONUNBUFFERED=1 --workdir /var/lib/steward -o image.tar

Standard library only; the output is written to ``<out>.part`` and renamed.
Deterministic for the same inputs (fixed timestamps), so the image id is stable.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

EPOCH = "1970-01-01T00:00:00Z"
CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def build_archive(
    out: Path,
    tag: str,
    layers: Sequence[Path],
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = (),
    user: str = "",
    workdir: str = "",
    labels: dict[str, str] | None = None,
    exposed_ports: Sequence[str] = (),
) -> str:
    """Write a docker-save archive of ``layers`` (bottom first); return the image id."""
    diff_ids = [_sha256_file(Path(p)) for p in layers]
    config: dict[str, object] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env],
    }
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if user:
        config["User"] = user
    if workdir:
        config["WorkingDir"] = workdir
    if labels:
        config["Labels"] = dict(labels)
    if exposed_ports:
        config["ExposedPorts"] = {p: {} for p in exposed_ports}
    image = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [
            {"created": EPOCH, "created_by": f"imagetar.py layer {i}"} for i in range(len(layers))
        ],
    }
    config_bytes = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    name, _, version = tag.rpartition(":")
    if not name or "/" in version:
        name, version = tag, "latest"
    manifest = [
        {
            "Config": f"{image_id}.json",
            "RepoTags": [f"{name}:{version}"],
            "Layers": [f"{d}/layer.tar" for d in diff_ids],
        }
    ]
    part = out.with_name(out.name + ".part")
    with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
        for digest, layer in zip(diff_ids, layers, strict=True):
            d = tarfile.TarInfo(digest)
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            tar.addfile(d)
            info = tar.gettarinfo(str(layer), arcname=f"{digest}/layer.tar")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(layer, "rb") as fh:
                tar.addfile(info, fh)
        _add_bytes(tar, f"{image_id}.json", config_bytes)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        repos = {name: {version: diff_ids[-1]}}
        _add_bytes(tar, "repositories", json.dumps(repos).encode())
    os.replace(part, out)
    return image_id


def single_file_layer(out: Path, src: Path, dest: str, mode: int = 0o755) -> None:
    """A layer holding one file (e.g. a static binary) at ``dest``."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(src), arcname=dest.lstrip("/"))
        info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, 0, "", ""
        with open(src, "rb") as fh:
            tar.addfile(info, fh)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--tag", required=True)
    p.add_argument("--layer", action="append", type=Path, default=[], help="layer tar (repeat)")
    p.add_argument("--file-layer", metavar="SRC:DEST", help="one-file layer instead of --layer")
    p.add_argument("--entrypoint", help="JSON list")
    p.add_argument("--cmd", help="JSON list")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--expose", action="append", default=[], help="e.g. 8080/tcp")
    args = p.parse_args(argv)
    layers = list(args.layer)
    if args.file_layer:
        src, _, dest = args.file_layer.partition(":")
        lt = args.output.with_name(args.output.name + ".layer.tar")
        single_file_layer(lt, Path(src), dest)
        layers.append(lt)
    if not layers:
        p.error("no layer given")
    image_id = build_archive(
        args.output,
        args.tag,
        layers,
        entrypoint=json.loads(args.entrypoint) if args.entrypoint else None,
        cmd=json.loads(args.cmd) if args.cmd else None,
        env=args.env,
        user=args.user,
        workdir=args.workdir,
        labels=dict(kv.split("=", 1) for kv in args.label),
        exposed_ports=args.expose,
    )
    if args.file_layer:
        lt.unlink()
    print(f"sha256:{image_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
