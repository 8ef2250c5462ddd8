"""The operator with the container flavor, from a locally built image."""

from __future__ import annotations

import docker
import requests

from tests.support.kubectl import apply, get, wait_ready
from tests.support.manifests import msvc
from tests.support.waits import wait_for


def web_spec(image: str, greeting_dir: str = "/www") -> dict:  # type: ignore[type-arg]
    return {
        "container": {
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["httpd", "-f", "-p", "8080", "-h", greeting_dir],
            "containerPort": 8080,
        },
        "endpoint": {
            "protocol": "http",
            "healthCheck": {"http": {"path": "/"}, "periodSeconds": 2},
        },
        "backoff": {"initialSeconds": 1},
    }


def containers_of(namespace: str, name: str) -> list:  # type: ignore[type-arg]
    client = docker.from_env()
    try:
        return client.containers.list(
            all=True, filters={"label": f"steward.dev/service={namespace}/{name}"}
        )  # type: ignore[no-any-return]
    finally:
        client.close()


def test_container_lifecycle(operator, kubectl, namespace, docker_images) -> None:  # type: ignore[no-untyped-def]
    apply(kubectl, namespace, msvc("web", web_spec(docker_images.busybox)))
    obj = wait_ready(kubectl, namespace, "web", timeout=90)
    st = obj["status"]
    assert (
        st["flavor"] == "container"
        and st["state"] == "active"
        and st["health"]["state"] == "healthy"
    )
    assert requests.get(st["endpoint"]["uri"], timeout=5).status_code == 200
    cid = st["runtime"]["containerId"]
    (c,) = containers_of(namespace, "web")
    assert c.id.startswith(cid[:12]) and c.attrs["HostConfig"]["Privileged"] is False
    assert c.attrs["HostConfig"]["NetworkMode"] != "host"

    # operator killed and restarted: the container is adopted, not duplicated
    operator.kill()
    operator.start()
    kubectl("annotate", "msvc", "web", "-n", namespace, "poke=1")
    wait_for(lambda: get(kubectl, namespace, "web")["status"]["state"] == "active")
    assert [x.id for x in containers_of(namespace, "web")] == [c.id]

    # a spec change replaces the container
    spec = web_spec(docker_images.busybox)
    spec["container"]["command"] = ["httpd", "-f", "-p", "8080", "-h", "/www", "-v"]
    apply(kubectl, namespace, msvc("web", spec))
    wait_for(
        lambda: (
            (o := get(kubectl, namespace, "web"))["status"].get("observedGeneration") == 2
            and o["status"]["state"] == "active"
            and o["status"]["runtime"].get("containerId") not in (None, cid)
        ),
        timeout=90,
    )
    assert len(containers_of(namespace, "web")) == 1

    kubectl("delete", "msvc", "web", "-n", namespace, "--timeout=90s", timeout=120)
    assert containers_of(namespace, "web") == []


def test_missing_image_is_ready_false_with_reason(
    operator, kubectl, namespace, docker_images
) -> None:  # type: ignore[no-untyped-def]
    apply(
        kubectl,
        namespace,
        msvc(
            "ghost",
            {"container": {"image": "steward-test/does-not-exist:1", "imagePullPolicy": "Never"}},
        ),
    )

    def reason() -> str | None:
        st = get(kubectl, namespace, "ghost").get("status") or {}
        ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
        return ready.get("reason") if st.get("state") == "error" else None

    assert wait_for(reason, timeout=60) == "ImageNotFound"
    assert (
        "steward-test/does-not-exist:1" in get(kubectl, namespace, "ghost")["status"]["lastError"]
    )
