"""`beemesh rollout render-unit|render-config`: print the systemd unit or agent.toml.

Plumbing, not listed in `beemesh --help`: the Ansible role runs them with the .pyz it installed,
so it writes the same files as `beemesh bundle install` (`beemesh.rollout.units`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from beemesh.errors import UserError


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags that were given; the others keep the parameter record's defaults."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def pair(item: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UserError(f"{flag} {item!r} is not KEY=VALUE (example: {flag} {example})")
    return key, value


def _json_value(item: str) -> tuple[str, Any]:
    key, text = pair(item, "--extra", "dead_after_s=10")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"--extra {item!r}: the value must be JSON (examples: dead_after_s=10, "
                        "'workplane_key=\"/etc/beemesh/wp.key\"')") from None


def _write(text: str) -> int:
    sys.stdout.buffer.write(text.encode())
    sys.stdout.flush()
    return 0


def cmd_rollout_render_unit(args: argparse.Namespace) -> int:
    from beemesh.rollout.units import UnitParams, render_unit

    params = UnitParams(
        pyz=args.pyz, config=args.config, state_dir=args.state_dir,
        supplementary_groups=tuple(args.supplementary_group or ()),
        **_given(args, "python", "user", "group", "workplane_user", "podman_socket"))
    return _write(render_unit(params))


def cmd_rollout_render_config(args: argparse.Namespace) -> int:
    from beemesh.rollout.units import ConfigParams, render_config

    params = ConfigParams(
        state_dir=args.state_dir, fleet=args.fleet, listen=tuple(args.listen),
        workplane_listen=tuple(args.workplane_listen), bootstrap=tuple(args.bootstrap or ()),
        labels=dict(pair(item, "--label", "zone=plant-a") for item in args.label or ()),
        extra=dict(_json_value(item) for item in args.extra or ()),
        **_given(args, "workplane_user", "podman_socket"))
    return _write(render_config(params))
