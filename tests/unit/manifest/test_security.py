"""securityContext (beemesh.manifest.security): what a manifest may change, and what it may not."""

from __future__ import annotations

from typing import Any

import pytest
from manifest_testlib import (
    C0,
    DEPLOYMENT,
    container,
    field_error,
    mutated,
    parse_one,
    template_spec,
)

from beemesh.manifest import ManifestError, SecuritySpec, WorkloadSpec
from beemesh.manifest.security import ADDABLE_CAPABILITIES, DEFAULT_CAPABILITIES

TS = "spec.template.spec"


def secured(pod: dict[str, Any] | None = None, ctr: dict[str, Any] | None = None,
            volumes: list[Any] | None = None, **pod_fields: Any) -> dict[str, Any]:
    """DEPLOYMENT with a pod and/or container securityContext (and other pod spec fields)."""
    def change(d: dict[str, Any]) -> None:
        if pod is not None:
            template_spec(d)["securityContext"] = pod
        if ctr is not None:
            container(d)["securityContext"] = ctr
        if volumes is not None:
            template_spec(d)["volumes"] = volumes
        template_spec(d).update(pod_fields)

    return mutated(DEPLOYMENT, change)


def security(pod: dict[str, Any] | None = None,
             ctr: dict[str, Any] | None = None) -> SecuritySpec:
    return parse_one(secured(pod, ctr)).containers[0].security


def test_no_security_context_is_the_hardened_default() -> None:
    s = security()
    assert s == SecuritySpec()
    assert s.capabilities == tuple(sorted(DEFAULT_CAPABILITIES))
    assert "NET_RAW" not in s.capabilities and "SYS_ADMIN" not in s.capabilities


def test_the_container_overrides_the_pod_field_by_field() -> None:
    s = security({"runAsUser": 1000, "runAsGroup": 2000, "runAsNonRoot": True},
                 {"runAsUser": 1001})
    assert (s.run_as_user, s.run_as_group, s.run_as_non_root) == (1001, 2000, True)


def test_capabilities_are_normalised_and_resolved() -> None:
    s = security(ctr={"capabilities": {"add": ["CAP_NET_RAW", "NET_RAW"],
                                       "drop": ["SETUID", "CAP_SETGID"]},
                      "readOnlyRootFilesystem": True})
    assert (s.cap_add, s.cap_drop) == (("NET_RAW",), ("SETGID", "SETUID"))
    assert s.read_only_root_filesystem
    assert s.capabilities == ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE",
                              "NET_RAW")


def test_drop_all_keeps_only_what_is_added() -> None:
    s = security(ctr={"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})
    assert s.capabilities == ("NET_BIND_SERVICE",)


def test_runtime_default_seccomp_and_false_flags_are_accepted() -> None:
    s = security({"seccompProfile": {"type": "RuntimeDefault"}},
                 {"privileged": False, "allowPrivilegeEscalation": False,
                  "seccompProfile": {"type": "RuntimeDefault"}})
    assert s == SecuritySpec()


REFUSED = [
    ("privileged", secured(ctr={"privileged": True}),
     (f"{C0}.securityContext.privileged: privileged containers are refused",)),
    ("privilege escalation", secured(ctr={"allowPrivilegeEscalation": True}),
     (f"{C0}.securityContext.allowPrivilegeEscalation: true is refused",)),
    ("SYS_ADMIN", secured(ctr={"capabilities": {"add": ["SYS_ADMIN"]}}),
     (f"{C0}.securityContext.capabilities.add[0]: SYS_ADMIN cannot be added",
      "close to root")),
    ("add ALL", secured(ctr={"capabilities": {"add": ["ALL"]}}),
     ("capabilities.add[0]: ALL cannot be added",)),
    ("lower case", secured(ctr={"capabilities": {"drop": ["net_raw"]}}),
     ("capabilities.drop[0]: 'net_raw' is not a Linux capability", "capitals: NET_RAW")),
    ("unknown", secured(ctr={"capabilities": {"drop": ["FLY"]}}),
     ("'FLY' is not a Linux capability",)),
    ("add and drop", secured(ctr={"capabilities": {"add": ["NET_RAW"], "drop": ["NET_RAW"]}}),
     ("capabilities.add[0]: NET_RAW is both added and dropped",)),
    ("not a list", secured(ctr={"capabilities": {"drop": "ALL"}}),
     ("capabilities.drop: must be a list",)),
    ("non-root without a user", secured({"runAsNonRoot": True}),
     (f"{TS}.securityContext.runAsNonRoot: runAsNonRoot needs an explicit runAsUser",)),
    ("non-root as root", secured({"runAsNonRoot": True}, {"runAsUser": 0}),
     (f"{C0}.securityContext.runAsUser: runAsUser 0 is root but runAsNonRoot is true",)),
    ("group without a user", secured(ctr={"runAsGroup": 10}),
     (f"{C0}.securityContext.runAsGroup: runAsGroup needs a runAsUser",)),
    ("negative uid", secured(ctr={"runAsUser": -1}),
     ("runAsUser: must be a whole number from 0 to 2147483647",)),
    ("huge uid", secured(ctr={"runAsUser": 2**31}), ("runAsUser: must be a whole number",)),
    ("string flag", secured(ctr={"readOnlyRootFilesystem": "yes"}),
     ("readOnlyRootFilesystem: must be true or false",)),
    ("seccomp unconfined", secured(ctr={"seccompProfile": {"type": "Unconfined"}}),
     ("seccompProfile.type: every container runs under Podman's default seccomp profile",)),
    ("seccomp localhost", secured({"seccompProfile": {"type": "Localhost"}}),
     (f"{TS}.securityContext.seccompProfile.type: custom seccomp profiles",)),
    ("unknown field", secured(ctr={"procMount": "Unmasked"}),
     (f"{C0}.securityContext.procMount: not supported",)),
    ("hostPath", secured(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
     (f"{TS}.volumes[0].hostPath.path: the machine's whole file system",)),
    ("hostNetwork", secured(hostNetwork=True), (f"{TS}.hostNetwork: not supported",
                                                "network namespace")),
    ("hostPID", secured(hostPID=True), (f"{TS}.hostPID: not supported", "PID namespace")),
    ("hostIPC", secured(hostIPC=True), (f"{TS}.hostIPC: not supported", "IPC namespace")),
]


@pytest.mark.parametrize(("doc", "fragments"), [(d, f) for _, d, f in REFUSED],
                         ids=[case for case, _, _ in REFUSED])
def test_refused_with_the_field_and_a_fix(doc: dict[str, Any], fragments: tuple[str, ...]
                                          ) -> None:
    field_error(doc, *fragments)


def test_every_addable_capability_is_accepted() -> None:
    s = security(ctr={"capabilities": {"add": list(ADDABLE_CAPABILITIES)}})
    assert s.cap_add == ADDABLE_CAPABILITIES


def test_the_wire_form_round_trips_and_omits_the_default() -> None:
    plain = parse_one(DEPLOYMENT)
    assert "security" not in plain.to_dict()["containers"][0]  # same form as before it existed
    spec = parse_one(secured({"runAsUser": 1000, "runAsNonRoot": True},
                             {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                              "readOnlyRootFilesystem": True}))
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
    assert WorkloadSpec.from_dict(plain.to_dict()) == plain


@pytest.mark.parametrize(("change", "fragment"), [
    ({"cap_add": ["SYS_ADMIN"]}, "containers[0].security.cap_add[0]: SYS_ADMIN cannot be added"),
    ({"run_as_non_root": True, "run_as_user": 0}, "runAsUser 0 is root"),
    ({"run_as_user": -5}, "security.run_as_user: must be a whole number"),
    ({"read_only_root_filesystem": 1}, "security.read_only_root_filesystem: expected true"),
    ({"privileged": True}, "security.privileged: unexpected field"),
])
def test_the_wire_form_is_checked_like_a_manifest(change: dict[str, Any], fragment: str) -> None:
    """A forged Task cannot carry what a manifest could not: from_dict re-checks everything."""
    wire = parse_one(secured(ctr={"runAsUser": 1000})).to_dict()
    wire["containers"][0]["security"].update(change)
    with pytest.raises(ManifestError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        WorkloadSpec.from_dict(wire)
