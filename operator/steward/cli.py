"""The ``steward`` command line: run (operator), controller and agent (many hosts), local (no
cluster), status, logs, crd, version."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from steward import __version__

EXIT_USAGE = 2


def _state_dir(args: argparse.Namespace) -> Path:
    from steward.engine.service import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _stored_services(state_dir: Path) -> list[dict[str, Any]]:
    """Manifests with their status as the engine persisted them, sorted by namespace/name."""
    from steward.engine.store import ServiceStore

    return [{**item.manifest, "status": item.status} for item in ServiceStore(state_dir).list()]


def cmd_version(args: argparse.Namespace) -> int:
    print(f"steward {__version__}")
    return 0


def _operator_config(
    args: argparse.Namespace, node: str | None = None, host_ip: str | None = None
) -> Any:
    """The OperatorConfig of `steward run` (and of an agent that serves), from its flags."""
    from steward.api.flavors import NAMES
    from steward.k8s.config import OperatorConfig

    return OperatorConfig.from_env(
        kubeconfig=args.kubeconfig,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        namespaces=tuple(args.namespace or ()),
        peering=getattr(args, "peering", None),
        liveness=args.liveness,
        metrics_port=getattr(args, "metrics_port", 0) or None,
        metrics_addr=getattr(args, "metrics_addr", None),
        enforce_policy=True if getattr(args, "enforce_policy", False) else None,
        sandbox=True if getattr(args, "sandbox", False) else None,
        terraform_service_account=getattr(args, "terraform_service_account", None),
        workers={f: getattr(args, f"{f}_workers", None) for f in NAMES},
        workers_per_namespace={f: getattr(args, f"{f}_workers_per_namespace", None) for f in NAMES},
        node=node,
        host_ip=host_ip or getattr(args, "host_ip", None),
    )


def _operator_logging(args: argparse.Namespace) -> None:
    import logging

    if getattr(args, "log_format", "text") == "json":
        from steward.k8s.logs import configure_json_logging

        configure_json_logging(logging.DEBUG if args.verbose else logging.INFO)
    else:
        _text_logging(args.verbose)
    if not args.verbose:  # one INFO line per watch event is noise at 1,000 resources
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _kopf_run(config: Any, registry: Any = None) -> None:
    import kopf

    kopf.run(
        standalone=config.peering is None,
        peering_name=config.peering,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(config=config),
        registry=registry,
    )


def cmd_run(args: argparse.Namespace) -> int:
    config = _operator_config(args)
    _operator_logging(args)
    import steward.k8s.handlers  # noqa: F401 - registers the handlers

    _kopf_run(config)
    return 0


def cmd_controller(args: argparse.Namespace) -> int:
    config = _operator_config(args).model_copy(
        update={
            "lease_namespace": args.lease_namespace,
            "node_monitor_period": args.node_monitor_period,
            "node_grace": args.node_monitor_grace_period,
            "storm_share": args.storm_share,
        }
    )
    _operator_logging(args)
    from steward.k8s.scheduler import REGISTRY

    _kopf_run(config, registry=REGISTRY)
    return 0


def _text_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_agent(args: argparse.Namespace) -> int:
    from steward import __version__
    from steward.api.node import NodeAddress
    from steward.engine.nodes import NodeSettings
    from steward.k8s.agent import Agent, AgentOptions, parse_pairs, run_agent

    if not args.serve:
        _text_logging(args.verbose)
    try:
        labels = parse_pairs(args.label, "--label")
        extended = parse_pairs(args.extended_resource, "--extended-resource")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    addresses = tuple(NodeAddress(type="InternalIP", address=a) for a in args.address or ())
    serving_cert = None
    if args.serve and args.log_port:
        from steward.api.node import LogEndpoint
        from steward.k8s.tls import ensure_serving_cert

        state = _state_dir(args)
        serving_cert = ensure_serving_cert(
            state / "agent" / "tls", args.node, tuple(args.address or ())
        )
    settings = NodeSettings(
        name=args.node,
        addresses=(*addresses, NodeAddress(type="Hostname", address=args.node)),
        max_services=args.max_services,
        extended=extended,
        reserved_cpu=args.reserved_cpu,
        reserved_memory=args.reserved_memory,
        version=__version__,
        lease_duration=args.lease_duration,
        renew_interval=args.renew_interval,
        status_interval=args.status_interval,
        report_interval=args.report_interval,
        log_endpoint=LogEndpoint(port=args.log_port, certificate=serving_cert.pem)
        if serving_cert is not None
        else None,
    )
    options = AgentOptions(
        settings=settings,
        lease_namespace=args.lease_namespace,
        labels=tuple(labels.items()),
        kubeconfig=args.kubeconfig,
    )
    if not args.serve:
        return run_agent(options)
    # Register and renew from threads; run what is bound to this host in the main thread,
    # standalone (no kopf peering): each agent serves only its own node's services.
    config = _operator_config(args, node=args.node, host_ip=(args.address or [None])[0])
    if serving_cert is not None:
        config = config.model_copy(
            update={
                "log_port": args.log_port,
                "log_address": (args.address or ["0.0.0.0"])[0],
                "log_cert_file": serving_cert.cert_file,
                "log_key_file": serving_cert.key_file,
                "client_ca_file": Path(args.client_ca_file) if args.client_ca_file else None,
            }
        )
    _operator_logging(args)
    import steward.k8s.handlers  # noqa: F401 - registers the handlers
    from steward.k8s.fence import spawn
    from steward.k8s.serving import HeldEpochs

    held = HeldEpochs(config.state_dir)
    fence_dir = held.root
    agent = Agent(options, services=lambda: len(held.all()), fence_dir=fence_dir)
    spawn(fence_dir)  # before the first renewal: fencing never depends on this process
    agent.start()
    try:
        _kopf_run(config)
    finally:
        agent.close()
    return 0


def cmd_failover(args: argparse.Namespace) -> int:
    import kubernetes

    from steward.k8s.clients import build_clients
    from steward.k8s.failover import FailoverRefused, manual_failover

    custom = build_clients(args.kubeconfig).custom
    try:
        print(manual_failover(custom, args.namespace, args.name, force=args.force))
    except FailoverRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except kubernetes.client.ApiException as exc:
        print(f"error: {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """cordon / uncordon / drain, one command each as in kubectl."""
    import kubernetes

    from steward.k8s.clients import build_clients
    from steward.k8s.drain import Drainer, DrainFailed

    clients = build_clients(args.kubeconfig)
    drainer = Drainer(clients.custom, clients.core)
    try:
        if args.command == "drain":
            drainer.drain(
                args.node, ignore_pinned=args.ignore_pinned, timeout=args.timeout, wait=args.wait
            )
        else:
            drainer.cordon(args.node, unschedulable=args.command == "cordon")
    except DrainFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except kubernetes.client.ApiException as exc:
        what = f"stewardnode {args.node!r} not found" if exc.status == 404 else exc.reason
        print(f"error: {exc.status} {what}", file=sys.stderr)
        return 1
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from steward.k8s.nodes import format_rows, node_rows

    print(format_rows(node_rows(args.kubeconfig, args.lease_namespace)))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from steward.api.crd import crd_yaml
    from steward.api.reference import reference_markdown

    text = reference_markdown() if args.reference else crd_yaml()
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from steward.local.runner import run_local

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    return run_local(
        [Path(p) for p in args.paths],
        _state_dir(args),
        leave_running=args.leave_running,
        until_ready=args.until_ready,
        timeout=args.timeout,
        output="quiet" if args.quiet else args.output,
    )


def cmd_status(args: argparse.Namespace) -> int:
    items = _stored_services(_state_dir(args))
    if args.name:
        items = [i for i in items if i["metadata"]["name"] == args.name]
        if not items:
            print(f"error: no service named {args.name}", file=sys.stderr)
            return 1
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
        return 0
    if args.output == "yaml":
        print(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=False))
        return 0
    from steward.local.table import Table, endpoint_width, row_from

    rows = [row_from(item, item["status"]) for item in items]
    table = Table([r.name for r in rows], [endpoint_width(i.get("spec") or {}) for i in items])
    print(table.header())
    for row in rows:
        if row.next_attempt:
            row = dataclasses.replace(row, message=f"next attempt at {row.next_attempt}")
        print(table.render(row))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """The local state directory's copy when it ran here; else its host's, through the API."""
    from steward.engine.service import Service
    from steward.engine.store import ServiceStore
    from steward.runtimes.base import ServiceIdentity

    state_dir = _state_dir(args)
    manifest = None
    if not args.cluster:
        manifest = ServiceStore(state_dir).load_manifest(ServiceIdentity(args.namespace, args.name))
    if manifest is None:
        if args.cluster or args.kubeconfig or os.environ.get("KUBECONFIG") or _in_cluster():
            return _cluster_logs(args)
        print(f"error: no service {args.namespace}/{args.name} in {state_dir} "
              "(--kubeconfig: ask the host that runs it)", file=sys.stderr)  # fmt: skip
        return 1
    svc = Service.from_manifest(manifest, state_dir=state_dir)
    try:
        for line in svc.get_logs(tail=args.tail, follow=args.follow, previous=args.previous):
            print(line, flush=True)
    except LookupError as exc:  # NoPreviousRun
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _cluster_logs(args: argparse.Namespace) -> int:
    from steward.k8s.logclient import LogsUnavailable, stream_logs

    try:
        lines = stream_logs(
            args.kubeconfig, args.namespace, args.name, args.tail, args.follow, args.previous
        )
        for line in lines:
            print(line, flush=True)
    except LogsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable; default: all)",
    )
    p.add_argument(
        "--liveness",
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("-v", "--verbose", action="store_true")


def _peering_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--peering",
        metavar="NAME",
        help="enable kopf peering (HA) under this name; default standalone",
    )


def _workload_flags(p: argparse.ArgumentParser, verbose: bool = True) -> None:
    """What running ManagedServices takes: workers, metrics, sandbox, policy."""
    p.add_argument("--daemon-workers", type=int, help="threads for daemon reconciles (default 8)")
    p.add_argument(
        "--container-workers", type=int, help="threads for container reconciles (default 8)"
    )
    p.add_argument("--terraform-workers", type=int, help="threads for Terraform runs (default 2)")
    for flavor in ("daemon", "container", "terraform"):
        p.add_argument(
            f"--{flavor}-workers-per-namespace",
            type=int,
            metavar="N",
            help=f"most {flavor} workers one namespace holds at once (default: half the pool)",
        )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus /metrics on this port (0: off)",
    )
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address for --metrics-port")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="run each daemon and Terraform command as its own uid, clean env, own cgroup",
    )
    p.add_argument(
        "--terraform-service-account",
        metavar="NAME",
        default=None,
        help="with --sandbox: the ServiceAccount in each namespace whose token Terraform's "
        "kubernetes backend uses (default steward-terraform)",
    )
    p.add_argument(
        "--enforce-policy",
        action="store_true",
        help="check StewardPolicies before every start too (admission may be bypassed)",
    )
    if not verbose:
        p.add_argument("--log-format", choices=["text", "json"], default="text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steward", description=__doc__)
    parser.add_argument(
        "--state-dir",
        help="local state directory (default: $STEWARD_STATE_DIR or ~/.local/state/steward)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("run", help="run the operator against a cluster (one host: all of it)")
    _cluster_flags(p)
    _peering_flag(p)
    _workload_flags(p)
    p.add_argument(
        "--host-ip",
        metavar="ADDRESS",
        help="the address pods reach this host on: endpoint.expose: Cluster services bind "
        "there and their Service points at it (env STEWARD_HOST_IP; default: loopback, no "
        "reachable endpoint)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "controller",
        help="bind ManagedServices to StewardNodes (many hosts; agents run what is bound)",
    )
    _cluster_flags(p)
    _peering_flag(p)
    p.add_argument("--lease-namespace", default="kube-node-lease")
    p.add_argument(
        "--node-monitor-period",
        type=float,
        default=5.0,
        help="seconds between looks at the agents' Leases (kube-controller-manager: 5)",
    )
    p.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=50.0,
        help="a host whose Lease did not change for this long (by this controller's clock) "
        "is lost (kube-controller-manager: 50)",
    )
    p.add_argument(
        "--storm-share",
        type=float,
        default=0.5,
        help="no failover while more than this share of hosts is lost at once",
    )
    p.set_defaults(func=cmd_controller)

    p = sub.add_parser("agent", help="register this host as a StewardNode and keep its Lease")
    p.add_argument("--node", required=True, help="the StewardNode's name (e.g. the host name)")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    p.add_argument(
        "--address",
        action="append",
        metavar="IP",
        help="an address pods reach this host's services on (repeatable)",
    )
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (repeatable)")
    p.add_argument(
        "--extended-resource",
        action="append",
        metavar="NAME=QUANTITY",
        help="an extended resource, e.g. nvidia.com/gpu=2 (repeatable)",
    )
    p.add_argument("--max-services", type=int, default=110, help="services this host takes")
    p.add_argument("--reserved-cpu", default="0", help="CPU held back for the host itself")
    p.add_argument("--reserved-memory", default="0", help="memory held back for the host")
    p.add_argument("--lease-namespace", default="kube-node-lease")
    p.add_argument("--lease-duration", type=float, default=40.0, help="seconds (kubelet: 40)")
    p.add_argument("--renew-interval", type=float, default=10.0, help="seconds (kubelet: 10)")
    p.add_argument("--status-interval", type=float, default=10.0, help="seconds between checks")
    p.add_argument(
        "--report-interval",
        type=float,
        default=300.0,
        help="seconds between status writes when nothing changed (kubelet: 300)",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="also run the ManagedServices bound to this node (status.placement.nodeName), "
        "as `steward run` runs them; the flags below apply then",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="with --serve: watch only this namespace (repeatable; default: all)",
    )
    p.add_argument(
        "--liveness",
        metavar="URL",
        help="with --serve: serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    p.add_argument(
        "--log-port",
        type=int,
        default=0,
        help="with --serve: serve the services' logs over HTTPS on this port, on the first "
        "--address (default 0: off); each request is authorized by a SubjectAccessReview "
        "of get managedservices/log",
    )
    p.add_argument(
        "--client-ca-file",
        metavar="FILE",
        help="with --log-port: client certificates signed by this CA authenticate too "
        "(bearer tokens always do, by a TokenReview)",
    )
    _workload_flags(p, verbose=False)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_agent)

    p = sub.add_parser(
        "failover", help="move a service off its lost host (the admin's word that it is down)"
    )
    p.add_argument("name")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    p.add_argument("--force", action="store_true", help="even while the host looks Ready")
    p.set_defaults(func=cmd_failover)

    for verb, text in (
        ("cordon", "mark a host unschedulable (spec.unschedulable): nothing new lands there"),
        ("uncordon", "mark a host schedulable again"),
        ("drain", "cordon a live host and move its services off, one handshake each"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("node")
        p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
        if verb == "drain":
            p.add_argument(
                "--ignore-pinned",
                action="store_true",
                help="leave services pinned by spec.placement.nodeName running, drain the rest",
            )
            p.add_argument(
                "--timeout",
                type=float,
                default=0.0,
                help="seconds to wait for the host's agent to stop them (0: no limit)",
            )
            p.add_argument(
                "--wait",
                action=argparse.BooleanOptionalAction,
                default=True,
                help="wait until every moved service has left the host (default)",
            )
        p.set_defaults(func=cmd_drain)

    p = sub.add_parser("nodes", help="list the registered hosts (StewardNodes) and their Leases")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    p.add_argument("--lease-namespace", default="kube-node-lease")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("crd", help="print the ManagedService CRD generated from the models")
    p.add_argument("--write", metavar="FILE", help="write it to FILE instead of stdout")
    p.add_argument("--reference", action="store_true", help="the Markdown field reference instead")
    p.set_defaults(func=cmd_crd)

    p = sub.add_parser("local", help="run ManagedServices from manifest files, no cluster needed")
    p.add_argument("paths", nargs="+", help="manifest files or directories")
    p.add_argument(
        "--leave-running",
        action="store_true",
        help="on Ctrl-C leave services running (adopted next time)",
    )
    p.add_argument("--until-ready", action="store_true", help="exit once every service is Ready")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table (default) or json: one JSON object per changed row, event or message",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print only failures (on stderr); for scripts"
    )
    p.set_defaults(func=cmd_local)

    p = sub.add_parser("status", help="show services like kubectl get")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="print a service's logs")
    p.add_argument("name")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=None)
    p.add_argument(
        "-p",
        "--previous",
        action="store_true",
        help="the run before the current one (the last restart's, as kubectl logs -p)",
    )
    p.add_argument(
        "--kubeconfig",
        help="read it from the host that runs it (its agent's log endpoint), as this user",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="always ask its host, even when this machine's state directory has a copy",
    )
    p.set_defaults(func=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
