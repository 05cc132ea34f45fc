"""A replica's environment and config files from the ConfigMaps and Secrets it uses (sans-IO).

`resolve` takes the pod's spec and a lookup of object values (None: not there) and returns,
per container, the variables its env and envFrom give (in the order `manifest.config` states),
and per configMap/secret volume the files to write. What cannot be honoured is a `Missing`
naming the object or key and the fix: the deploy fails with that reason, as Kubernetes leaves
such a pod in CreateContainerConfigError. An `optional` reference to a missing object or key is
skipped. Variables must be UTF-8 text: a key whose value is not is refused for `valueFrom` and
skipped for `envFrom`, as are keys that are not valid variable names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from beemesh.manifest import WorkloadSpec
from beemesh.manifest.config import SECRET

Lookup = Callable[[str, str], dict[str, bytes] | None]  # (source, name) -> values
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class Missing(Exception):
    """A reference that cannot be honoured; str() is one line with the fix."""


@dataclass(frozen=True)
class Resolved:
    env: dict[str, tuple[tuple[str, str], ...]]  # container -> its variables, final order
    files: dict[str, tuple[tuple[str, bytes, int], ...]]  # volume -> (relative path, bytes, mode)
    skipped: tuple[str, ...] = ()  # envFrom keys left out, and why (for an event)


def _what(source: str, namespace: str, name: str) -> str:
    return f"{source} {namespace}/{name}"


def _fix(source: str) -> str:
    return ("apply it (beemesh apply -f FILE), or mark the reference optional: true"
            if source != SECRET else "apply the Secret (beemesh apply -f FILE), or mark the "
            "reference optional: true")


def resolve(spec: WorkloadSpec, lookup: Lookup) -> Resolved:
    ns = spec.namespace
    cache: dict[tuple[str, str], dict[str, bytes] | None] = {}

    def values(source: str, name: str, optional: bool) -> dict[str, bytes] | None:
        if (source, name) not in cache:
            cache[(source, name)] = lookup(source, name)
        found = cache[(source, name)]
        if found is None and not optional:
            raise Missing(f"{_what(source, ns, name)} not found; {_fix(source)}")
        return found

    env: dict[str, tuple[tuple[str, str], ...]] = {}
    skipped: list[str] = []
    for c in spec.containers:
        out: dict[str, str] = {}
        for e in c.env_from:
            found = values(e.source, e.name, e.optional) or {}
            for key, raw in sorted(found.items()):
                name = e.prefix + key
                text = _text(raw)
                if not _ENV_NAME.match(name) or text is None:
                    skipped.append(f"{_what(e.source, ns, e.name)} key {key}: "
                                   f"{'not a variable name' if text is not None else 'not UTF-8'}")
                    continue
                out[name] = text
        out.update(c.env)
        for r in c.env_refs:
            found = values(r.source, r.name, r.optional)
            if found is None or r.key not in found:
                if r.optional:
                    continue
                raise Missing(f"{_what(r.source, ns, r.name)} has no key {r.key} (variable "
                              f"{r.env} of container {c.name}); add the key or fix the "
                              "reference")
            text = _text(found[r.key])
            if text is None:
                raise Missing(f"{_what(r.source, ns, r.name)} key {r.key} is not UTF-8 text, "
                              f"so it cannot be variable {r.env}; mount it as a file instead")
            out[r.env] = text
        env[c.name] = tuple(out.items())
    files: dict[str, tuple[tuple[str, bytes, int], ...]] = {}
    for v in spec.volumes:
        f = v.files
        if f is None:
            continue
        found = values(f.source, f.name, f.optional) or {}
        if f.items:
            for key, _, _ in f.items:
                if key not in found and not f.optional:
                    raise Missing(f"{_what(f.source, ns, f.name)} has no key {key} (volume "
                                  f"{v.name}); add the key or fix the items")
            chosen = [(path, found[key], f.default_mode if mode is None else mode)
                      for key, path, mode in f.items if key in found]
        else:
            chosen = [(key, raw, f.default_mode) for key, raw in sorted(found.items())]
        files[v.name] = tuple(chosen)
    return Resolved(env, files, tuple(skipped))


def _text(raw: bytes) -> str | None:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text
