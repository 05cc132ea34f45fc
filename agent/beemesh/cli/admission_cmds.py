"""Admission commands: `fleet admit`, `fleet enroll-site`, `fleet require-admission`, `revoke`.

`fleet admit` and `fleet enroll-site` run where the operator key is (or, for a site's own
machines, where its enrollment key is); nothing here talks to an agent except `revoke`, which
hands the signed revocation to the local agent to gossip.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import time
from pathlib import Path

import cbor2

from beemesh import cbor
from beemesh.errors import UserError
from beemesh.files import write_atomic
from beemesh.fleet import Fleet, write_policy
from beemesh.identity import is_peer_id, load_key, save_key
from beemesh.membership import revocations_file
from beemesh.membership.certs import (
    DAY_S,
    CertError,
    Enrollment,
    check_cert,
    enroll,
    issue_enrollment,
    issue_machine_cert,
)

ENROLLMENT_KEY = "enrollment.key"
ENROLLMENT_CERT = "enrollment.cert"


def _peer(text: str) -> str:
    if not is_peer_id(text):
        raise UserError(f"{text!r} is not a machine Peer ID (12D3KooW...); print it on the "
                        "machine with `beemesh id --state-dir DIR`")
    return text


def _expires(days: float, now: float) -> float:
    if not 0 < days <= 36_500:
        raise UserError("--expires must be a number of days above 0 (at most 36500)")
    return now + days * DAY_S


def load_enrollment(directory: Path) -> Enrollment:
    """A site's enrollment key and certificate, as `fleet enroll-site` wrote them."""
    key = load_key(directory / ENROLLMENT_KEY, "enrollment key",
                   "create one with `beemesh fleet enroll-site` where the operator key is")
    try:
        cert = (directory / ENROLLMENT_CERT).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {directory / ENROLLMENT_CERT} ({e.strerror}); copy it "
                        "together with the enrollment key") from None
    return Enrollment(key, cert)


def cmd_fleet_admit(args: argparse.Namespace) -> int:
    from beemesh.config import parse_labels

    now = time.time()
    peer = _peer(args.peer_id)
    from beemesh.cli.rollout_cmds import pair

    labels = parse_labels(args.labels) if args.labels else {}
    labels.update(pair(item, "--label", "zone=plant-a") for item in args.label or ())
    expires = _expires(args.expires, now)
    if args.enrollment is not None:
        try:
            data = enroll(load_enrollment(args.enrollment), peer, labels, expires, now)
        except CertError as e:
            raise UserError(str(e)) from None
    else:
        if args.fleet is None:
            raise UserError("fleet admit needs --fleet DIR (with operator.key) or --enrollment "
                            "DIR (a site's enrollment key)")
        fleet = Fleet.load(args.fleet)
        data = issue_machine_cert(fleet.operator_key(), peer, labels, expires, now)
        cert = check_cert(data, fleet.trusted_operators(), now)  # the operator key is trusted
        labels = dict(cert.labels)
    write_atomic(args.out, data, 0o644)
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    print(f"admitted {peer} until {time.strftime('%Y-%m-%d', time.gmtime(expires))} "
          f"(labels: {shown}); certificate written to {args.out}: put it at "
          "STATE_DIR/machine.cert on that machine")
    return 0


def cmd_fleet_enroll_site(args: argparse.Namespace) -> int:
    now = time.time()
    fleet = Fleet.load(args.fleet)
    enrollment = issue_enrollment(fleet.operator_key(), args.site, _expires(args.expires, now),
                                  now)
    args.out.mkdir(parents=True, exist_ok=True)
    save_key(args.out / ENROLLMENT_KEY, enrollment.key)
    write_atomic(args.out / ENROLLMENT_CERT, enrollment.cert, 0o644)
    print(f"enrollment key for site {args.site} written to {args.out} (valid {args.expires:g} "
          f"days): `beemesh fleet admit --enrollment {args.out} PEER_ID --out FILE` admits "
          f"machines with site={args.site} there, without the operator key")
    return 0


def cmd_fleet_require_admission(args: argparse.Namespace) -> int:
    path = write_policy(args.fleet, "required")
    print(f"{path}: admission required. Admit every machine first (`beemesh fleet admit`), "
          "put each certificate at STATE_DIR/machine.cert, then copy fleet.toml to every "
          "machine's fleet directory and restart its agent")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from beemesh.api.client import api_path, call
    from beemesh.cli.operator_client import fleet_dir, sign
    from beemesh.membership.admission import REVOKE
    from beemesh.output import report

    peer = _peer(args.peer_id)
    body = {"peer_id": peer, **({"reason": args.reason} if args.reason else {})}
    request = sign(args.fleet, REVOKE.name, body)
    call(api_path(args.api), "POST", "/v1/revoke", {"request": request})
    kept = _keep_revocation(fleet_dir(args.fleet), base64.b64decode(request))
    report({"peer_id": peer, "revoked": True, "kept_in": str(kept)},
           f"{peer} revoked: every agent drops it and refuses its messages and connections; "
           f"its replicas are placed elsewhere. Kept in {kept}, which bundles carry to "
           "machines that are offline now", args.output)
    return 0


def _keep_revocation(fleet: Path, data: bytes) -> Path:
    """The operator's own list of revocations (FLEET/revoked.cbor), for `bundle create`."""
    path = fleet / revocations_file.FILE_NAME
    items: list[bytes] = []
    with contextlib.suppress(FileNotFoundError):
        try:
            loaded = cbor.loads(path.read_bytes())
        except cbor.CBORError:
            loaded = None
        if not isinstance(loaded, list):
            raise UserError(f"{path} is damaged; move it aside and revoke again (the agents "
                            "already have this revocation)")
        items = [i for i in loaded if isinstance(i, bytes)]
    write_atomic(path, cbor2.dumps([*items, data]), 0o644)
    return path
