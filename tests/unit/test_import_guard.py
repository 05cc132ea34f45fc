"""py-libp2p's unused parts stay out of memory (beemesh/import_guard.py).

The first test is the one that fails when a forbidden module gets imported: a fresh
interpreter loads everything the agent and the work plane load, runs two hosts that connect,
open a stream and gossip, and then no module of import_guard.UNUSED or REFUSED may have been
loaded for real, nor importlib.metadata or PyYAML, nor the libp2p package's own __init__
run."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from beemesh import import_guard

RUN_HOSTS = r"""
import json, sys
import beemesh  # first, as `python -m beemesh` and the .pyz do: the guard before trio
import trio
import beemesh.cli, beemesh.machine.agent, beemesh.runtime.podman, beemesh.workplane.process
from beemesh import import_guard
from beemesh.identity import KeyPair
from beemesh.mesh import sender_records
from beemesh.mesh.host import HostSettings, MeshHost

def host():
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="ab" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/guard-test",
                                 dht_validators={}))

async def main():
    a, b = host(), host()
    got = []
    async def echo(stream):
        await stream.write(await stream.read(5))
        await stream.close()
    async with a.running(), b.running():
        a.handle("/guard-test/echo/1", echo)
        sub = await a.subscribe("guard-test", lambda *_: True)
        await b.subscribe("guard-test", lambda *_: True)
        await b.connect(a.addrs()[0])
        stream = await b.open_stream(a.peer_id.to_base58(), "/guard-test/echo/1")
        await stream.write(b"hello")
        got.append((await stream.read(5)).decode())
        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                async def publish():
                    while True:
                        await b.publish("guard-test", b"gossip")
                        await trio.sleep(0.5)
                n.start_soon(publish)
                got.append((await sub.get()).data.decode())
                n.cancel_scope.cancel()
    return got

got = trio.run(main)
print(json.dumps({"echo": got, "loaded": import_guard.loaded(), "yaml": "yaml" in sys.modules,
                  "cryptography": sorted(m for m in sys.modules
                                         if m.startswith(("noise", "cryptography.hazmat"))),
                  "records_skipped": sender_records.install().skipped,
                  "libp2p_init_ran": hasattr(sys.modules["libp2p"], "new_host"),
                  "relay_init_ran": hasattr(sys.modules["libp2p.relay"], "CircuitV2Protocol"),
                  "openssl": sorted({line.split()[-1] for line in open("/proc/self/maps")
                                     if "/libcrypto" in line or "/libssl" in line}),
                  "modules": len(sys.modules)}))
"""


def test_agent_and_work_plane_code_runs_hosts_without_loading_the_unused_parts() -> None:
    out = subprocess.run([sys.executable, "-c", RUN_HOSTS], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["echo"] == ["hello", "gossip"]
    assert result["loaded"] == [], f"loaded for real: {result['loaded']}"
    assert result["yaml"] is False, "only the CLI reads YAML"
    # Noise on libsodium (mesh/noise.py); only the work plane's data channel loads cryptography
    # (its bare package is imported, for the stand-in cryptography.x509)
    assert result["cryptography"] == [], "cryptography's Rust extension is 11 MB per process"
    # the peers' signed records rode on every RPC; each was checked once (sender_records.py)
    assert result["records_skipped"] > 0
    assert result["openssl"] == [], "Noise and hashlib need no OpenSSL (~4.5 MB per process)"
    assert result["libp2p_init_ran"] is False
    assert result["relay_init_ran"] is False  # BasicHost imports one function of the relay
    assert result["modules"] < 1000  # ~1,360 with the whole of py-libp2p


def test_a_left_out_class_imports_and_subclasses_but_using_it_names_the_module() -> None:
    from libp2p.transport.quic.transport import QUICTransport

    class Mine(QUICTransport):  # type: ignore[misc,valid-type]
        pass

    assert not isinstance(object(), QUICTransport)
    try:  # named in an except clause beside real errors, as py-libp2p does
        raise ValueError("a real error")
    except QUICTransport:
        raise AssertionError("a stand-in caught a real error") from None
    except ValueError:
        pass
    made = Mine()
    with pytest.raises(import_guard.UnusedModuleError) as e:
        made.dial("/ip4/127.0.0.1/udp/1/quic-v1")
    message = str(e.value)
    assert "libp2p.transport.quic.transport" in message and "QUIC" in message
    assert "import_guard.py" in message


def fresh_interpreter(code: str) -> list[str]:
    """The lines `code` prints in a new interpreter (so the guard runs before any import)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_a_refused_module_raises_import_error_naming_its_replacement() -> None:
    code = ("import beemesh, sys\n"
            "try:\n    import cffi\nexcept ImportError as e:\n    print(e)\n"
            "import Crypto.Util._raw_api as raw\nprint(raw.backend)")
    refused, backend = fresh_interpreter(code)
    assert "cffi is not loaded" in refused and "ctypes" in refused
    assert backend == "ctypes"


def test_identify_names_the_installed_libp2p_version_without_importlib_metadata() -> None:
    from libp2p.identity.identify import identify

    announced = identify.AGENT_VERSION
    assert announced == f"py-libp2p/{importlib.metadata.version('libp2p')}"


def test_modules_outside_the_list_load_for_real() -> None:
    from libp2p.stream_muxer.yamux import yamux

    assert not isinstance(yamux, import_guard._StandInModule)
    assert yamux.Yamux.__module__ == "libp2p.stream_muxer.yamux.yamux"


def test_every_distribution_left_out_of_the_pyz_has_its_modules_stood_in_for() -> None:
    """Otherwise the .pyz would fail with ModuleNotFoundError where the venv runs fine."""
    path = Path(__file__).resolve().parents[2] / "packaging" / "build_pyz.py"
    spec = importlib.util.spec_from_file_location("build_pyz", path)
    assert spec and spec.loader
    build_pyz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_pyz)
    owners = importlib.metadata.packages_distributions()
    excluded = {name: [top for top, dists in owners.items()
                       if name in {d.lower().replace("_", "-") for d in dists}
                       and top.isidentifier()]
                for name in build_pyz.EXCLUDED}
    for name in excluded:  # installed in the venv with libp2p, so their modules are known
        importlib.metadata.distribution(name)
    uncovered = {name: tops for name, tops in excluded.items()
                 if any(top not in import_guard.UNUSED and top not in import_guard.REFUSED
                        for top in tops)}
    assert not uncovered


def test_the_work_plane_loads_three_manifest_modules_not_the_walker_and_model() -> None:
    """beemesh.manifest resolves its names on first use: the work plane needs the rules, the
    Service and the update strategy (~0.6 MB), not the YAML walker and the model (~1.6 MB)."""
    code = ("import beemesh.workplane.process, sys\n"
            "print(sorted(m for m in sys.modules if m.startswith('beemesh.manifest.')))\n"
            "from beemesh.manifest import WorkloadSpec, parse_manifests\n"
            "print(WorkloadSpec.__module__, parse_manifests.__module__)")
    loaded, resolved = fresh_interpreter(code)
    assert json.loads(loaded.replace("'", '"')) == [
        "beemesh.manifest.checks", "beemesh.manifest.fields", "beemesh.manifest.service",
        "beemesh.manifest.strategy"]
    assert resolved == "beemesh.manifest.model beemesh.manifest.kube"
