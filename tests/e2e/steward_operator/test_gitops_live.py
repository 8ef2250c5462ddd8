"""Argo CD's Lua health, kstatus and Flux's CEL on LIVE ManagedServices (issue #15, items 4-5).

The hand-written objects of tests/unit/test_gitops_health.py say what each tool
should make of each status; this module checks that the objects the real
operator writes through the real apiserver are those objects. A real operator
(with --enforce-policy) drives real ManagedServices through every state; at
each state, reached by waiting for its conditions (never by sleeping), the
object is read back as ``kubectl get -o json`` returns it, and at the end all
snapshots go through the three programs of hack/gitops/ in one batch each:
``argo-health`` (charts/steward/health/managedservice.lua in gopher-lua),
``kstatus`` (cli-utils ``status.Compute``) and ``flux-cel`` (the
``healthCheckExprs`` of examples/flux-kustomization.yaml and of
docs/gitops.md).

A stale ``observedGeneration`` is made deterministic: with the operator
stopped, nothing can act on a spec change, so the object read back is stale
for certain; a ManagedService in a namespace the operator does not watch shows
what every tool sees before the first status write (the CRD's default
``status: {observedGeneration: 0}``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitops import (
    BUILD_TIMEOUT,
    argo_health,
    docs_flux_exprs,
    example_flux_exprs,
    flux_cel,
    gitops_bin,
    kstatus,
)
from tests.support.kubectl import Runner, apply, get, install_crds, tool_runner
from tests.support.manifests import http_daemon_spec, msvc, policy
from tests.support.namespaces import fresh_namespace, namespace_name
from tests.support.operator import Operator
from tests.support.paths import MS_CRD_FILE, POLICY_CRD_FILE
from tests.support.waits import wait_for

# The first test may build the tools when they are not cached (minutes on 2 busy cores).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)

STATE_TIMEOUT = 90
ABSENT_IMAGE = "127.0.0.1:9/steward-test/absent:1"  # a local registry port that refuses
MISSING = "/usr/bin/steward-e2e-no-such-command"  # allowed by the policy, absent
DENIED = "/opt/steward-e2e-denied/serve"  # not allowed by the policy
Obj = dict[str, Any]


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def observed(obj: Obj) -> bool:
    """Status (and every condition) computed for the current generation."""
    gen = obj["metadata"]["generation"]
    status = obj.get("status") or {}
    conds = conditions(obj).values()
    return status.get("observedGeneration") == gen and all(
        c.get("observedGeneration") == gen for c in conds
    )


def has(obj: Obj, type_: str, status: str, reason: str | None = None) -> bool:
    c = conditions(obj).get(type_, {})
    return c.get("status") == status and (reason is None or c.get("reason") == reason)


@dataclass(frozen=True)
class State:
    """One state: the object to read, when it is reached, and what each tool must say."""

    name: str
    service: str
    reached: Callable[[Obj], bool]
    argo: str
    kstatus: str
    flux: str


def starting(o: Obj) -> bool:
    return (
        observed(o)
        and o["status"].get("state") == "pending_startup"
        and has(o, "Reconciling", "True", "Starting")
        and has(o, "Ready", "False", "Starting")
    )


def ready(o: Obj) -> bool:
    return observed(o) and o["status"].get("state") == "active" and has(o, "Ready", "True")


def backing_off(o: Obj) -> bool:
    return (
        observed(o)
        and o["status"].get("state") == "error"
        and bool(o["status"].get("nextRestartAt"))
        and has(o, "Reconciling", "True", "CrashLoopBackOff")
        and has(o, "Stalled", "False")
    )


def stalled(reason: str) -> Callable[[Obj], bool]:
    def check(o: Obj) -> bool:
        return observed(o) and has(o, "Stalled", "True", reason) and has(o, "Ready", "False")

    return check


def suspended(o: Obj) -> bool:
    return (
        observed(o)
        and o["status"].get("state") == "inactive"
        and has(o, "Ready", "False", "Stopped")
        and has(o, "Reconciling", "False")
    )


def terminating(o: Obj) -> bool:
    return bool(o["metadata"].get("deletionTimestamp")) and bool(o["metadata"].get("finalizers"))


def stale(o: Obj) -> bool:
    status = o.get("status") or {}
    return bool(status.get("observedGeneration") != o["metadata"]["generation"])


# In the order the test reaches them. kstatus has no Suspended: an inactive
# service is InProgress for ever (docs/gitops.md, "the gap"); Flux's
# healthCheckExprs call it Current.
STATES = [
    State("unobserved", "unwatched", stale, "Progressing", "InProgress", "InProgress"),
    State("starting", "gated", starting, "Progressing", "InProgress", "InProgress"),
    State("ready", "gated", ready, "Healthy", "Current", "Current"),
    State("ready-plain", "web", ready, "Healthy", "Current", "Current"),
    State(
        "crash-loop-back-off", "crashing", backing_off, "Progressing", "InProgress", "InProgress"
    ),
    State(
        "stalled-command-not-found",
        "missing",
        stalled("CommandNotFound"),
        "Degraded",
        "Failed",
        "Failed",
    ),
    State(
        "stalled-image-pull-never",
        "no-image",
        stalled("ImagePullFailed"),
        "Degraded",
        "Failed",
        "Failed",
    ),
    State("invalid-spec", "invalid", stalled("InvalidSpec"), "Degraded", "Failed", "Failed"),
    State("policy-denied", "denied", stalled("PolicyDenied"), "Degraded", "Failed", "Failed"),
    State("inactive", "stopped", suspended, "Suspended", "InProgress", "Current"),
    State("stale-ready", "web", stale, "Progressing", "InProgress", "InProgress"),
    State("stale-stalled", "missing", stale, "Progressing", "InProgress", "InProgress"),
    State("stale-inactive", "stopped", stale, "Progressing", "InProgress", "InProgress"),
    # Argo CD calls a resource being deleted Progressing before any health script
    # runs, and flux-cel does not model deletion: kstatus only.
    State("terminating", "crashing", terminating, "", "Terminating", ""),
    State("ready-new-generation", "web", ready, "Healthy", "Current", "Current"),
]
BY_NAME = {s.name: s for s in STATES}


def gated_daemon(gate: Path) -> dict[str, Any]:
    """An HTTP daemon that serves only once GATE exists: Starting until the test says so."""
    script = (
        'while [ ! -e "$1" ]; do sleep 0.1; done; exec "$2" -m http.server "$3" --bind 127.0.0.1'
    )
    spec = http_daemon_spec()
    spec["daemon"]["command"] = ["/bin/sh", "-c", script, "gated", str(gate), sys.executable]
    spec["daemon"]["command"].append("$(PORT)")
    # Probes fail while gated: give the start far more than the test needs.
    spec["endpoint"]["healthCheck"].update(periodSeconds=1, failureThreshold=600)
    return spec


def specs(gate: Path) -> dict[str, dict[str, Any]]:
    return {
        "gated": gated_daemon(gate),
        "web": http_daemon_spec(),
        "crashing": {
            "daemon": {"command": [sys.executable, "-c", "raise SystemExit(3)"]},
            "restartPolicy": "Always",
            "backoff": {"initialSeconds": 600, "maxSeconds": 600},  # outlasts the test
        },
        "missing": {"daemon": {"command": [MISSING]}, "restartPolicy": "Never"},
        "no-image": {
            # A non-root user: the policy denies root containers by default.
            "container": {
                "image": ABSENT_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "user": "65534",
            },
            "restartPolicy": "Never",
        },
        "denied": {"daemon": {"command": [DENIED]}},
        "stopped": {"adminState": "inactive", "daemon": {"command": [sys.executable, "-V"]}},
    }


# The CRD refuses it (initialSeconds above the default maxSeconds); an older, looser
# CRD admitted it, and stored objects are not checked again: InvalidSpec, Stalled.
INVALID: Obj = {"daemon": {"command": [sys.executable, "-V"]}, "backoff": {"initialSeconds": 600}}


def admitted_by_an_older_crd(kubectl: Runner, ns: str, name: str, spec: Obj) -> None:
    """Create ``spec`` under a copy of the CRD without the backoff rule, then restore the CRD."""
    crd = yaml.safe_load(MS_CRD_FILE.read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["backoff"].pop("x-kubernetes-validations")
    doc = yaml.safe_dump(msvc(name, spec))

    def install(text: str) -> None:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)

    def admitted() -> bool:
        return kubectl("apply", "-n", ns, "-f", "-", input=doc, check=False).returncode == 0

    def refused() -> bool:
        probe = yaml.safe_dump(msvc(f"{name}-probe", spec))
        out = kubectl("apply", "-n", ns, "--dry-run=server", "-f", "-", input=probe, check=False)
        return out.returncode != 0

    install(yaml.safe_dump(crd))
    try:
        wait_for(admitted, timeout=30, what="the looser CRD to admit the object")
    finally:
        install(MS_CRD_FILE.read_text())
        wait_for(refused, timeout=30, what="the real CRD to refuse the spec again")


# Spec changes made while no operator runs (merge patches).
STALE_PATCHES: dict[str, Obj] = {
    "web": {"spec": {"endpoint": {"healthCheck": {"periodSeconds": 3}}}},
    "missing": {"spec": {"daemon": {"command": [f"{MISSING}-2"]}}},
    "stopped": {"spec": {"daemon": {"command": [sys.executable, "-VV"]}}},
}


@dataclass
class Live:
    """The snapshots (state name -> object as the apiserver returned it)."""

    objects: dict[str, Obj]


def snapshot(kubectl: Runner, namespace: str, state: State, into: dict[str, Obj]) -> None:
    """Wait until STATE's service is in STATE, then keep the object as read."""
    last: list[Obj] = []

    def reached() -> Obj | None:
        obj = get(kubectl, namespace, state.service)
        last[:] = [obj]
        return obj if state.reached(obj) else None

    try:
        into[state.name] = wait_for(reached, timeout=STATE_TIMEOUT, what=state.name)
    except AssertionError:
        shown = json.dumps(last[0].get("status") if last else None, indent=1)
        raise AssertionError(f"{state.service} never reached {state.name}:\n{shown}") from None


@pytest.fixture(scope="module")
def live(
    control_plane: Any,
    crd_installed: None,
    docker_images: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    kubectl = tool_runner("kubectl", control_plane)
    install_crds(kubectl, POLICY_CRD_FILE)
    tmp = tmp_path_factory.mktemp("gitops-live")
    gate = tmp / "gate"
    with (
        fresh_namespace(kubectl, namespace_name("gitops-live")) as ns,
        fresh_namespace(kubectl, namespace_name("gitops-unwatched")) as unwatched,
    ):
        kubectl("label", "namespace", ns, f"e2e-gitops-live={ns}")
        allow = policy(
            f"{ns}-gitops-live",
            {
                "namespaceSelector": {"matchLabels": {"e2e-gitops-live": ns}},
                "daemon": {"commands": ["/bin/sh", "/usr/bin/", f"{Path(sys.executable).parent}/"]},
            },
        )
        kubectl("apply", "-f", "-", input=yaml.safe_dump(allow))
        op = Operator(
            control_plane, ns, tmp / "state", tmp / "operator.log", extra_args=("--enforce-policy",)
        )
        op.start()
        try:
            yield Live(collect(kubectl, op, ns, unwatched, gate))
        finally:
            try:
                op.finish(kubectl)
            finally:
                kubectl("delete", "stewardpolicy", allow["metadata"]["name"], check=False)
                print(op.logs()[-3000:])


def collect(kubectl: Runner, op: Operator, ns: str, unwatched: str, gate: Path) -> dict[str, Obj]:
    """Drive the services through every state of STATES; the snapshots, by state name."""
    out: dict[str, Obj] = {}
    apply(kubectl, unwatched, msvc("unwatched", http_daemon_spec()))
    for name, spec in specs(gate).items():
        apply(kubectl, ns, msvc(name, spec))
    admitted_by_an_older_crd(kubectl, ns, "invalid", INVALID)

    def take(*names: str, namespace: str = ns) -> None:
        for name in names:
            snapshot(kubectl, namespace, BY_NAME[name], out)

    take("unobserved", namespace=unwatched)
    take("starting")
    gate.touch()
    take("ready", "ready-plain", "crash-loop-back-off", "stalled-command-not-found")
    take("stalled-image-pull-never", "invalid-spec", "policy-denied", "inactive")

    # Stale: no operator runs, so nothing acts on these spec changes.
    op.stop()
    for name, patch in STALE_PATCHES.items():
        kubectl("patch", "msvc", name, "-n", ns, "--type", "merge", "-p", json.dumps(patch))
    # Deleted while no operator runs: its finalizer holds it.
    kubectl("delete", "msvc", "crashing", "-n", ns, "--wait=false")
    take("stale-ready", "stale-stalled", "stale-inactive", "terminating")
    op.start()
    take("ready-new-generation")
    assert list(out) == list(BY_NAME), "collect() must take every state, in order"
    return out


@dataclass(frozen=True)
class Verdicts:
    argo: dict[str, Obj]
    kstatus: dict[str, Obj]
    flux: dict[str, Obj]  # the example's healthCheckExprs
    flux_docs: list[dict[str, Obj]]  # each Kustomization docs/gitops.md shows


@pytest.fixture(scope="module")
def verdicts(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """Each program run once on all snapshots (one process each)."""
    bin_dir = gitops_bin()
    names = [s.name for s in STATES]
    objs = [live.objects[n] for n in names]
    tmp = tmp_path_factory.mktemp("flux-live")

    def by_name(results: list[Obj]) -> dict[str, Obj]:
        assert len(results) == len(names), results
        return dict(zip(names, results, strict=True))

    shown = docs_flux_exprs()
    assert shown, "docs/gitops.md shows no Flux Kustomization with healthCheckExprs"
    found = Verdicts(
        argo=by_name(argo_health(bin_dir, objs)),
        kstatus=by_name(kstatus(bin_dir, objs)),
        flux=by_name(flux_cel(bin_dir, example_flux_exprs(), objs, tmp)),
        flux_docs=[by_name(flux_cel(bin_dir, exprs, objs, tmp)) for exprs in shown],
    )
    for n in names:
        argo, kst, flux = found.argo[n], found.kstatus[n], found.flux[n]
        print(
            f"LIVE {n}: argo={argo.get('status')} ({argo.get('message')!r}) "
            f"kstatus={kst.get('status')} ({kst.get('message')!r}) flux={flux}"
        )
    return found


def shown(live: Live, state: State, verdict: Obj) -> str:
    obj = live.objects[state.name]
    meta = {k: obj["metadata"].get(k) for k in ("name", "namespace", "generation")}
    return f"{state.name}: {verdict}\n{json.dumps({'metadata': meta, 'status': obj.get('status')}, indent=1)}"


# Argo CD runs no health script on a resource being deleted, and flux-cel does not
# model deletion: those states are judged by kstatus alone.
@pytest.mark.parametrize("state", [s for s in STATES if s.argo], ids=lambda s: s.name)
def test_argo_cd_health_on_the_live_object(live: Live, verdicts: Verdicts, state: State) -> None:
    verdict = verdicts.argo[state.name]
    assert verdict.get("status") == state.argo, shown(live, state, verdict)


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
def test_kstatus_on_the_live_object(live: Live, verdicts: Verdicts, state: State) -> None:
    verdict = verdicts.kstatus[state.name]
    assert verdict.get("status") == state.kstatus, shown(live, state, verdict)


@pytest.mark.parametrize("state", [s for s in STATES if s.flux], ids=lambda s: s.name)
def test_flux_health_check_exprs_on_the_live_object(
    live: Live, verdicts: Verdicts, state: State
) -> None:
    verdict = verdicts.flux[state.name]
    assert verdict == {"status": state.flux}, shown(live, state, verdict)
    for docs in verdicts.flux_docs:
        assert docs[state.name] == verdict, "docs/gitops.md's expressions disagree with examples/"


def test_a_stale_generation_is_never_current_nor_healthy(live: Live, verdicts: Verdicts) -> None:
    stale_states = [s for s in STATES if stale(live.objects[s.name])]
    assert {s.name for s in stale_states} == {
        "unobserved",
        "stale-ready",
        "stale-stalled",
        "stale-inactive",
        "terminating",  # setting deletionTimestamp bumps metadata.generation
    }
    for state in stale_states:
        for tool, verdict in (
            ("argo", verdicts.argo[state.name]),
            ("kstatus", verdicts.kstatus[state.name]),
            ("flux", verdicts.flux[state.name]),
        ):
            assert verdict.get("status") not in ("Current", "Healthy"), (
                tool,
                shown(live, state, verdict),
            )


def test_the_stale_objects_still_carry_the_old_verdicts(live: Live) -> None:
    """What makes the stale cases meaningful: only the generation says they are stale."""
    web, missing, stopped = (
        live.objects[n] for n in ("stale-ready", "stale-stalled", "stale-inactive")
    )
    assert has(web, "Ready", "True"), web["status"]
    assert has(missing, "Stalled", "True"), missing["status"]
    assert has(stopped, "Ready", "False", "Stopped"), stopped["status"]
    for obj in (web, missing, stopped):
        assert obj["metadata"]["generation"] == obj["status"]["observedGeneration"] + 1


def test_argo_cd_messages_say_why(live: Live, verdicts: Verdicts) -> None:
    """Degraded carries the Ready message, Healthy the endpoint, a stale object its generation."""
    for state in STATES:
        obj, verdict = live.objects[state.name], verdicts.argo[state.name]
        message = verdict.get("message", "")
        if state.argo == "Degraded":
            assert conditions(obj)["Ready"]["message"] in message, shown(live, state, verdict)
        if state.argo == "Healthy":
            assert obj["status"]["endpoint"]["uri"] in message, shown(live, state, verdict)
        if stale(obj):
            assert f"generation {obj['metadata']['generation']}" in message, verdict


def test_kstatus_failed_carries_the_stalled_message(live: Live, verdicts: Verdicts) -> None:
    for state in STATES:
        if state.kstatus != "Failed":
            continue
        stalled_message = conditions(live.objects[state.name])["Stalled"]["message"]
        assert stalled_message and stalled_message in verdicts.kstatus[state.name]["message"]
