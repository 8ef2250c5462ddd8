"""Probes against real local sockets, URI rendering and the port registry."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.api.endpoint import EndpointProtocol, HealthCheck, HTTPGetCheck, TCPCheck
from steward.health.ports import PortRegistry, PortUnavailable, port_available
from steward.health.probes import ProbeTarget, render_uri, run_probe
from tests.support.ports import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/ok": 200, "/redirect": 302, "/teapot": 418}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128


@pytest.fixture
def http_port() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def probe(check: HealthCheck, port: int, protocol: EndpointProtocol = EndpointProtocol.HTTP):  # type: ignore[no-untyped-def]
    return asyncio.run(run_probe(check, ProbeTarget(protocol, "127.0.0.1", port)))


@pytest.mark.parametrize(
    ("path", "expected", "ok"),
    [
        ("/ok", None, True),
        ("/redirect", None, True),
        ("/missing", None, False),
        ("/teapot", 418, True),
        ("/ok", 204, False),
    ],
)
def test_http_probe_status_semantics(
    http_port: int, path: str, expected: int | None, ok: bool
) -> None:
    res = probe(HealthCheck(http=HTTPGetCheck(path=path, expected_status=expected)), http_port)
    assert res.ok is ok, res.message
    if not ok:
        assert path in res.message and "returned" in res.message


def test_head_probe(http_port: int) -> None:
    assert probe(HealthCheck(http=HTTPGetCheck(path="/ok", method="HEAD")), http_port).ok


def test_tcp_probe_open_and_closed(http_port: int) -> None:
    assert probe(HealthCheck(tcp=TCPCheck()), http_port, EndpointProtocol.TCP).ok
    closed = free_port()
    res = probe(HealthCheck(tcp=TCPCheck()), closed, EndpointProtocol.TCP)
    assert not res.ok and "failed" in res.message


def test_probe_timeout_against_silent_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepts connections, never answers
        res = probe(HealthCheck(http=HTTPGetCheck(), timeout_seconds=0.2), s.getsockname()[1])
    assert not res.ok and "timed out after 0.2s" in res.message
    assert res.latency < 1.0


def test_many_probes_share_one_loop(http_port: int) -> None:
    async def many() -> list[bool]:
        target = ProbeTarget(EndpointProtocol.HTTP, "127.0.0.1", http_port)
        results = await asyncio.gather(
            *(run_probe(HealthCheck(http=HTTPGetCheck(path="/ok")), target) for _ in range(50))
        )
        return [r.ok for r in results]

    def probe_side() -> set[threading.Thread]:
        # The test server answers each request on its own thread; those are not the probes'.
        return {t for t in threading.enumerate() if "process_request" not in t.name}

    before = probe_side()
    assert all(asyncio.run(many()))
    assert len(probe_side() - before) <= 1


def test_render_uri() -> None:
    assert render_uri("http", "0.0.0.0", 80) == "http://127.0.0.1:80"
    assert render_uri("tcp", "::", 5) == "tcp://[::1]:5"
    assert (
        render_uri(EndpointProtocol.HTTPS, "example.internal", 443, "/x")
        == "https://example.internal:443/x"
    )


def test_target_from_uri() -> None:
    t = ProbeTarget.from_uri("http://127.0.0.1:8080/api")
    assert (t.protocol, t.host, t.port, t.path) == (
        EndpointProtocol.HTTP,
        "127.0.0.1",
        8080,
        "/api",
    )
    assert ProbeTarget.from_uri("127.0.0.1:9").protocol is EndpointProtocol.TCP
    with pytest.raises(ValueError):
        ProbeTarget.from_uri("http:///nohost")


def test_registry_preferred_last_used_and_claims(tmp_path: Path) -> None:
    reg = PortRegistry(tmp_path)
    free = free_port()
    assert reg.choose("a/one", "127.0.0.1", free, None, allocate=True) == free
    # Another owner may not take a claimed port, even though nothing listens yet.
    other = reg.choose("a/two", "127.0.0.1", free, None, allocate=True)
    assert other != free
    with pytest.raises(PortUnavailable, match="allocatePort is false"):
        reg.choose("a/three", "127.0.0.1", free, None, allocate=False)
    # The owner gets its own port back.
    assert reg.choose("a/one", "127.0.0.1", None, free, allocate=True) == free
    reg.release("a/one")
    assert reg.choose("a/three", "127.0.0.1", free, None, allocate=False) == free


def test_port_available_sees_listeners() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_available(s.getsockname()[1])


@pytest.mark.parametrize(
    ("since_start", "period", "expected"),
    [
        (0.0, 10.0, 0.01),  # the first half second: most servers start listening here
        (0.49, 10.0, 0.01),
        (0.5, 10.0, 0.05),  # then the usual startup cadence
        (30.0, 10.0, 0.05),
        (0.0, 0.005, 0.005),  # never more often than the period asks
        (5.0, 0.02, 0.02),
    ],
)
def test_startup_probe_cadence(since_start: float, period: float, expected: float) -> None:
    from steward.engine.probing import startup_interval

    assert startup_interval(since_start, period) == expected


def test_a_release_reads_the_owner_s_list_and_still_finds_unlisted_claims(
    tmp_path: Path,
) -> None:
    reg = PortRegistry(tmp_path)
    first, second = free_port(), free_port()
    reg.choose("a/one", "127.0.0.1", first, None, allocate=True)
    reg.choose("a/one", "127.0.0.1", second, None, allocate=True)  # a second claim, listed too
    reg.choose("a/two", "127.0.0.1", None, None, allocate=True)
    claims = {p.name for p in tmp_path.glob("*.json")}
    reg.release("a/one")
    left = {p.name for p in tmp_path.glob("*.json")}
    assert len(claims - left) == 2 and len(left) == 1  # a/two's stays
    assert not list((tmp_path / "owners").glob("*.json"))[1:]  # only a/two's list remains
    # A claim written by an earlier Steward (no list): a release scans for it.
    (tmp_path / f"127.0.0.1-{first}.json").write_text('{"owner": "a/old", "at": 0}')
    reg.release("a/old")
    assert not (tmp_path / f"127.0.0.1-{first}.json").exists()
