"""``spec.placement``: which hosts (StewardNodes) may run a ManagedService, and what it needs there.

The words are a Pod's: ``nodeName`` pins, ``nodeSelector`` matches labels,
``tolerations`` tolerate taints (Kubernetes Toleration semantics, field for
field), ``resources.requests`` is a ResourceList (``cpu``, ``memory``,
extended resources such as ``nvidia.com/gpu``; every service also takes one
``services``, as every pod takes one ``pods``). ``strategy`` is the scheduler's
scoring: ``Spread`` (LeastAllocated, the default) or ``Binpack``
(MostAllocated). The decision itself is :mod:`steward.engine.placement`; the
binding the controller records is ``status.placement``
(:class:`steward.api.status.Binding`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from steward.api.base import CamelModel, cel, re2
from steward.api.container import QUANTITY_PATTERN, parse_quantity
from steward.api.node import QUALIFIED_NAME, SERVICES

NODE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z"
INTEGER_PATTERN = r"^[0-9]+\Z"
MAX_REQUESTS = 16
MAX_QUANTITY = 64
MAX_SELECTOR = 32
MAX_TOLERATIONS = 32
CPU, MEMORY = "cpu", "memory"

TolerationEffect = Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"]


def _cel_string(pattern: str) -> str:
    """A regex as a single-quoted CEL string literal (backslashes doubled)."""
    return "'" + re2(pattern).replace("\\", "\\\\") + "'"


class PlacementStrategy(StrEnum):
    """How the fitting hosts are ranked (kube-scheduler's NodeResourcesFit scoring)."""

    SPREAD = "Spread"
    """Least allocated first: services spread over the hosts."""
    BINPACK = "Binpack"
    """Most allocated first: fill a host before using the next (frees whole hosts)."""


class Toleration(CamelModel):
    """Tolerates a StewardNode taint, exactly as a Pod toleration tolerates a Node taint."""

    model_config = cel(
        (
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) "
            "|| self.value == ''",
            "tolerations: operator Exists takes no value",
        ),
        (
            "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "tolerations: an empty key needs operator Exists (it then tolerates every taint)",
        ),
        (
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerations: tolerationSeconds needs effect NoExecute",
        ),
    )

    key: str = Field(
        default="",
        max_length=316,
        pattern=rf"^\Z|{QUALIFIED_NAME}",
        description="Taint key it matches; empty (with operator Exists) matches every key.",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal",
        description="Equal: the taint's value must be `value`; Exists: any value.",
    )
    value: str = Field(
        default="",
        max_length=63,
        pattern=LABEL_VALUE,
        description="Value for Equal (empty matches a taint without value); none for Exists.",
    )
    effect: TolerationEffect = Field(
        default="",
        description="Taint effect it matches: NoSchedule, PreferNoSchedule or NoExecute; "
        "empty matches all three.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="With effect NoExecute: how long the service may stay on a host after the "
        "taint appears (unset: for as long as the taint is there).",
    )

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("tolerations: operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError(
                "tolerations: an empty key needs operator Exists (it then tolerates every taint)"
            )
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerations: tolerationSeconds needs effect NoExecute")
        return self

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        """Kubernetes' Toleration.ToleratesTaint."""
        if self.effect and self.effect != effect:
            return False
        if self.key and self.key != key:
            return False
        return self.operator == "Exists" or self.value == value


Quantity = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""A resource quantity as Kubernetes writes it: ``2``, ``"500m"``, ``"1Gi"``."""


_REQUEST_KEYS_CEL = (
    f"self.all(k, k == '{CPU}' || k == '{MEMORY}' || "
    f"(k.contains('/') && k.matches({_cel_string(QUALIFIED_NAME)})))"
)
_REQUEST_VALUES_CEL = (
    "self.all(k, type(self[k]) == int ? self[k] >= 0 : "
    f"((k == '{CPU}' || k == '{MEMORY}') ? self[k].matches({_cel_string(QUANTITY_PATTERN)}) "
    f": self[k].matches({_cel_string(INTEGER_PATTERN)})))"
)
REQUEST_KEYS_MESSAGE = (
    "resources.requests: cpu, memory or a domain-qualified extended resource such as "
    f"nvidia.com/gpu ({SERVICES} is always 1)"
)
REQUEST_VALUES_MESSAGE = (
    "resources.requests: cpu and memory are quantities (500m, 2, 1Gi); "
    "extended resources are whole numbers"
)


class PlacementResources(CamelModel):
    """What the service needs of a host; the host's allocatable minus what is bound must cover it."""

    requests: Annotated[
        dict[str, Quantity],
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {
                    "x-kubernetes-int-or-string": True,
                    "maxLength": MAX_QUANTITY,  # bounds the CEL cost; strings only
                },
                "maxProperties": MAX_REQUESTS,
                "x-kubernetes-validations": [
                    {"rule": _REQUEST_KEYS_CEL, "message": REQUEST_KEYS_MESSAGE},
                    {"rule": _REQUEST_VALUES_CEL, "message": REQUEST_VALUES_MESSAGE},
                ],
            }
        ),
    ] = Field(
        default_factory=dict,
        max_length=MAX_REQUESTS,
        description="A ResourceList: `cpu` (`500m`, `2`), `memory` (`256Mi`), extended resources "
        f"as whole numbers (`nvidia.com/gpu: 1`). `{SERVICES}` is implicitly 1.",
    )

    @field_validator("requests", mode="before")
    @classmethod
    def _requests(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        for key, amount in value.items():
            if not isinstance(key, str):
                raise ValueError(REQUEST_KEYS_MESSAGE)
            if key == SERVICES:
                raise ValueError(f"resources.requests: {SERVICES} is always 1, do not set it")
            if key not in (CPU, MEMORY) and not ("/" in key and re.fullmatch(QUALIFIED_NAME, key)):
                raise ValueError(f"{REQUEST_KEYS_MESSAGE}: not {key!r}")
            if isinstance(amount, bool) or not isinstance(amount, int | str):
                raise ValueError(
                    f"resources.requests.{key}: {amount!r} is neither an integer nor a quantity "
                    "string (write `500m`, not 0.5)"
                )
            if isinstance(amount, str) and len(amount) > MAX_QUANTITY:
                raise ValueError(f"resources.requests.{key}: longer than {MAX_QUANTITY}")
            if isinstance(amount, int):
                if amount < 0:
                    raise ValueError(f"resources.requests.{key}: {amount} is negative")
            elif key in (CPU, MEMORY):
                parse_quantity(amount)
            elif not re.fullmatch(INTEGER_PATTERN, amount):
                raise ValueError(
                    f"resources.requests.{key}: extended resources are whole numbers, "
                    f"not {amount!r}"
                )
        return value


class FailoverPolicy(StrEnum):
    """What happens to a service whose host is lost (its Lease not renewed in time)."""

    NEVER = "Never"
    """Ready=Unknown (NodeLost) and wait: for the host to return (the service is adopted in
    place) or for an admin to taint it ``node.kubernetes.io/out-of-service``. StatefulSet's
    rule: at most one copy, whatever the cost in availability."""
    AFTER_FENCING = "AfterFencing"
    """The host stops the service itself ``fenceAfterSeconds`` after its last renewal (the
    agent, and a fence helper that outlives it); the controller rebinds it elsewhere only
    ``replaceAfterSeconds`` (strictly longer) after it last saw a renewal, on its own clock."""
    MANUAL = "Manual"
    """Ready=Unknown (NodeLost) until an admin runs ``steward failover NAME``."""


DEFAULT_FENCE_AFTER = 30
DEFAULT_REPLACE_AFTER = 60
FENCE_MARGIN = 5
"""replaceAfterSeconds - fenceAfterSeconds at least: the time the host has to stop it."""


class Failover(CamelModel):
    """``spec.placement.failover``: Nomad's ``disconnect`` block in Kubernetes' words."""

    model_config = cel(
        (
            "(has(self.replaceAfterSeconds) ? self.replaceAfterSeconds : "
            f"{DEFAULT_REPLACE_AFTER}) >= (has(self.fenceAfterSeconds) ? "
            f"self.fenceAfterSeconds : {DEFAULT_FENCE_AFTER}) + {FENCE_MARGIN}",
            "failover: replaceAfterSeconds must exceed fenceAfterSeconds by at least "
            f"{FENCE_MARGIN} s (the host stops the service before it is started elsewhere)",
        ),
    )

    policy: FailoverPolicy = Field(
        default=FailoverPolicy.NEVER,
        description="Never (default): wait for the host or an admin; AfterFencing: the host "
        "stops it, then it moves; Manual: `steward failover NAME` moves it.",
    )
    fence_after_seconds: int = Field(
        default=DEFAULT_FENCE_AFTER,
        ge=1,
        le=3600,
        description="AfterFencing: the host stops the service this long after its last "
        "successful Lease renewal (by the host's monotonic clock).",
    )
    replace_after_seconds: int = Field(
        default=DEFAULT_REPLACE_AFTER,
        ge=2,
        le=7200,
        description="AfterFencing: the controller rebinds the service this long after it last "
        f"saw the host renew, on its own clock; at least fenceAfterSeconds + {FENCE_MARGIN}.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Failover:
        if self.replace_after_seconds < self.fence_after_seconds + FENCE_MARGIN:
            raise ValueError(
                "failover: replaceAfterSeconds must exceed fenceAfterSeconds by at least "
                f"{FENCE_MARGIN} s (the host stops the service before it is started elsewhere)"
            )
        return self


class Placement(CamelModel):
    """Where the service may run (which StewardNodes) and what it takes there."""

    node_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=NODE_NAME_PATTERN,
        description="Pin to this StewardNode, as a Pod's nodeName: no other host is considered, "
        "and the host's readiness, `unschedulable` and NoSchedule taints are not checked; "
        "nodeSelector, NoExecute taints, the runtime and resources still are.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_SELECTOR,
        description="Labels the StewardNode must carry with these values, as a Pod's nodeSelector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Taints the service tolerates (Kubernetes toleration semantics).",
    )
    resources: PlacementResources = Field(
        default_factory=PlacementResources,
        description="What the service needs of a host (`requests`).",
    )
    strategy: PlacementStrategy = Field(
        default=PlacementStrategy.SPREAD,
        description="Spread: the least allocated fitting host; Binpack: the most allocated.",
    )
    failover: Failover = Field(
        default_factory=Failover,
        description="What happens when the host is lost (its Lease not renewed).",
    )

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not re.fullmatch(QUALIFIED_NAME, key) or len(key) > 316:
                raise ValueError(f"nodeSelector: {key!r} is not a label key")
            if len(label) > 63 or not re.fullmatch(LABEL_VALUE, label):
                raise ValueError(f"nodeSelector.{key}: {label!r} is not a label value")
        return value

    def requests(self) -> dict[str, Decimal]:
        """The requests as exact numbers, with the implicit ``services: 1``."""
        return requests_of(self)


def requests_of(placement: Placement | None) -> dict[str, Decimal]:
    """What a service takes of its host; a service without placement takes one ``services``."""
    out = {SERVICES: Decimal(1)}
    if placement is None:
        return out
    for key, amount in placement.resources.requests.items():
        out[key] = Decimal(amount) if isinstance(amount, int) else parse_quantity(amount)
    return out
