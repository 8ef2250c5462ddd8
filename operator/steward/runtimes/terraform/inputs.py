"""What goes into a Terraform command besides the module: backend, variables, environment.

Plain ``vars`` go to a ``.auto.tfvars.json`` file (JSON keeps their types).
Values from Secrets go only into the child's environment as ``TF_VAR_*``, so
they never sit in the runtime directory, and they join the redaction set.
The child's environment is built per command and never touches
``os.environ``: two services' TF_LOG or credentials cannot leak into each other.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.api.terraform import TerraformSpec
from steward.runtimes.base import RuntimeContext, RuntimeFailure
from steward.runtimes.expand import expand, expand_json
from steward.runtimes.sandbox import Sandbox
from steward.runtimes.sandbox.env import clean_environment
from steward.runtimes.terraform.credentials import kubeconfig_path
from steward.runtimes.terraform.diag import Reason

_DROPPED_PARENT_ENV = re.compile(r"^(TF_VAR_|TF_LOG|TF_CLI_ARGS|TF_DATA_DIR$|TF_WORKSPACE$)")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass
class Inputs:
    """Resolved inputs of one service."""

    tfvars: dict[str, Any]
    env: dict[str, str]
    secrets: set[str] = field(default_factory=set)


def backend_config(spec: TerraformSpec, ctx: RuntimeContext, state_dir: Path) -> dict[str, Any]:
    """The override file content: ``{"terraform": {"backend": {KIND: {...}}}}``."""
    b = spec.backend
    if b.kubernetes is not None:
        k = b.kubernetes
        conf: dict[str, Any] = {
            "secret_suffix": k.secret_suffix or ctx.identity.slug,
            "namespace": k.namespace or ctx.identity.namespace,
        }
        in_cluster = (
            k.in_cluster_config
            if k.in_cluster_config is not None
            else bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not k.config_path
        )
        if ctx.sandbox is not None and not k.config_path:
            in_cluster = False  # never the operator's identity: the namespace's token
        conf["in_cluster_config"] = in_cluster
        if k.config_path:
            conf["config_path"] = k.config_path
        elif ctx.sandbox is not None:
            conf["config_path"] = str(kubeconfig_path(ctx))
        elif not in_cluster and os.environ.get("KUBECONFIG"):
            conf["config_path"] = os.environ["KUBECONFIG"].split(os.pathsep)[0]
        if k.config_context:
            conf["config_context"] = k.config_context
        labels = {"app.kubernetes.io/managed-by": "steward", **k.labels}
        conf["labels"] = labels
        kind = "kubernetes"
    elif b.http is not None:
        h = b.http
        conf = {"address": h.address, "skip_cert_verification": h.skip_cert_verification}
        if h.lock_address:
            conf.update(lock_address=h.lock_address, lock_method=h.lock_method)
        if h.unlock_address:
            conf.update(unlock_address=h.unlock_address, unlock_method=h.unlock_method)
        kind = "http"
    else:
        conf = {"path": str((state_dir / "terraform.tfstate").resolve())}
        kind = "local"
    return {"terraform": {"backend": {kind: conf}}}


def resolve_inputs(spec: TerraformSpec, ctx: RuntimeContext) -> Inputs:
    """Variables and environment; RuntimeFailure when a varsFrom source cannot be read."""
    env = dict(ctx.env)
    secrets: set[str] = set()
    for e in spec.env:
        if e.name in env:
            continue  # resolved by the engine (valueFrom included)
        if e.value_from is not None:
            raise RuntimeFailure(
                f"env {e.name}: valueFrom was not resolved (run it through the engine's Service)",
                reason=Reason.VARS_FROM_UNAVAILABLE,
            )
        env[e.name] = expand(e.value or "", env)
    tfvars = {k: expand_json(v, env) for k, v in spec.vars.items()}
    for src in spec.vars_from:
        for name, value in _read_vars_from(src, ctx).items():
            env[f"TF_VAR_{name}"] = value
            if src.kind == "secret":
                secrets.add(value)
    return Inputs(tfvars=tfvars, env=env, secrets=secrets)


def _read_vars_from(src: Any, ctx: RuntimeContext) -> dict[str, str]:
    where = f"varsFrom {src.kind} {ctx.identity.namespace}/{src.object_name}"
    resolver = ctx.resolver
    if resolver is None:
        raise RuntimeFailure(
            f"{where}: no resolver for Secrets/ConfigMaps outside a cluster "
            "(pass one to Service, or put them in the manifest files in local mode)",
            reason=Reason.VARS_FROM_UNAVAILABLE,
        )
    try:
        data = resolver.read(src.kind, src.object_name)
    except RuntimeFailure as exc:
        raise RuntimeFailure(f"{where}: {exc}", reason=Reason.VARS_FROM_UNAVAILABLE) from exc
    if data is None:
        if src.optional:
            return {}
        raise RuntimeFailure(f"{where} does not exist", reason=Reason.VARS_FROM_MISSING)
    if src.key is not None:
        if src.key not in data:
            if src.optional:
                return {}
            raise RuntimeFailure(f"{where} has no key {src.key}", reason=Reason.VARS_FROM_MISSING)
        name = src.var_name or src.prefix + src.key
        _check_var_name(name, where)
        return {name: data[src.key]}
    out: dict[str, str] = {}
    for key, value in data.items():
        name = src.prefix + key
        _check_var_name(name, where)
        out[name] = value
    return out


def _check_var_name(name: str, where: str) -> None:
    if not _VAR_NAME.match(name):
        raise RuntimeFailure(
            f"{where}: key {name!r} is not a valid Terraform variable name (use key/varName)",
            reason=Reason.VARS_FROM_MISSING,
        )


def command_env(
    inputs: Inputs, data_dir: Path, sandbox: Sandbox | None = None, home: Path | None = None
) -> dict[str, str]:
    """The child's whole environment: the parent's minus its Terraform settings, plus ours;
    in a sandbox with clean_env never the parent's: PATH, HOME, LANG and the spec's."""
    if sandbox is not None and sandbox.clean_env:
        env = clean_environment(inputs.env, home or data_dir)
    else:
        env = {k: v for k, v in os.environ.items() if not _DROPPED_PARENT_ENV.match(k)}
        env.update(inputs.env)
    env.update(
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_DATA_DIR=str(data_dir.resolve()),
    )
    return env
