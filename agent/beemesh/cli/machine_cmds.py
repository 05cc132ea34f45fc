"""Commands that set up or run this machine: keys, fleet material, the agent, the work plane,
the local demo mesh."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

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


def _leave_pex_launcher() -> None:
    """From the .pyz, pex's launcher (the `__main__.py` of the venv it extracts) calls the CLI
    and stays loaded under it: ~1 MB more in an agent than from a plain venv. The agent runs
    for months, so it starts again as `python -I -m beemesh` of that same venv, as its work
    plane already does (same pid, same arguments)."""
    launcher = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    if os.path.isfile(os.path.join(os.path.dirname(launcher), "PEX-INFO")):
        os.execv(sys.executable, [sys.executable, "-I", "-m", "beemesh", *sys.argv[1:]])


def cmd_agent(args: argparse.Namespace) -> int:
    _leave_pex_launcher()
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
            "cert": args.cert,
            "pod_files": args.pod_files,
        },
    )
    key = load_key(cfg.machine_key_path, "machine key",
                   MACHINE_KEY_FIX.format(dir=cfg.state_dir))
    fleet = Fleet.load(cfg.fleet_dir)
    if cfg.workplane:
        from beemesh.fleet import load_workplane_psk

        load_workplane_psk(cfg.workplane_key_path)  # a missing key is an error now, not later
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format=LOG_FORMAT)
    from beemesh.machine.agent import run_agent  # imports libp2p, which resets its own loggers

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
    run_workplane(args.dir, args.pods, args.agent, psk,
                  args.listen or ["/ip4/0.0.0.0/tcp/4002"])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from beemesh.lab.demo import run_demo

    return run_demo(args.machines, args.dir, workload=not args.no_workload)


