"""Several hosts on one machine: Linux network namespaces on a private bridge.

:class:`NetLab` makes, in the root namespace, a bridge ``stwbr<N>`` holding the
address ``.1`` of a free private /24 (``10.203.<N>.0/24``, see :func:`free_subnet`),
and for each named host a network namespace ``stw-<N>-<host>`` joined to it by a
veth pair: the root end ``stw<N>h<i>`` is a port of the bridge, the other end is
``eth0`` inside the namespace with the address ``.10+i/24``. ``lo`` is up in each
namespace; there is no default route, only the /24's, so a host reaches the
bridge's address and its sibling namespaces, and nothing else (its ``127.0.0.1``
is its own, not the root namespace's). Traffic from a namespace to the bridge's
own address is INPUT on the root namespace, not FORWARD, so a FORWARD policy of
DROP (Docker's) does not matter for it. Traffic between two hosts is bridged, and with
``br_netfilter`` loaded (Docker loads it) it passes the root namespace's FORWARD chain:
the lab inserts one rule there accepting what enters and leaves its own bridge
(``-i BR -o BR``, commented ``steward netlab BR``) and deletes it again in ``close()``.

Fault injection: :meth:`NetLab.cut` sets the root end of the host's veth down.
The bridge then drops what goes to the host and the veth drops what the host
sends (``eth0`` has NO-CARRIER; its /24 route stays, marked ``linkdown``, since
``ignore_routes_with_linkdown`` is 0 by default), so a TCP connection in either
direction simply times out: no RST, no ICMP. Nothing in iptables is needed for
that, and no sysctl is changed. The bridge and each ``eth0`` have fixed MACs and
permanent neighbour entries for each other, so ARP cannot fail during a cut (which
would turn new connects into a fast "no route to host" after ~3 s): a cut is a
black hole for as long as it lasts. :meth:`NetLab.heal` sets the port up again;
with STP off it forwards at once, and held connections resume.

Cleanup: :meth:`NetLab.close` deletes the root veth ends (which removes the
pairs even when a process still holds a namespace open), the namespaces and the
bridge; it is idempotent, runs when ``start()`` fails halfway, and at exit if
nobody called it. It stops no process: stop what you started in the namespaces
first (:meth:`NetLab.pids` tells what is still inside); ``close`` reports them.

Needs root and the ``ip`` command (iproute2)::

    with NetLab(["a", "b"]) as lab:
        subprocess.run(lab.argv("a", ["python3", "-c", "print(1)"]), check=True)
        lab.cut("a"); lab.heal("a")
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CANDIDATES",
    "Host",
    "NetLab",
    "NetLabError",
    "free_subnet",
    "missing_prerequisites",
    "overlaps",
]

IFNAMSIZ = 15
"""The longest interface name Linux takes."""

DEFAULT_CANDIDATES = tuple(f"10.203.{n}.0/24" for n in range(1, 255))
"""Where :func:`free_subnet` looks by default: 10.203.1.0/24 ... 10.203.254.0/24."""

FIRST_HOST_OFFSET = 10
"""Host ``i`` gets the address ``.10+i`` of the /24."""

_HOST_NAME = re.compile(r"^[a-z0-9]{1,6}$")
_COMMAND_TIMEOUT = 30.0


class NetLabError(RuntimeError):
    """The lab could not be made, or not entirely removed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; with ``check`` a non-zero exit raises :class:`NetLabError`."""
    proc = subprocess.run(
        ["ip", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise NetLabError(
            f"ip {' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a :class:`NetLab` (empty when it can make one)."""
    missing = []
    if sys.platform != "linux":
        missing.append("Linux")
    if os.geteuid() != 0:
        missing.append("root (network namespaces, bridges and veths need CAP_NET_ADMIN)")
    if shutil.which("ip") is None:
        missing.append("the ip command (iproute2)")
    return missing


def _interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def overlaps(net: ipaddress.IPv4Network | str) -> list[str]:
    """Lines of ``ip -4 -o addr`` / ``ip -4 route show table all`` that overlap ``net``.

    Loopback and default routes (prefix length 0) do not count.
    """
    net = ipaddress.IPv4Network(net)
    clashes = []
    for argv in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for line in _ip(*argv).stdout.splitlines():
            for word in line.split():
                if "/" not in word and word.count(".") != 3:
                    continue
                try:
                    other = ipaddress.ip_network(word, strict=False)
                except ValueError:
                    continue
                if (
                    isinstance(other, ipaddress.IPv4Network)
                    and other.prefixlen > 0
                    and not other.is_loopback
                    and other.overlaps(net)
                ):
                    clashes.append(line.strip())
                    break
    return clashes


def _mac(octet: int, last: int) -> str:
    """A fixed, locally administered MAC for address ``.last`` of the lab ``octet``."""
    return f"02:53:54:57:{octet:02x}:{last:02x}"


def _bridge_name(net: ipaddress.IPv4Network) -> str:
    return f"stwbr{net.network_address.packed[2]}"


def free_subnet(
    candidates: Iterable[ipaddress.IPv4Network | str] = DEFAULT_CANDIDATES,
) -> ipaddress.IPv4Network:
    """The first candidate /24 that overlaps no address or route here and whose bridge
    name is not taken. Raises :class:`NetLabError` when none is free.

    Only a hint: :meth:`NetLab.start` claims the subnet by creating its bridge (which
    fails if another lab created it meanwhile) and checks the overlap again after.
    """
    refused = []
    for cand in candidates:
        net = ipaddress.IPv4Network(cand)
        if net.prefixlen != 24 or not net.is_private:
            raise NetLabError(f"{net}: candidates must be private /24s")
        if _interface_exists(_bridge_name(net)):
            refused.append(f"{net}: {_bridge_name(net)} exists")
            continue
        clashes = overlaps(net)
        if clashes:
            refused.append(f"{net}: overlaps {clashes[0]!r}")
            continue
        return net
    raise NetLabError("no free /24 among the candidates: " + "; ".join(refused[-5:]))


@dataclass(frozen=True)
class Host:
    """One host of a lab: its namespace, its address and the two ends of its veth."""

    name: str
    netns: str
    address: str
    root_veth: str
    """The bridge port in the root namespace (what :meth:`NetLab.cut` sets down)."""
    mac: str
    """The MAC address of ``netns_veth``."""
    netns_veth: str = "eth0"


class NetLab:
    """A bridge and one network namespace per host; see the module docstring.

    ``hosts`` are short names (``[a-z0-9]{1,6}``), ``subnet`` a private /24 (default:
    :func:`free_subnet`). ``start()`` (or ``with``) makes everything; ``close()``
    removes it. The attributes ``subnet``, ``bridge`` and ``bridge_address`` are set
    by ``start()``.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        subnet: ipaddress.IPv4Network | str | None = None,
    ) -> None:
        names = list(hosts)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"hosts must be distinct and not empty: {names}")
        bad = [n for n in names if not _HOST_NAME.match(n)]
        if bad:
            raise ValueError(f"host names must match {_HOST_NAME.pattern}: {bad}")
        if len(names) > 240:
            raise ValueError("at most 240 hosts fit in a /24 from .10")
        self.names = names
        self._requested = ipaddress.IPv4Network(subnet) if subnet is not None else None
        self.subnet: ipaddress.IPv4Network | None = None
        self.bridge = ""
        self.bridge_address = ""
        self.hosts: dict[str, Host] = {}
        self._bridge_created = False
        self._made_netns: list[str] = []
        self._made_veths: list[str] = []
        self._cut: set[str] = set()
        self._forward_allowed = False

    # -- set-up --------------------------------------------------------------
    def start(self) -> NetLab:
        if self.subnet is not None:
            return self
        missing = missing_prerequisites()
        if missing:
            raise NetLabError("cannot make network namespaces: needs " + ", ".join(missing))
        atexit.register(self.close)
        try:
            self._claim_subnet()
            for i, name in enumerate(self.names):
                self._add_host(i, name)
        except BaseException:
            with contextlib.suppress(NetLabError):
                self.close()
            raise
        return self

    def _claim_subnet(self) -> None:
        candidates: Iterable[ipaddress.IPv4Network | str] = (
            [self._requested] if self._requested is not None else DEFAULT_CANDIDATES
        )
        for _attempt in range(5):
            net = free_subnet(candidates)
            bridge = _bridge_name(net)
            # A fixed, locally administered MAC: a bridge without one takes the lowest MAC
            # of its ports and changes it as ports come and go, staling the hosts' ARP.
            octet = net.network_address.packed[2]
            made = _ip(
                "link", "add", bridge, "address", _mac(octet, 1), "type", "bridge", check=False
            )
            if made.returncode != 0:
                if _interface_exists(bridge):  # another lab took it meanwhile
                    continue
                raise NetLabError(f"cannot create bridge {bridge}: {made.stderr.strip()}")
            self._bridge_created = True
            self.bridge = bridge
            clashes = overlaps(net)
            if clashes:
                raise NetLabError(f"{net} overlaps {clashes}")
            self.subnet = net
            self.bridge_address = str(net.network_address + 1)
            _ip("addr", "add", f"{self.bridge_address}/{net.prefixlen}", "dev", bridge)
            _ip("link", "set", bridge, "up")
            self._allow_forwarding()
            return
        raise NetLabError("could not claim a free /24: other labs keep taking them")

    def _forward_rule(self) -> list[str]:
        return ["FORWARD", "-i", self.bridge, "-o", self.bridge,
                "-m", "comment", "--comment", f"steward netlab {self.bridge}", "-j", "ACCEPT"]  # fmt: skip

    def _iptables(self, op: str) -> subprocess.CompletedProcess[str] | None:
        tool = shutil.which("iptables")
        if tool is None:  # no netfilter tooling: nothing can be filtering the bridge either
            return None
        return subprocess.run(
            [tool, "-w", "5", op, *self._forward_rule()],
            capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False,
        )  # fmt: skip

    def _allow_forwarding(self) -> None:
        """Host-to-host traffic on this bridge, past a FORWARD policy of DROP."""
        made = self._iptables("-I")
        if made is not None and made.returncode != 0:
            raise NetLabError(f"cannot allow forwarding on {self.bridge}: {made.stderr.strip()}")
        self._forward_allowed = made is not None

    def _forward_rule_exists(self) -> bool:
        found = self._iptables("-C") if self._forward_allowed else None
        return found is not None and found.returncode == 0

    def _add_host(self, i: int, name: str) -> None:
        assert self.subnet is not None
        octet = self.subnet.network_address.packed[2]
        host = Host(
            name=name,
            netns=f"stw-{octet}-{name}",
            address=str(self.subnet.network_address + FIRST_HOST_OFFSET + i),
            root_veth=f"stw{octet}h{i}",
            mac=_mac(octet, FIRST_HOST_OFFSET + i),
        )
        assert len(host.root_veth) <= IFNAMSIZ
        if _netns_exists(host.netns):
            raise NetLabError(f"network namespace {host.netns} exists already")
        _ip("netns", "add", host.netns)
        self._made_netns.append(host.netns)
        self.hosts[name] = host
        _ip(
            "link",
            "add",
            host.root_veth,
            "type",
            "veth",
            "peer",
            "name",
            host.netns_veth,
            "address",
            host.mac,
            "netns",
            host.netns,
        )
        self._made_veths.append(host.root_veth)
        _ip("link", "set", host.root_veth, "master", self.bridge)
        _ip("link", "set", host.root_veth, "up")
        ns = ("-n", host.netns)
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", host.netns_veth)
        _ip(*ns, "link", "set", host.netns_veth, "up")
        # Permanent neighbour entries both ways: ARP never fails during a cut, so a cut is
        # a black hole (timeouts) rather than "no route to host" once resolution gives up.
        bridge_mac = _mac(octet, 1)
        _ip(
            *ns,
            "neigh",
            "replace",
            self.bridge_address,
            "lladdr",
            bridge_mac,
            "nud",
            "permanent",
            "dev",
            host.netns_veth,
        )
        _ip(
            "neigh",
            "replace",
            host.address,
            "lladdr",
            host.mac,
            "nud",
            "permanent",
            "dev",
            self.bridge,
        )

    def __enter__(self) -> NetLab:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- use -----------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in this lab (hosts: {list(self.hosts)})") from None

    def argv(self, host: str, command: Sequence[str]) -> list[str]:
        """``command`` run inside ``host``'s namespace. ``ip netns exec`` execs it in
        place, so the PID of a process started this way is the command's own."""
        return ["ip", "netns", "exec", self.host(host).netns, *command]

    def address(self, host: str) -> str:
        return self.host(host).address

    def netns(self, host: str) -> str:
        return self.host(host).netns

    def cut(self, host: str) -> None:
        """Cut ``host`` off the bridge: its veth's root end goes down (TCP times out)."""
        _ip("link", "set", self.host(host).root_veth, "down")
        self._cut.add(host)

    def heal(self, host: str) -> None:
        """Undo :meth:`cut`: the root end up again (the port forwards at once: no STP)."""
        _ip("link", "set", self.host(host).root_veth, "up")
        self._cut.discard(host)

    def is_cut(self, host: str) -> bool:
        return host in self._cut

    def pids(self, host: str) -> list[int]:
        """PIDs of the processes inside ``host``'s namespace."""
        out = _ip("netns", "pids", self.host(host).netns, check=False).stdout
        return [int(p) for p in out.split()]

    def probe(self, host: str, address: str, port: int, timeout: float = 1.0) -> str:
        """Open a TCP connection from inside ``host`` to ``address:port``.

        Returns ``"connected"``, ``"timeout"``, ``"refused"`` or ``"error: ..."``.
        """
        code = (
            "import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r}, {int(port)}), timeout={timeout!r}).close()\n"
            "    print('connected')\n"
            "except TimeoutError:\n"
            "    print('timeout')\n"
            "except ConnectionRefusedError:\n"
            "    print('refused')\n"
            "except OSError as exc:\n"
            "    print(f'error: {exc}')\n"
        )
        proc = subprocess.run(
            self.argv(host, [sys.executable, "-I", "-c", code]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + _COMMAND_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            raise NetLabError(f"probe from {host} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout.strip()

    # -- clean-up ------------------------------------------------------------
    def leftovers(self) -> list[str]:
        """What this lab made that still exists (empty after a successful close)."""
        left = [f"interface {v}" for v in self._made_veths if _interface_exists(v)]
        left += [f"network namespace {n}" for n in self._made_netns if _netns_exists(n)]
        if self._bridge_created and self.bridge and _interface_exists(self.bridge):
            left.append(f"bridge {self.bridge}")
        if self._forward_rule_exists():
            left.append(f"iptables rule {' '.join(self._forward_rule())}")
        return left

    def close(self) -> None:
        """Remove the veths, namespaces and bridge. Idempotent; raises
        :class:`NetLabError` when something is left or a process was still inside."""
        errors = []
        for name, host in list(self.hosts.items()):
            with contextlib.suppress(NetLabError):
                inside = self.pids(name) if _netns_exists(host.netns) else []
                if inside:
                    errors.append(f"processes still in {host.netns}: {inside}")
        for veth in self._made_veths:  # deleting one end removes the pair
            if _interface_exists(veth):
                proc = _ip("link", "delete", veth, check=False)
                if proc.returncode != 0:
                    errors.append(f"ip link delete {veth}: {proc.stderr.strip()}")
        for ns in self._made_netns:
            if _netns_exists(ns):
                proc = _ip("netns", "delete", ns, check=False)
                if proc.returncode != 0:
                    errors.append(f"ip netns delete {ns}: {proc.stderr.strip()}")
        if self._bridge_created and self.bridge and _interface_exists(self.bridge):
            proc = _ip("link", "delete", self.bridge, "type", "bridge", check=False)
            if proc.returncode != 0:
                errors.append(f"ip link delete {self.bridge}: {proc.stderr.strip()}")
        while self._forward_rule_exists():  # one -D per -I (and a rule is never doubled)
            gone = self._iptables("-D")
            if gone is None or gone.returncode != 0:
                errors.append(f"iptables -D {self._forward_rule()}: {gone and gone.stderr}")
                break
        self._cut.clear()
        left = self.leftovers()
        if not left:
            self._forward_allowed = False
            atexit.unregister(self.close)
            self._made_veths.clear()
            self._made_netns.clear()
            self._bridge_created = False
        if errors or left:
            raise NetLabError("; ".join([*errors, *(f"left: {x}" for x in left)]))
