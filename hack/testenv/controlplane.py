#!/usr/bin/env python3
"""A real, throw-away Kubernetes control plane (etcd + kube-apiserver) for tests.

The binaries come from ``hack/testenv/build-testbin.sh`` (built from Go modules,
the envtest way). Everything runs on 127.0.0.1 with free ports inside one
temporary directory that is removed on stop:

* etcd (``--unsafe-no-fsync``, data dir in the temp dir);
* kube-apiserver with ``--authorization-mode=RBAC``, TLS serving and client
  certificates signed by a CA generated here (admin = ``system:masters``),
  service-account token signing with a fresh RSA key (TokenRequest works),
  and the ServiceAccount admission plugin disabled (there is no
  controller-manager to create ``default`` service accounts), as envtest does;
* an admin kubeconfig written to ``<tmp>/kubeconfig``.

There is no controller-manager, scheduler or kubelet: pods never run,
namespaces are not emptied by a namespace controller, garbage collection
does not happen.

Library use::

    from hack.testenv.controlplane import ControlPlane, build_testbin
    with ControlPlane(build_testbin()) as info:
        subprocess.run(["kubectl", "get", "ns"], env=info.env(), check=True)

Human use::

    python -m hack.testenv.controlplane      # prints export lines, Ctrl-C stops

Only the Python standard library and the ``openssl`` command are needed.
Processes are stopped by PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-testbin.sh"
BINARIES = ("kube-apiserver", "kubectl", "etcd", "helm")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "steward-admin"
CONTEXT = "steward-testenv"

__all__ = [
    "ADMIN_USER",
    "BINARIES",
    "SERVICE_ACCOUNT_ISSUER",
    "ControlPlane",
    "ControlPlaneError",
    "ControlPlaneInfo",
    "build_bin_dir",
    "build_testbin",
    "check_bin_dir",
    "leaf_cert",
    "run_build_script",
    "wait_until",
    "write_kubeconfig",
]


class ControlPlaneError(RuntimeError):
    """The control plane (or its binaries) could not be built or started."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def run_build_script(
    script: Path, *args: str, error: type[ControlPlaneError] = ControlPlaneError
) -> str:
    """Run a build script, stream its stderr, return its last stdout line.

    The script's progress goes to this process's stderr (and its tail is kept
    for the ``error`` raised when it fails).
    """
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            ["bash", str(script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as exc:
        raise error(f"cannot run {script}: {exc}") from exc
    with proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:  # stdout only gets the final line: no deadlock
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise error(f"{script} exited with {proc.returncode}:\n" + "\n".join(tail))
    lines = out.strip().splitlines()
    return lines[-1] if lines else ""


def build_bin_dir(
    script: Path,
    check: Callable[[Path], None],
    error: type[ControlPlaneError] = ControlPlaneError,
) -> Path:
    """Run a build script that prints a bin directory; ``check`` it and return it."""
    out = run_build_script(script, error=error)
    if not out:
        raise error(f"{script} printed no bin directory")
    bin_dir = Path(out)
    check(bin_dir)
    return bin_dir


def build_testbin() -> Path:
    """Run build-testbin.sh (build or reuse) and return the bin directory.

    A cold build takes minutes; a reuse milliseconds.
    """
    return build_bin_dir(BUILD_SCRIPT, check_bin_dir)


def check_bin_dir(bin_dir: Path) -> None:
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"bin directory {bin_dir} lacks executable {', '.join(missing)}")


@dataclasses.dataclass(frozen=True)
class ControlPlaneInfo:
    """Where a running control plane is and how to talk to it as admin."""

    bin_dir: Path
    work_dir: Path
    kubeconfig: Path
    server: str
    ca_file: Path
    client_cert: Path
    client_key: Path
    etcd_url: str
    startup_seconds: float

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for kubectl/helm/operators against this control plane.

        KUBECONFIG points at the admin kubeconfig, the bin dir is first on
        PATH, and kubectl/helm caches and config live in the temp dir so
        nothing touches the user's ~/.kube or helm directories.
        """
        env = dict(os.environ if base is None else base)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            PATH=os.pathsep.join([str(self.bin_dir), env.get("PATH", "")]),
            KUBECACHEDIR=str(self.work_dir / "kube-cache"),
            HELM_CACHE_HOME=str(self.work_dir / "helm" / "cache"),
            HELM_CONFIG_HOME=str(self.work_dir / "helm" / "config"),
            HELM_DATA_HOME=str(self.work_dir / "helm" / "data"),
        )
        env.pop("HELM_KUBECONTEXT", None)
        env.pop("HELM_NAMESPACE", None)
        return env

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the server and presents the admin cert."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held together until all chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"openssl {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}"
        )


_CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = steward-testenv-ca
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
"""

_LEAF_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
{dn}
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {eku}
authorityKeyIdentifier = keyid
{san}
"""


# A fresh EC P-256 key, unencrypted (``openssl req`` arguments).
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def leaf_cert(
    pki: Path, name: str, dn: str, eku: str, san: str, serial: int, days: int = 30
) -> None:
    """``pki/<name>.{key,crt}``: a leaf certificate signed by ``pki/ca.*``.

    ``dn`` is the subject (``openssl req`` config lines), ``eku`` the extended
    key usage, ``san`` a ``subjectAltName = ...`` line or empty.
    """
    (pki / f"{name}.cnf").write_text(_LEAF_CNF.format(dn=dn, eku=eku, san=san))
    _openssl(
        "req",
        "-new",
        *_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-config",
        f"{name}.cnf",
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        str(serial),
        "-days",
        str(days),
        "-extfile",
        f"{name}.cnf",
        "-extensions",
        "ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def _generate_pki(pki: Path, extra_sans: Sequence[str] = ()) -> None:
    """CA, apiserver serving cert, admin client cert, service-account key.

    ``extra_sans`` are added to the apiserver's subjectAltName (``IP:...`` or
    ``DNS:...`` entries), e.g. a bridge address and the first service IP.

    TLS keys are EC P-256 (fast to generate); the service-account signing key
    is RSA 2048 (RS256 tokens, the Kubernetes default).
    """
    pki.mkdir(mode=0o700)
    (pki / "ca.cnf").write_text(_CA_CNF)
    _openssl(
        "req",
        "-x509",
        "-new",
        *_EC_KEY,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-config",
        "ca.cnf",
        cwd=pki,
    )
    leaves = {
        "apiserver": (
            "CN = kube-apiserver",
            "serverAuth",
            "subjectAltName = IP:127.0.0.1,DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
            + "".join(f",{san}" for san in extra_sans),
        ),
        "admin": (f"O = system:masters\nCN = {ADMIN_USER}", "clientAuth", ""),
    }
    for serial, (name, (dn, eku, san)) in enumerate(leaves.items(), start=2):
        leaf_cert(pki, name, dn, eku, san, serial)
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "sa.key",
        cwd=pki,
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


# Resolved in the parent: the pre-exec hook must not import anything.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    # If the Python process dies without stop() (SIGKILL, crash), the kernel
    # kills etcd/apiserver too. SIGKILL: state is throw-away, and an apiserver
    # whose etcd is gone hangs in graceful shutdown.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class _Proc:
    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str], mode: str = "wb"
    ):
        self.name = name
        self.log = log
        self.argv = list(argv)
        self.env = dict(env)
        self._log_fh: IO[bytes] = open(log, mode)  # noqa: SIM115
        # pdeathsig is tied to the forking thread: only use it from the main
        # thread, where it means "if this Python process dies, so do we".
        preexec = (
            _set_pdeathsig
            if _PRCTL is not None and threading.current_thread() is threading.main_thread()
            else None
        )
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # a terminal's Ctrl-C goes to us, not to them
            preexec_fn=preexec,
        )
        self.pid = self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        self._log_fh.close()


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1, in a temporary directory.

    ``start()`` returns a :class:`ControlPlaneInfo` once ``/readyz`` answers
    ``ok``; ``stop()`` terminates both processes by PID and removes the temp
    directory (unless ``keep_work_dir``). Also a context manager.
    """

    def __init__(
        self,
        bin_dir: str | os.PathLike[str],
        *,
        work_root: str | os.PathLike[str] | None = None,
        start_timeout: float = 90.0,
        stop_grace: float = 10.0,
        keep_work_dir: bool = False,
        extra_apiserver_args: Iterable[str] = (),
        port_attempts: int = 3,
        bind_address: str = "127.0.0.1",
        service_cluster_ip_range: str = "10.0.0.0/24",
        authorization_mode: str = "RBAC",
        disable_admission_plugins: Sequence[str] = ("ServiceAccount",),
        endpoint_reconciler_type: str = "none",
        extra_sans: Sequence[str] = (),
    ) -> None:
        """The keyword arguments after ``port_attempts`` exist for the node
        harness (``cluster.py``): it binds the apiserver on a bridge address so
        pods reach it through the ``kubernetes`` Service, with the Node
        authorizer and the ServiceAccount admission plugin. Their defaults are
        the loopback-only, envtest-like setup described above.
        """
        self.bin_dir = Path(bin_dir).resolve()
        self.work_root = work_root
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.keep_work_dir = keep_work_dir
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.port_attempts = port_attempts
        self.bind_address = bind_address
        self.service_cluster_ip_range = service_cluster_ip_range
        self.authorization_mode = authorization_mode
        self.disable_admission_plugins = list(disable_admission_plugins)
        self.endpoint_reconciler_type = endpoint_reconciler_type
        self.extra_sans = list(extra_sans)
        self.info: ControlPlaneInfo | None = None
        self.work_dir: Path | None = None
        self._procs: list[_Proc] = []

    # -- public API ---------------------------------------------------------
    def start(self) -> ControlPlaneInfo:
        if self.info is not None:
            return self.info
        check_bin_dir(self.bin_dir)
        if shutil.which("openssl") is None:
            raise ControlPlaneError("the openssl command is required to generate certificates")
        t0 = time.monotonic()
        self.work_dir = Path(tempfile.mkdtemp(prefix="steward-cp-", dir=self.work_root))
        atexit.register(self.stop)  # in case the caller forgets
        try:
            _generate_pki(self.work_dir / "pki", self.extra_sans)
            self._extend_pki(self.work_dir / "pki")
            for attempt in range(1, self.port_attempts + 1):
                try:
                    self.info = self._start_processes(t0, attempt)
                    return self.info
                except _PortInUse as exc:
                    self._stop_processes()
                    if attempt == self.port_attempts:
                        raise ControlPlaneError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop apiserver then etcd by PID and remove the work dir. Idempotent."""
        self._stop_processes()
        if self.work_dir is not None and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.info = None
        atexit.unregister(self.stop)

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self._procs if p.exited() is None}

    # -- fault injection (tests of what survives a control-plane outage) ----
    def stop_component(self, name: str) -> None:
        """Stop ``etcd`` or ``kube-apiserver`` by PID; ``start_component`` brings it back."""
        proc = next(p for p in self._procs if p.name == name)
        proc.stop(self.stop_grace)

    def start_component(self, name: str, wait: bool = True) -> None:
        """Start a stopped component again with the same flags, ports and data."""
        i, old = next((i, p) for i, p in enumerate(self._procs) if p.name == name)
        if old.exited() is None:
            return
        self._procs[i] = _Proc(old.name, old.argv, old.log, old.env, mode="ab")
        if wait and self.info is not None:
            self._wait_ready(self.info)

    def restart_component(self, name: str, downtime: float = 0.0) -> None:
        self.stop_component(name)
        time.sleep(downtime)
        self.start_component(name)

    def __enter__(self) -> ControlPlaneInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------
    def _extend_pki(self, pki: Path) -> None:
        """Hook for subclasses: more certificates from the same CA (``pki/ca.*``)."""

    def _stop_processes(self) -> None:
        # apiserver first (it talks to etcd), then etcd.
        for proc in reversed(self._procs):
            proc.stop(self.stop_grace)
        self._procs = []

    def _start_processes(self, t0: float, attempt: int) -> ControlPlaneInfo:
        assert self.work_dir is not None
        work, pki = self.work_dir, self.work_dir / "pki"
        etcd_client, etcd_peer, api_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        server = f"https://{self.bind_address}:{api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBE"))}
        data_dir = work / f"etcd-data-{attempt}"

        etcd = _Proc(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            work / f"etcd-{attempt}.log",
            env,
        )
        self._procs.append(etcd)

        apiserver = _Proc(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={api_port}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--authorization-mode={self.authorization_mode}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={self.service_cluster_ip_range}",
                *(
                    [f"--disable-admission-plugins={','.join(self.disable_admission_plugins)}"]
                    if self.disable_admission_plugins
                    else []
                ),
                "--allow-privileged=true",
                # 1.37 refuses a loopback advertise address with the lease
                # reconciler; nothing here needs the kubernetes Endpoints.
                f"--endpoint-reconciler-type={self.endpoint_reconciler_type}",
                "--v=1",
                *self.extra_apiserver_args,
            ],
            work / f"kube-apiserver-{attempt}.log",
            env,
        )
        self._procs.append(apiserver)

        kubeconfig = work / "kubeconfig"
        info = ControlPlaneInfo(
            bin_dir=self.bin_dir,
            work_dir=work,
            kubeconfig=kubeconfig,
            server=server,
            ca_file=pki / "ca.crt",
            client_cert=pki / "admin.crt",
            client_key=pki / "admin.key",
            etcd_url=etcd_url,
            startup_seconds=0.0,
        )
        _write_kubeconfig(info)
        self._wait_ready(info)
        return dataclasses.replace(info, startup_seconds=round(time.monotonic() - t0, 2))

    def _wait_ready(self, info: ControlPlaneInfo) -> None:
        ctx = info.ssl_context()
        wait_until(
            "kube-apiserver /readyz",
            lambda: _readyz(info.server, ctx),
            self._procs,
            self.start_timeout,
            port_retry=True,
        )


class _PortInUse(ControlPlaneError):
    pass


class _NotReady(Exception):
    pass


def _readyz(server: str, ctx: ssl.SSLContext) -> bool:
    """True when ``/readyz`` answers ``ok``; else raises why not."""
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=ctx, timeout=2) as resp:
            status, body = resp.status, resp.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[-500:]
        raise _NotReady(f"HTTP {exc.code}: {body}") from None
    if status == 200 and body == "ok":
        return True
    raise _NotReady(f"HTTP {status}: {body[:200]}")


def wait_until(
    what: str,
    ready: Callable[[], object],
    procs: Iterable[_Proc],
    timeout: float,
    *,
    interval: float = 0.1,
    error: type[ControlPlaneError] = ControlPlaneError,
    log_lines: int = 40,
    port_retry: bool = False,
) -> None:
    """Poll ``ready()`` every ``interval`` seconds until it returns true.

    ``error`` is raised when one of ``procs`` exits meanwhile, or after
    ``timeout`` seconds; the message ends with the tails of their logs. An
    exception from ``ready()`` means "not yet" (the last one is reported).
    With ``port_retry``, an exit with ``address already in use`` in its log
    raises :class:`_PortInUse` instead, for the caller to try other ports.
    """
    procs = list(procs)
    deadline = time.monotonic() + timeout
    last: object = "no answer yet"
    while True:
        for proc in procs:
            rc = proc.exited()
            if rc is not None:
                log = _tail(proc.log, log_lines)
                msg = (
                    f"{proc.name} exited with {rc} while waiting for {what}; "
                    f"{proc.log} ends with:\n{log}"
                )
                if port_retry and "address already in use" in log:
                    raise _PortInUse(msg)
                raise error(msg)
        try:
            if ready():
                return
        except Exception as exc:  # not ready yet
            last = exc
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name} ({p.log}) ---\n{_tail(p.log, log_lines)}" for p in procs
            )
            raise error(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{logs}")
        time.sleep(interval)


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    cert: Path,
    key: Path,
    user: str,
    *,
    context: str = CONTEXT,
    namespace: str | None = None,
) -> Path:
    """A kubeconfig (mode 0600) for ``user`` with the client certificate ``cert``/``key``.

    ``context`` names the cluster and the context; ``namespace``, when given,
    is the context's default namespace.
    """

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    ctx: dict[str, str] = {"cluster": context, "user": user}
    if namespace is not None:
        ctx["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
    }
    # JSON is valid YAML; kubectl, helm and client libraries all read it.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def _write_kubeconfig(info: ControlPlaneInfo) -> None:
    write_kubeconfig(
        info.kubeconfig,
        info.server,
        info.ca_file,
        info.client_cert,
        info.client_key,
        ADMIN_USER,
        namespace="default",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a throw-away etcd + kube-apiserver until Ctrl-C.",
    )
    parser.add_argument(
        "--bin-dir",
        default=os.environ.get("STEWARD_TESTBIN"),
        help="directory with kube-apiserver, kubectl, etcd, helm "
        "(default: $STEWARD_TESTBIN, else build-testbin.sh)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir on exit")
    args = parser.parse_args(argv)

    try:
        bin_dir = Path(args.bin_dir) if args.bin_dir else build_testbin()
        cp = ControlPlane(bin_dir, keep_work_dir=args.keep)
        info = cp.start()
    except ControlPlaneError as exc:
        print(f"control plane failed: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(
            f"# control plane ready in {info.startup_seconds}s; "
            f"pids {cp.pids}; logs in {info.work_dir}",
            file=sys.stderr,
        )
        print(f"export KUBECONFIG={shlex.quote(str(info.kubeconfig))}")
        print(f'export PATH={shlex.quote(str(info.bin_dir))}:"$PATH"')
        print("# Ctrl-C to stop", file=sys.stderr)
        sys.stdout.flush()
        while not stop.wait(0.5):
            dead = {p.name: p.exited() for p in cp._procs if p.exited() is not None}
            if dead:
                print(f"control plane process exited: {dead}", file=sys.stderr)
                return 1
        return 0
    finally:
        cp.stop()
        print("# control plane stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
