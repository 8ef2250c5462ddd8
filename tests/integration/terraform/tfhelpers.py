"""Modules and helpers shared by the Terraform tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from steward.runtimes.terraform import TerraformRuntime


def spec_of(main_tf: str, **extra: Any) -> dict[str, Any]:
    return {"module": {"inline": {"main.tf": main_tf}}, **extra}


def sleeps(seconds: str) -> list[psutil.Process]:
    """Live ``sleep SECONDS`` processes (tests use a unique length each, e.g. "61.25")."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if (p.info["cmdline"] or [])[:2] == ["sleep", seconds]:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """``rt.start()`` in a thread, keeping what it raised."""

    def __init__(self, rt: TerraformRuntime) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(rt,), daemon=True)
        self.thread.start()

    def _run(self, rt: TerraformRuntime) -> None:
        try:
            rt.start()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 30) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "start() did not return"
        return self.error


WEB = """
variable "name" { type = string }
variable "marker" { type = string }

resource "terraform_data" "svc" {
  input = { name = var.name, marker = var.marker }
  provisioner "local-exec" {
    command = "echo up-${self.input.name} > ${self.input.marker}"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.input.marker}"
  }
}

output "url" { value = "http://127.0.0.1:9/${var.name}" }
output "info" { value = { name = var.name, n = 3 } }
output "token" {
  value     = "tok-${var.name}-5ecret"
  sensitive = true
}
"""

DRIFT = """
variable "watch" { type = string }
variable "out" { type = string }

resource "terraform_data" "copy" {
  triggers_replace = filesha256(var.watch)
  input            = var.out
  provisioner "local-exec" {
    command = "cp ${var.watch} ${self.input}"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.input}"
  }
}
"""

SLOW = """
variable "seconds" { type = number }

resource "terraform_data" "slow" {
  input = var.seconds
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}

output "done" { value = "yes" }
"""
