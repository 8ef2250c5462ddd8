"""Prepare, init, apply and destroy: the command sequences that change what exists.

``prepare`` finds the binary, copies the module (only when its checksum
changed), writes the generated backend and variables files and builds the
command environment; ``init`` runs only when the module, the backend or the
binary changed. Every apply, successful or not, is recorded for observe().
A destroy uses the module copy and variables of the last apply when there is
one: that configuration holds the destroy-time provisioners of what exists.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from steward.runtimes.base import RuntimeFailure
from steward.runtimes.sandbox.fs import give, prepare
from steward.runtimes.terraform.binary import Binary, find_binary
from steward.runtimes.terraform.commands import Commands
from steward.runtimes.terraform.credentials import write_backend_kubeconfig
from steward.runtimes.terraform.inputs import backend_config, command_env, resolve_inputs
from steward.runtimes.terraform.outputs import endpoint_uri, read_outputs
from steward.runtimes.terraform.session import Session, now
from steward.runtimes.terraform.workspace import ApplyRecord, DriftRecord, checksum, digest


class Applier:
    """Applies and destroys the service's module; the caller holds the sequence."""

    def __init__(self, session: Session, commands: Commands) -> None:
        self.s = session
        self.commands = commands

    def prepare(self) -> tuple[Binary, dict[str, str], str, dict[str, Any]]:
        """Binary, module copy, generated files and the command environment."""
        s = self.s
        binary = s.binary = find_binary(s.spec.binary, s.spec.binary_path)
        files = s.ws.module_files(s.spec.module)
        module_sum = checksum(files)
        inputs = resolve_inputs(s.spec, s.ctx)
        s.secrets |= {v for v in inputs.secrets if v}
        backend = backend_config(s.spec, s.ctx, s.ws.state_dir)
        s.ws.root.mkdir(parents=True, exist_ok=True)
        s.ws.state_dir.mkdir(mode=0o700, exist_ok=True)
        s.ws.state_dir.chmod(0o700)  # the local backend's state holds secrets in clear
        if s.ws.materialize(files, module_sum, s.record.module_checksum):
            s.log.line(f"--- module copied ({len(files)} files, checksum {module_sum})")
        with s.state_lock:
            s.record.module_checksum = module_sum
        s.ws.write_generated(backend, inputs.tfvars)
        env = s.env = command_env(inputs, s.ws.data_dir, s.ctx.sandbox, self._sandbox_dirs())
        k8s_backend = s.spec.backend.kubernetes
        if s.ctx.sandbox is not None and k8s_backend is not None and not k8s_backend.config_path:
            write_backend_kubeconfig(s.ctx)
        return binary, env, module_sum, backend

    def _sandbox_dirs(self) -> Path | None:
        """In a sandbox: the directories Terraform writes handed to the service's uid, the
        rest of the runtime dir kept the operator's; returns the service's HOME."""
        s = self.s
        sandbox = s.ctx.sandbox
        if sandbox is None:
            return None
        home = prepare(s.ws.root, sandbox)
        for d in (s.ws.data_dir, s.ws.state_dir):
            d.mkdir(exist_ok=True)
        give([s.ws.module_dir, s.ws.data_dir, s.ws.state_dir], sandbox)
        return home

    def prepare_and_init(self, save: bool = True) -> dict[str, str]:
        """``prepare`` then ``init`` if needed; the command environment."""
        binary, env, module_sum, backend = self.prepare()
        self.init_if_needed(binary, env, module_sum, backend, save)
        return env

    def apply(self) -> None:
        """prepare, init if needed, apply, read outputs; any failure is recorded for observe()."""
        s = self.s
        started = now()
        try:
            env = self.prepare_and_init(save=False)  # saved with ``applied`` just below
            with s.state_lock:
                s.record.applied = True
                s.record.stopped = False
                s.ws.save(s.record)
            started = now()
            res = self.commands.run(
                "apply", ["apply", "-auto-approve", "-input=false", "-no-color"], env
            )
            self.commands.check(res)
            read_outputs(s, self.commands, env)
            endpoint = endpoint_uri(s)
        except RuntimeFailure as exc:
            self._record_apply(False, started, reason=exc.reason, message=str(exc))
            raise
        self._record_apply(True, started, endpoint_uri=endpoint)

    def _record_apply(
        self,
        ok: bool,
        started: datetime,
        reason: str = "",
        message: str = "",
        endpoint_uri: str | None = None,
    ) -> None:
        s = self.s
        finished = now()
        previous = s.record.last_apply
        outputs = dict(s.last_outputs) if ok else (previous.outputs if previous else {})
        with s.state_lock:
            rec = s.record
            rec.last_apply = ApplyRecord(
                ok=ok,
                spec_hash=s.spec_hash(),
                started_at=started.isoformat(),
                finished_at=finished.isoformat(),
                finished_epoch=finished.timestamp(),
                seconds=round((finished - started).total_seconds(), 3),
                exit_code=0 if ok else 1,
                reason=reason,
                message=s.redact(message),
                outputs=outputs,
                sensitive_outputs=sorted(s.sensitive) if ok else [],
                endpoint_uri=endpoint_uri,
            )
            if ok:
                rec.stuck_lock = None
                rec.dead_holder = None
                corrections = rec.drift.corrections
                rec.drift = DriftRecord(
                    checked_at=finished.isoformat(),
                    checked_epoch=finished.timestamp(),
                    status="none",
                    corrections=corrections,
                )
            s.ws.save(rec)

    def init_if_needed(
        self,
        binary: Binary,
        env: dict[str, str],
        module_sum: str,
        backend: dict[str, Any],
        save: bool = True,
    ) -> None:
        """``init`` only when the module, the backend or the binary changed (or was never done).

        ``save=False``: the caller writes the record next (one write instead of two; lost
        in a crash, the record only costs one more init)."""
        s = self.s
        backend_hash = digest(backend)
        key = digest(
            {"module": module_sum, "backend": backend_hash, "binary": [binary.kind, binary.version]}
        )
        rec = s.record
        if key == rec.init_key and (s.ws.data_dir / "terraform.tfstate").exists():
            return
        args = ["init", "-input=false", "-no-color"]
        if rec.backend_hash and rec.backend_hash != backend_hash and s.ws.data_dir.exists():
            args += ["-migrate-state", "-force-copy"]
        res = self.commands.run("init", args, env)
        self.commands.check(res)
        with s.state_lock:
            rec.init_count += 1
            rec.init_key = key
            rec.backend_hash = backend_hash
            rec.binary = binary.describe()
            if save:
                s.ws.save(rec)

    def read_outputs(self) -> None:
        """Read the outputs anew (sensitive values are not kept across processes)."""
        read_outputs(self.s, self.commands, self.prepare()[1])

    def destroy(self) -> None:
        """Destroy with the module copy and variables of the last apply when there is one.

        The spec may have changed since (an OUTDATED adoption is stopped with the
        new spec): the old configuration holds the destroy-time provisioners of
        the resources that exist, and its backend holds their state.
        """
        s = self.s
        if s.record.init_key and (s.ws.data_dir / "terraform.tfstate").exists():
            s.binary = find_binary(s.spec.binary, s.spec.binary_path)
            inputs = resolve_inputs(s.spec, s.ctx)
            s.secrets |= {v for v in inputs.secrets if v}
            env = s.env = command_env(inputs, s.ws.data_dir, s.ctx.sandbox, self._sandbox_dirs())
        else:
            env = self.prepare_and_init()
        res = self.commands.run(
            "destroy", ["destroy", "-auto-approve", "-input=false", "-no-color"], env
        )
        self.commands.check(res)
        with s.state_lock:
            rec = s.record
            rec.applied = False
            rec.last_apply = None
            rec.stuck_lock = None
            rec.dead_holder = None
            s.ws.save(rec)
        s.sensitive = {}
        s.last_outputs = {}
