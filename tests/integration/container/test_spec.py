"""ContainerSpec validation and its translation to Docker arguments (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from steward.api import ManagedService
from steward.api.container import ContainerSpec, parse_quantity
from steward.runtimes.base import RuntimeFailure
from steward.runtimes.container.config import build, environment
from tests.support.containers import make_runtime

IMAGE = "steward-test/busybox:1"


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ContainerSpec.model_validate({"image": IMAGE, **data})
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1.5", "1.5"),
        ("256Mi", str(256 * 2**20)),
        ("1Gi", str(2**30)),
        ("500M", "500000000"),
        ("1e9", "1000000000"),
        ("100k", "100000"),
    ],
)
def test_quantities_parse_like_kubernetes(text: str, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value)


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        ({"image": "Busybox"}, "image", "not an image reference"),
        ({"resources": {"cpu": "lots"}}, "resources.cpu", "not a Kubernetes quantity"),
        ({"resources": {"cpu": "1m"}}, "resources.cpu", "minimum of 10m"),
        ({"resources": {"memory": "1Mi"}}, "resources.memory", "minimum of 6Mi"),
        ({"resources": {"memory": "12 Mi"}}, "resources.memory", "not a Kubernetes quantity"),
        ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy", "Always"),
        ({"volumes": [{"hostPath": "data", "mountPath": "/d"}]}, "volumes.0.hostPath", "'^/'"),
        ({"volumes": [{"hostPath": "/d", "mountPath": "d"}]}, "volumes.0.mountPath", "'^/'"),
        ({"volumes": [{"hostPath": "/d", "mountPath": "/"}]}, "volumes", "hide the image"),
        ({"workingDir": "app"}, "workingDir", "'^/'"),
        ({"stopSignal": "TERM"}, "stopSignal", "SIG"),
        ({"stopSignal": "SIGFOO"}, "stopSignal", "not a signal name"),
        ({"capAdd": ["net_admin"]}, "capAdd.0", "pattern"),
        ({"user": "a b"}, "user", "pattern"),
        ({"privilegd": True}, "privilegd", "Extra inputs"),
        ({"command": ["a"], "python": {"callable": "m:f"}}, "", "command or python, not both"),
        ({"args": ["x"], "python": {"callable": "m:f"}}, "", "args cannot be combined"),
        ({"networkMode": "host", "ports": [{"containerPort": 1, "hostPort": 2}]}, "", "ports"),
        ({"containerPort": 70000}, "containerPort", "65535"),
    ],
)
def test_validation_errors_name_the_field(data: dict[str, Any], where: str, what: str) -> None:
    text = error_of(data)
    assert what in text
    if where:
        assert f"\n{where}\n" in text or f"\n{where} " in text, text


def test_every_field_is_described() -> None:
    schema = ContainerSpec.model_json_schema()
    models = [schema, *schema.get("$defs", {}).values()]
    for model in models:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{name} lacks a description"


def test_numbers_are_accepted_as_quantities() -> None:
    spec = ContainerSpec.model_validate({"image": IMAGE, "resources": {"cpu": 1, "memory": 1e9}})
    assert spec.resources.nano_cpus == 10**9
    assert spec.resources.memory_bytes == 10**9


def test_manifest_with_container_round_trips() -> None:
    m = ManagedService.parse(
        {
            "metadata": {"name": "web"},
            "spec": {
                "container": {
                    "image": IMAGE,
                    "command": ["httpd", "-f", "-p", "$(PORT)"],
                    "containerPort": 8080,
                    "resources": {"cpu": "500m", "memory": "64Mi"},
                }
            },
        }
    )
    assert m.spec.flavor == "container"
    again = ManagedService.parse(json.dumps(m.to_dict()))
    assert again == m


def test_create_arguments(tmp_path: Path) -> None:
    spec = ContainerSpec.model_validate(
        {
            "image": IMAGE,
            "command": ["httpd", "-p", "$(PORT)", "-h", "$(ROOT)"],
            "env": [
                {"name": "ROOT", "value": "/www"},
                {"name": "URL", "value": "http://0.0.0.0:$(PORT)/"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
                {
                    "name": "GONE",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "x", "optional": True}},
                },
            ],
            "containerPort": 8080,
            "ports": [{"containerPort": 9090, "hostPort": 19090}],
            "volumes": [{"hostPath": str(tmp_path), "mountPath": "/data", "readOnly": True}],
            "resources": {"cpu": "250m", "memory": "64Mi"},
            "user": "65534",
        }
    )
    rt = make_runtime(
        spec, tmp_path, name="args", port=18000, env={"PORT": "18000", "TOKEN": "s3cr3t"}
    )
    cfg = build(rt.spec, rt.ctx)
    kw = cfg.create_kwargs
    assert kw["name"] == rt.name == f"steward-{rt.ctx.identity.slug}"
    assert kw["entrypoint"] == ["httpd", "-p", "8080", "-h", "/www"]
    assert "command" not in kw  # args unset: the image's CMD is not used with a new ENTRYPOINT
    # Only the spec's env reaches the container, PORT being the inside port.
    assert kw["environment"] == {
        "PORT": "8080",
        "ROOT": "/www",
        "URL": "http://0.0.0.0:8080/",
        "TOKEN": "s3cr3t",
    }
    assert kw["ports"] == {"8080/tcp": ("127.0.0.1", 18000), "9090/tcp": ("127.0.0.1", 19090)}
    assert kw["nano_cpus"] == 250_000_000
    assert kw["mem_limit"] == kw["memswap_limit"] == 64 * 2**20
    assert kw["restart_policy"] == {"Name": "no"}
    assert kw["labels"]["steward.dev/managed"] == "true"
    assert kw["labels"]["steward.dev/service"] == rt.ctx.identity.key
    assert not kw["privileged"] and "cap_add" not in kw and kw["network_mode"] == "bridge"
    assert kw["mounts"][0]["Source"] == str(tmp_path) and kw["mounts"][0]["ReadOnly"]


def test_python_mode_runs_pyentry(tmp_path: Path) -> None:
    spec = ContainerSpec.model_validate(
        {"image": IMAGE, "python": {"callable": "m:f", "kwargs": {"port": "$(PORT)", "n": 1}}}
    )
    rt = make_runtime(spec, tmp_path, name="py", port=18001)
    kw = build(rt.spec, rt.ctx).create_kwargs
    assert kw["entrypoint"][:3] == ["python3", "-m", "steward.pyentry"]
    assert kw["entrypoint"][3:5] == ["--callable", "m:f"]
    assert json.loads(kw["entrypoint"][6]) == {"port": "18001", "n": 1}
    assert kw["init"] is True  # python as PID 1 would ignore SIGTERM


def test_host_network_listens_on_the_host_port(tmp_path: Path) -> None:
    spec = ContainerSpec.model_validate({"image": IMAGE, "networkMode": "host"})
    rt = make_runtime(spec, tmp_path, name="hostnet", port=18002)
    assert build(rt.spec, rt.ctx).create_kwargs["ports"] == {}
    assert environment(rt.spec, rt.ctx)["PORT"] == "18002"


def test_no_network_cannot_serve_an_endpoint(tmp_path: Path) -> None:
    spec = ContainerSpec.model_validate({"image": IMAGE, "networkMode": "none"})
    rt = make_runtime(spec, tmp_path, name="nonet", port=18003)
    with pytest.raises(RuntimeFailure) as info:
        build(rt.spec, rt.ctx)
    assert info.value.reason == "InvalidSpec"
