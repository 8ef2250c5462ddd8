"""The agent's serving certificate for its log endpoint: self-signed, pinned by clients.

Kubelet's serving certificate is trusted through a CA the apiserver is told about; an agent
has no such CA, so it publishes its own certificate in its StewardNode's status (which only
agents may write) and `steward logs` trusts exactly that one for the host. The key never
leaves the host: 0600 in the agent's state directory, created once and reused while the
certificate still names the host's addresses and has a month left.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from steward.runtimes.sandbox.fs import write_private

VALID_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    pem: str


def _names(node: str, addresses: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(node)]
    for a in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(a)))
        except ValueError:
            names.append(x509.DNSName(a))
    return names


def _still_good(cert_file: Path, key_file: Path, wanted: list[x509.GeneralName]) -> str | None:
    try:
        pem = cert_file.read_bytes()
        if not key_file.exists():
            return None
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    now = datetime.datetime.now(datetime.UTC)
    if set(san) != set(wanted) or cert.not_valid_after_utc - now < RENEW_BEFORE:
        return None
    return pem.decode()


def ensure_serving_cert(directory: Path, node: str, addresses: tuple[str, ...]) -> ServingCert:
    """The certificate for ``node`` at ``addresses`` (made, or the one made before)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_file, key_file = directory / "logs.crt", directory / "logs.key"
    wanted = _names(node, addresses)
    pem = _still_good(cert_file, key_file, wanted)
    if pem is not None:
        return ServingCert(cert_file, key_file, pem)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"steward-agent:{node}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_file, key_bytes.decode())
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_file.write_text(pem)
    return ServingCert(cert_file, key_file, pem)
