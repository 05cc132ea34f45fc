"""`beemesh <command>`: the one entry point (also `python -m beemesh` and the .pyz).

Heavy imports (libp2p, trio) happen only in the commands that need them, so `beemesh nodes`
and `beemesh --version` answer quickly even on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from beemesh import __version__
from beemesh.errors import UserError
from beemesh.output import emit, human_bytes, table

MACHINE_KEY_FIX = "create it with `beemesh init --state-dir {dir}`"


def _machine_key_path(state_dir: Path) -> Path:
    return state_dir / "machine.key"


def cmd_init(args: argparse.Namespace) -> int:
    from beemesh.identity import KeyPair, load_key, save_key

    path = _machine_key_path(args.state_dir)
    if path.exists():
        key = load_key(path, "machine key", MACHINE_KEY_FIX.format(dir=args.state_dir))
        print(f"machine key {path} already exists; keeping it", file=sys.stderr)
    else:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(args.state_dir, 0o700)
        key = KeyPair.generate()
        save_key(path, key)
    print(key.peer_id)
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    from beemesh.identity import load_key

    path = _machine_key_path(args.state_dir)
    print(load_key(path, "machine key", MACHINE_KEY_FIX.format(dir=args.state_dir)).peer_id)
    return 0


def cmd_fleet_init(args: argparse.Namespace) -> int:
    from beemesh.fleet import init_fleet

    out, operator = init_fleet(args.out, args.operator_name)
    print(f"fleet material written to {out}")
    print("  swarm.key        machine-plane network key (0600): copy to every machine")
    print("  workplane.key    work-plane network key (0600): copy to every machine")
    print("  operators.trust  trusted operator keys: copy to every machine")
    print("  operator.key     operator signing key (0600): keep it with the operator only")
    print(f"operator key fingerprint: {operator.public_key.hex()[:16]}")
    return 0


def cmd_fleet_workplane_key(args: argparse.Namespace) -> int:
    from beemesh.fleet import init_workplane_key

    path = init_workplane_key(args.out)
    print(f"work-plane network key written to {path}: copy it to every machine's fleet dir")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from beemesh.config import load_config, parse_labels
    from beemesh.fleet import Fleet
    from beemesh.identity import load_key

    cfg = load_config(
        args.config,
        {
            "state_dir": args.state_dir,
            "fleet": args.fleet,
            "listen": args.listen,
            "bootstrap": args.bootstrap,
            "api": args.api,
            "labels": parse_labels(args.labels) if args.labels is not None else None,
            "podman_socket": args.podman_socket,
            "workplane": False if args.no_workplane else None,
            "workplane_listen": args.workplane_listen,
            "workplane_user": args.workplane_user,
        },
    )
    key = load_key(cfg.machine_key_path, "machine key",
                   MACHINE_KEY_FIX.format(dir=cfg.state_dir))
    fleet = Fleet.load(cfg.fleet_dir)
    if cfg.workplane:
        from beemesh.fleet import load_workplane_psk

        load_workplane_psk(cfg.workplane_key_path)  # a missing key is an error now, not later
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format=LOG_FORMAT)
    from beemesh.agent import run_agent  # imports libp2p, which resets its own loggers

    quiet_libp2p(args.log_level)
    run_agent(cfg, key, fleet, args.log_level)
    return 0


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libp2p(level: str) -> None:
    """Call after importing libp2p: it logs expected events (dead peers, refused dials,
    closed streams) at INFO..WARNING through handlers of its own."""
    if level != "debug":
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: r.name.startswith("beemesh") or r.levelno >= 50)
    for noisy in ("libp2p", "multiaddr", "async_service"):
        logger = logging.getLogger(noisy)
        logger.propagate = True
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


def cmd_workplane(args: argparse.Namespace) -> int:
    from beemesh.fleet import load_workplane_psk

    psk = load_workplane_psk(args.network_key)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format=LOG_FORMAT)
    from beemesh.workplane.process import run_workplane  # imports libp2p

    quiet_libp2p(args.log_level)
    run_workplane(args.dir, args.agent, psk, args.listen or ["/ip4/0.0.0.0/tcp/4002"])
    return 0


NODE_COLUMNS = [
    ("peer id", lambda r: r["peer_id"] + (" (self)" if r["self"] else "")),
    ("arch", lambda r: r["arch"]),
    ("cpu", lambda r: f"{r['cpu']:g}"),
    ("memory", lambda r: human_bytes(r["memory"])),
    ("status", lambda r: "cordoned" if r["cordoned"] else "ready"),
    ("labels", lambda r: ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"),
    ("age", lambda r: f"{r['age_s']:.0f}s"),
]


def cmd_nodes(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    emit(call(api_path(args.api), "GET", "/v1/nodes"), NODE_COLUMNS, args.output,
         empty="no machines known yet")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    status = call(api_path(args.api), "GET", "/v1/status")
    rows = [{"key": k, "value": v} for k, v in status.items()]
    emit(status if args.output == "json" else rows,
         [("key", lambda r: r["key"]), ("value", lambda r: r["value"])], args.output)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    path = api_path(args.api)
    if args.output == "json":
        emit(call(path, "GET", "/v1/metrics"), [], "json")
    else:
        sys.stdout.write(call(path, "GET", "/metrics"))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from beemesh import operator
    from beemesh.api.client import api_path

    api = api_path(args.api)
    tasks = operator.apply(api, args.fleet, args.file)
    emit(tasks, TASK_COLUMNS, args.output)
    if not args.wait:
        return 0
    ok, message = operator.wait_deployed(api, tasks, args.timeout)
    print(message, file=sys.stderr)
    return 0 if ok else 1


TASK_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["replica"]),
    ("task", lambda r: r["task_id"]),
    ("state", lambda r: r["state"]),
]
POD_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["replica"]),
    ("pod", lambda r: r["pod"]),
    ("machine", lambda r: r["machine"]),
    ("state", lambda r: r["state"] + (" (retiring)" if r.get("retiring") else "")),
    ("ready", lambda r: "yes" if r.get("ready") else "no"),
    ("age", lambda r: f"{r['age_s']}s"),
]
ENDPOINT_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("replica", lambda r: r["ordinal"]),
    ("pod", lambda r: r["pod"]),
    ("peer id", lambda r: r["peer_id"]),
    ("ready", lambda r: "yes" if r["ready"] else "no"),
    ("addresses", lambda r: ",".join(r["addrs"]) or "-"),
    ("ports", lambda r: ",".join(
        f"{p['host_port'] or p['port']}/{p['protocol']}" for p in r["ports"]) or "-"),
    ("age", lambda r: f"{r['age_s']:.0f}s"),
]
EVENT_COLUMNS = [
    ("time", lambda r: time.strftime("%H:%M:%S", time.localtime(r["ts"]))),
    ("kind", lambda r: r["kind"]),
    ("workload", lambda r: r["workload"] or "-"),
    ("task", lambda r: r["task"] or "-"),
    ("machine", lambda r: (r["node"] or "-")[-8:]),
    ("message", lambda r: r["text"]),
]


def cmd_get(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    api = api_path(args.api)
    if args.what in ("pods", "pod", "po"):
        emit(call(api, "GET", "/v1/pods"), POD_COLUMNS, args.output, empty="no pods")
    elif args.what in ("endpoints", "endpoint", "ep"):
        from urllib.parse import quote

        from beemesh.operator import workload_id

        target = "/v1/endpoints"
        if args.name:
            target += "?workload=" + quote(workload_id(args.name, args.namespace))
        emit(call(api, "GET", target), ENDPOINT_COLUMNS, args.output,
             empty="no service records" + (f" for {args.name}" if args.name else ""))
    else:
        emit(call(api, "GET", "/v1/nodes"), NODE_COLUMNS, args.output,
             empty="no machines known yet")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from beemesh import operator
    from beemesh.api.client import api_path

    result = operator.delete(api_path(args.api), args.fleet, args.kind, args.name,
                             args.namespace)
    print(f"{result['workload']} deleted ({result['replicas']} replica(s) being removed)")
    return 0


def cmd_cordon(args: argparse.Namespace) -> int:
    from beemesh import operator
    from beemesh.api.client import api_path

    result = operator.cordon(api_path(args.api), args.fleet, args.node, args.cordon)
    print(f"{result['node']} {'cordoned' if result['cordoned'] else 'uncordoned'}")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    from beemesh import operator
    from beemesh.api.client import api_path

    api = api_path(args.api)
    result = operator.drain(api, args.fleet, args.node, args.grace)
    print(f"draining {result['node']}: {result['replicas']} replica(s) to move", file=sys.stderr)
    if not args.wait:
        return 0
    ok, message = operator.wait_drained(api, result["node"], args.timeout)
    print(message, file=sys.stderr)
    return 0 if ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from beemesh import operator
    from beemesh.api.client import api_path

    return operator.logs(api_path(args.api), args.fleet, args.pod, args.follow)


def cmd_events(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call

    api = api_path(args.api)
    got = call(api, "GET", "/v1/events?after=0")
    emit(got["events"], EVENT_COLUMNS, args.output, empty="no events yet")
    while args.watch:
        got = call(api, "GET", f"/v1/events?after={got['last']}&wait=25", timeout=40)
        for row in got["events"]:
            if args.output == "json":
                print(json.dumps(row), flush=True)
            else:
                print(table([row], EVENT_COLUMNS).splitlines()[1], flush=True)
    return 0


def cmd_bundle_create(args: argparse.Namespace) -> int:
    from beemesh import bundle
    from beemesh.operator import fleet_dir

    bundle.create(
        fleet_dir=fleet_dir(args.fleet), site=args.site, out=args.out,
        peers=bundle.read_peers(args.peers, args.peer or []), images=args.image or [],
        pyz_dir=args.pyz_dir, ansible_dir=args.ansible_dir, podman_socket=args.podman_socket,
        tar=args.tar,
    )
    return 0


def _bundle_problems(problems: list[str]) -> int:
    for problem in problems:
        print(f"beemesh: bundle: {problem}", file=sys.stderr)
    print(f"beemesh: error: bundle refused ({len(problems)} problem(s)); nothing was "
          "installed or changed", file=sys.stderr)
    return 1


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    from beemesh import bundle

    trusted, trust_path = bundle.load_trust(args.fleet, args.trust)
    keep: list[object] = []
    report = bundle.verify(bundle.open_bundle(args.bundle, keep), trusted, trust_path)
    if not report.ok:
        for problem in report.problems:
            print(f"beemesh: bundle: {problem}", file=sys.stderr)
        print(f"beemesh: error: bundle {args.bundle} failed verification "
              f"({len(report.problems)} problem(s))", file=sys.stderr)
        return 1
    assert report.body is not None
    print(f"bundle OK: site {report.body['site']}, beemesh {report.body['version']}, "
          f"{len(report.body['files'])} files, signed by {report.signer}")
    return 0


def cmd_bundle_install(args: argparse.Namespace) -> int:
    from beemesh import bundle

    trusted, trust_path = bundle.load_trust(args.fleet, args.trust)
    keep: list[object] = []
    try:
        result = bundle.install(
            bundle.open_bundle(args.bundle, keep), trusted=trusted, trust_path=trust_path,
            root=args.root, state_dir=args.state_dir, arch=args.arch, listen=args.listen,
            podman_socket=args.podman_socket, start=args.start,
            start_timeout=args.start_timeout,
        )
    except bundle.BundleRefused as e:
        return _bundle_problems(e.problems)
    print(result["peer_id"])
    if result["pid"] is None:
        unit = bundle.Layout(args.root, args.root).unit
        print(f"installed; start it with `beemesh agent --config {result['config']}`, or "
              + bundle.enable_hint(str(unit)), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from beemesh.demo import run_demo

    return run_demo(args.machines, args.dir, workload=not args.no_workload)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beemesh", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"beemesh {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_api(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API or "
                        "/var/lib/beemesh/api.sock)")
        sp.add_argument("-o", "--output", choices=["table", "json"], default="table")
        return sp

    sp = sub.add_parser("init", help="create this machine's key and print its Peer ID")
    sp.add_argument("--state-dir", type=Path, required=True)
    sp.set_defaults(func=cmd_init)
    sp = sub.add_parser("id", help="print this machine's Peer ID")
    sp.add_argument("--state-dir", type=Path, required=True)
    sp.set_defaults(func=cmd_id)

    fleet = sub.add_parser("fleet", help="fleet material (network key, operator keys)")
    fsub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    sp = fsub.add_parser("init", help="create a network key, an operator key and a trust list")
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--operator-name", default="operator")
    sp.set_defaults(func=cmd_fleet_init)
    sp = fsub.add_parser("workplane-key", help="add the work plane's network key to fleet "
                         "material made before the work plane existed")
    sp.add_argument("--out", type=Path, required=True)
    sp.set_defaults(func=cmd_fleet_workplane_key)

    sp = sub.add_parser("agent", help="run the machine agent (long-lived)")
    sp.add_argument("--state-dir", type=Path)
    sp.add_argument("--config", type=Path, help="TOML config file; flags override it")
    sp.add_argument("--fleet", type=Path, help="fleet material dir (default: STATE_DIR/fleet)")
    sp.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    sp.add_argument("--bootstrap", action="append", help="peer multiaddr (repeatable)")
    sp.add_argument("--api", type=Path, help="API socket (default: STATE_DIR/api.sock)")
    sp.add_argument("--labels", help="k=v,k2=v2")
    sp.add_argument("--podman-socket", help="Podman REST socket, e.g. unix:///run/podman/"
                    "podman.sock (default: the rootful or rootless socket this machine has)")
    sp.add_argument("--workplane-listen", action="append", help="multiaddr of the work plane "
                    "(repeatable; default /ip4/0.0.0.0/tcp/4002)")
    sp.add_argument("--workplane-user", help="run the work plane as this user (agent as root)")
    sp.add_argument("--no-workplane", action="store_true", help="run without a work plane (no "
                    "service records, no self-healing): machine-plane tests and drills only")
    sp.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sp.set_defaults(func=cmd_agent)

    sp = with_api(sub.add_parser("nodes", help="machines this agent knows"))
    sp.set_defaults(func=cmd_nodes)
    sp = with_api(sub.add_parser("status", help="this agent's status"))
    sp.set_defaults(func=cmd_status)
    sp = with_api(sub.add_parser("metrics", help="agent counters (Prometheus text or JSON)"))
    sp.set_defaults(func=cmd_metrics)
    sp = with_api(sub.add_parser("apply", help="run the workloads of a Kubernetes manifest"))
    sp.add_argument("-f", "--file", type=Path, required=True)
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key "
                    "(default: $BEEMESH_FLEET)")
    sp.add_argument("--wait", action="store_true", help="wait until every replica is deployed")
    sp.add_argument("--timeout", type=float, default=120.0)
    sp.set_defaults(func=cmd_apply)
    sp = with_api(sub.add_parser("get", help="list pods, nodes or a workload's endpoints"))
    sp.add_argument("what", choices=["pods", "pod", "po", "nodes", "node", "no", "endpoints",
                                     "endpoint", "ep"])
    sp.add_argument("name", nargs="?", help="endpoints: a workload, as NAME (a Deployment), "
                    "KIND/NAME or the full id kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.set_defaults(func=cmd_get)
    sp = with_api(sub.add_parser("delete", help="stop a workload everywhere"))
    sp.add_argument("kind", help="deployment | statefulset | pod")
    sp.add_argument("name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_delete)
    for verb, value in (("cordon", True), ("uncordon", False)):
        sp = sub.add_parser(verb, help="stop placing new replicas on a machine" if value else
                            "let a cordoned machine take new replicas again")
        sp.add_argument("node", help="Peer ID, or a unique prefix/suffix of one")
        sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API)")
        sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
        sp.set_defaults(func=cmd_cordon, cordon=value)
    sp = sub.add_parser("drain", help="move every replica off a machine (replacements first) "
                        "and cordon it")
    sp.add_argument("node", help="Peer ID, or a unique prefix/suffix of one")
    sp.add_argument("--grace", type=int, default=30, help="seconds each replica gets to stop")
    sp.add_argument("--wait", action="store_true", help="wait until no replica runs there")
    sp.add_argument("--timeout", type=float, default=300.0)
    sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API)")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_drain)
    sp = sub.add_parser("workplane", help="the work plane (started by the agent, not by hand)")
    sp.add_argument("--dir", type=Path, required=True, help="its state dir (workload keys)")
    sp.add_argument("--agent", type=Path, required=True, help="the agent's work-plane socket")
    sp.add_argument("--network-key", type=Path, required=True, help="workplane.key")
    sp.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    sp.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sp.set_defaults(func=cmd_workplane)
    sp = sub.add_parser("logs", help="a pod's logs, from whichever machine runs it")
    sp.add_argument("pod", help="pod name as in `beemesh get pods` (e.g. web-0)")
    sp.add_argument("--follow", "-f", action="store_true")
    sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API)")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_logs)
    sp = with_api(sub.add_parser("events", help="what this agent saw (scheduling, runtime)"))
    sp.add_argument("--watch", "-w", action="store_true")
    sp.set_defaults(func=cmd_events)

    bnd = sub.add_parser("bundle", help="offline install bundles for sites without network")
    bsub = bnd.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    sp = bsub.add_parser("create", help="write a signed bundle for one site")
    sp.add_argument("--site", required=True, help="site name (becomes the label site=NAME)")
    sp.add_argument("--out", type=Path, required=True, help="new bundle directory")
    sp.add_argument("--tar", type=Path, help="also write the bundle as one tar file")
    sp.add_argument("--peers", type=Path, help="file of bootstrap multiaddrs, one per line")
    sp.add_argument("--peer", action="append", help="bootstrap multiaddr (repeatable)")
    sp.add_argument("--image", action="append", help="container image to include (repeatable)")
    sp.add_argument("--pyz-dir", type=Path, help="where the .pyz files are (default: dist/)")
    sp.add_argument("--ansible-dir", type=Path, help="playbook to include (default: the "
                    "repository's ansible/ if present)")
    sp.add_argument("--podman-socket", help="Podman to save images from (default: podman CLI)")
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key "
                    "(default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_bundle_create)
    for name, helptext in (("verify", "check a bundle's signature and every file"),
                           ("install", "verify, then install a bundle on this machine")):
        sp = bsub.add_parser(name, help=helptext)
        sp.add_argument("bundle", type=Path, help="bundle directory (or its .tar)")
        sp.add_argument("--trust", type=Path, help="operators.trust to check the signature "
                        "against")
        sp.add_argument("--fleet", type=Path, help="fleet dir whose operators.trust to use "
                        "(default: $BEEMESH_FLEET)")
        sp.set_defaults(func=cmd_bundle_verify)
    sp.add_argument("--root", type=Path, default=Path("/"), help="install under this root "
                    "(default: /)")
    sp.add_argument("--state-dir", type=Path, help="default: ROOT/var/lib/beemesh")
    sp.add_argument("--arch", choices=["x86_64", "aarch64"], help="default: this machine's")
    sp.add_argument("--listen", action="append", help="multiaddr for the config (repeatable; "
                    "default /ip4/0.0.0.0/tcp/4001)")
    sp.add_argument("--podman-socket", help="Podman to load images into and for the agent "
                    "(default: podman CLI / the agent's default socket)")
    sp.add_argument("--start", action="store_true", help="start the agent as a detached "
                    "process after installing")
    sp.add_argument("--start-timeout", type=float, default=60.0)
    sp.set_defaults(func=cmd_bundle_install)

    sp = sub.add_parser("demo", help="run a local mesh of three machines (the quick start)")
    sp.add_argument("--machines", type=int, default=3)
    sp.add_argument("--dir", type=Path, help="where to keep state (default: a new temp dir)")
    sp.add_argument("--no-workload", action="store_true",
                    help="only the mesh: no Podman, no example Deployment")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"beemesh: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `beemesh nodes | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
