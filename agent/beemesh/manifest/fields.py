"""Walking one Kubernetes document: which fields are used, ignored with a warning, or refused.

An unsupported field set to its empty or "off" value (null, {}, [], "", false) changes nothing,
so it is accepted silently; anything else is refused with an error naming its full path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from beemesh.manifest.checks import Fail, Where, describe, join

# Fields ignored with a warning: ignoring them cannot change what the containers see.
NOT_YET = "not applied by beemesh yet; ignored"
READ_ONLY = "set by a Kubernetes cluster, meaningless here; ignored"
# Better fixes than "remove it" for fields people commonly reach for.
UNSUPPORTED_FIX = {
    "matchExpressions": "select with matchLabels instead",
    "grpc": "use httpGet, tcpSocket or exec instead",
    "host": "remove it (probes always connect to the pod's own IP)",
    "hostNetwork": "remove it (there is no agent-side policy yet to allow the machine's network "
                   "namespace)",
    "hostPID": "remove it (there is no agent-side policy yet to allow the machine's PID "
               "namespace)",
    "hostIPC": "remove it (there is no agent-side policy yet to allow the machine's IPC "
               "namespace)",
}


def _is_empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


class Doc:
    """State while parsing one document: where errors point, warnings collected so far."""

    def __init__(self, where: Where) -> None:
        self.fail: Fail = where.fail
        self.warnings: list[str] = []

    def mapping(self, value: Any, path: str, *, required: bool = False) -> dict[Any, Any]:
        """The mapping at path; {} for a missing optional one."""
        if value is None:
            if required:
                self.fail(path, "missing", f"add {path}")
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {describe(value)}", "check the indentation")
        return value

    def check_fields(self, obj: dict[Any, Any], path: str, allowed: Iterable[str],
                     warn: dict[str, str] | None = None) -> None:
        """Reject unknown fields by full path; collect warnings for the safely ignored ones."""
        allowed = set(allowed)
        for key, value in obj.items():
            if key in allowed:
                continue
            field = join(path, key)
            if warn and key in warn:
                if not _is_empty(value):
                    self.warnings.append(f"{field}: {warn[key]}")
                continue
            if _is_empty(value):
                continue
            self.fail(field, "not supported by beemesh",
                      UNSUPPORTED_FIX.get(str(key), "remove it"))

    def items(self, value: Any, path: str, cap: int, what: str, fix: str) -> list[Any]:
        """The list at path, of at most `cap` `what`; [] when absent."""
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > cap:
            self.fail(path, f"must be a list of at most {cap} {what}, got {describe(value)}", fix)
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        """A list of strings at path; () when absent."""
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, f"must be a list of strings, got {describe(value)}",
                      'write it as ["a", "b"] or one "- item" per line')
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{path}[{i}]", f"must be a string, got {describe(item)}",
                          "quote it")
        return tuple(value)
