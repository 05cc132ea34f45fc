"""A pod's ConfigMaps and Secrets made ready for its deploy (trio, thin): the ConfigMaps from
the store, each Secret's values from a sealed copy here or asked for (`podconfig.holding`),
references resolved (`podconfig.resolve`), volume files written to the tmpfs
(`podconfig.writing`). A reference that cannot be honoured fails the deploy with its reason."""

from __future__ import annotations

from collections.abc import Iterable

import trio

from beemesh.errors import UserError
from beemesh.manifest import WorkloadSpec
from beemesh.manifest.config import CONFIG_MAP, SECRET, object_id
from beemesh.podconfig.holding import SecretCopies
from beemesh.podconfig.resolve import Missing, resolve
from beemesh.podconfig.writing import PodFiles
from beemesh.runtime import PodConfig
from beemesh.workloads.store import WorkloadStore


def secrets_used(specs: Iterable[WorkloadSpec]) -> set[str]:
    """The ids of the Secrets these workloads' pods read."""
    return {object_id(SECRET, s.namespace, name) for s in specs
            for source, name in s.config_refs() if source == SECRET}


class PodConfigs:
    def __init__(self, *, store: WorkloadStore, copies: SecretCopies, files: PodFiles) -> None:
        self.store = store
        self.copies = copies
        self.files = files

    async def prepare(self, spec: WorkloadSpec, ordinal: int, task_id: str) -> PodConfig | None:
        """The pod's variables and written files; UserError with the reason if it cannot
        start (a missing object or key, no copy of a Secret, no tmpfs)."""
        refs = spec.config_refs()
        if not refs:
            return None
        ns = spec.namespace
        values: dict[tuple[str, str], dict[str, bytes]] = {}
        for source, name in sorted(refs):
            if source == CONFIG_MAP:
                cm = self.store.config_map(ns, name)
                if cm is not None:
                    values[(source, name)] = cm.values()
            else:
                secret = self.store.secret(ns, name)
                if secret is not None:
                    values[(source, name)] = (await self.copies.opened(secret, task_id)).values
        try:
            resolved = resolve(spec, lambda source, name: values.get((source, name)))
        except Missing as e:
            raise UserError(str(e)) from None
        pod = spec.pod_name(ordinal)
        dirs = await trio.to_thread.run_sync(self.files.write, pod, resolved.files)
        return PodConfig(env=tuple(resolved.env.items()), dirs=tuple(dirs.items()))

    def release(self, pod: str) -> None:
        self.files.remove(pod)

    def tidy(self, keep: set[str]) -> None:
        """Remove the files of pods that are neither here nor being deployed."""
        for pod in self.files.pods():
            if pod not in keep:
                self.files.remove(pod)
