"""`beemesh bundle create|verify|install`: offline bundles (`beemesh.rollout`)."""

from __future__ import annotations

import argparse
import sys


def cmd_bundle_create(args: argparse.Namespace) -> int:
    from beemesh.cli.operator_client import fleet_dir
    from beemesh.rollout.create import create, read_peers

    create(
        fleet_dir=fleet_dir(args.fleet), site=args.site, out=args.out,
        peers=read_peers(args.peers, args.peer or []), images=args.image or [],
        pyz_dir=args.pyz_dir, ansible_dir=args.ansible_dir, podman_socket=args.podman_socket,
        tar=args.tar, enrollment_days=args.enrollment_days,
    )
    return 0


def _bundle_problems(problems: list[str]) -> int:
    for problem in problems:
        print(f"beemesh: bundle: {problem}", file=sys.stderr)
    print(f"beemesh: error: bundle refused ({len(problems)} problem(s)); nothing was "
          "installed or changed", file=sys.stderr)
    return 1


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    from beemesh.rollout.bundle_format import BundleRefused
    from beemesh.rollout.verify import Report, load_trust, verify

    trusted, trust_path = load_trust(args.fleet, args.trust)
    try:
        report = verify(args.bundle, trusted, trust_path)
    except BundleRefused as e:
        report = Report(e.problems, None)
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
    from beemesh.rollout.bundle_format import BundleRefused
    from beemesh.rollout.install import Layout, enable_hint, install
    from beemesh.rollout.verify import load_trust

    trusted, trust_path = load_trust(args.fleet, args.trust)
    try:
        result = install(
            args.bundle, trusted=trusted, trust_path=trust_path,
            root=args.root, state_dir=args.state_dir, arch=args.arch, listen=args.listen,
            podman_socket=args.podman_socket, start=args.start,
            start_timeout=args.start_timeout, allow_downgrade=args.allow_downgrade,
        )
    except BundleRefused as e:
        return _bundle_problems(e.problems)
    print(result["peer_id"])
    if result["pid"] is None:
        unit = Layout(args.root, args.root).unit
        print(f"installed; start it with `beemesh agent --config {result['config']}`, or "
              + enable_hint(str(unit)), file=sys.stderr)
    return 0
