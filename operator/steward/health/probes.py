"""HTTP and TCP probes on asyncio: one event loop probes every endpoint.

Semantics follow the kubelet: a TCP probe succeeds when the connection
opens; an HTTP probe when the status is 200-399 (or exactly the expected
status), with HTTPS certificates not verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from steward.api.endpoint import EndpointProtocol, HealthCheck

USER_AGENT = "steward-probe/1"


@dataclass(frozen=True)
class ProbeTarget:
    """Where to probe: scheme, host, port, and the HTTP path."""

    protocol: EndpointProtocol
    host: str
    port: int
    path: str = "/"

    @classmethod
    def from_uri(cls, uri: str, path: str | None = None) -> ProbeTarget:
        """A target from a URI (a Terraform output); ValueError if it has no host."""
        parts = urlsplit(uri if "://" in uri else f"tcp://{uri}")
        if not parts.hostname:
            raise ValueError(f"endpoint URI {uri!r} has no host")
        scheme = parts.scheme.lower()
        protocol = (
            EndpointProtocol(scheme) if scheme in ("http", "https", "tcp") else EndpointProtocol.TCP
        )
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
        if not port:
            raise ValueError(f"endpoint URI {uri!r} has no port")
        base = parts.path.rstrip("/")
        return cls(protocol, parts.hostname, port, path if path is not None else (base or "/"))


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome."""

    ok: bool
    message: str
    latency: float


def display_host(host: str) -> str:
    """0.0.0.0 / :: are where a server binds, not where a client connects (as the seed)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def render_uri(protocol: EndpointProtocol | str, host: str, port: int, path: str = "") -> str:
    """protocol://host:port[path], IPv6 hosts bracketed."""
    h = display_host(host)
    if ":" in h:
        h = f"[{h}]"
    return f"{EndpointProtocol(protocol).value}://{h}:{port}{path}"


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(display_host(host), port), timeout
        )
    except TimeoutError:
        return ProbeResult(
            False,
            f"TCP connect to {host}:{port} timed out after {timeout}s",
            time.perf_counter() - start,
        )
    except OSError as exc:
        return ProbeResult(
            False,
            f"TCP connect to {host}:{port} failed: {exc.strerror or exc}",
            time.perf_counter() - start,
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, "", time.perf_counter() - start)


async def _http_status(target: ProbeTarget, method: str) -> int:
    host = display_host(target.host)
    ctx: ssl.SSLContext | None = None
    if target.protocol is EndpointProtocol.HTTPS:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, target.port, ssl=ctx)
    try:
        host_header = f"[{host}]" if ":" in host else host
        request = (
            f"{method} {target.path} HTTP/1.1\r\nHost: {host_header}:{target.port}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {line[:80]!r}")
        return int(parts[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def probe_http(
    target: ProbeTarget, method: str, expected: int | None, timeout: float
) -> ProbeResult:
    start = time.perf_counter()
    url = render_uri(target.protocol, target.host, target.port, target.path)
    try:
        status = await asyncio.wait_for(_http_status(target, method), timeout)
    except TimeoutError:
        return ProbeResult(
            False,
            f"HTTP probe {method} {url} timed out after {timeout}s",
            time.perf_counter() - start,
        )
    except (OSError, ValueError, ssl.SSLError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return ProbeResult(
            False, f"HTTP probe {method} {url} failed: {detail}", time.perf_counter() - start
        )
    latency = time.perf_counter() - start
    ok = status == expected if expected is not None else 200 <= status < 400
    if ok:
        return ProbeResult(True, "", latency)
    want = str(expected) if expected is not None else "200-399"
    return ProbeResult(
        False, f"HTTP probe {method} {url} returned {status}, expected {want}", latency
    )


async def run_probe(check: HealthCheck, target: ProbeTarget) -> ProbeResult:
    """Run the probe the check describes against ``target``."""
    if check.http is not None and target.protocol is not EndpointProtocol.TCP:
        t = ProbeTarget(target.protocol, target.host, target.port, check.http.path)
        return await probe_http(
            t, check.http.method, check.http.expected_status, check.timeout_seconds
        )
    return await probe_tcp(target.host, target.port, check.timeout_seconds)
