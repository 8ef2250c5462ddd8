"""Steward's API: pydantic models, the one source of truth for the CRD."""

from steward.api.common import EnvVar, EnvVarSource, KeySelector, PythonCallable
from steward.api.container import ContainerSpec
from steward.api.daemon import DaemonSpec, LogSpec
from steward.api.endpoint import EndpointProtocol, EndpointSpec, HealthCheck, HTTPGetCheck, TCPCheck
from steward.api.manifest import API_GROUP, API_VERSION, KIND, ManagedService, ObjectMeta
from steward.api.restart import BackoffSpec, RestartPolicy
from steward.api.spec import DeletionPolicy, ManagedServiceSpec
from steward.api.state import AdminState, ServiceState, ServiceStatus
from steward.api.status import (
    Condition,
    EndpointStatus,
    HealthState,
    HealthStatus,
    ManagedServiceStatus,
)
from steward.api.terraform import TerraformModule, TerraformSpec
from steward.api.types import ServiceType, get_service_type, register_service_type, service_types

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "AdminState",
    "BackoffSpec",
    "Condition",
    "ContainerSpec",
    "DaemonSpec",
    "DeletionPolicy",
    "EndpointProtocol",
    "EndpointSpec",
    "EndpointStatus",
    "EnvVar",
    "EnvVarSource",
    "HTTPGetCheck",
    "HealthCheck",
    "HealthState",
    "HealthStatus",
    "KeySelector",
    "LogSpec",
    "ManagedService",
    "ManagedServiceSpec",
    "ManagedServiceStatus",
    "ObjectMeta",
    "PythonCallable",
    "RestartPolicy",
    "ServiceState",
    "ServiceStatus",
    "ServiceType",
    "TCPCheck",
    "TerraformModule",
    "TerraformSpec",
    "get_service_type",
    "register_service_type",
    "service_types",
]
