"""What the multi-host e2e modules read of the cluster and of this machine's processes, and
:func:`serving_hosts`: a `steward controller` and two serving `steward agent`s on this host.

:class:`ServingHosts` holds the processes and the API clients of such a run (the suites'
fixture objects extend it) and the ManagedService verbs in its namespace, over the Python
client: ``create`` (a daemon carrying its name in the run's env marker, placed by the run's
``e2e-run`` label), ``get``, ``ready``, ``events``, ``delete``, ``gone``, ``patch_status``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes

from tests.support.copies import Sampling
from tests.support.kubectl import Runner, delete_all_msvc, install_crds, tool_runner
from tests.support.manifests import http_daemon_spec, msvc
from tests.support.namespaces import fresh_namespace
from tests.support.operator import read_log, start_steward
from tests.support.paths import MS_CRD_FILE, NODE_CRD_FILE
from tests.support.processes import alive, stop_process
from tests.support.waits import wait_for

GROUP, VERSION = "steward.dev", "v1alpha1"
PLURAL = "managedservices"
FAST = ["--renew-interval", "0.5", "--lease-duration", "3", "--status-interval", "0.5"]
"""An agent's short timers: renew every 0.5 s, a 3 s Lease, status every 0.5 s."""


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """One condition of an object's status ({} when absent)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def placement_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A ManagedService's ``status.placement`` ({} when absent)."""
    return dict((obj.get("status") or {}).get("placement") or {})


def node_of(obj: dict[str, Any]) -> str | None:
    """The host a ManagedService is bound to (None: unbound)."""
    return placement_of(obj).get("nodeName")


def pid_of(obj: dict[str, Any]) -> int:
    """The PID its status reports (``status.runtime.pid``)."""
    return int(obj["status"]["runtime"]["pid"])


def wait_nodes_ready(custom: Any, nodes: Sequence[str], timeout: float = 60) -> None:
    """Until every StewardNode in ``nodes`` exists and is Ready=True."""

    def registered() -> bool:
        for node in nodes:
            try:
                obj = custom.get_cluster_custom_object(GROUP, VERSION, "stewardnodes", node)
            except kubernetes.client.ApiException:
                return False
            if condition(obj, "Ready").get("status") != "True":
                return False
        return True

    wait_for(registered, timeout=timeout, what=f"StewardNodes {', '.join(nodes)} Ready")


def continue_stopped(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGCONT every process still running (a SIGSTOPped agent cannot stop anything)."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)


def forget_hosts(
    kubectl: Runner, nodes: Iterable[str], lease_namespace: str = "kube-node-lease"
) -> None:
    """Delete the StewardNodes and the agents' Leases (``steward-NODE``) a module made."""
    for node in nodes:
        kubectl("delete", "stewardnode", node, "--ignore-not-found", check=False)
        kubectl("delete", "lease", f"steward-{node}", "-n", lease_namespace,
                "--ignore-not-found", check=False)  # fmt: skip


def assert_none_outlived(sampling: Sampling) -> None:
    """Every copy the sampler ever saw is gone (after the ManagedServices were deleted)."""
    outlived = {
        name: left
        for name, pids in sampling.pids_by_name().items()
        if (left := sorted(p for p in pids if alive(p)))
    }
    assert not outlived, f"copies outlived their ManagedServices: {outlived}"


@dataclass(kw_only=True)
class ServingHosts:
    """A `steward controller` and one serving `steward agent` per host, in ``namespace``."""

    namespace: str
    run: str
    """This run's id: every agent's ``e2e-run`` label, every service's nodeSelector."""
    mark: str
    """The env variable each service's daemon carries its name in (what samplers look for)."""
    agents: dict[str, subprocess.Popen[bytes]]
    controller: subprocess.Popen[bytes]
    logs: dict[str, Path]
    """"controller" and each host -> its log."""
    env: dict[str, str]
    custom: Any
    core: Any
    request_timeout: tuple[float, float] | None = None
    """Every request's (connect, read) timeout; None: the client's default."""

    def _timeout(self) -> dict[str, Any]:
        return {} if self.request_timeout is None else {"_request_timeout": self.request_timeout}

    def create(
        self,
        name: str,
        placement: dict[str, Any] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        """A ManagedService running ``spec`` (an HTTP daemon by default) marked with its name,
        placed by the run's label; ``placement`` adds to spec.placement (a nodeSelector adds
        to the run's)."""
        spec = spec or http_daemon_spec()
        spec["daemon"]["env"] = [{"name": self.mark, "value": name}]
        spec["placement"] = {"nodeSelector": {"e2e-run": self.run}}
        for key, value in (placement or {}).items():
            if key == "nodeSelector":
                spec["placement"]["nodeSelector"].update(value)
            else:
                spec["placement"][key] = value
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, msvc(name, spec), **self._timeout()
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name, **self._timeout()
        )

    def ready(self, name: str) -> dict[str, Any] | None:
        """The object while it is Ready=True, else None."""
        obj = self.get(name)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, **self._timeout()
        )

    def gone(self, name: str) -> bool:
        try:
            self.get(name)
        except kubernetes.client.ApiException as exc:
            return bool(exc.status == 404)
        return False

    def patch_status(
        self, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        """A merge patch of the status subresource (preconditioned on ``resource_version``)."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body = {"metadata": {"resourceVersion": resource_version}, **body}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, body, **self._timeout()
        )

    def events(self, name: str, reason: str) -> list[Any]:
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}", **self._timeout()
        ).items
        return [e for e in items if e.reason == reason]

    def stewardnode(self, node: str) -> dict[str, Any]:
        return self.custom.get_cluster_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, "stewardnodes", node, **self._timeout()
        )

    def patch_node(self, node: str, change: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(
            GROUP, VERSION, "stewardnodes", node, change, **self._timeout()
        )

    def debug(self) -> str:
        return "\n".join(f"--- {k}\n{read_log(v)[-3000:]}" for k, v in self.logs.items())


@dataclass(kw_only=True)
class LiveHosts(ServingHosts):
    """What :func:`serving_hosts` yields: two hosts, their agents' arguments, the sampler."""

    nodes: tuple[str, str]
    agent_args: dict[str, list[str]]
    """node -> the arguments its agent was started with (``restart_agent`` starts it again)."""
    sampler: Sampling = field(repr=False)

    def agent_pid(self, node: str) -> int:
        return self.agents[node].pid

    def restart_agent(self, node: str) -> subprocess.Popen[bytes]:
        """Start ``node``'s agent again, as it was first started."""
        self.agents[node] = start_steward(self.agent_args[node], self.env, self.logs[node])
        return self.agents[node]


H = TypeVar("H", bound=LiveHosts)


@contextlib.contextmanager
def serving_hosts(
    hosts: type[H],
    control_plane: Any,
    tmp: Path,
    name: str,
    prefix: str,
    mark: str,
    sampling: Callable[[dict[str, subprocess.Popen[bytes]]], Sampling],
    *,
    controller_args: Sequence[str] = (),
    agent_args: Callable[[str], list[str]] = lambda host: [],
) -> Iterator[H]:
    """A `steward controller` and two `steward agent --serve` (each with its own state
    directory under ``tmp``, renewing every 0.5 s) on this host, against ``control_plane``,
    in a fresh namespace ``NAME-<run>``: the StewardNodes ``PREFIX-a-<run>`` and
    ``PREFIX-b-<run>``, labelled ``e2e-run=<run>``; ``agent_args(host)`` (host ``a`` or ``b``)
    adds to an agent's arguments, ``controller_args`` to the controller's. Yields them as ``hosts`` once both are Ready, with
    ``sampling(agents)`` started. At exit: stopped agents are continued, every ManagedService
    is deleted (and waited for), no copy the sampler saw may be alive, then the processes are
    stopped, the StewardNodes and Leases deleted and the logs' ends printed."""
    kubectl = tool_runner("kubectl", control_plane)
    install_crds(kubectl, MS_CRD_FILE, NODE_CRD_FILE)
    run = "r" + uuid.uuid4().hex[:6]
    nodes = (f"{prefix}-a-{run}", f"{prefix}-b-{run}")
    api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig)
    )
    custom = kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)
    env = control_plane.env()
    with fresh_namespace(kubectl, f"{name}-{run}") as ns:
        logs = {"controller": tmp / "controller.log"}
        controller_argv = ["controller", "-n", ns, *controller_args]
        controller = start_steward(controller_argv, env, logs["controller"])
        agents: dict[str, subprocess.Popen[bytes]] = {}
        args: dict[str, list[str]] = {}
        sampler: Sampling | None = None
        try:
            for host, node in zip(("a", "b"), nodes, strict=True):
                logs[node] = tmp / f"{node}.log"
                args[node] = ["--state-dir", str(tmp / node), "agent", "--node", node, "--serve"]
                args[node] += ["-n", ns, "--label", f"e2e-run={run}", *FAST, *agent_args(host)]
                agents[node] = start_steward(args[node], env, logs[node])

            wait_nodes_ready(custom, nodes)
            sampler = sampling(agents)
            sampler.start()
            yield hosts(
                namespace=ns, run=run, mark=mark, agents=agents, controller=controller,
                logs=logs, env=env, custom=custom, core=core, nodes=nodes, agent_args=args,
                sampler=sampler,
            )  # fmt: skip
        finally:
            try:
                continue_stopped(agents.values())
                delete_all_msvc(kubectl, ns)
                if sampler is not None:
                    sampler.stop()
                    assert_none_outlived(sampler)
            finally:
                for proc in (*agents.values(), controller):
                    stop_process(proc)
                forget_hosts(kubectl, nodes)
                for log_name, log in logs.items():
                    print(f"--- {log_name}\n{read_log(log)[-4000:]}")
