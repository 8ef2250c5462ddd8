"""Turn Terraform's stderr into a short, safe message and a machine-readable reason.

Commands run with ``-no-color``, so diagnostics are plain ``Error: <summary>``
blocks; ANSI codes are stripped anyway (a user's TF_CLI_ARGS or a provisioner
may add some). The summary is what Terraform guarantees to be stable enough
to key on; the detail is kept for the human.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
BOX = re.compile(r"^[╷╵│] ?", re.MULTILINE)
MAX_MESSAGE = 1500


class Reason:
    """RuntimeFailure / Observation reasons (CamelCase, as Kubernetes condition reasons)."""

    BINARY_NOT_FOUND = "TerraformBinaryNotFound"
    MODULE_NOT_FOUND = "TerraformModuleNotFound"
    SYNTAX_ERROR = "TerraformSyntaxError"
    CONFIG_INVALID = "TerraformConfigInvalid"
    MISSING_VARIABLE = "TerraformMissingVariable"
    INVALID_VARIABLE = "TerraformInvalidVariable"
    PROVISIONER_FAILED = "TerraformProvisionerFailed"
    STATE_LOCKED = "TerraformStateLocked"
    BUSY = "TerraformBusy"
    TIMEOUT = "TerraformTimeout"
    INTERRUPTED = "TerraformInterrupted"
    KILLED = "TerraformKilled"
    VARS_FROM_UNAVAILABLE = "TerraformVarsFromUnavailable"
    VARS_FROM_MISSING = "TerraformVarsFromMissing"
    OUTPUT_MISSING = "TerraformEndpointOutputMissing"
    OUTPUT_SENSITIVE = "TerraformEndpointOutputSensitive"
    OUTPUT_INVALID = "TerraformEndpointOutputInvalid"
    DRIFT_DETECTED = "DriftDetected"

    @staticmethod
    def failed(command: str) -> str:
        """TerraformInitFailed, TerraformApplyFailed, ..."""
        return f"Terraform{command.replace('-', ' ').title().replace(' ', '')}Failed"


_BY_SUMMARY: tuple[tuple[str, str], ...] = (
    ("Error acquiring the state lock", Reason.STATE_LOCKED),
    ("No value for required variable", Reason.MISSING_VARIABLE),
    ("Invalid value for input variable", Reason.INVALID_VARIABLE),
    ("Invalid value for variable", Reason.INVALID_VARIABLE),
    ("Variables not allowed", Reason.INVALID_VARIABLE),
    ("local-exec provisioner error", Reason.PROVISIONER_FAILED),
)


def clean(text: str) -> str:
    """No ANSI escapes, no diagnostic box drawing, no trailing blanks."""
    text = BOX.sub("", ANSI.sub("", text))
    return "\n".join(line.rstrip() for line in text.splitlines())


@dataclass(frozen=True)
class Diagnostic:
    summary: str
    body: str


def errors(stderr: str) -> list[Diagnostic]:
    """The ``Error:`` blocks, in order (warnings, such as CLI config noise, dropped)."""
    out: list[Diagnostic] = []
    current: list[str] | None = None
    for line in clean(stderr).splitlines():
        if line.startswith(("Error: ", "Warning: ")):
            if current is not None:
                out.append(_diag(current))
            current = [line] if line.startswith("Error: ") else None
            continue
        if current is not None:
            current.append(line)
    if current is not None:
        out.append(_diag(current))
    # init's preamble ("...problems during initialisation...") only announces the real ones
    real = [d for d in out if not d.summary.startswith(_INIT_PREAMBLE)]
    return real or out


_INIT_PREAMBLE = "Terraform encountered problems during initiali"
_CONFIG_INVALID = "The Terraform configuration must be valid before initiali"


def _diag(lines: list[str]) -> Diagnostic:
    summary = lines[0].removeprefix("Error: ").strip()
    return Diagnostic(summary, _unwrap(lines[1:]))


def _unwrap(lines: list[str]) -> str:
    """Undo Terraform's 78-column wrapping of prose; keep indented source snippets as they are."""
    out: list[str] = []
    prose = False
    for line in lines:
        if not line.strip():
            if out and out[-1]:
                out.append("")
            prose = False
            continue
        indented = line.startswith((" ", "\t"))
        if prose and not indented:
            out[-1] += " " + line.strip()
            continue
        out.append(line.rstrip() if indented else line.strip())
        prose = not indented and not line.rstrip().endswith(":")
    return "\n".join(out).strip()


def classify(command: str, stderr: str, syntax_error: Callable[[], bool] | None = None) -> str:
    """The reason for a failed command; ``syntax_error`` is asked only when nothing else fits."""
    summaries = [d.summary for d in errors(stderr)]
    for needle, reason in _BY_SUMMARY:
        if any(s.startswith(needle) for s in summaries):
            return reason
    if syntax_error is not None and syntax_error():
        return Reason.SYNTAX_ERROR
    if _CONFIG_INVALID in " ".join(clean(stderr).split()):
        return Reason.CONFIG_INVALID
    return Reason.failed(command)


def message(
    command: str,
    exit_code: int,
    stderr: str,
    redact: Callable[[str], str],
    limit: int = MAX_MESSAGE,
) -> str:
    """``terraform apply failed (exit 1): Error: ...`` — trimmed, redacted, one string."""
    diags = errors(stderr)
    if diags:
        text = "\n\n".join(f"Error: {d.summary}" + (f"\n{d.body}" if d.body else "") for d in diags)
    else:
        lines = [ln for ln in clean(stderr).splitlines() if ln.strip()]
        text = "\n".join(lines[-15:]) or "(no output)"
    head = f"terraform {command} failed (exit {exit_code}): "
    text = redact(text)
    if len(head) + len(text) > limit:
        text = text[: max(0, limit - len(head) - 15)].rstrip() + "\n...(trimmed)"
    return head + text


@dataclass(frozen=True)
class LockInfo:
    """Who holds the state lock, from ``Error acquiring the state lock`` (``who`` may be unknown)."""

    id: str
    who: str = ""
    created: str = ""
    operation: str = ""
    path: str = ""
    version: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "who": self.who,
            "created": self.created,
            "operation": self.operation,
            "path": self.path,
        }


def lock_info(stderr: str) -> LockInfo | None:
    """Parse the holder of a state lock out of an ``Error acquiring the state lock``."""
    text = clean(stderr)
    if "Error acquiring the state lock" not in text:
        return None
    # The http backend prints the *requester's* Lock Info and names the holder only
    # in its error message: "HTTP remote state already locked: ID=...".
    m = re.search(r"already locked:\s*ID=(\S+)", text)
    if m:
        return LockInfo(id=m.group(1))
    fields: dict[str, str] = {}
    for key in ("ID", "Path", "Operation", "Who", "Version", "Created"):
        m = re.search(rf"^\s*{key}:\s*(.*?)\s*$", text, re.MULTILINE)
        if m:
            fields[key] = m.group(1)
    if not fields.get("ID"):
        return None
    return LockInfo(
        id=fields["ID"],
        who=fields.get("Who", ""),
        created=fields.get("Created", ""),
        operation=fields.get("Operation", ""),
        path=fields.get("Path", ""),
        version=fields.get("Version", ""),
    )
