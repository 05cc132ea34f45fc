"""The argument parser: every command, its flags and the function that runs it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from beemesh import __version__
from beemesh.cli.admission_cmds import (
    cmd_fleet_admit,
    cmd_fleet_enroll_site,
    cmd_fleet_require_admission,
    cmd_revoke,
)
from beemesh.cli.bundle_cmds import cmd_bundle_create, cmd_bundle_install, cmd_bundle_verify
from beemesh.cli.machine_cmds import (
    cmd_agent,
    cmd_demo,
    cmd_fleet_init,
    cmd_fleet_workplane_key,
    cmd_id,
    cmd_init,
    cmd_workplane,
)
from beemesh.cli.operator_cmds import (
    cmd_apply,
    cmd_cordon,
    cmd_delete,
    cmd_drain,
    cmd_events,
    cmd_exec,
    cmd_get,
    cmd_logs,
    cmd_metrics,
    cmd_nodes,
    cmd_status,
)
from beemesh.cli.rollout_cmds import cmd_rollout_render_config, cmd_rollout_render_unit
from beemesh.cli.service_cmds import CONFIG_WORDS, SERVICE_WORDS
from beemesh.cli.workload_cmds import (
    WORKLOAD_WORDS,
    cmd_describe,
    cmd_rollout_history,
    cmd_rollout_restart,
    cmd_rollout_status,
    cmd_rollout_undo,
    cmd_scale,
)
from beemesh.output import OUTPUTS

DESCRIPTION = "beemesh: a decentralized orchestrator for edge and IoT fleets"

class Parser(argparse.ArgumentParser):
    """argparse with exit code 1 for usage errors (2 means "nothing could be placed")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="beemesh", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"beemesh {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_api(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API or "
                        "/var/lib/beemesh/api.sock)")
        sp.add_argument("-o", "--output", choices=OUTPUTS, default="table")
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
    sp = fsub.add_parser("admit", help="write an operator-signed certificate that admits one "
                         "machine")
    sp.add_argument("peer_id", metavar="PEER_ID", help="the machine's Peer ID (`beemesh id`)")
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key")
    sp.add_argument("--enrollment", type=Path, help="instead of --fleet: a site's enrollment "
                    "dir (`fleet enroll-site`); admits machines of that site only")
    sp.add_argument("--labels", help="k=v,k2=v2: the labels the machine may claim")
    sp.add_argument("--label", action="append", help="KEY=VALUE, any characters in VALUE "
                    "(repeatable; with --labels)")
    sp.add_argument("--expires", type=float, default=365.0, help="days (default 365)")
    sp.add_argument("--out", type=Path, required=True, help="the certificate file to write")
    sp.set_defaults(func=cmd_fleet_admit)
    sp = fsub.add_parser("enroll-site", help="an enrollment key with which a site admits its "
                         "own machines, offline")
    sp.add_argument("--fleet", type=Path, required=True, help="fleet material with operator.key")
    sp.add_argument("--site", required=True, help="the site label its machines get")
    sp.add_argument("--expires", type=float, default=90.0, help="days (default 90)")
    sp.add_argument("--out", type=Path, required=True, help="directory to write it to")
    sp.set_defaults(func=cmd_fleet_enroll_site)
    sp = fsub.add_parser("require-admission", help="make an older fleet require admission")
    sp.add_argument("--fleet", type=Path, required=True)
    sp.set_defaults(func=cmd_fleet_require_admission)

    sp = sub.add_parser("agent", help="run the machine agent (long-lived)")
    sp.add_argument("--state-dir", type=Path)
    sp.add_argument("--config", type=Path, help="TOML config file; flags override it")
    sp.add_argument("--fleet", type=Path, help="fleet material dir (default: STATE_DIR/fleet)")
    sp.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    sp.add_argument("--bootstrap", action="append", help="peer multiaddr (repeatable)")
    sp.add_argument("--api", type=Path, help="API socket (default: STATE_DIR/api.sock)")
    sp.add_argument("--labels", help="k=v,k2=v2")
    sp.add_argument("--cert", type=Path, help="machine certificate (default: "
                    "STATE_DIR/machine.cert)")
    sp.add_argument("--podman-socket", help="Podman REST socket, e.g. unix:///run/podman/"
                    "podman.sock (default: the rootful or rootless socket this machine has)")
    sp.add_argument("--workplane-listen", action="append", help="multiaddr of the work plane "
                    "(repeatable; default /ip4/0.0.0.0/tcp/4002)")
    sp.add_argument("--workplane-user", help="run the work plane as this user (agent as root)")
    sp.add_argument("--pod-files", type=Path, help="where configMap and secret volume files "
                    "are written, on a tmpfs (default /run/beemesh/pod-files)")
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
    sp = with_api(sub.add_parser("get", help="list workloads, pods, nodes or a workload's "
                                 "endpoints"))
    sp.add_argument("what", choices=["pods", "pod", "po", "nodes", "node", "no", "endpoints",
                                     "endpoint", "ep", *WORKLOAD_WORDS, *SERVICE_WORDS,
                                     *CONFIG_WORDS])
    sp.add_argument("name", nargs="?", help="endpoints, workloads: a workload, as NAME (a "
                    "Deployment), KIND/NAME or the full id kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.set_defaults(func=cmd_get)
    sp = with_api(sub.add_parser("delete", help="stop a workload everywhere"))
    sp.add_argument("kind", help="deployment | statefulset | pod | service | configmap | "
                    "secret")
    sp.add_argument("name")
    sp.add_argument("--delete-volumes", action="store_true", help="a StatefulSet's claim "
                    "volumes go too (kept by default, as Kubernetes keeps PVCs)")
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_delete)
    for verb, value in (("cordon", True), ("uncordon", False)):
        sp = with_api(sub.add_parser(verb, help="stop placing new replicas on a machine" if
                                     value else "let a cordoned machine take new replicas again"))
        sp.add_argument("machine", metavar="NODE", help="a machine: its Peer ID, or a unique "
                        "prefix/suffix of one")
        sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
        sp.set_defaults(func=cmd_cordon, cordon=value)
    sp = with_api(sub.add_parser("drain", help="move every replica off a machine "
                                 "(replacements first) and cordon it"))
    sp.add_argument("machine", metavar="NODE", help="a machine: its Peer ID, or a unique "
                    "prefix/suffix of one")
    sp.add_argument("--grace", type=int, default=30, help="seconds each replica gets to stop")
    sp.add_argument("--keep-data", action="store_true", help="StatefulSet ordinals whose claim "
                    "volumes are there stop and stay (they start there again after uncordon) "
                    "instead of starting elsewhere with empty volumes")
    sp.add_argument("--wait", action="store_true", help="wait until no replica runs there")
    sp.add_argument("--timeout", type=float, default=300.0)
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_drain)
    sp = with_api(sub.add_parser("revoke", help="revoke a machine: every agent drops it for "
                                 "good"))
    sp.add_argument("peer_id", metavar="PEER_ID", help="the machine's full Peer ID")
    sp.add_argument("--reason", help="recorded with the revocation (e.g. stolen)")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_revoke)
    sp = sub.add_parser("workplane", help="the work plane (started by the agent, not by hand)")
    sp.add_argument("--dir", type=Path, required=True, help="its state dir (workload keys)")
    sp.add_argument("--pods", type=Path, required=True, help="the pods' discovery directories")
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
    sp = sub.add_parser("exec", help="run a command in a pod, on whichever machine runs it "
                        "(not interactive: its output when it ends, and its exit code)",
                        usage="beemesh exec POD [-c CONTAINER] [--timeout S] -- CMD [ARG...]")
    sp.add_argument("pod", help="pod name as in `beemesh get pods` (e.g. web-0)")
    sp.add_argument("-c", "--container", default="",
                    help="container name from the manifest (default: the pod's first)")
    sp.add_argument("--timeout", type=int, default=60, metavar="S",
                    help="stop waiting after S seconds (default 60, at most 3600)")
    sp.add_argument("--api", help="agent API socket (default: $BEEMESH_API)")
    sp.add_argument("--fleet", type=Path, help="fleet material (default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_exec, cmd=[])  # the words after `--` (`parse`)
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
    sp.add_argument("--enrollment-days", type=float, default=30.0, help="how long the site's "
                    "enrollment key in the bundle admits machines (default 30)")
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
    sp.add_argument("--allow-downgrade", action="store_true", help="install even if this "
                    "bundle is older than the one installed before")
    sp.set_defaults(func=cmd_bundle_install)

    sp = with_api(sub.add_parser("describe", help="a workload, a pod or a Service: replicas, "
                                 "state, events, why a replica does not run; endpoints"))
    sp.add_argument("kind", help="KIND/NAME, KIND NAME, NAME (a Deployment), pod NAME or "
                    "service NAME")
    sp.add_argument("name", nargs="?")
    sp.add_argument("-n", "--namespace", default="default")
    sp.set_defaults(func=cmd_describe)
    sp = with_api(sub.add_parser("scale", help="set a workload's replicas (a new apply)"))
    sp.add_argument("name", help="NAME (a Deployment), KIND/NAME or kind/namespace/name")
    sp.add_argument("--replicas", type=int, required=True)
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key "
                    "(default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_scale)

    rollout = sub.add_parser("rollout", help="follow or restart a workload's rollout")
    rsub = rollout.add_subparsers(dest="rollout_command", required=True,
                                  metavar="{status,restart,history,undo}")
    sp = with_api(rsub.add_parser("status", help="follow a rollout until every replica runs "
                                  "the newest template (exit 0), or it stalls (exit 1)"))
    sp.add_argument("name", help="NAME (a Deployment), KIND/NAME or kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--watch", action=argparse.BooleanOptionalAction, default=True,
                    help="follow until done (default), or print once")
    sp.add_argument("--timeout", type=float, default=600.0)
    sp.set_defaults(func=cmd_rollout_status)
    sp = with_api(rsub.add_parser("restart", help="replace every replica, a rollout at a "
                                  "time (the template's restartedAt annotation)"))
    sp.add_argument("name", help="NAME (a Deployment), KIND/NAME or kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key "
                    "(default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_rollout_restart)
    sp = with_api(rsub.add_parser("history", help="a workload's pod templates, what each "
                                  "changed"))
    sp.add_argument("name", help="NAME (a Deployment), KIND/NAME or kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.set_defaults(func=cmd_rollout_history)
    sp = with_api(rsub.add_parser("undo", help="roll back to an earlier pod template"))
    sp.add_argument("name", help="NAME (a Deployment), KIND/NAME or kind/namespace/name")
    sp.add_argument("-n", "--namespace", default="default")
    sp.add_argument("--to-revision", type=int, help="default: the one before the current")
    sp.add_argument("--fleet", type=Path, help="fleet material with operator.key "
                    "(default: $BEEMESH_FLEET)")
    sp.set_defaults(func=cmd_rollout_undo)
    # Plumbing (no help=: not listed): the Ansible role prints the unit and agent.toml with the
    # installed .pyz, the same text `bundle install` writes (beemesh.rollout.units).
    sp = rsub.add_parser("render-unit", description="print the hardened systemd unit")
    sp.add_argument("--pyz", type=Path, required=True, help="the installed .pyz")
    sp.add_argument("--config", type=Path, required=True, help="its agent.toml")
    sp.add_argument("--state-dir", type=Path, required=True, help="the service's writable dir")
    sp.add_argument("--python", type=Path, help="CPython 3.11 (default /usr/bin/python3)")
    sp.add_argument("--user", help="the agent's user (default root)")
    sp.add_argument("--group", help="the agent's group (default root)")
    sp.add_argument("--supplementary-group", action="append", help="repeatable")
    sp.add_argument("--workplane-user", help="the work plane's own user (default: none; it "
                    "also sets the capability bounding set)")
    sp.add_argument("--podman-socket", help="unix:///... socket whose dir is made writable")
    sp.set_defaults(func=cmd_rollout_render_unit)
    sp = rsub.add_parser("render-config", description="print agent.toml (docs/formats.md)")
    sp.add_argument("--state-dir", type=Path, required=True)
    sp.add_argument("--fleet", type=Path, required=True, help="fleet material dir")
    sp.add_argument("--listen", action="append", required=True, help="multiaddr (repeatable)")
    sp.add_argument("--workplane-listen", action="append", required=True,
                    help="the work plane's multiaddr (repeatable)")
    sp.add_argument("--workplane-user", help="the work plane's own user (default: none)")
    sp.add_argument("--bootstrap", action="append", help="peer multiaddr (repeatable)")
    sp.add_argument("--podman-socket", help="default: the agent's")
    sp.add_argument("--label", action="append", help="KEY=VALUE (repeatable)")
    sp.add_argument("--extra", action="append", help="KEY=JSON, a further config key "
                    "(repeatable), e.g. dead_after_s=10")
    sp.set_defaults(func=cmd_rollout_render_config)

    sp = sub.add_parser("demo", help="run a local mesh of three machines (the quick start)")
    sp.add_argument("--machines", type=int, default=3)
    sp.add_argument("--dir", type=Path, help="where to keep state (default: a new temp dir)")
    sp.add_argument("--no-workload", action="store_true",
                    help="only the mesh: no Podman, no example Deployment")
    sp.set_defaults(func=cmd_demo)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """`build_parser().parse_args`, except that `beemesh exec POD ... -- CMD ARGS` keeps every
    word after the first `--` as the command (argparse would read `-c` in it as a flag)."""
    parser = build_parser()
    if "--" in argv:
        i = argv.index("--")
        args = parser.parse_args(argv[:i])
        if args.command == "exec":
            args.cmd = argv[i + 1:]
            return args
    return parser.parse_args(argv)

