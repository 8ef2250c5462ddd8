"""The rules that decide whether a lock may be broken, and how diagnostics are read (no Terraform run)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from datetime import datetime, timedelta

from steward.runtimes.terraform.diag import Reason, classify, errors, lock_info, message
from steward.runtimes.terraform.lock import Holder

LOCAL_LOCKED = """
\x1b[31m╷\x1b[0m
\x1b[31m│\x1b[0m \x1b[1m\x1b[31mError: \x1b[0m\x1b[1mError acquiring the state lock\x1b[0m
\x1b[31m│\x1b[0m
\x1b[31m│\x1b[0m Error message: resource temporarily unavailable
\x1b[31m│\x1b[0m Lock Info:
\x1b[31m│\x1b[0m   ID:        08f0de63-5366-becd-8597-df6ca12c77bd
\x1b[31m│\x1b[0m   Path:      /x/terraform.tfstate
\x1b[31m│\x1b[0m   Operation: OperationTypeApply
\x1b[31m│\x1b[0m   Who:       {who}
\x1b[31m│\x1b[0m   Version:   1.11.4
\x1b[31m│\x1b[0m   Created:   {created}
\x1b[31m│\x1b[0m   Info:
\x1b[31m╵\x1b[0m
"""

HTTP_LOCKED = """
Error: Error acquiring the state lock

Error message: HTTP remote state already locked:
ID=93edb480-138e-8afc-ebc0-23aafbbf6bef
Lock Info:
  ID:        b080cd9b-efc7-3d80-c44b-52b13b1fc208
  Who:       root@vm
  Created:   2026-11-26 05:58:13.595268936 +0000 UTC
"""


def go_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f") + "123 +0000 UTC"


def holder(**changes: object) -> Holder:
    h = Holder.for_command("apply", os.getpid())
    return replace(h, **changes)  # type: ignore[arg-type]


def test_lock_info_is_the_holder_even_in_color_and_boxes() -> None:
    who = "root@vm"
    info = lock_info(
        LOCAL_LOCKED.format(who=who, created="2026-11-26 05:45:31.119976987 +0000 UTC")
    )
    assert info is not None
    assert info.id == "08f0de63-5366-becd-8597-df6ca12c77bd"
    assert info.who == who and info.operation == "OperationTypeApply"
    assert classify("apply", LOCAL_LOCKED) == Reason.STATE_LOCKED


def test_http_backend_names_the_holder_only_in_its_error_message() -> None:
    info = lock_info(HTTP_LOCKED)
    assert info is not None
    assert info.id == "93edb480-138e-8afc-ebc0-23aafbbf6bef"
    assert info.who == ""  # the Lock Info block there is the requester's, not the holder's


def test_a_lock_is_owned_only_by_its_taker() -> None:
    h = holder()
    me = f"{h.user}@{h.host}"
    began = datetime.fromisoformat(h.started_at)
    later = lock_info(LOCAL_LOCKED.format(who=me, created=go_time(began + timedelta(seconds=1))))
    assert later is not None and h.owns(later)
    earlier = lock_info(LOCAL_LOCKED.format(who=me, created=go_time(began - timedelta(minutes=5))))
    assert earlier is not None and not h.owns(earlier), (
        "a lock older than the run is someone else's"
    )
    stranger = lock_info(LOCAL_LOCKED.format(who="ci@elsewhere", created=go_time(began)))
    assert stranger is not None and not h.owns(stranger)


def test_holder_liveness_needs_pid_and_start_time() -> None:
    assert holder().alive()
    assert not holder(pid_start=1.0).alive(), "a reused PID is not the holder"
    assert not holder(pid=2**22 + 12345).alive()
    assert holder(pid=2**22 + 12345, host=socket.gethostname() + "-other").alive(), (
        "a holder on another host can never be proven dead"
    )
    assert holder(pid=None).alive()  # falls back to the Steward process: this one


def test_message_is_trimmed_redacted_and_unwrapped() -> None:
    stderr = (
        "Error: local-exec provisioner error\n\n  with terraform_data.x,\n"
        "Error running command 'x': exit status 3. Output: token=abc123\nand more\n\n"
        + "Warning: ignore me\n\nnoise\n"
    )
    text = message("apply", 1, stderr, lambda s: s.replace("abc123", "***"))
    assert text.startswith("terraform apply failed (exit 1): Error: local-exec provisioner error")
    assert "token=*** and more" in text
    assert "ignore me" not in text
    long = "Error: boom\n\n" + "word " * 1000
    assert len(message("apply", 1, long, str)) <= 1500
    assert [d.summary for d in errors(stderr)] == ["local-exec provisioner error"]
    assert Reason.failed("force-unlock") == "TerraformForceUnlockFailed"
