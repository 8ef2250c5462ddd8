"""Endpoint and health-check spec, with Kubernetes probe defaults."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from steward.api.base import CamelModel, cel


class EndpointProtocol(StrEnum):
    """How the endpoint is spoken to."""

    TCP = "tcp"
    HTTP = "http"
    HTTPS = "https"


class Expose(StrEnum):
    """Who reaches the endpoint: this host only, or the cluster through a Service."""

    NONE = "None"
    CLUSTER = "Cluster"


HOST_IP = "$(HOST_IP)"
"""What ``endpoint.host`` may say under ``expose: Cluster``: the host's routable address."""


class HTTPGetCheck(CamelModel):
    """An HTTP request whose status decides health."""

    path: str = Field(default="/", max_length=2048, pattern=r"^/", description="Request path.")
    method: Literal["GET", "HEAD"] = Field(default="GET", description="HTTP method.")
    expected_status: int | None = Field(
        default=None,
        ge=100,
        le=599,
        description="Exact status that means healthy; unset means any 200-399 (Kubernetes).",
    )


class TCPCheck(CamelModel):
    """Healthy when a TCP connection opens."""


class HealthCheck(CamelModel):
    """A probe with Kubernetes semantics and defaults."""

    model_config = cel(
        ("!(has(self.http) && has(self.tcp))", "healthCheck: set http or tcp, not both"),
    )

    http: HTTPGetCheck | None = Field(default=None, description="Probe with an HTTP request.")
    tcp: TCPCheck | None = Field(default=None, description="Probe by opening a TCP connection.")
    initial_delay_seconds: float = Field(
        default=0, ge=0, le=3600, description="Wait this long after start before probing."
    )
    period_seconds: float = Field(
        default=10, gt=0, le=3600, description="How often to probe once ready."
    )
    timeout_seconds: float = Field(default=1, gt=0, le=600, description="Timeout of one probe.")
    failure_threshold: int = Field(
        default=3, ge=1, le=1000, description="Consecutive failures that mean unhealthy."
    )
    success_threshold: int = Field(
        default=1, ge=1, le=1000, description="Consecutive successes that mean healthy."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        if self.http is not None and self.tcp is not None:
            raise ValueError("healthCheck: set http or tcp, not both")
        return self


class EndpointSpec(CamelModel):
    """Where the service listens, and how its health is checked."""

    model_config = cel(
        (
            "has(self.port) || !has(self.allocatePort) || self.allocatePort",
            "endpoint: allocatePort: false needs a port to use",
        ),
        (
            "!has(self.expose) || self.expose != 'Cluster' || has(self.port)",
            "endpoint: expose: Cluster needs a port (the Service's port)",
        ),
        (
            "!has(self.expose) || self.expose != 'Cluster' || !has(self.host) "
            "|| self.host == '127.0.0.1' || self.host == '$(HOST_IP)'",
            "endpoint: with expose: Cluster the service binds on its host's address "
            "($(HOST_IP)); leave host unset",
        ),
    )

    protocol: EndpointProtocol = Field(
        default=EndpointProtocol.TCP, description="tcp, http or https."
    )
    host: str = Field(
        default="127.0.0.1",
        max_length=253,
        description="Address the service binds and is probed on (0.0.0.0 shows as 127.0.0.1).",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Preferred port; `$(PORT)` expands to the one used.",
    )
    allocate_port: bool = Field(
        default=True,
        description="When the preferred (or last used) port is taken, pick a free one.",
    )
    health_check: HealthCheck | None = Field(
        default=None,
        description="Probe; unset means a TCP check for tcp and GET / for http(s).",
    )
    expose: Expose = Field(
        default=Expose.NONE,
        description="None: reached on its host only. Cluster: bound and probed on the host's "
        "routable address ($(HOST_IP)), behind a selector-less ClusterIP Service of the "
        "resource's name (port: the Service's port) and an EndpointSlice Steward keeps.",
    )

    @model_validator(mode="after")
    def _port_when_fixed(self) -> EndpointSpec:
        if not self.allocate_port and self.port is None:
            raise ValueError("endpoint: allocatePort: false needs a port to use")
        if self.expose is Expose.CLUSTER:
            if self.port is None:
                raise ValueError("endpoint: expose: Cluster needs a port (the Service's port)")
            if self.host not in ("127.0.0.1", HOST_IP):
                raise ValueError(
                    "endpoint: with expose: Cluster the service binds on its host's address "
                    "($(HOST_IP)); leave host unset"
                )
        return self

    @property
    def exposed(self) -> bool:
        return self.expose is Expose.CLUSTER

    def on_host(self, host_ip: str | None) -> EndpointSpec:
        """The spec as this host serves it: under ``expose: Cluster`` bound and probed on
        ``host_ip`` (no host address known, as in local mode: the loopback)."""
        if not self.exposed:
            return self
        return self.model_copy(update={"host": host_ip or "127.0.0.1"})

    def effective_health_check(self) -> HealthCheck:
        """The probe to run: the spec's, or the protocol's natural default."""
        if self.health_check is not None:
            hc = self.health_check
            if hc.http is None and hc.tcp is None:
                kind = self._default_kind()
                return hc.model_copy(update=kind)
            return hc
        return HealthCheck(**self._default_kind())

    def _default_kind(self) -> dict[str, HTTPGetCheck | TCPCheck]:
        if self.protocol is EndpointProtocol.TCP:
            return {"tcp": TCPCheck()}
        return {"http": HTTPGetCheck()}
