"""Hypothesis pushes generated specs through the models and the engine's decision code.

Every input either validates or raises a pydantic ValidationError (never
another exception), and decide() returns a decision for every combination.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck as HCheck
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from steward.api import AdminState, ManagedService, RestartPolicy, ServiceState
from steward.api.status import HealthState
from steward.engine.decide import Action, LastRun, RunEnd, decide
from steward.runtimes.base import Observation

EXAMPLES = 10_000

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**33), 2**33),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["", "$(PORT)", "../..", "SIGTERM", "http", "tcp", "Always", "active"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

endpoint = st.fixed_dictionaries(
    {},
    optional={
        "protocol": st.sampled_from(["tcp", "http", "https", "ftp", 1]),
        "port": st.one_of(st.integers(-5, 70000), st.text(max_size=5)),
        "allocatePort": st.one_of(st.booleans(), scalars),
        "host": st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", ""]),
        "healthCheck": st.fixed_dictionaries(
            {},
            optional={
                "http": st.fixed_dictionaries(
                    {},
                    optional={
                        "path": st.sampled_from(["/", "/x", "x", ""]),
                        "method": st.sampled_from(["GET", "HEAD", "POST"]),
                        "expectedStatus": st.integers(0, 1000),
                    },
                ),
                "tcp": st.just({}),
                "periodSeconds": st.one_of(st.floats(-1, 5000), st.integers(-1, 5000)),
                "failureThreshold": st.integers(-1, 2000),
                "successThreshold": st.integers(-1, 2000),
                "timeoutSeconds": st.floats(-1, 700),
                "initialDelaySeconds": st.floats(-1, 4000),
            },
        ),
    },
)
daemon = st.fixed_dictionaries(
    {},
    optional={
        "command": st.lists(st.text(max_size=10), max_size=4),
        "python": st.fixed_dictionaries(
            {"callable": st.sampled_from(["a:b", "a.b:c.d", "bad", ":x"])},
            optional={"kwargs": st.dictionaries(st.text(max_size=5), json_values, max_size=3)},
        ),
        "env": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["A", "B_1", "1x", "a=b", ""])},
                optional={
                    "value": st.text(max_size=5),
                    "valueFrom": st.fixed_dictionaries(
                        {},
                        optional={
                            "secretKeyRef": st.fixed_dictionaries(
                                {"name": st.just("s"), "key": st.just("k")}
                            ),
                            "configMapKeyRef": st.fixed_dictionaries(
                                {"name": st.just("c"), "key": st.just("k")}
                            ),
                        },
                    ),
                },
            ),
            max_size=3,
        ),
        "stopSignal": st.sampled_from(["SIGTERM", "SIGINT", "TERM", "sigkill"]),
        "stopGracePeriodSeconds": st.floats(-10, 5000),
        "silent": scalars,
    },
)
spec = st.fixed_dictionaries(
    {},
    optional={
        "adminState": st.sampled_from(["active", "inactive", "paused", None]),
        "daemon": daemon,
        "container": st.fixed_dictionaries({}, optional={"image": st.text(max_size=10)}),
        "terraform": st.dictionaries(
            st.sampled_from(["module", "vars", "endpointOutput"]), json_values, max_size=3
        ),
        "endpoint": endpoint,
        "restartPolicy": st.sampled_from(["Always", "OnFailure", "Never", "always", 3]),
        "backoff": st.dictionaries(
            st.sampled_from(["initialSeconds", "maxSeconds", "resetAfterSeconds"]),
            st.floats(-1, 100000),
            max_size=3,
        ),
        "deletionPolicy": st.sampled_from(["Delete", "Orphan", "Keep"]),
        "unknown": json_values,
    },
)
manifest = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["steward.dev/v1alpha1", "v1"]),
        "kind": st.sampled_from(["ManagedService", "Pod"]),
        "metadata": st.fixed_dictionaries(
            {"name": st.sampled_from(["ok", "a-b", "../x", "UPPER", "x" * 70, ""])},
            optional={"namespace": st.sampled_from(["default", "ns1", "a/b"])},
        ),
        "spec": spec,
    }
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HCheck), database=None)
@given(manifest)
def test_models_accept_or_raise_validation_error(doc: dict[str, Any]) -> None:
    try:
        ms = ManagedService.model_validate(doc)
    except ValidationError as exc:
        assert exc.errors(), "a rejection names at least one field"
        return
    # Whatever validates round-trips and names a legal, traversal-free identity.
    assert ManagedService.model_validate(ms.to_dict()) == ms
    assert "/" not in ms.metadata.name and ".." not in ms.metadata.name
    assert ms.spec.flavor in ("daemon", "container", "terraform")


observations = st.builds(
    Observation,
    state=st.sampled_from(list(ServiceState)),
    message=st.text(max_size=5),
    exit_code=st.one_of(st.none(), st.integers(-300, 300)),
    finished_at=st.one_of(st.none(), st.just(datetime.now(UTC))),
    reason=st.sampled_from(["", "ProcessExited", "CommandNotFound"]),
)


@settings(max_examples=3_000, deadline=None, suppress_health_check=list(HCheck), database=None)
@given(
    st.sampled_from(list(AdminState)),
    observations,
    st.sampled_from(list(HealthState)),
    st.booleans(),
    st.sampled_from(list(RestartPolicy)),
    st.booleans(),
    st.booleans(),
    st.one_of(
        st.none(),
        st.builds(
            LastRun,
            st.sampled_from(list(RunEnd)),
            st.sampled_from(["", "ProcessExited", "CommandNotFound", "ImagePullFailed"]),
        ),
    ),
)
def test_decide_is_total_and_consistent(
    admin, obs, health, probed, policy, due, expired, last
) -> None:  # type: ignore[no-untyped-def]
    d = decide(admin, obs, health, probed, policy, due, expired, last_run=last)
    assert isinstance(d.action, Action) and isinstance(d.state, ServiceState) and d.reason
    if d.ready:
        assert admin is AdminState.ACTIVE and obs.running and d.state is ServiceState.ACTIVE
    if admin is AdminState.INACTIVE:
        assert d.action in (Action.STOP, Action.NONE)
    if d.action is Action.START:
        assert not obs.running
    if d.stalled:
        assert d.action in (Action.NONE, Action.STOP) and d.state is ServiceState.ERROR
        assert policy is not RestartPolicy.ALWAYS
