"""Chaos: random create/update/delete/adminState cycles while the operator is SIGKILLed.

Sampled throughout: never two workloads for one resource. At the end: every
resource converged to its desired state, and after deleting everything,
nothing is left (processes, Terraform state Secrets, finalizers).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from typing import Any

import docker
import psutil
import pytest
import yaml

from tests.support.waits import wait_for

TCP_SERVER = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(64)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)
TF_MODULE = """
variable "variant" { type = number }
resource "terraform_data" "thing" { input = var.variant }
output "variant" { value = var.variant }
"""


def spec_for(
    flavor: str, marker: str, variant: int, active: bool, image: str = ""
) -> dict[str, Any]:
    admin = "active" if active else "inactive"
    if flavor == "container":
        return {
            "adminState": admin,
            "container": {
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "args": [],
                "containerPort": 8080,
                "env": [{"name": "VARIANT", "value": str(variant)}],
                "stopGracePeriodSeconds": 2,
            },
            "endpoint": {"protocol": "http", "healthCheck": {"periodSeconds": 1}},
            "backoff": {"initialSeconds": 0.5},
        }
    if flavor == "daemon":
        return {
            "adminState": admin,
            "daemon": {
                "command": [sys.executable, "-c", TCP_SERVER, "$(PORT)", marker, str(variant)],
                "stopGracePeriodSeconds": 2,
            },
            "endpoint": {"protocol": "tcp", "healthCheck": {"periodSeconds": 1}},
            "backoff": {"initialSeconds": 0.5},
        }
    return {
        "adminState": admin,
        "terraform": {
            "module": {"inline": {"main.tf": TF_MODULE}},
            "vars": {"variant": variant},
            "backend": {"kubernetes": {}},
        },
    }


def chaos(
    operator: Any, kubectl: Any, namespace: str, cycles: int, seed: int, image: str
) -> dict[str, Any]:
    rng = random.Random(seed)
    names = {
        "d0": "daemon",
        "d1": "daemon",
        "d2": "daemon",
        "t0": "terraform",
        "t1": "terraform",
        "c0": "container",
        "c1": "container",
    }
    client = docker.from_env()
    marker = {n: f"chaos-{namespace}-{n}" for n in names}
    desired: dict[str, dict[str, Any] | None] = dict.fromkeys(names)
    max_seen = dict.fromkeys(names, 0)
    stop = threading.Event()

    samples = {"taken": 0, "errors": 0}

    def count_once() -> dict[str, int]:
        counts = dict.fromkeys(names, 0)
        for p in psutil.process_iter(["cmdline", "status"]):
            cmd = p.info["cmdline"] or []
            if p.info["status"] == psutil.STATUS_ZOMBIE or len(cmd) < 5:
                continue
            for n, m in marker.items():
                if m in cmd:
                    counts[n] += 1
        # sparse: labels from the list call itself, no per-container inspect that can race
        for c in client.containers.list(
            sparse=True, filters={"label": "steward.dev/managed=true", "status": "running"}
        ):
            svc = (c.attrs.get("Labels") or {}).get("steward.dev/service", "")
            ns, _, n = svc.partition("/")
            if ns == namespace and n in counts:
                counts[n] += 1
        return counts

    def sample() -> None:
        while not stop.is_set():
            try:
                counts = count_once()
            except Exception:  # a transient API error must not end the sampling
                samples["errors"] += 1
            else:
                samples["taken"] += 1
                for n, c in counts.items():
                    max_seen[n] = max(max_seen[n], c)
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kills = 0
    actions = {"create": 0, "update": 0, "delete": 0, "toggle": 0}
    t0 = time.monotonic()
    try:
        for _ in range(cycles):
            name = rng.choice(sorted(names))
            cur = desired[name]
            action = (
                "create" if cur is None else rng.choice(["update", "delete", "toggle", "update"])
            )
            actions[action] += 1
            if action == "delete":
                kubectl("delete", "msvc", name, "-n", namespace, "--timeout=120s", timeout=150)
                desired[name] = None
            else:
                variant = 0 if cur is None else cur["variant"] + (action == "update")
                active = True if cur is None else (cur["active"] != (action == "toggle"))
                desired[name] = {"variant": variant, "active": active}
                doc = {
                    "apiVersion": "steward.dev/v1alpha1",
                    "kind": "ManagedService",
                    "metadata": {"name": name},
                    "spec": spec_for(names[name], marker[name], variant, active, image),
                }
                kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0, 1.0))
                operator.kill()
                kills += 1
                time.sleep(rng.uniform(0, 0.5))
                operator.start()
            time.sleep(rng.uniform(0, 0.2))
        chaos_seconds = time.monotonic() - t0

        def converged() -> bool:
            items = {
                i["metadata"]["name"]: i
                for i in json.loads(kubectl("get", "msvc", "-n", namespace, "-o", "json").stdout)[
                    "items"
                ]
            }
            for name, want in desired.items():
                if want is None:
                    if name in items:
                        return False
                    continue
                obj = items.get(name)
                st = (obj or {}).get("status") or {}
                if obj is None or st.get("observedGeneration") != obj["metadata"]["generation"]:
                    return False
                ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
                if want["active"] and not (
                    st.get("state") == "active" and ready.get("status") == "True"
                ):
                    return False
                if not want["active"] and st.get("state") != "inactive":
                    return False
                if (
                    names[name] == "terraform"
                    and want["active"]
                    and st.get("runtime", {}).get("outputs", {}).get("variant")
                    not in (None, want["variant"])
                ):
                    return False
            return True

        t1 = time.monotonic()
        wait_for(converged, timeout=240, step=0.5)
        converge_seconds = time.monotonic() - t1
        time.sleep(1.5)  # keep sampling a little after convergence
    finally:
        stop.set()
        sampler.join()
        client.close()
    return {
        "seed": seed,
        "cycles": cycles,
        "kills": kills,
        "actions": actions,
        "max_workloads_per_resource": max_seen,
        "chaos_seconds": round(chaos_seconds, 1),
        "converge_seconds": round(converge_seconds, 1),
        "samples": samples,
        "marker": marker,
    }


def assert_nothing_left(kubectl: Any, namespace: str, marker: dict[str, str]) -> None:
    client = docker.from_env()
    kubectl("delete", "msvc", "--all", "-n", namespace, "--timeout=180s", timeout=240)
    assert json.loads(kubectl("get", "msvc", "-n", namespace, "-o", "json").stdout)["items"] == []
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(m in (p.info["cmdline"] or []) for m in marker.values())
    ]
    assert leftovers == [], leftovers
    secrets = [
        s["metadata"]["name"]
        for s in json.loads(kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
    ]
    assert not [s for s in secrets if s.startswith("tfstate-")], secrets
    ours = [
        c.name
        for c in client.containers.list(all=True, filters={"label": "steward.dev/managed=true"})
        if c.labels.get("steward.dev/service", "").startswith(f"{namespace}/")
    ]
    client.close()
    assert ours == [], ours


def run_and_check(operator: Any, kubectl: Any, namespace: str, cycles: int, image: str) -> None:
    seed = int(os.environ.get("STEWARD_CHAOS_SEED", str(random.randrange(1 << 30))))
    figures = chaos(operator, kubectl, namespace, cycles, seed, image)
    print("CHAOS", json.dumps({k: v for k, v in figures.items() if k != "marker"}))
    assert all(v <= 1 for v in figures["max_workloads_per_resource"].values()), figures
    # the sampler really ran throughout (one sample per ~0.1 s, a few errors tolerated)
    assert figures["samples"]["taken"] >= figures["chaos_seconds"] * 2, figures["samples"]
    assert figures["samples"]["errors"] <= figures["samples"]["taken"] // 10, figures["samples"]
    assert max(figures["max_workloads_per_resource"].values()) == 1, "the sampler saw nothing"
    assert_nothing_left(kubectl, namespace, figures["marker"])


def test_chaos_fast(operator, kubectl, namespace, docker_images) -> None:  # type: ignore[no-untyped-def]
    cycles = int(os.environ.get("STEWARD_CHAOS_CYCLES", "100"))
    run_and_check(operator, kubectl, namespace, cycles, docker_images.busybox)


@pytest.mark.soak
def test_chaos_soak(operator, kubectl, namespace, docker_images) -> None:  # type: ignore[no-untyped-def]
    cycles = int(os.environ.get("STEWARD_CHAOS_SOAK_CYCLES", "600"))
    run_and_check(operator, kubectl, namespace, cycles, docker_images.busybox)
