"""The agent's log endpoint, like kubelet's: HTTPS, every request authorized by the apiserver.

``GET /logs/<namespace>/<name>?tail=N&follow=true&previous=true`` streams the log lines of a
service this host runs (secret values redacted, as `steward logs` prints them). Who asks is
authenticated by the apiserver — a bearer token through a TokenReview, or a client certificate
signed by the CA given with ``--client-ca-file`` — and authorized by a SubjectAccessReview of
``get`` on ``managedservices/log`` in that namespace for that name. So a tenant reads the logs
of its own namespace and nothing else, without exec into anything and without the agent's
credentials; the agent needs only ``create`` on tokenreviews and subjectaccessreviews.
"""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes

from steward.api.crd import PLURAL
from steward.api.manifest import API_GROUP

log = logging.getLogger("steward.agent.logs")

SUBRESOURCE = "log"
REVIEW_TIMEOUT = (3.0, 10.0)
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Caller:
    """Who asks, as the apiserver knows them."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


class Denied(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Reviews:
    """TokenReview and SubjectAccessReview through the agent's own client."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.authn = kubernetes.client.AuthenticationV1Api(api)
        self.authz = kubernetes.client.AuthorizationV1Api(api)

    def who(self, token: str) -> Caller:
        review = self.authn.create_token_review(
            kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token=token)),
            _request_timeout=REVIEW_TIMEOUT,
        )
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            raise Denied(HTTPStatus.UNAUTHORIZED, "the token was not accepted by the apiserver")
        user = status.user
        return Caller(
            user=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra={k: list(v) for k, v in (user.extra or {}).items()},
        )

    def may_read(self, caller: Caller, namespace: str, name: str) -> bool:
        attributes = kubernetes.client.V1ResourceAttributes(
            namespace=namespace,
            verb="get",
            group=API_GROUP,
            resource=PLURAL,
            subresource=SUBRESOURCE,
            name=name,
        )
        spec = kubernetes.client.V1SubjectAccessReviewSpec(
            user=caller.user,
            groups=list(caller.groups),
            uid=caller.uid or None,
            extra=caller.extra or None,
            resource_attributes=attributes,
        )
        review = self.authz.create_subject_access_review(
            kubernetes.client.V1SubjectAccessReview(spec=spec), _request_timeout=REVIEW_TIMEOUT
        )
        return bool(review.status is not None and review.status.allowed)


LogSource = Callable[[str, str, int | None, bool, bool], Iterator[str] | None]
"""(namespace, name, tail, follow, previous) -> the lines, or None when this host does not run
it; raises LookupError when the previous run asked for was not kept."""


def caller_from_cert(cert: dict[str, Any]) -> Caller | None:
    """A verified client certificate as Kubernetes reads one: CN the user, O the groups."""
    user, groups = "", []
    for rdn in cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return Caller(user=user, groups=(*groups, "system:authenticated")) if user else None


class _Handler(BaseHTTPRequestHandler):
    server: LogServer

    def setup(self) -> None:
        # The TLS handshake in this request's thread, bounded: a stalled client holds only it.
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """The access log goes through logging (one line per request, below)."""

    def _fail(self, status: HTTPStatus, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _caller(self) -> Caller:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:].strip():
            return self.server.reviews.who(auth[7:].strip())
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        caller = caller_from_cert(cert) if cert else None
        if caller is None:
            raise Denied(HTTPStatus.UNAUTHORIZED, "no bearer token and no client certificate")
        return caller

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "logs" or not all(parts):
            self._fail(HTTPStatus.NOT_FOUND, "GET /logs/<namespace>/<name>")
            return
        _, namespace, name = parts
        query = urllib.parse.parse_qs(url.query)
        try:
            tail = int(query["tail"][0]) if "tail" in query else None
        except ValueError:
            self._fail(HTTPStatus.BAD_REQUEST, "tail must be a number")
            return
        follow, previous = (
            query.get(flag, ["false"])[0].lower() in ("1", "true", "yes")
            for flag in ("follow", "previous")
        )
        who = "?"
        try:
            caller = self._caller()
            who = caller.user
            if not self.server.reviews.may_read(caller, namespace, name):
                raise Denied(
                    HTTPStatus.FORBIDDEN,
                    f'user "{caller.user}" cannot get {PLURAL}/{SUBRESOURCE} '
                    f'"{name}" in the namespace "{namespace}"',
                )
        except Denied as exc:
            log.info("logs of %s/%s for %s: %s", namespace, name, who, exc)
            self._fail(exc.status, str(exc))
            return
        except kubernetes.client.ApiException as exc:
            log.warning("logs of %s/%s: the review failed: %s %s", namespace, name,
                        exc.status, exc.reason)  # fmt: skip
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, "the apiserver could not review the request")
            return
        try:
            lines = self.server.source(namespace, name, tail, follow, previous)
        except LookupError as exc:  # kubelet answers a missing previous container the same way
            self._fail(HTTPStatus.NOT_FOUND, str(exc))
            return
        if lines is None:
            self._fail(HTTPStatus.NOT_FOUND, f"{namespace}/{name} does not run on this host")
            return
        how = " (previous)" if previous else " (follow)" if follow else ""
        log.info("logs of %s/%s for %s%s", namespace, name, who, how)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            for line in lines:
                self.wfile.write(line.encode(errors="replace") + b"\n")
                if follow:
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the reader went away
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()


class LogServer(ThreadingHTTPServer):
    """Serves in its own thread; ``close()`` stops it (following readers are cut off)."""

    daemon_threads = True

    def __init__(
        self,
        address: str,
        port: int,
        cert_file: Path,
        key_file: Path,
        reviews: Reviews,
        source: LogSource,
        client_ca_file: Path | None = None,
    ) -> None:
        super().__init__((address, port), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        if client_ca_file is not None:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=str(client_ca_file))
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.reviews = reviews
        self.source = source
        self._thread = threading.Thread(
            target=self.serve_forever, name="steward-log-endpoint", daemon=True
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a reader gone mid-request: one line, no traceback."""
        log.debug("log endpoint: request from %s failed", client_address, exc_info=True)

    def start(self) -> LogServer:
        self._thread.start()
        log.info("serving logs on https://%s:%d", *self.server_address[:2])
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()
