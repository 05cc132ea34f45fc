"""Sealed copies of Secrets: asked for by the machine that starts a pod using one, passed on
only by machines that hold it (trio service, with its rule sans-IO in `want_refusal`).

- A machine that won a replica whose pod uses a Secret and has no copy of its current values
  (the digest in the operator-signed Secret) publishes a `SecretWant` (machine-signed:
  Secret id, digest, task id) on the events topic every WANT_EVERY_S while its deploy waits,
  at most WAIT_S; then the deploy fails with the reason and the replica is placed again.
- A machine that holds a copy of that digest answers a want only if `want_refusal` finds
  nothing: the Secret is current, the task is one it follows, the task's workload is in the
  Secret's namespace and uses it, and an auction round here picked the asking machine (the
  want passed the topic's checks, so its signer is admitted and not revoked). It seals the
  values to the asker's key (`sealing.seal`) and sends the box on `/beemesh/secret/1.0.0`.
- The operator's `beemesh apply` of a Secret does the same for the wants its agent verified
  (`/v1/secret-wants`, then `/v1/secret-copies`): it seals the first copies itself.
- The asker keeps a box only while it wants that digest and the box opens to values that
  match it; it is kept in the state directory (`secrets/`, 0600: sealed to this machine) and
  dropped when no pod here uses the Secret any more.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cbor2
import trio

from beemesh import cbor, schema, wire
from beemesh.errors import UserError
from beemesh.events import EventLog
from beemesh.files import write_atomic
from beemesh.identity import KeyPair, peer_id
from beemesh.manifest import WorkloadSpec
from beemesh.manifest.config import SECRET, SecretSpec
from beemesh.mesh.framing import read_request, send_request
from beemesh.mesh.host import MeshHost
from beemesh.metrics import Metrics
from beemesh.podconfig.sealing import MAX_BOX_BYTES, Opened, SealError, open_box, seal
from beemesh.topics import TOPIC_EVENTS

log = logging.getLogger("beemesh.secrets")

SECRET_PROTOCOL = "/beemesh/secret/1.0.0"
WANT_EVERY_S = 2.0
WAIT_S = 60.0
SEND_TIMEOUT_S = 5.0
WANTS_KEPT_S = 30.0
MAX_WANTS = 1024
TIDY_EVERY_S = 30.0
SECRET_WANT = wire.Kind("SecretWant", wire.MACHINE, schema.Struct(required={
    "machine": str, "secret": str, "digest": str, "task_id": str}), names_signer="machine")


class Tasks(Protocol):
    """The tasks this machine follows (`scheduling.driver`)."""

    def task_spec(self, task_id: str) -> WorkloadSpec | None: ...

    def picked(self, task_id: str) -> frozenset[str]: ...


class Secrets(Protocol):
    def secret(self, namespace: str, name: str) -> SecretSpec | None: ...


@dataclass(frozen=True)
class Want:
    machine: str
    public_key: bytes
    secret: str  # secret/NS/NAME
    digest: str
    task_id: str
    at: float


def want_refusal(want: Want, secret: SecretSpec | None, task: WorkloadSpec | None,
                 picked: frozenset[str]) -> str | None:
    """Why this machine must not seal the Secret for the asker, or None."""
    if secret is None:
        return "no such Secret here"
    if secret.digest != want.digest:
        return "not the Secret's current values"
    if task is None:
        return "a task this machine does not follow"
    if task.namespace != secret.namespace or (SECRET, secret.name) not in task.config_refs():
        return f"the task's workload does not use {secret.object_id}"
    if want.machine not in picked:
        return "no auction round here picked the asking machine"
    return None


def _split(secret_id: str) -> tuple[str, str] | None:
    kind, _, rest = secret_id.partition("/")
    ns, _, name = rest.partition("/")
    return (ns, name) if kind == "secret" and ns and name and "/" not in name else None


class SecretCopies:
    def __init__(self, *, key: KeyPair, mesh: MeshHost, secrets: Secrets, tasks: Tasks,
                 directory: Path, events: EventLog, metrics: Metrics,
                 used: Callable[[], set[str]]) -> None:
        """`used`: the ids of the Secrets the pods here (and those being deployed) use."""
        self.used = used
        self._nursery: trio.Nursery | None = None
        self.key = key
        self.machine = key.peer_id
        self.mesh = mesh
        self.secrets = secrets
        self.tasks = tasks
        self.directory = directory
        self.events = events
        self.metrics = metrics
        self._boxes: dict[tuple[str, str], bytes] = {}  # (secret id, digest) -> box
        # (secret id, digest) -> (set when a copy arrived, deploys waiting for it)
        self._waiting: dict[tuple[str, str], tuple[trio.Event, int]] = {}
        self._wants: dict[tuple[str, str, str], Want] = {}  # verified, for a sealing `apply`
        metrics.describe("secret_copies", "Secret copies sealed to another machine, and "
                         "refused wants, by outcome", "outcome")
        mesh.handle(SECRET_PROTOCOL, self._receive)

    # ---- this machine's copies ---------------------------------------------------------------

    def load(self) -> None:
        """The boxes kept by an earlier run (sealed to this machine; checked when opened)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("*.cbor"):
            try:
                data = cbor.loads(path.read_bytes())
                self._boxes[(str(data["secret"]), str(data["digest"]))] = bytes(data["box"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("secret copy %s unusable (%s); removed", path, e)
                path.unlink(missing_ok=True)

    def _path(self, secret_id: str, digest: str) -> Path:
        name = hashlib.sha256(secret_id.encode()).hexdigest()[:24]
        return self.directory / f"{name}-{digest[:16]}.cbor"

    def _keep(self, secret_id: str, digest: str, box: bytes) -> None:
        self._boxes[(secret_id, digest)] = box
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self._path(secret_id, digest), cbor2.dumps(
            {"secret": secret_id, "digest": digest, "box": box}), mode=0o600)

    def forget_unused(self, used: set[str]) -> None:
        """Drop the copies of Secrets no pod here uses (ids), and superseded digests."""
        for (sid, digest) in list(self._boxes):
            split = _split(sid)
            current = self.secrets.secret(*split) if split else None
            if sid not in used or current is None or (
                    current.digest != digest and (sid, current.digest) in self._boxes):
                del self._boxes[(sid, digest)]
                self._path(sid, digest).unlink(missing_ok=True)

    def local(self, spec: SecretSpec) -> Opened | None:
        """The values of a copy here, if there is one of the current digest."""
        box = self._boxes.get((spec.object_id, spec.digest))
        if box is None:
            return None
        try:
            return open_box(box, self.key.signing_key, spec)
        except SealError as e:
            log.error("secret copy of %s unusable: %s", spec.object_id, e)
            self._boxes.pop((spec.object_id, spec.digest), None)
            return None

    async def opened(self, spec: SecretSpec, task_id: str, wait_s: float = WAIT_S) -> Opened:
        """The values, from a copy here or asked for while the deploy of `task_id` waits."""
        found = self.local(spec)
        if found is not None:
            return found
        wanted = (spec.object_id, spec.digest)
        event, waiters = self._waiting.get(wanted, (trio.Event(), 0))
        self._waiting[wanted] = (event, waiters + 1)
        body = {"machine": self.machine, "secret": spec.object_id, "digest": spec.digest,
                "task_id": task_id}
        try:
            with trio.move_on_after(wait_s):
                while not event.is_set():
                    await self.mesh.publish(TOPIC_EVENTS, wire.seal(
                        self.key, SECRET_WANT.name, body, time.time()))
                    with trio.move_on_after(WANT_EVERY_S):
                        await event.wait()
        finally:
            current = self._waiting.get(wanted)
            if current is not None and current[0] is event:
                if current[1] <= 1:
                    del self._waiting[wanted]  # nobody waits any more: copies are not wanted
                else:
                    self._waiting[wanted] = (event, current[1] - 1)
        found = self.local(spec)
        if found is None:
            raise UserError(f"no copy of {spec.object_id} reached this machine in "
                            f"{wait_s:.0f} s: no machine holding it answered; apply the Secret "
                            "again (beemesh apply -f FILE seals it for the machines waiting)")
        return found

    async def _receive(self, stream: Any) -> None:
        try:
            with trio.fail_after(SEND_TIMEOUT_S):
                data = cbor.loads(await read_request(stream, MAX_BOX_BYTES + 1024))
            sid, digest, box = data["secret"], data["digest"], data["box"]
            event = self._waiting.get((sid, digest), (None, 0))[0]
            split = _split(sid) if isinstance(sid, str) else None
            spec = self.secrets.secret(*split) if split else None
            if event is None or spec is None or spec.digest != digest \
                    or not isinstance(box, bytes):
                return  # not wanted (any more): nothing to keep
            open_box(box, self.key.signing_key, spec)
            self._keep(sid, digest, box)
            event.set()
        except (SealError, UserError, ValueError, KeyError, TypeError, trio.TooSlowError) as e:
            log.warning("a secret copy was refused: %s", e)
        finally:
            with trio.move_on_after(1):
                await stream.close()

    # ---- other machines' wants -----------------------------------------------------------------

    async def run(self) -> None:
        self.load()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                await trio.sleep(TIDY_EVERY_S)
                self.forget_unused(self.used())

    def on_want(self, env: wire.Envelope) -> None:
        """A verified SecretWant: answered if this machine holds a copy and may pass it on;
        kept for a sealing `apply` if it may be answered at all."""
        b = env.body
        want = Want(b["machine"], env.sender, b["secret"], b["digest"], b["task_id"],
                    time.time())
        if want.machine == self.machine:
            return
        split = _split(want.secret)
        spec = self.secrets.secret(*split) if split else None
        why = want_refusal(want, spec, self.tasks.task_spec(want.task_id),
                           self.tasks.picked(want.task_id))
        if why is not None or spec is None:
            self.metrics.inc("secret_copies", "refused")
            log.debug("secret want of %s for %s not answered: %s", want.machine, want.secret,
                      why)
            return
        self._remember(want)
        opened = self.local(spec)
        if opened is not None and self._nursery is not None:
            self._nursery.start_soon(self.send, want, seal(opened, want.public_key))

    def _remember(self, want: Want) -> None:
        now = want.at
        for k in [k for k, w in self._wants.items() if now - w.at > WANTS_KEPT_S]:
            del self._wants[k]
        if len(self._wants) < MAX_WANTS:
            self._wants[(want.secret, want.digest, want.machine)] = want

    def want(self, secret_id: str, digest: str, machine: str) -> Want | None:
        return self._wants.get((secret_id, digest, machine))

    def wants(self, secret_ids: set[str]) -> list[Want]:
        """Verified wants of the last WANTS_KEPT_S for these Secrets (`/v1/secret-wants`)."""
        now = time.time()
        return [w for w in self._wants.values()
                if w.secret in secret_ids and now - w.at <= WANTS_KEPT_S]

    async def send(self, want: Want, box: bytes) -> None:
        """Hand a sealed copy to the machine that wants it."""
        if peer_id(want.public_key) != want.machine:
            return
        try:
            with trio.fail_after(SEND_TIMEOUT_S):
                stream = await self.mesh.open_stream(want.machine, SECRET_PROTOCOL)
                try:
                    await send_request(stream, cbor2.dumps(
                        {"secret": want.secret, "digest": want.digest, "box": box}))
                finally:
                    with trio.move_on_after(1):
                        await stream.close()
            self.metrics.inc("secret_copies", "sealed")
            self.events.add(time.time(), "SecretSealed", f"{want.secret} sealed for "
                            f"{want.machine} (task {want.task_id})", machine=self.machine)
        except Exception as e:  # unreachable or gone: it asks again
            log.debug("secret copy for %s not delivered: %s", want.machine, e)
