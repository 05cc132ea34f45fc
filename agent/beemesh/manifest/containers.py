"""A pod spec's containers from Kubernetes YAML: image, command, env, ports, resources, probes
and securityContext (walked in ``beemesh.manifest.security``).

Part of the walker in ``beemesh.manifest.kube``; every error names the field's full path.
"""

from __future__ import annotations

from typing import Any

from beemesh.manifest.checks import (
    MAX_LABEL,
    check_limit,
    check_success_threshold,
    describe,
    dns_label,
    env_name,
    http_header,
    http_request_path,
    join,
    port_number,
    port_protocol,
    probe_int,
)
from beemesh.manifest.fields import NOT_YET, Doc
from beemesh.manifest.model import (
    PROBE_FIELDS,
    PROBE_TIMING,
    PULL_POLICIES,
    ContainerSpec,
    PortSpec,
    ProbeSpec,
)
from beemesh.manifest.quantities import cpu_milli, memory_bytes, show_cpu, show_memory
from beemesh.manifest.references import KeyRef, parse_env_from, parse_key_ref
from beemesh.manifest.security import Inherited, parse_container_security
from beemesh.manifest.volumes import parse_mounts

_PROBE_HANDLERS = {"httpGet": "http", "tcpSocket": "tcp", "exec": "exec"}


def parse_container(d: Doc, raw: Any, path: str, pod_security: Inherited) -> ContainerSpec:
    """One container of a pod spec; requests default to limits, as Kubernetes does.

    pod_security: the pod's securityContext fields, which the container's own override.
    """
    c = d.mapping(raw, path, required=True)
    d.check_fields(c, path, ("name", "image", "imagePullPolicy", "command", "args", "env",
                             "envFrom", "ports", "resources", "securityContext", "volumeMounts",
                             "lifecycle",
                             *(key for key, _ in PROBE_FIELDS)))
    name = dns_label(c.get("name"), f"{path}.name", "container name", MAX_LABEL, d.fail)
    image = c.get("image")
    image_fix = "set it to an image reference like docker.io/library/nginx:1.27"
    if image is None:
        d.fail(f"{path}.image", "missing", image_fix)
    if not isinstance(image, str):
        d.fail(f"{path}.image", f"must be a string, got {describe(image)}", image_fix)
    if not image.strip():
        d.fail(f"{path}.image", "must not be empty", image_fix)
    if image != image.strip() or any(ch.isspace() for ch in image):
        d.fail(f"{path}.image", f"{image!r} contains whitespace", "remove the spaces")

    policy = c.get("imagePullPolicy") or ""
    if policy and policy not in PULL_POLICIES:
        d.fail(f"{path}.imagePullPolicy", f"{describe(policy)} is not a pull policy",
               f"use one of {', '.join(PULL_POLICIES)}")

    env, env_refs = _parse_env(d, c.get("env"), f"{path}.env")
    raw_ports = c.get("ports")
    if raw_ports is not None and not isinstance(raw_ports, list):
        d.fail(f"{path}.ports", f"must be a list, got {describe(raw_ports)}",
               "write one '- containerPort: N' entry per port")
    ports = tuple(
        _parse_port(d, item, f"{path}.ports[{i}]") for i, item in enumerate(raw_ports or ())
    )

    res_path = f"{path}.resources"
    resources = d.mapping(c.get("resources"), res_path)
    d.check_fields(resources, res_path, ("requests", "limits"))
    amounts: dict[str, dict[str, int]] = {}
    for section in ("requests", "limits"):
        sec_path = f"{res_path}.{section}"
        sec = d.mapping(resources.get(section), sec_path)
        for key in sec:
            if key not in ("cpu", "memory"):
                d.fail(join(sec_path, key), "not supported by beemesh",
                       "remove it (only cpu and memory can be requested)")
        amounts[section] = {}
        if sec.get("cpu") is not None:
            amounts[section]["cpu"] = cpu_milli(sec["cpu"], f"{sec_path}.cpu", d.fail)
        if sec.get("memory") is not None:
            amounts[section]["memory"] = memory_bytes(sec["memory"], f"{sec_path}.memory", d.fail)
    requests, limits = amounts["requests"], amounts["limits"]
    cpu_limit, mem_limit = limits.get("cpu"), limits.get("memory")
    cpu_request = requests.get("cpu", cpu_limit or 0)
    mem_request = requests.get("memory", mem_limit or 0)
    check_limit(cpu_request, cpu_limit, f"{res_path}.limits.cpu", "cpu", show_cpu, d.fail)
    check_limit(mem_request, mem_limit, f"{res_path}.limits.memory", "memory", show_memory,
                d.fail)
    probes = {
        which: _parse_probe(d, c.get(key), f"{path}.{key}", which, ports)
        for key, which in PROBE_FIELDS
    }
    return ContainerSpec(
        name=name, image=image, image_pull_policy=policy,
        command=d.strings(c.get("command"), f"{path}.command"),
        args=d.strings(c.get("args"), f"{path}.args"),
        env=env, env_refs=env_refs,
        env_from=parse_env_from(d, c.get("envFrom"), f"{path}.envFrom"), ports=ports,
        cpu_request_milli=cpu_request, memory_request_bytes=mem_request,
        cpu_limit_milli=cpu_limit, memory_limit_bytes=mem_limit,
        startup=probes["startup"], readiness=probes["readiness"], liveness=probes["liveness"],
        security=parse_container_security(d, c.get("securityContext"), f"{path}.securityContext",
                                          pod_security),
        mounts=parse_mounts(d, c.get("volumeMounts"), f"{path}.volumeMounts"),
        **_parse_lifecycle(d, c.get("lifecycle"), f"{path}.lifecycle"),
    )


def _parse_lifecycle(d: Doc, raw: Any, path: str) -> dict[str, tuple[str, ...]]:
    """lifecycle.postStart / preStop: an exec command each (httpGet and sleep are refused)."""
    hooks = d.mapping(raw, path)
    d.check_fields(hooks, path, ("postStart", "preStop"))
    out = {}
    for key, attr in (("postStart", "post_start"), ("preStop", "pre_stop")):
        if hooks.get(key) is None:
            continue
        hook = d.mapping(hooks[key], f"{path}.{key}")
        d.check_fields(hook, f"{path}.{key}", ("exec",))
        handler = d.mapping(hook.get("exec"), f"{path}.{key}.exec", required=True)
        d.check_fields(handler, f"{path}.{key}.exec", ("command",))
        command = d.strings(handler.get("command"), f"{path}.{key}.exec.command")
        if not command:
            d.fail(f"{path}.{key}.exec.command", "must list the program to run",
                   'write e.g. ["/bin/sh", "-c", "..."]')
        out[attr] = command
    return out


def _parse_probe(d: Doc, raw: Any, path: str, which: str,
                 ports: tuple[PortSpec, ...]) -> ProbeSpec | None:
    """One probe with Kubernetes defaults applied; 0 means "default" there too."""
    if raw is None:
        return None
    p = d.mapping(raw, path)
    d.check_fields(p, path, (*_PROBE_HANDLERS, *(key for key, *_ in PROBE_TIMING)),
                   {"terminationGracePeriodSeconds": NOT_YET})
    handlers = [key for key in _PROBE_HANDLERS if p.get(key) is not None]
    if len(handlers) != 1:
        problem = ("has no handler" if not handlers
                   else f"sets both {handlers[0]} and {handlers[1]}")
        d.fail(path, problem, "give it exactly one of httpGet, tcpSocket or exec")
    handler = handlers[0]
    h_path = f"{path}.{handler}"
    h = d.mapping(p[handler], h_path)
    port, http_path, headers, command = None, "/", (), ()
    if handler == "exec":
        d.check_fields(h, h_path, ("command",))
        command = d.strings(h.get("command"), f"{h_path}.command")
        if not command:
            d.fail(f"{h_path}.command", "must list the program to run",
                   'write it as ["cat", "/tmp/healthy"]; it passes when the program exits 0')
    else:
        d.check_fields(h, h_path, ("port", "path", "httpHeaders", "scheme")
                       if handler == "httpGet" else ("port",))
        port = _probe_port(d, h.get("port"), f"{h_path}.port", ports)
    if handler == "httpGet":
        if h.get("path") not in (None, ""):  # the API server defaults an empty path to "/"
            http_path = http_request_path(h["path"], f"{h_path}.path", d.fail)
        headers = _parse_headers(d, h.get("httpHeaders"), f"{h_path}.httpHeaders")
        scheme = h.get("scheme")
        if scheme == "HTTPS":
            d.fail(f"{h_path}.scheme", "HTTPS probes are not supported (beemesh would not "
                   "verify the certificate)", "probe a plain HTTP port, or use tcpSocket")
        if scheme not in (None, "HTTP"):
            d.fail(f"{h_path}.scheme", f"must be HTTP, got {describe(scheme)}", "use HTTP")
    timing: dict[str, int] = {}
    for key, attr, default, _ in PROBE_TIMING:
        value = p.get(key)
        timing[attr] = default if value is None else (
            probe_int(value, f"{path}.{key}", 0, d.fail) or default)
    probe = ProbeSpec(action=_PROBE_HANDLERS[handler], port=port, path=http_path,
                      headers=headers, command=command, **timing)
    check_success_threshold(probe.success_threshold, which, f"{path}.successThreshold", d.fail)
    return probe


def _probe_port(d: Doc, value: Any, path: str, ports: tuple[PortSpec, ...]) -> int:
    """A port number, or a name looked up in the same container's ports, as Kubernetes does."""
    if value is None:
        d.fail(path, "missing", "set the container port to probe, as a number or a port name")
    if isinstance(value, str):
        for port in ports:
            if port.name == value:
                return port.container_port
        names = [port.name for port in ports if port.name]
        fix = (f"write the number without quotes: port: {value}" if value.isdigit()
               else f"use a number or one of this container's port names: {', '.join(names)}"
               if names else "use a number, or name the port under this container's ports")
        d.fail(path, f"no port named {value!r} in this container", fix)
    return port_number(value, path, "port", d.fail)


def _parse_headers(d: Doc, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        d.fail(path, f"must be a list, got {describe(raw)}",
               "write one '- name: X' / 'value: \"...\"' entry per header")
    headers = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        entry = d.mapping(item, item_path, required=True)
        d.check_fields(entry, item_path, ("name", "value"))
        headers.append(http_header(entry.get("name"), entry.get("value"), f"{item_path}.name",
                                   f"{item_path}.value", d.fail))
    return tuple(headers)


def _parse_env(d: Doc, raw: Any, path: str) -> tuple[tuple[tuple[str, str], ...],
                                                    tuple[KeyRef, ...]]:
    """(literal values, valueFrom references) of a container's env."""
    if raw is None:
        return (), ()
    if not isinstance(raw, list):
        d.fail(path, f"must be a list, got {describe(raw)}",
               "write one '- name: X' / 'value: \"...\"' entry per variable")
    env, refs = [], []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        entry = d.mapping(item, item_path, required=True)
        d.check_fields(entry, item_path, ("name", "value", "valueFrom"))
        name = env_name(entry.get("name"), f"{item_path}.name", d.fail)
        if entry.get("valueFrom") is not None:
            if entry.get("value"):
                d.fail(item_path, "has both value and valueFrom", "keep one")
            refs.append(parse_key_ref(d, name, entry["valueFrom"], f"{item_path}.valueFrom"))
            continue
        value = entry.get("value")
        value = "" if value is None else value
        if not isinstance(value, str):
            shown = str(value).lower() if isinstance(value, bool) else value
            d.fail(f"{item_path}.value", f"must be a string, got {describe(value)}",
                   f'quote it: value: "{shown}"')
        env.append((name, value))
    return tuple(env), tuple(refs)


def _parse_port(d: Doc, raw: Any, path: str) -> PortSpec:
    port = d.mapping(raw, path, required=True)
    d.check_fields(port, path, ("containerPort", "hostPort", "protocol", "name"))
    if port.get("containerPort") is None:
        d.fail(f"{path}.containerPort", "missing", "add the port the container listens on")
    container_port = port_number(port["containerPort"], f"{path}.containerPort",
                                 "containerPort", d.fail)
    host = port.get("hostPort")
    host_port = None
    if host is not None and not (host == 0 and isinstance(host, int)):  # 0: unset, as in k8s
        host_port = port_number(host, f"{path}.hostPort", "hostPort", d.fail)
    protocol = port.get("protocol")
    protocol = "TCP" if protocol is None else port_protocol(protocol, f"{path}.protocol", d.fail)
    name = port.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        d.fail(f"{path}.name", f"must be a non-empty string, got {describe(name)}",
               "quote it or remove it")
    return PortSpec(container_port=container_port, host_port=host_port, protocol=protocol,
                    name=name)
