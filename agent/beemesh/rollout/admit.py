"""What `bundle install` does for admission: admit the machine with the site's enrollment key,
and keep the operator's revocations the bundle carries.

The enrollment key is read from install's private copy of the bundle and never written onto
the machine; the certificate it signs grants site=<the bundle's site> and nothing else.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import cbor2

from beemesh import cbor
from beemesh.errors import UserError
from beemesh.identity import KeyPair, load_key
from beemesh.membership import revocations_file
from beemesh.membership.admission import MAX_REVOKED
from beemesh.membership.certs import DAY_S, CertError, Enrollment, check_cert, enroll
from beemesh.rollout.bundle_format import Progress
from beemesh.rollout.changes import Changes

CERT_DAYS = 365.0  # capped by the enrollment's own expiry


def admit_installed(cert_path: Path, key: KeyPair, enrollment_key: Path,
                    enrollment_cert: Path, trusted: dict[bytes, str], changes: Changes,
                    progress: Progress) -> None:
    """A machine certificate at `cert_path` for `key`: the one there if it is still valid for
    this machine, else a new one signed with the bundle's enrollment key."""
    now = time.time()
    with contextlib.suppress(OSError, CertError):
        held = check_cert(cert_path.read_bytes(), trusted, now)
        if held.peer_id == key.peer_id:
            progress(f"keeping machine certificate {cert_path} (signed by {held.signer})")
            return
    enrollment = Enrollment(load_key(enrollment_key, "enrollment key", "copy the bundle again"),
                            enrollment_cert.read_bytes())
    try:
        data = enroll(enrollment, key.peer_id, {}, now + CERT_DAYS * DAY_S, now)
        cert = check_cert(data, trusted, now)
    except CertError as e:
        raise UserError(f"cannot admit this machine with the bundle's enrollment key: {e}; ask "
                        "the operator for a new bundle (or `beemesh fleet admit` for this "
                        f"machine, {key.peer_id})") from None
    changes.write(cert_path, data, 0o644)
    progress(f"admitted this machine ({key.peer_id}) for site {cert.labels.get('site')} until "
             f"{time.strftime('%Y-%m-%d', time.gmtime(cert.expires))}: {cert_path}")


def keep_revocations(state_dir: Path, bundled: Path, changes: Changes,
                     progress: Progress) -> None:
    """The bundle's revocations added to those the machine keeps (the agent checks each when
    it reads them)."""
    path = state_dir / revocations_file.FILE_NAME
    lists: list[list[bytes]] = []
    for source in (path, bundled):
        with contextlib.suppress(OSError, cbor.CBORError, ValueError):
            items = cbor.loads(source.read_bytes()[:revocations_file.MAX_FILE_BYTES])
            if isinstance(items, list):
                lists.append([i for i in items if isinstance(i, bytes)])
    merged = list(dict.fromkeys(i for items in lists for i in items))[:MAX_REVOKED]
    if merged:
        changes.write(path, cbor2.dumps(merged), 0o600)
        progress(f"keeping {len(merged)} revocation(s) in {path}")
