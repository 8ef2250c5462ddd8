"""The API models: camelCase round trip, defaults, the seed's status semantics, type registry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from steward.api import (
    EndpointProtocol,
    EndpointSpec,
    HealthCheck,
    ManagedService,
    ServiceState,
    ServiceStatus,
    ServiceType,
    get_service_type,
    register_service_type,
)
from steward.api.status import ManagedServiceStatus

DOC = """
apiVersion: steward.dev/v1alpha1
kind: ManagedService
metadata: {name: model-server, namespace: ml}
spec:
  daemon:
    command: [python, -m, http.server, $(PORT)]
    env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: s, key: token}}}]
  endpoint:
    protocol: http
    port: 8080
    healthCheck: {http: {path: /healthz, expectedStatus: 200}, periodSeconds: 10, failureThreshold: 3}
  restartPolicy: OnFailure
"""


def test_parse_yaml_and_round_trip_camel_case() -> None:
    ms = ManagedService.parse(DOC)
    assert ms.key == "ml/model-server"
    assert ms.spec.flavor == "daemon"
    assert ms.spec.endpoint is not None and ms.spec.endpoint.health_check is not None
    assert ms.spec.endpoint.health_check.http.expected_status == 200  # type: ignore[union-attr]
    out = ms.to_dict()
    assert out["spec"]["restartPolicy"] == "OnFailure"
    assert out["spec"]["endpoint"]["healthCheck"]["http"]["expectedStatus"] == 200
    assert out["spec"]["daemon"]["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "token"
    assert ManagedService.parse(out) == ms


def test_kubernetes_probe_defaults() -> None:
    hc = HealthCheck()
    assert (
        hc.initial_delay_seconds,
        hc.period_seconds,
        hc.timeout_seconds,
        hc.failure_threshold,
        hc.success_threshold,
    ) == (0, 10, 1, 3, 1)


def test_effective_health_check_by_protocol() -> None:
    assert EndpointSpec(protocol=EndpointProtocol.TCP).effective_health_check().tcp is not None
    http = EndpointSpec(protocol=EndpointProtocol.HTTP).effective_health_check()
    assert http.http is not None and http.http.path == "/"
    custom = EndpointSpec(
        protocol=EndpointProtocol.HTTP, health_check=HealthCheck(period_seconds=2)
    ).effective_health_check()
    assert custom.http is not None and custom.period_seconds == 2


def test_status_update_state_semantics() -> None:
    st = ServiceStatus()
    assert st.update_state(ServiceState.PENDING_STARTUP)
    assert (st.state, st.last_state) == (ServiceState.PENDING_STARTUP, ServiceState.INACTIVE)
    assert not st.update_state(ServiceState.PENDING_STARTUP, "boom")
    assert st.last_error == "boom" and st.last_state is ServiceState.INACTIVE
    st.update_state(ServiceState.ACTIVE)
    assert st.last_error == "boom"  # an empty error never clears
    st.clear_error()
    assert st.last_error == ""


def test_condition_transition_time_moves_only_on_flip() -> None:
    st = ManagedServiceStatus()
    st.set_condition("Ready", "False", "Starting", observed_generation=1)
    t0 = st.condition("Ready").last_transition_time  # type: ignore[union-attr]
    assert not st.set_condition("Ready", "False", "Starting", observed_generation=1)
    assert st.set_condition("Ready", "False", "CrashLoopBackOff", observed_generation=1)
    assert st.condition("Ready").last_transition_time == t0  # type: ignore[union-attr]
    st.set_condition("Ready", "True", "Ready", observed_generation=2)
    cond = st.condition("Ready")
    assert cond is not None and cond.status == "True" and cond.observed_generation == 2


def test_service_type_registry() -> None:
    assert get_service_type("managed-service", "daemon").flavor == "daemon"
    custom = register_service_type(ServiceType(type="model-serving", flavor="mlflow"))
    assert get_service_type("model-serving", "mlflow") is custom
    assert hash(custom) == hash(ServiceType(type="model-serving", flavor="mlflow"))
    with pytest.raises(KeyError, match="unknown service type"):
        get_service_type("nope", "nope")


@pytest.mark.parametrize(
    "env",
    [
        {"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "a", "key": "b"}}},
        {"name": "X", "valueFrom": {}},
        {"name": "1X=", "value": "1"},
    ],
)
def test_bad_env_rejected(env: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        ManagedService.parse(
            {"metadata": {"name": "x"}, "spec": {"daemon": {"command": ["x"], "env": [env]}}}
        )


@pytest.mark.parametrize(
    "spec",
    [
        {"daemon": {"command": ["x"], "env": [{"name": "A\n", "value": "1"}]}},
        {"daemon": {"command": ["x"], "stopSignal": "SIGTERM\n"}},
        {"daemon": {"command": ["x"], "resources": {"memory": "1Gi\n"}}},
        {"container": {"image": "busybox\n"}},
        {"terraform": {"inline": {"main.tf\n": ""}}},
    ],
    ids=["env-name", "signal", "memory", "image", "inline-file"],
)
def test_a_trailing_newline_does_not_slip_past_a_pattern(spec: dict) -> None:  # type: ignore[type-arg]
    """Python's ``$`` matches before a final newline; the patterns end in ``\\Z`` so the
    library refuses what the API server's RE2 refuses."""
    with pytest.raises(ValidationError):
        ManagedService.model_validate(
            {
                "apiVersion": "steward.dev/v1alpha1",
                "kind": "ManagedService",
                "metadata": {"name": "a"},
                "spec": spec,
            }
        )
    with pytest.raises(ValidationError):
        ManagedService.model_validate(
            {
                "apiVersion": "steward.dev/v1alpha1",
                "kind": "ManagedService",
                "metadata": {"name": "a\n"},
                "spec": {"daemon": {"command": ["x"]}},
            }
        )


def test_the_crd_carries_re2_patterns() -> None:
    """``\\Z`` is Python's; RE2 (the API server, CEL) reads ``$``."""
    from steward.api.crd import crd_yaml, policy_crd_yaml
    from steward.api.generated import node_crd_yaml

    for text in (crd_yaml(), policy_crd_yaml(), node_crd_yaml()):
        assert "\\Z" not in text
