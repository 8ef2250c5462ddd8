"""HTTP and TCP probes on asyncio: one event loop probes every endpoint.

Semantics follow the kubelet: a TCP probe succeeds when the connection
opens; an HTTP probe when the status is 200-399 (or exactly the expected
status), with HTTPS certificates not verified. TCP and plain HTTP probes use
a bare non-blocking socket on the loop (``sock_connect``/``sock_recv``): a
transport and streams per probe cost more than the probe itself at a
thousand endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from steward.api.endpoint import EndpointProtocol, HealthCheck

USER_AGENT = "steward-probe/1"
MAX_STATUS_LINE = 64 * 1024
"""As asyncio's stream limit: a longer first line is not an HTTP response."""


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


def _literal_address(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    """An IP literal needs no resolver (and no thread hop): its family and address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, (host, port, 0, 0))]
    return [(socket.AF_INET, (host, port))]


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking socket: no transport, no streams (a probe only needs a
    handshake, or one request and one status line). Every resolved address is tried in
    turn, as ``asyncio.open_connection`` does; the caller closes the socket."""
    loop = asyncio.get_running_loop()
    addrs = _literal_address(host, port)
    if addrs is None:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addrs = [(family, addr) for family, _, _, _, addr in infos]
    error: OSError | None = None
    for family, addr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:  # cancelled (the probe's timeout): never leak the socket
            sock.close()
            raise
        return sock
    raise error or OSError(f"no address for {host}")


def _reason(exc: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 80)"."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            sock = await _connect(display_host(host), port)
    except TimeoutError:
        return ProbeResult(
            False,
            f"TCP connect to {host}:{port} timed out after {timeout}s",
            time.perf_counter() - start,
        )
    except OSError as exc:
        return ProbeResult(
            False,
            f"TCP connect to {host}:{port} failed: {_reason(exc)}",
            time.perf_counter() - start,
        )
    sock.close()
    return ProbeResult(True, "", time.perf_counter() - start)


def _request(target: ProbeTarget, host: str, method: str) -> bytes:
    host_header = f"[{host}]" if ":" in host else host
    return (
        f"{method} {target.path} HTTP/1.1\r\nHost: {host_header}:{target.port}\r\n"
        f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def _status_code(line: bytes) -> int:
    parts = line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    return int(parts[1])


async def _status_line(sock: socket.socket) -> bytes:
    """The response's first line (up to its newline, or what came before EOF)."""
    loop = asyncio.get_running_loop()
    buf = b""
    while b"\n" not in buf:
        if len(buf) > MAX_STATUS_LINE:
            raise ValueError(f"not an HTTP response: no status line in {len(buf)} bytes")
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0] + (b"\n" if b"\n" in buf else b"")


async def _https_status(target: ProbeTarget, host: str, method: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, target.port, ssl=ctx)
    try:
        writer.write(_request(target, host, method))
        await writer.drain()
        return _status_code(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _http_status(target: ProbeTarget, method: str) -> int:
    host = display_host(target.host)
    if target.protocol is EndpointProtocol.HTTPS:
        return await _https_status(target, host, method)
    sock = await _connect(host, target.port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, _request(target, host, method))
        return _status_code(await _status_line(sock))
    finally:
        sock.close()


async def probe_http(
    target: ProbeTarget, method: str, expected: int | None, timeout: float
) -> ProbeResult:
    start = time.perf_counter()
    url = render_uri(target.protocol, target.host, target.port, target.path)
    try:
        async with asyncio.timeout(timeout):
            status = await _http_status(target, method)
    except TimeoutError:
        return ProbeResult(
            False,
            f"HTTP probe {method} {url} timed out after {timeout}s",
            time.perf_counter() - start,
        )
    except (OSError, ValueError, ssl.SSLError) as exc:
        detail = (
            _reason(exc)
            if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError)
            else str(exc) or type(exc).__name__
        )
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
