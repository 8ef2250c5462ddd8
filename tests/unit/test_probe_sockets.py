"""The bare-socket probes against real local servers: addresses, timeouts, odd responses, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from steward.api.endpoint import EndpointProtocol, HealthCheck, HTTPGetCheck, TCPCheck
from steward.health.probes import ProbeResult, ProbeTarget, probe_tcp, run_probe
from tests.support.ports import free_port

Reply = Callable[[socket.socket], None]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled_fds(target: int, within: float = 5.0) -> int:
    """Open descriptors once the server threads closed their ends (or ``within`` passed)."""
    deadline = time.monotonic() + within
    while (n := _open_fds()) > target and time.monotonic() < deadline:
        time.sleep(0.02)
    return n


@contextlib.contextmanager
def server(reply: Reply, family: int = socket.AF_INET, host: str = "127.0.0.1") -> Iterator[int]:
    """A listener that answers each connection with ``reply`` in its own thread."""
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(1024)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            threading.Thread(target=_answer, args=(conn, reply), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(lst.getsockname()[1])
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            lst.shutdown(socket.SHUT_RDWR)
        lst.close()
        t.join(5)


def _answer(conn: socket.socket, reply: Reply) -> None:
    with conn, contextlib.suppress(OSError):
        conn.settimeout(5)
        reply(conn)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def http(check: HealthCheck, port: int, host: str = "127.0.0.1") -> ProbeResult:
    return asyncio.run(run_probe(check, ProbeTarget(EndpointProtocol.HTTP, host, port)))


def tcp(host: str, port: int, timeout: float = 1.0) -> ProbeResult:
    return asyncio.run(probe_tcp(host, port, timeout))


def test_tcp_probe_ipv6_literal_and_hostname() -> None:
    with server(lambda c: None, socket.AF_INET6, "::1") as port:
        assert tcp("::1", port).ok
        assert tcp("::", port).ok  # where a server binds -> where a client connects
    with server(lambda c: None) as port:
        res = tcp("localhost", port)
        assert res.ok, res.message
        assert tcp("0.0.0.0", port).ok


def test_tcp_probe_refused_names_the_target() -> None:
    port = free_port()
    res = tcp("127.0.0.1", port)
    assert not res.ok
    assert res.message == f"TCP connect to 127.0.0.1:{port} failed: Connection refused"


def test_tcp_probe_unresolvable_host_fails_cleanly() -> None:
    res = tcp("no-such-host.invalid", 80)
    assert not res.ok and "failed" in res.message
    assert "Unknown error" not in res.message


@pytest.mark.parametrize(
    ("chunks", "ok", "fragment"),
    [
        ([b"HTTP/1.1 200 OK\r\n\r\n"], True, ""),
        ([b"HT", b"TP/1.0 3", b"04 Not Modified\r\nX: y\r\n\r\n"], True, ""),
        ([b"HTTP/1.1 503 Service Unavailable\r\n\r\n"], False, "returned 503, expected 200-399"),
        ([b"SSH-2.0-OpenSSH_9.2\r\n"], False, "not an HTTP response"),
        ([], False, "not an HTTP response"),
        ([b"HTTP/1.1 204"], True, ""),  # no newline before EOF: the line so far
    ],
)
def test_http_probe_reads_the_status_line(chunks: list[bytes], ok: bool, fragment: str) -> None:
    seen: list[bytes] = []

    def reply(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        for c in chunks:
            conn.sendall(c)
            time.sleep(0.01)

    with server(reply) as port:
        res = http(HealthCheck(http=HTTPGetCheck(path="/healthz")), port)
    assert res.ok is ok, res.message
    assert fragment in res.message
    request = seen[0].decode("latin-1")
    assert request.startswith("GET /healthz HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in request
    assert "Connection: close\r\n" in request


def test_http_probe_over_ipv6_brackets_the_host_header() -> None:
    seen: list[bytes] = []

    def reply(conn: socket.socket) -> None:
        seen.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with server(reply, socket.AF_INET6, "::1") as port:
        assert http(HealthCheck(http=HTTPGetCheck()), port, host="::1").ok
    assert f"Host: [::1]:{port}\r\n" in seen[0].decode("latin-1")


def test_http_probe_status_line_too_long_is_a_failure() -> None:
    def reply(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 " + b"x" * (70 * 1024))

    with server(reply) as port:
        res = http(HealthCheck(http=HTTPGetCheck()), port)
    assert not res.ok and "not an HTTP response" in res.message


def test_timeouts_close_their_sockets() -> None:
    """A server that never answers: the probe times out and leaves no descriptor behind."""
    release = threading.Event()

    def silent(conn: socket.socket) -> None:
        release.wait(10)

    with server(silent) as port:
        before = _open_fds()

        async def many() -> list[ProbeResult]:
            check = HealthCheck(http=HTTPGetCheck(), timeout_seconds=0.2)
            target = ProbeTarget(EndpointProtocol.HTTP, "127.0.0.1", port)
            return await asyncio.gather(*(run_probe(check, target) for _ in range(20)))

        results = asyncio.run(many())
        release.set()  # the server's ends close; only a leaked client socket would stay
    assert all(not r.ok and "timed out after 0.2s" in r.message for r in results)
    assert _settled_fds(before) <= before


def test_many_tcp_probes_leave_no_descriptor_behind() -> None:
    with server(lambda c: None) as port:
        before = _open_fds()

        async def many() -> list[ProbeResult]:
            check = HealthCheck(tcp=TCPCheck())
            target = ProbeTarget(EndpointProtocol.TCP, "127.0.0.1", port)
            return await asyncio.gather(*(run_probe(check, target) for _ in range(200)))

        results = asyncio.run(many())
    assert [r.message for r in results if not r.ok] == []
    assert _settled_fds(before) <= before
