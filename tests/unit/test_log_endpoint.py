"""The agent's log endpoint: its serving certificate and how a client certificate names a user."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509

from steward.k8s.logserver import Caller, caller_from_cert
from steward.k8s.tls import ensure_serving_cert


def _sans(pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


def test_the_certificate_names_the_node_and_its_addresses_and_the_key_is_private(
    tmp_path: Path,
) -> None:
    made = ensure_serving_cert(tmp_path / "tls", "h1", ("10.0.0.7", "fd00::7"))
    assert _sans(made.pem) == {"h1", "10.0.0.7", str(ipaddress.ip_address("fd00::7"))}
    assert stat.S_IMODE(made.key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in made.pem


def test_reused_while_the_addresses_stay_and_made_again_when_they_change(tmp_path: Path) -> None:
    first = ensure_serving_cert(tmp_path, "h1", ("10.0.0.7",))
    again = ensure_serving_cert(tmp_path, "h1", ("10.0.0.7",))
    assert again.pem == first.pem
    moved = ensure_serving_cert(tmp_path, "h1", ("10.0.0.8",))
    assert moved.pem != first.pem and _sans(moved.pem) == {"h1", "10.0.0.8"}


def test_a_client_certificate_names_user_and_groups_as_the_apiserver_reads_it() -> None:
    cert = {
        "subject": (
            (("organizationName", "team-a"),),
            (("organizationName", "oncall"),),
            (("commonName", "alice"),),
        )
    }
    assert caller_from_cert(cert) == Caller(
        user="alice", groups=("team-a", "oncall", "system:authenticated")
    )
    assert caller_from_cert({"subject": ((("organizationName", "x"),),)}) is None
    assert caller_from_cert({}) is None
