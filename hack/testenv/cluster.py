#!/usr/bin/env python3
"""A real single-node Kubernetes cluster for tests: control plane + kubelet node.

Builds on :mod:`controlplane` (etcd + kube-apiserver, by composition: a
``ControlPlane`` subclass that adds certificates and apiserver flags) and adds
kube-controller-manager, kube-scheduler, a kubelet with its own containerd,
and kube-proxy. Binaries: ``build-testbin.sh`` (apiserver, etcd, kubectl,
helm) and ``build-node.sh`` (kubelet, scheduler, controller-manager,
kube-proxy, the pause program and its image). Debian packages: containerd,
runc, containernetworking-plugins, conntrack (``node/ensure-packages.sh``).

Networking: a bridge made here (default ``stwbr0`` with 10.244.77.1/24). The
apiserver, the kubelet and the node IP live on that bridge address, pods get
addresses from the same /24 (CNI bridge + firewall + portmap, host-local
IPAM), Services come from 10.96.77.0/24 (kube-proxy, iptables mode,
NodePorts only on the bridge address). Nothing is sent to any other address.

Everything the cluster changes on the machine is undone by :meth:`stop`:
processes (by PID), pod sandboxes, mounts under the work dir and
``/run/netns/cni-*``, the bridge, the ``kubepods`` cgroups, the KUBE-*/CNI-*
iptables chains and rules (IPv4 and IPv6) and the sysctls the kubelet and
kube-proxy rewrite. :meth:`leftovers` lists what is still there.

Library use::

    from cluster import NodeCluster, build_nodebin, local_test_images
    from controlplane import build_testbin
    with NodeCluster(build_testbin(), build_nodebin(), images=local_test_images()) as info:
        subprocess.run(["kubectl", "get", "nodes"], env=info.env(), check=True)

Human use (root)::

    python -m hack.testenv.cluster --node     # prints export lines, Ctrl-C stops

Only one such cluster runs at a time on a machine (a lock file serialises
them: the bridge, the cgroups and iptables chains are machine-wide).
Standard library only, plus the commands named above.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hack.image import imagetar
from hack.testenv import controlplane

HERE = Path(__file__).resolve().parent
NODE_BUILD_SCRIPT = HERE / "build-node.sh"
PACKAGES_SCRIPT = HERE / "node" / "ensure-packages.sh"
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy", "pause")
NODE_NAME = "steward-node"
DEFAULT_BRIDGE = "stwbr0"
DEFAULT_POD_SUBNET = "10.244.77.0/24"
DEFAULT_SERVICE_CIDR = "10.96.77.0/24"
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "firewall", "portmap", "loopback")
HOST_TOOLS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "conntrack",
    "iptables",
    "ip6tables",
    "iptables-save",
    "ip6tables-save",
    "ip",
    "umount",
    "openssl",
)
# Rewritten by the kubelet (setupKernelTunables) and possibly by kube-proxy.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
OWN_CHAIN_PREFIXES = ("KUBE-", "CNI-")
LOCK_FILE = Path("/run/lock/steward-node-cluster.lock")
# What a running cluster changed, for the clean-up after a killed run.
STATE_FILE = Path("/run/lock/steward-node-cluster.json")
CONTAINER_LOG_LINKS = Path("/var/log/containers")  # the kubelet's fixed symlink dir
# Fixed paths the components create whatever their flags say: the kubelet's
# device-plugin socket dir and log symlinks, libcni's result cache, the
# controller-manager's flex-volume dir (flagged away; a safety net). Removed at stop when they
# did not exist before; in libcni's cache only the files that are new.
MACHINE_PATHS = (
    Path("/var/lib/kubelet"),
    CONTAINER_LOG_LINKS,
    Path("/var/lib/cni"),
    Path("/usr/libexec/kubernetes"),
)
CNI_CACHE = Path("/var/lib/cni/results")
# containerd 1.6 puts every shim's socket in /run/containerd/s, whatever its
# state dir: Docker's containerd shares it, so it is never removed here (the
# sockets of our shims go away with them). runc's state is in our work dir.
K8S_NS = "k8s.io"

__all__ = [
    "NODE_NAME",
    "ImageSpec",
    "NodeCluster",
    "NodeClusterError",
    "NodeClusterInfo",
    "TeardownReport",
    "build_nodebin",
    "check_node_bin_dir",
    "ensure_packages",
    "local_test_images",
]


class NodeClusterError(controlplane.ControlPlaneError):
    """The node cluster (or a part of it) could not be built or started."""


def _log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


# -- building and finding the parts -------------------------------------------
def build_nodebin() -> Path:
    """Run build-node.sh (build or reuse, ~12 min cold) and return the bin dir."""
    return controlplane.build_bin_dir(NODE_BUILD_SCRIPT, check_node_bin_dir, NodeClusterError)


def check_node_bin_dir(bin_dir: Path) -> None:
    missing = [b for b in NODE_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing or not (bin_dir / "pause.tar").is_file() or not (bin_dir / "pause.tag").is_file():
        raise NodeClusterError(
            f"node bin directory {bin_dir} is incomplete "
            f"(missing {', '.join(missing) or 'pause.tar/pause.tag'})"
        )


def ensure_packages() -> None:
    """Install containerd, runc, CNI plugins, conntrack from Debian (idempotent)."""
    controlplane.run_build_script(PACKAGES_SCRIPT, error=NodeClusterError)


def missing_host_tools() -> list[str]:
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    missing += [str(CNI_BIN_DIR / p) for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).exists()]
    return missing


def _cache_root() -> Path:
    return Path(os.environ.get("STEWARD_CACHE") or Path.home() / ".cache" / "steward")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """A local image for containerd: a docker-save archive, or a rootfs tar to wrap."""

    tag: str
    archive: Path | None = None
    rootfs: Path | None = None
    cmd: tuple[str, ...] = ("/bin/sh",)


def local_test_images(cache: Path | None = None) -> list[ImageSpec]:
    """The rootfs tars that hack/docker/build-test-images.sh caches, newest of each.

    ``steward-test/busybox:<key>`` from ``images/busybox-<key>.tar`` and
    ``steward-test/python-base:<key>`` from ``images/python-base-<suite>-<key>.tar``
    (the tags it gives them in Docker).
    """
    images = (cache or _cache_root()) / "images"
    out = []
    found = sorted(images.glob("busybox-*.tar"), key=lambda p: p.stat().st_mtime)
    if found:
        key = found[-1].name.removeprefix("busybox-").removesuffix(".tar")
        out.append(ImageSpec(f"steward-test/busybox:{key}", rootfs=found[-1], cmd=("/bin/sh",)))
    found = sorted(images.glob("python-base-*-*.tar"), key=lambda p: p.stat().st_mtime)
    if found:
        key = found[-1].name.removesuffix(".tar").rsplit("-", 1)[-1]
        out.append(ImageSpec(f"steward-test/python-base:{key}", rootfs=found[-1], cmd=("python3",)))
    return out


def image_archive(spec: ImageSpec, cache: Path | None = None) -> Path:
    """The docker-save archive for ``spec`` (a rootfs tar is wrapped once, cached)."""
    if spec.archive is not None:
        return spec.archive
    assert spec.rootfs is not None
    st = spec.rootfs.stat()
    key = f"{spec.rootfs.name}-{st.st_size}-{int(st.st_mtime)}-{spec.tag}-{spec.cmd}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    out_dir = (cache or _cache_root()) / "nodebin" / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', spec.tag)}-{digest}.tar"
    if not out.is_file():
        _log(f"packing {spec.rootfs} as {spec.tag}")
        imagetar.build_archive(out, spec.tag, [spec.rootfs], cmd=list(spec.cmd))
    return out


def normalized_ref(tag: str) -> str:
    """How containerd's CRI names ``tag`` (docker.io/library/ defaults)."""
    name = tag
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


# -- machine state: snapshots and cleanup helpers ------------------------------
def _run(
    argv: Sequence[str], check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise NodeClusterError(
            f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            out[key] = _sysctl_path(key).read_text().strip()
    return out


def restore_sysctls(saved: Mapping[str, str]) -> list[str]:
    """Write back every saved value that changed; return what could not be restored."""
    failed = []
    for key, value in saved.items():
        try:
            path = _sysctl_path(key)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError as exc:
            failed.append(f"sysctl {key}={value}: {exc}")
    return failed


IptState = dict[str, tuple[set[str], set[str]]]  # table -> (chains, "-A ..." rules)


def iptables_state(family: int) -> IptState:
    save = "iptables-save" if family == 4 else "ip6tables-save"
    state: IptState = {}
    for table in IPTABLES_TABLES:
        proc = _run([save, "-t", table])
        if proc.returncode != 0:
            continue
        chains, rules = set(), set()
        for line in proc.stdout.splitlines():
            if line.startswith(":"):
                chains.add(line[1:].split()[0])
            elif line.startswith("-A "):
                rules.add(line)
        state[table] = (chains, rules)
    return state


def _own(name: str) -> bool:
    return name.startswith(OWN_CHAIN_PREFIXES)


def _rule_targets(rule: str) -> list[str]:
    words = shlex.split(rule)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g", "--jump", "--goto")]


def iptables_leftovers(before: IptState, family: int) -> list[str]:
    """New KUBE-*/CNI-* chains, and new rules that jump to such chains."""
    now = iptables_state(family)
    left = []
    for table, (chains, rules) in now.items():
        old_chains, old_rules = before.get(table, (set(), set()))
        left += [f"ipv{family} {table} chain {c}" for c in sorted(chains - old_chains) if _own(c)]
        for rule in sorted(rules - old_rules):
            chain = rule.split()[1]
            if _own(chain) and chain not in old_chains:
                continue  # goes with its chain
            if any(_own(t) for t in _rule_targets(rule)):
                left.append(f"ipv{family} {table} rule {rule}")
    return left


def iptables_cleanup(before: IptState, family: int) -> None:
    """Delete new KUBE-*/CNI-* chains and the new rules jumping to them (only those)."""
    binary = "iptables" if family == 4 else "ip6tables"
    now = iptables_state(family)
    for table, (chains, rules) in now.items():
        old_chains, old_rules = before.get(table, (set(), set()))
        ours = {c for c in chains - old_chains if _own(c)}
        for rule in sorted(rules - old_rules):
            words = shlex.split(rule)
            chain = words[1]
            if chain in ours:
                continue
            if any(_own(t) for t in _rule_targets(rule)):
                _run([binary, "-w", "-t", table, "-D", *words[1:]])
        for chain in ours:
            _run([binary, "-w", "-t", table, "-F", chain])
        for chain in ours:
            _run([binary, "-w", "-t", table, "-X", chain])


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return [_unescape_mount(line.split()[4]) for line in lines if len(line.split()) > 4]


def netns_files() -> set[str]:
    try:
        return {p.name for p in Path("/run/netns").iterdir() if p.name.startswith("cni-")}
    except OSError:
        return set()


def kubepods_cgroups() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    out = []
    with contextlib.suppress(OSError):
        for hierarchy in root.iterdir():
            candidate = hierarchy / "kubepods"
            if candidate.is_dir():
                out.append(candidate)
    return out


def cgroup_procs(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, files in os.walk(cgroup):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                text = (Path(dirpath) / "cgroup.procs").read_text()
                pids += [int(x) for x in text.split()]
    return sorted(set(pids))


def remove_cgroup_tree(cgroup: Path) -> None:
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def processes_with_arg(arg: str) -> list[int]:
    """PIDs whose argv contains ``arg`` exactly (e.g. our containerd socket path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            pids.append(int(entry.name))
    return pids


def processes_mentioning(text: str) -> list[int]:
    """PIDs with an argv element containing ``text`` (e.g. a unique work dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def kill_pids(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM the given PIDs, SIGKILL what is left after ``grace`` seconds."""
    pids = [p for p in pids if _pid_alive(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if _pid_alive(p)]
            if not pids:
                return
            time.sleep(0.1)


def _overlaps(net: ipaddress.IPv4Network) -> list[str]:
    """Addresses/routes on this machine that overlap ``net``."""
    clashes = []
    for argv in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        for line in _run(argv).stdout.splitlines():
            for word in line.split():
                with contextlib.suppress(ValueError):
                    if "/" in word or word.count(".") == 3:
                        other = ipaddress.ip_network(word, strict=False)
                        if (
                            isinstance(other, ipaddress.IPv4Network)
                            and other.overlaps(net)
                            and other.prefixlen > 0
                            and not other.is_loopback
                        ):
                            clashes.append(line.strip())
                            break
    return clashes


# -- configuration files --------------------------------------------------------
class _NodeControlPlane(controlplane.ControlPlane):
    """The control plane with the node's certificates added to its PKI."""

    node_name = NODE_NAME
    node_ip = "10.244.77.1"

    def _extend_pki(self, pki: Path) -> None:
        ip = self.node_ip
        certs = {
            "kubelet-client": (
                "O = system:masters\nCN = kube-apiserver-kubelet-client",
                "clientAuth",
                "",
            ),
            "controller-manager": ("CN = system:kube-controller-manager", "clientAuth", ""),
            "scheduler": ("CN = system:kube-scheduler", "clientAuth", ""),
            "kube-proxy": ("CN = system:kube-proxy", "clientAuth", ""),
            "node": (f"O = system:nodes\nCN = system:node:{self.node_name}", "clientAuth", ""),
            "kubelet-serving": (
                f"CN = {self.node_name}",
                "serverAuth",
                f"subjectAltName = IP:{ip},DNS:{self.node_name}",
            ),
        }
        for serial, (name, (dn, eku, san)) in enumerate(certs.items(), start=20):
            controlplane.leaf_cert(pki, name, dn, eku, san, serial)

    def _start_processes(self, t0: float, attempt: int) -> controlplane.ControlPlaneInfo:
        assert self.work_dir is not None
        pki = self.work_dir / "pki"  # known only once start() made the work dir
        self.extra_apiserver_args = [
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
        return super()._start_processes(t0, attempt)


@dataclasses.dataclass(frozen=True)
class NodeClusterInfo:
    """A running single-node cluster."""

    control_plane: controlplane.ControlPlaneInfo
    node_bin_dir: Path
    work_dir: Path
    node_name: str
    bridge: str
    node_ip: str
    pod_subnet: str
    service_cidr: str
    containerd_socket: Path
    kubelet_root: Path
    images: Mapping[str, str]  # tag as given -> name in containerd (k8s.io namespace)
    pause_image: str
    startup_seconds: float
    timings: Mapping[str, float]

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def server(self) -> str:
        return self.control_plane.server

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = self.control_plane.env(base)
        env["PATH"] = os.pathsep.join([str(self.node_bin_dir), env["PATH"]])
        env["CONTAINERD_ADDRESS"] = str(self.containerd_socket)
        env["CONTAINERD_NAMESPACE"] = K8S_NS
        return env

    def ssl_context(self) -> ssl.SSLContext:
        return self.control_plane.ssl_context()

    def ctr(self, *args: str) -> list[str]:
        """argv for ``ctr`` against this cluster's containerd (k8s.io namespace)."""
        return ["ctr", "--address", str(self.containerd_socket), "-n", K8S_NS, *args]

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """A JSON request to the apiserver as admin; returns the decoded body."""
        return _api(self.server, self.ssl_context(), method, path, body, timeout)


def _api(
    server: str, ctx: ssl.SSLContext, method: str, path: str, body: Any = None, timeout: float = 10
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        server + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


@dataclasses.dataclass
class TeardownReport:
    seconds: float = 0.0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    leftovers: list[str] = dataclasses.field(default_factory=list)


class NodeCluster:
    """etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy.

    ``start()`` returns a :class:`NodeClusterInfo` once the node is Ready, the
    ``default`` ServiceAccount exists and kube-proxy programs the
    ``kubernetes`` Service; ``stop()`` undoes everything and returns a
    :class:`TeardownReport` whose ``leftovers`` should be empty. Needs root.
    """

    def __init__(
        self,
        bin_dir: str | os.PathLike[str],
        node_bin_dir: str | os.PathLike[str],
        *,
        images: Iterable[ImageSpec] = (),
        bridge: str = DEFAULT_BRIDGE,
        pod_subnet: str = DEFAULT_POD_SUBNET,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        work_root: str | os.PathLike[str] | None = None,
        keep_work_dir: bool = False,
        start_timeout: float = 120.0,
        lock_timeout: float = 600.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.bin_dir = Path(bin_dir).resolve()
        self.node_bin_dir = Path(node_bin_dir).resolve()
        self.images = list(images)
        self.bridge = bridge
        self.pod_net = ipaddress.IPv4Network(pod_subnet)
        self.service_net = ipaddress.IPv4Network(service_cidr)
        self.node_ip = str(self.pod_net.network_address + 1)
        self.work_root = work_root
        self.keep_work_dir = keep_work_dir
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.stop_grace = stop_grace
        self.info: NodeClusterInfo | None = None
        self.work_dir: Path | None = None
        self.cp: _NodeControlPlane | None = None
        self._procs: dict[str, controlplane._Proc] = {}
        self._lock_fh: Any = None
        self._started_any = False
        self._before: dict[str, Any] = {}
        self._all_pids: set[int] = set()
        self.last_report: TeardownReport | None = None

    # -- public API -------------------------------------------------------------
    def start(self) -> NodeClusterInfo:
        if self.info is not None:
            return self.info
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        self._preflight()
        self._acquire_lock()
        atexit.register(self.stop)
        try:
            self._snapshot()
            self._started_any = True
            self.work_dir = Path(tempfile.mkdtemp(prefix="steward-node-", dir=self.work_root))
            self.work_dir.chmod(0o755)
            self._sock = self.work_dir / "containerd" / "containerd.sock"
            self._save_state()
            self._create_bridge()
            self._write_cni_config()
            self._start_containerd()
            timings["containerd"] = round(time.monotonic() - t0, 2)
            imported: dict[str, str] = {}
            import_error: list[BaseException] = []
            importer = threading.Thread(
                target=self._import_images, args=(imported, import_error), daemon=True
            )
            importer.start()
            cp_info = self._start_control_plane()
            timings["apiserver"] = round(time.monotonic() - t0, 2)
            self._write_component_kubeconfigs(cp_info)
            self._start_controllers()
            importer.join()
            if import_error:
                raise NodeClusterError(f"image import failed: {import_error[0]}")
            timings["images"] = round(time.monotonic() - t0, 2)
            self._start_kubelet()
            self._start_kube_proxy()
            ctx = cp_info.ssl_context()
            self._wait("node Ready", lambda: self._node_ready(cp_info.server, ctx))
            timings["node_ready"] = round(time.monotonic() - t0, 2)
            self._wait(
                "default ServiceAccount",
                lambda: self._exists(
                    cp_info.server, ctx, "/api/v1/namespaces/default/serviceaccounts/default"
                ),
            )
            first_svc_ip = str(self.service_net.network_address + 1)
            self._wait(
                "kube-proxy rules for the kubernetes Service",
                lambda: (
                    first_svc_ip
                    in _run(["iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES"]).stdout
                ),
            )
            timings["ready"] = round(time.monotonic() - t0, 2)
            pause = (self.node_bin_dir / "pause.tag").read_text().strip()
            self.info = NodeClusterInfo(
                control_plane=cp_info,
                node_bin_dir=self.node_bin_dir,
                work_dir=self.work_dir,
                node_name=NODE_NAME,
                bridge=self.bridge,
                node_ip=self.node_ip,
                pod_subnet=str(self.pod_net),
                service_cidr=str(self.service_net),
                containerd_socket=self._sock,
                kubelet_root=self._kubelet_root,
                images=imported,
                pause_image=pause,
                startup_seconds=round(time.monotonic() - t0, 2),
                timings=timings,
            )
            return self.info
        except BaseException:
            report = self.stop()
            if report.leftovers:
                _log("after a failed start, left over: " + "; ".join(report.leftovers))
            raise

    def stop(self) -> TeardownReport:
        """Stop everything and restore the machine. Idempotent."""
        if not self._started_any:
            self._release_lock()
            return self.last_report or TeardownReport()
        t0 = time.monotonic()
        report = TeardownReport()

        def phase(name: str, fn: Any) -> None:
            t = time.monotonic()
            try:
                fn()
            except Exception as exc:  # keep undoing the rest
                report.errors.append(f"{name}: {exc!r}")
            report.timings[name] = round(time.monotonic() - t, 2)

        phase("controllers", lambda: self._stop_procs("kube-controller-manager", "kube-scheduler"))
        phase("pods", self._delete_pods)
        phase("node", lambda: self._stop_procs("kube-proxy", "kubelet"))
        phase("tasks", self._kill_tasks)
        phase("containerd", self._stop_containerd)
        phase("control plane", self._stop_control_plane)
        phase("iptables", self._cleanup_iptables)
        phase("mounts", self._cleanup_mounts)
        phase("bridge", self._delete_bridge)
        phase("cgroups", self._cleanup_cgroups)
        phase("sysctls", lambda: report.errors.extend(restore_sysctls(self._before["sysctls"])))
        phase("files", self._cleanup_files)
        report.leftovers = self.leftovers()
        if not report.leftovers:
            with contextlib.suppress(OSError):
                STATE_FILE.unlink()
        report.seconds = round(time.monotonic() - t0, 2)
        self._started_any = False
        self.info = None
        self.last_report = report
        self._release_lock()
        atexit.unregister(self.stop)
        return report

    def leftovers(self) -> list[str]:
        """What this cluster left on the machine (empty after a clean stop)."""
        if not self._before:
            return []
        left = []
        alive = sorted(p for p in self._all_pids if _pid_alive(p))
        left += [f"process {p}: {_cmdline(p)}" for p in alive]
        if getattr(self, "_sock", None) is not None:
            shims = [p for p in processes_with_arg(str(self._sock)) if p not in alive]
            left += [f"shim process {p}: {_cmdline(p)}" for p in shims]
        if Path(f"/sys/class/net/{self.bridge}").exists():
            left.append(f"bridge {self.bridge}")
        left += iptables_leftovers(self._before["ipt4"], 4)
        left += iptables_leftovers(self._before["ipt6"], 6)
        if self.work_dir is not None:
            prefix = str(self.work_dir) + "/"
            left += [f"mount {m}" for m in mount_points() if m.startswith(prefix)]
        new_ns = netns_files() - self._before["netns"]
        left += [f"netns /run/netns/{n}" for n in sorted(new_ns)]
        left += [
            f"mount {m}"
            for m in mount_points()
            if m.startswith("/run/netns/cni-") and Path(m).name in new_ns
        ]
        left += [f"cgroup {c}" for c in kubepods_cgroups()]
        now = read_sysctls()
        left += [
            f"sysctl {k}={now.get(k)} (was {v})"
            for k, v in self._before["sysctls"].items()
            if now.get(k) != v
        ]
        existed = set(self._before.get("machine_paths", [str(p) for p in MACHINE_PATHS]))
        left += [f"path {p}" for p in MACHINE_PATHS if str(p) not in existed and p.exists()]
        new_cache = set(_listdir(CNI_CACHE)) - set(self._before.get("cni_cache", []))
        left += [f"file {CNI_CACHE / n}" for n in sorted(new_cache)]
        if self.work_dir is not None and self.work_dir.exists() and not self.keep_work_dir:
            left.append(f"work dir {self.work_dir}")
        return left

    @property
    def pids(self) -> dict[str, int]:
        out = dict(self.cp.pids) if self.cp is not None else {}
        out.update({n: p.pid for n, p in self._procs.items() if p.exited() is None})
        return out

    def __enter__(self) -> NodeClusterInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- start-up steps ---------------------------------------------------------
    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise NodeClusterError("a kubelet node needs root (mounts, namespaces, iptables)")
        controlplane.check_bin_dir(self.bin_dir)
        check_node_bin_dir(self.node_bin_dir)
        missing = missing_host_tools()
        if missing:
            raise NodeClusterError(
                f"missing {', '.join(missing)} (run hack/testenv/node/ensure-packages.sh)"
            )

    def _acquire_lock(self) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        fh = open(LOCK_FILE, "a+")  # noqa: SIM115
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.close()
                    raise NodeClusterError(
                        f"another node cluster holds {LOCK_FILE} (waited {self.lock_timeout}s)"
                    ) from None
                time.sleep(1)
        self._lock_fh = fh
        if STATE_FILE.exists():
            self._recover_killed_run()
        # Checked under the lock: leftovers of a killed run would clash.
        if Path(f"/sys/class/net/{self.bridge}").exists():
            self._release_lock()
            raise NodeClusterError(f"network interface {self.bridge} already exists")
        clashes = _overlaps(self.pod_net) + _overlaps(self.service_net)
        if clashes:
            self._release_lock()
            raise NodeClusterError(f"{self.pod_net}/{self.service_net} overlap: {clashes}")
        for cg in kubepods_cgroups():
            if cgroup_procs(cg):
                self._release_lock()
                raise NodeClusterError(f"{cg} exists and has processes: another kubelet?")
            remove_cgroup_tree(cg)  # empty leftover of a killed run

    def _release_lock(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _save_state(self) -> None:
        def plain(state: IptState) -> dict[str, list[list[str]]]:
            return {t: [sorted(c), sorted(r)] for t, (c, r) in state.items()}

        before = dict(self._before, ipt4=plain(self._before["ipt4"]))
        before.update(ipt6=plain(self._before["ipt6"]), netns=sorted(self._before["netns"]))
        state = {"before": before, "work_dir": str(self.work_dir), "bridge": self.bridge}
        STATE_FILE.write_text(json.dumps(state))

    def _recover_killed_run(self) -> None:
        """Undo what a cluster whose process was killed left (we hold the lock)."""
        try:
            state = json.loads(STATE_FILE.read_text())
            b = state["before"]

            def sets(d: dict[str, list[list[str]]]) -> IptState:
                return {t: (set(c), set(r)) for t, (c, r) in d.items()}

            old = NodeCluster(self.bin_dir, self.node_bin_dir, bridge=state["bridge"])
            old._before = dict(b, ipt4=sets(b["ipt4"]), ipt6=sets(b["ipt6"]), netns=set(b["netns"]))
            old.work_dir = Path(state["work_dir"])
            old._sock = old.work_dir / "containerd" / "containerd.sock"
            old._started_any = True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log(f"ignoring unreadable {STATE_FILE}: {exc}")
            STATE_FILE.unlink(missing_ok=True)
            return
        _log(f"cleaning up after a killed run ({old.work_dir})")
        kill_pids(processes_mentioning(str(old.work_dir)), grace=2)
        report = old.stop()
        if report.leftovers:
            _log("a killed run left: " + "; ".join(report.leftovers))

    def _snapshot(self) -> None:
        self._before = {
            "sysctls": read_sysctls(),
            "ipt4": iptables_state(4),
            "ipt6": iptables_state(6),
            "netns": netns_files(),
            "container_logs_existed": CONTAINER_LOG_LINKS.exists(),
            "machine_paths": [str(p) for p in MACHINE_PATHS if p.exists()],
            "cni_cache": _listdir(CNI_CACHE),
        }

    def _create_bridge(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        _run(
            ["ip", "addr", "add", f"{self.node_ip}/{self.pod_net.prefixlen}", "dev", self.bridge],
            check=True,
        )
        _run(["ip", "link", "set", self.bridge, "up"], check=True)

    def _write_cni_config(self) -> None:
        assert self.work_dir is not None
        conf_dir = self.work_dir / "cni" / "net.d"
        conf_dir.mkdir(parents=True)
        hosts = list(self.pod_net.hosts())
        conflist = {
            "cniVersion": "1.0.0",
            "name": "steward-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [
                            [
                                {
                                    "subnet": str(self.pod_net),
                                    "rangeStart": str(hosts[9]),
                                    "rangeEnd": str(hosts[-1]),
                                    "gateway": self.node_ip,
                                }
                            ]
                        ],
                        # Pods get a route to the Service range only (no
                        # default route): nothing else is reachable from them.
                        "routes": [{"dst": str(self.service_net), "gw": self.node_ip}],
                        "dataDir": str(self.work_dir / "cni" / "ipam"),
                    },
                },
                # The Docker engine sets FORWARD to DROP (with bridge-nf-call):
                # without this, pod -> ClusterIP -> pod traffic is dropped.
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-steward-node.conflist").write_text(json.dumps(conflist, indent=2))

    def _start_containerd(self) -> None:
        assert self.work_dir is not None
        d = self.work_dir / "containerd"
        d.mkdir()
        self._sock = d / "containerd.sock"
        pause = (self.node_bin_dir / "pause.tag").read_text().strip()
        config = f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self._sock}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj (fix 1 of real-node.md).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.work_dir / "cni" / "net.d"}"
    max_conf_num = 1
"""
        (d / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        self._wait(
            "containerd",
            lambda: (
                self._sock.exists()
                and _run(["ctr", "--address", str(self._sock), "version"]).returncode == 0
            ),
            procs=("containerd",),
        )

    def _import_images(self, imported: dict[str, str], errors: list[BaseException]) -> None:
        try:
            specs = [
                ImageSpec(
                    (self.node_bin_dir / "pause.tag").read_text().strip(),
                    archive=self.node_bin_dir / "pause.tar",
                ),
                *self.images,
            ]
            for spec in specs:
                archive = image_archive(spec)
                proc = _run(
                    [
                        "ctr",
                        "--address",
                        str(self._sock),
                        "-n",
                        K8S_NS,
                        "images",
                        "import",
                        str(archive),
                    ],
                    timeout=300,
                )
                if proc.returncode != 0:
                    raise NodeClusterError(f"ctr images import {archive}: {proc.stderr.strip()}")
                imported[spec.tag] = normalized_ref(spec.tag)
            names = _run(
                ["ctr", "--address", str(self._sock), "-n", K8S_NS, "images", "ls", "-q"]
            ).stdout.split()
            missing = [ref for ref in imported.values() if ref not in names]
            if missing:
                raise NodeClusterError(f"not in containerd after import: {missing} (have {names})")
        except BaseException as exc:
            errors.append(exc)

    def _start_control_plane(self) -> controlplane.ControlPlaneInfo:
        assert self.work_dir is not None
        first_svc_ip = str(self.service_net.network_address + 1)
        cp = _NodeControlPlane(
            self.bin_dir,
            work_root=self.work_dir,
            keep_work_dir=True,  # removed with self.work_dir
            start_timeout=self.start_timeout,
            bind_address=self.node_ip,
            service_cluster_ip_range=str(self.service_net),
            authorization_mode="Node,RBAC",
            disable_admission_plugins=(),
            endpoint_reconciler_type="lease",
            extra_sans=(
                f"IP:{self.node_ip}",
                f"IP:{first_svc_ip}",
                "DNS:kubernetes.default.svc.cluster.local",
            ),
            extra_apiserver_args=(),
        )
        cp.node_ip = self.node_ip
        self.cp = cp
        info = cp.start()
        self._all_pids.update(cp.pids.values())
        return info

    def _write_component_kubeconfigs(self, cp_info: controlplane.ControlPlaneInfo) -> None:
        assert self.work_dir is not None
        pki = cp_info.work_dir / "pki"
        self._pki = pki
        k = self.work_dir / "kubeconfigs"
        k.mkdir()
        ca = pki / "ca.crt"
        self._kc = {
            name: controlplane.write_kubeconfig(
                k / f"{name}.kubeconfig",
                cp_info.server,
                ca,
                pki / f"{name}.crt",
                pki / f"{name}.key",
                user,
                context="steward-node",
            )
            for name, user in (
                ("controller-manager", "system:kube-controller-manager"),
                ("scheduler", "system:kube-scheduler"),
                ("kube-proxy", "system:kube-proxy"),
                ("node", f"system:node:{NODE_NAME}"),
            )
        }

    def _start_controllers(self) -> None:
        assert self.work_dir is not None
        pki, kc = self._pki, self._kc
        cm_port, sched_port = controlplane._free_ports(2)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.node_bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kc['controller-manager']}",
                f"--authentication-kubeconfig={kc['controller-manager']}",
                f"--authorization-kubeconfig={kc['controller-manager']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                f"--cert-dir={self.work_dir / 'controller-manager-certs'}",
                "--use-service-account-credentials",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={self.service_net}",
                "--allocate-node-cidrs=false",
                f"--flex-volume-plugin-dir={self.work_dir / 'volume-plugins'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.node_bin_dir / "kube-scheduler"),
                f"--kubeconfig={kc['scheduler']}",
                f"--authentication-kubeconfig={kc['scheduler']}",
                f"--authorization-kubeconfig={kc['scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={self.work_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _start_kubelet(self) -> None:
        assert self.work_dir is not None
        pki = self._pki
        self._kubelet_root = self.work_dir / "kubelet"
        self._kubelet_root.mkdir()
        port, healthz = controlplane._free_ports(2)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "containerRuntimeEndpoint": f"unix://{self._sock}",
            "podLogsDir": str(self.work_dir / "pod-logs"),
            "volumePluginDir": str(self.work_dir / "volume-plugins"),
            "evictionHard": {
                "nodefs.available": "2%",
                "imagefs.available": "2%",
                "nodefs.inodesFree": "1%",
                "memory.available": "100Mi",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            "registerNode": True,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
        }
        cfg = self.work_dir / "kubelet-config.json"
        cfg.write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(self.node_bin_dir / "kubelet"),
                f"--config={cfg}",
                f"--kubeconfig={self._kc['node']}",
                f"--root-dir={self._kubelet_root}",
                f"--node-ip={self.node_ip}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        healthz, metrics = controlplane._free_ports(2)
        self._spawn(
            "kube-proxy",
            [
                *self._kube_proxy_argv(),
                f"--kubeconfig={self._kc['kube-proxy']}",
                "--proxy-mode=iptables",
                f"--hostname-override={NODE_NAME}",
                f"--nodeport-addresses={self.node_ip}/32",
                f"--cluster-cidr={self.pod_net}",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                f"--healthz-bind-address=127.0.0.1:{healthz}",
                f"--metrics-bind-address=127.0.0.1:{metrics}",
                "--v=1",
            ],
        )

    def _kube_proxy_argv(self) -> list[str]:
        return [str(self.node_bin_dir / "kube-proxy")]

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        assert self.work_dir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "CONTAINERD_"))}
        proc = controlplane._Proc(name, argv, self.work_dir / f"{name}.log", env)
        self._procs[name] = proc
        self._all_pids.add(proc.pid)

    def _wait(self, what: str, ready: Any, procs: Sequence[str] | None = None) -> None:
        controlplane.wait_until(
            what,
            ready,
            [p for n, p in self._procs.items() if procs is None or n in procs],
            self.start_timeout,
            interval=0.25,
            error=NodeClusterError,
            log_lines=15,
        )

    @staticmethod
    def _node_ready(server: str, ctx: ssl.SSLContext) -> bool:
        node = _api(server, ctx, "GET", f"/api/v1/nodes/{NODE_NAME}")
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True"

    @staticmethod
    def _exists(server: str, ctx: ssl.SSLContext, path: str) -> bool:
        try:
            _api(server, ctx, "GET", path)
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    # -- teardown steps ---------------------------------------------------------
    def _stop_procs(self, *names: str) -> None:
        for name in names:
            proc = self._procs.get(name)
            if proc is not None:
                proc.stop(self.stop_grace)

    def _api_alive(self) -> bool:
        return self.cp is not None and self.cp.info is not None and "kube-apiserver" in self.cp.pids

    def _delete_pods(self) -> None:
        """Delete every pod with a 1 s grace period and wait for the kubelet to
        confirm (sandboxes stopped, CNI DEL done). Controllers are already
        stopped, so nothing recreates them."""
        if not self._api_alive() or "kubelet" not in self._procs:
            return
        assert self.cp is not None and self.cp.info is not None
        server, ctx = self.cp.info.server, self.cp.info.ssl_context()
        pods = _api(server, ctx, "GET", "/api/v1/pods").get("items", [])
        for pod in pods:
            meta = pod["metadata"]
            with contextlib.suppress(urllib.error.HTTPError):
                _api(
                    server,
                    ctx,
                    "DELETE",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not _api(server, ctx, "GET", "/api/v1/pods").get("items"):
                break
            if self._procs["kubelet"].exited() is not None:
                break
            time.sleep(0.25)
        # The kubelet stops sandboxes after the pod objects are gone: wait for
        # no running task (pause containers included).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.25)

    def _running_tasks(self) -> list[str]:
        proc = _run(["ctr", "--address", str(self._sock), "-n", K8S_NS, "tasks", "ls"], timeout=10)
        if proc.returncode != 0:
            return []
        return [line.split()[0] for line in proc.stdout.splitlines()[1:] if "RUNNING" in line]

    def _kill_tasks(self) -> None:
        """Fallback after the kubelet: kill what still runs in the pods' cgroups
        and delete containerd's tasks and containers."""
        for cg in kubepods_cgroups():
            kill_pids(cgroup_procs(cg), grace=0.5)
        if "containerd" not in self._procs or self._procs["containerd"].exited() is not None:
            return
        ctr = ["ctr", "--address", str(self._sock), "-n", K8S_NS]
        for cid in _run([*ctr, "containers", "ls", "-q"], timeout=10).stdout.split():
            _run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], timeout=10)
            _run([*ctr, "tasks", "delete", "-f", cid], timeout=10)
            _run([*ctr, "containers", "delete", cid], timeout=10)

    def _stop_containerd(self) -> None:
        self._stop_procs("containerd")
        if getattr(self, "_sock", None) is not None:
            kill_pids(processes_with_arg(str(self._sock)), grace=2)

    def _stop_control_plane(self) -> None:
        if self.cp is not None:
            self.cp.stop()

    def _cleanup_iptables(self) -> None:
        if os.access(self._kube_proxy_argv()[0], os.X_OK):
            proc = _run([*self._kube_proxy_argv(), "--cleanup", "--v=0"], timeout=60)
            if proc.returncode != 0:
                _log(f"kube-proxy --cleanup exited {proc.returncode}: {proc.stderr[-500:]}")
        for _attempt in range(2):  # the Docker engine may change iptables meanwhile
            for family in (4, 6):
                iptables_cleanup(self._before[f"ipt{family}"], family)
            if not (
                iptables_leftovers(self._before["ipt4"], 4)
                or iptables_leftovers(self._before["ipt6"], 6)
            ):
                return
            time.sleep(0.5)

    def _cleanup_mounts(self) -> None:
        prefixes = []
        if self.work_dir is not None:
            prefixes.append(str(self.work_dir) + "/")
        new_ns = netns_files() - self._before["netns"]
        for _attempt in range(3):
            targets = [
                m
                for m in mount_points()
                if any(m.startswith(p) for p in prefixes)
                or (m.startswith("/run/netns/cni-") and Path(m).name in new_ns)
            ]
            if not targets:
                break
            for m in sorted(set(targets), key=len, reverse=True):
                if _run(["umount", m]).returncode != 0:
                    _run(["umount", "-l", m])
        for name in new_ns:
            with contextlib.suppress(OSError):
                (Path("/run/netns") / name).unlink()

    def _delete_bridge(self) -> None:
        if Path(f"/sys/class/net/{self.bridge}").exists():
            _run(["ip", "link", "delete", self.bridge, "type", "bridge"], check=True)

    def _cleanup_cgroups(self) -> None:
        for cg in kubepods_cgroups():
            kill_pids(cgroup_procs(cg), grace=0.5)
            remove_cgroup_tree(cg)

    def _cleanup_files(self) -> None:
        existed = set(self._before.get("machine_paths", [str(p) for p in MACHINE_PATHS]))
        mounts = mount_points()
        for path in MACHINE_PATHS:
            if str(path) in existed or not path.exists():
                continue
            if any(m == str(path) or m.startswith(f"{path}/") for m in mounts):
                raise NodeClusterError(f"mounts remain under {path}: not removing it")
            shutil.rmtree(path, ignore_errors=True)
        old_cache = set(self._before.get("cni_cache", []))
        for name in set(_listdir(CNI_CACHE)) - old_cache:
            with contextlib.suppress(OSError):
                (CNI_CACHE / name).unlink()
        if self.work_dir is None or self.keep_work_dir:
            return
        prefix = str(self.work_dir) + "/"
        if any(m.startswith(prefix) for m in mount_points()):
            raise NodeClusterError(f"mounts remain under {self.work_dir}: not removing it")
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a throw-away single-node Kubernetes cluster until Ctrl-C (root).",
    )
    parser.add_argument(
        "--node", action="store_true", help="start the cluster with a node (default)"
    )
    parser.add_argument(
        "--bin-dir",
        default=os.environ.get("STEWARD_TESTBIN"),
        help="kube-apiserver, etcd, kubectl, helm (default: $STEWARD_TESTBIN or build)",
    )
    parser.add_argument(
        "--node-bin-dir",
        default=os.environ.get("STEWARD_NODEBIN"),
        help="kubelet & co. (default: $STEWARD_NODEBIN or build-node.sh)",
    )
    parser.add_argument("--no-images", action="store_true", help="do not import the test images")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="TAG=ARCHIVE",
        help="also import this docker-save archive as TAG",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir on exit")
    args = parser.parse_args(argv)

    try:
        ensure_packages()
        bin_dir = Path(args.bin_dir) if args.bin_dir else controlplane.build_testbin()
        node_bin = Path(args.node_bin_dir) if args.node_bin_dir else build_nodebin()
        images = [] if args.no_images else local_test_images()
        for item in args.image:
            tag, _, archive = item.partition("=")
            images.append(ImageSpec(tag, archive=Path(archive)))
        cluster = NodeCluster(bin_dir, node_bin, images=images, keep_work_dir=args.keep)
        info = cluster.start()
    except controlplane.ControlPlaneError as exc:
        print(f"node cluster failed: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(
            f"# node cluster ready in {info.startup_seconds}s {dict(info.timings)}; "
            f"pids {cluster.pids}; logs in {info.work_dir}",
            file=sys.stderr,
        )
        print(f"# images: {dict(info.images)}", file=sys.stderr)
        print(f"export KUBECONFIG={shlex.quote(str(info.kubeconfig))}")
        print(f'export PATH={shlex.quote(str(info.control_plane.bin_dir))}:"$PATH"')
        print(f"export CONTAINERD_ADDRESS={shlex.quote(str(info.containerd_socket))}")
        print(f"export CONTAINERD_NAMESPACE={K8S_NS}")
        print("# Ctrl-C to stop", file=sys.stderr)
        sys.stdout.flush()
        while not stop.wait(0.5):
            dead = {n: p.exited() for n, p in cluster._procs.items() if p.exited() is not None}
            if dead:
                print(f"cluster process exited: {dead}", file=sys.stderr)
                return 1
        return 0
    finally:
        report = cluster.stop()
        print(f"# node cluster stopped in {report.seconds}s {report.timings}", file=sys.stderr)
        for err in report.errors:
            print(f"# teardown error: {err}", file=sys.stderr)
        for left in report.leftovers:
            print(f"# LEFT OVER: {left}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
