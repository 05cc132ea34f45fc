"""Keep py-libp2p's unused parts out of memory.

`import libp2p` runs a package `__init__` (and package `__init__`s below it) that eagerly import
every transport, security protocol, discovery service and exporter py-libp2p ships: QUIC
(aioquic, pyOpenSSL), WebSocket, TLS/AutoTLS with its ACME clients (httpx, requests), mDNS
(zeroconf), UPnP, Prometheus, DNS resolution (dnspython), RSA/secp256k1/ECDSA keys — about
1,250 modules and 50 MB per process. Beemesh runs TCP + Noise + Yamux with Ed25519 keys,
gossipsub and Kademlia, built from py-libp2p's parts (mesh/host.py), and none of the above.

`install()` puts a finder first on `sys.meta_path` that
- loads the packages in BARE (`libp2p`, `libp2p.relay`, `urllib3.http2`) without running their
  `__init__` (their submodules load as usual);
- answers every import of a module listed in UNUSED with a stand-in module whose names are
  stand-in classes: importing, subclassing, `isinstance`, `except` and annotations work, and
  calling one gives an inert object (py-libp2p builds some eagerly, e.g. a DNS resolver per
  swarm) that raises UnusedModuleError naming the module as soon as anything touches it. If
  anything ever needs one of them, it fails there and then with that name, never silently;
- refuses the modules in REFUSED with an ImportError, for code that has a fallback: pycryptodome
  (pnet's Salsa20) then binds its C code with ctypes instead of parsing C declarations with
  cffi and pycparser at import (~1.5 MB per process);
- keeps OpenSSL out (libcrypto and libssl, ~4.5 MB per process): `ssl` is refused (trio's TLS
  stream modules are stood in for; requests and urllib3, under podman-py, run without ssl as
  they are written to), and so is `_hashlib`: hashlib falls back to CPython's own SHA-2 and
  BLAKE2 (SHA-256 at ~290 MB/s instead of ~1.7 GB/s here; Beemesh hashes records, manifests
  and bundle files, never faster than a disk reads them);
- answers `libp2p.utils.version` with its one function, reading py-libp2p's version from its
  `.dist-info` directory's name, rather than loading `importlib.metadata` (64 modules, ~3 MB)
  for that one string (identify's agent version).

tests/unit/test_import_guard.py starts a host in a fresh interpreter and fails if any of them
is loaded for real; packaging/build_pyz.py leaves their distributions out of the .pyz.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from types import ModuleType
from typing import Any

# Module (and everything below it) -> why Beemesh never runs it.
UNUSED: dict[str, str] = {
    "libp2p.transport.quic": "QUIC transport (Beemesh dials TCP)",
    "libp2p.transport.websocket": "WebSocket transport (Beemesh dials TCP)",
    "libp2p.security.tls": "TLS and AutoTLS security (Beemesh secures with Noise)",
    "libp2p.security.secio": "SECIO security (Beemesh secures with Noise)",
    "libp2p.discovery.mdns": "mDNS discovery (machines come from bootstrap lists and records)",
    "libp2p.discovery.upnp": "UPnP port mapping",
    "libp2p.peer.persistent": "persistent peer stores",
    "libp2p.bitswap": "Bitswap",
    "cryptography.x509": "X.509 certificates (py-libp2p's AutoTLS reads them)",
    "libp2p.crypto.rsa": "RSA keys (Beemesh keys are Ed25519)",
    "libp2p.crypto.secp256k1": "secp256k1 keys (Beemesh keys are Ed25519)",
    "libp2p.crypto.ecc": "ECDSA keys (Beemesh keys are Ed25519)",
    "aioquic": "QUIC",
    "OpenSSL": "pyOpenSSL (QUIC/TLS)",
    "service_identity": "TLS certificate checks",
    "zeroconf": "mDNS",
    "miniupnpc": "UPnP",
    "prometheus_client": "Prometheus export (Beemesh reports through `beemesh status`)",
    "httpx": "HTTP client (AutoTLS)",
    "dns": "DNS resolution of /dns multiaddrs (Beemesh resolves names itself)",
    "websockets": "WebSocket",
    "wsproto": "WebSocket",
    "trio_websocket": "WebSocket",
    "coincurve": "secp256k1 keys",
    "fastecdsa": "ECDSA keys",
    "grpc": "gRPC (py-libp2p's AutoNAT service stubs)",
    "mypy_protobuf": "protobuf type stubs generator",
    "trio._ssl": "TLS streams (Beemesh secures every connection with Noise)",
    "trio._highlevel_ssl_helpers": "TLS streams (Beemesh secures every connection with Noise)",
    "blake3": "BLAKE3 multihashes (Peer IDs and DHT keys are identity and SHA-256 multihashes)",
    "mmh3": "Murmur3 multihashes (Peer IDs and DHT keys are identity and SHA-256 multihashes)",
}


# Module -> what takes its place when an import of it is refused.
REFUSED: dict[str, str] = {
    "cffi": "pycryptodome binds its C code with ctypes instead",
    "ssl": "trio's TLS stream is stood in for; requests and urllib3 run without ssl, which "
           "they support (podman-py speaks HTTP over a unix socket)",
    "urllib3.contrib.pyopenssl": "requests tries it when ssl is missing; it needs pyOpenSSL",
    "_hashlib": "hashlib and hmac use CPython's own SHA-2 and BLAKE2 instead of OpenSSL's",
    "bz2": "shutil and tarfile go without bzip2 (ctypes.util loads shutil for trio); bundles "
           "are plain tar",
    "lzma": "shutil and tarfile go without xz, as without bzip2",
    "charset_normalizer": "requests guesses a text answer's encoding with it; Podman's API "
                          "answers JSON in UTF-8, which requests decodes without it",
    "chardet": "the same",
}
# Packages loaded without running their __init__ (their submodules load as usual) -> why.
BARE: dict[str, str] = {
    "libp2p": "imports every transport, security protocol and service py-libp2p ships",
    "libp2p.relay": "imports all of circuit relay v2 (91 modules, 3.9 MB); BasicHost needs "
                    "one function of it (circuit_v2.nat.is_private_ip)",
    "libp2p.relay.circuit_v2": "the same",
    "urllib3.http2": "loads importlib.metadata to check the version of h2, an HTTP/2 package "
                     "urllib3 may use for HTTPS; urllib3's connections import http2.probe",
}
VERSION_MODULE = "libp2p.utils.version"  # the module answered with its one function


class UnusedModuleError(RuntimeError):
    """A part of py-libp2p (or one of its dependencies) Beemesh leaves out was used."""


def _unused(module: str, name: str) -> UnusedModuleError:
    return UnusedModuleError(
        f"{name} from {module} was used, but Beemesh leaves {module} out ({_why(module)}); "
        "if it is needed now, remove it from beemesh/import_guard.py UNUSED and from the "
        ".pyz exclusions in packaging/build_pyz.py")


def _why(module: str) -> str | None:
    for prefix, why in UNUSED.items():
        if module == prefix or module.startswith(prefix + "."):
            return why
    return None


class _StandIn(type):
    """Metaclass of the stand-in classes: any attribute is another stand-in; calling one
    gives an inert object (`_Inert`)."""

    _left_out: tuple[str, str]  # (module, name) of the stand-in (a subclass inherits it)

    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        module, name = cls._left_out
        return _stand_in(module, f"{name}.{attr}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return _Inert(*cls._left_out)


class _Inert:
    """What calling a stand-in gives (py-libp2p builds some, e.g. a DNS resolver, eagerly):
    touching it in any way raises."""

    def __init__(self, module: str, name: str) -> None:
        object.__setattr__(self, "_origin", (module, name))

    def __getattr__(self, attr: str) -> Any:
        module, name = object.__getattribute__(self, "_origin")
        raise _unused(module, f"{name}().{attr}")

    def __setattr__(self, attr: str, value: Any) -> None:
        self.__getattr__(attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")


def _stand_in(module: str, name: str) -> type:
    # An Exception subclass, for py-libp2p names them in `except` clauses (QUIC's errors
    # beside the TCP ones): matching against a class that is not one raises TypeError.
    return _StandIn(name.rsplit(".", 1)[-1], (Exception,), {
        "__module__": module, "__qualname__": name, "_left_out": (module, name)})


class _StandInModule(ModuleType):
    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = _stand_in(self.__name__, attr)
        setattr(self, attr, value)
        return value


class _Loader:
    def __init__(self, real: importlib.machinery.ModuleSpec | None = None) -> None:
        self.real = real  # a package of BARE's own spec: the package without its __init__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = ModuleType(spec.name) if self.real else _StandInModule(spec.name)
        module.__path__ = list(self.real.submodule_search_locations or []) if self.real else []
        return module

    def exec_module(self, module: ModuleType) -> None:
        if self.real is not None:
            module.__file__ = self.real.origin
        if module.__name__ == "libp2p":
            # libp2p.abc and libp2p.transport import each other; the package __init__ loads
            # the transport side first, and only that order resolves.
            importlib.import_module("libp2p.transport")


def libp2p_version() -> str:
    """`py-libp2p/<version>` from the name of the `.dist-info` directory beside the package
    (a venv and the .pyz both install it so), without importlib.metadata."""
    for location in getattr(sys.modules.get("libp2p"), "__path__", []):
        parent = os.path.dirname(location)
        for entry in sorted(os.listdir(parent)):
            if entry.startswith("libp2p-") and entry.endswith(".dist-info"):
                return f"py-libp2p/{entry[len('libp2p-'):-len('.dist-info')]}"
    return "py-libp2p/unknown"


class _VersionLoader:
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default: an empty module

    def exec_module(self, module: ModuleType) -> None:
        module.get_agent_version = libp2p_version  # type: ignore[attr-defined]


class _Finder:
    def find_spec(self, name: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name in REFUSED:
            raise ImportError(f"{name} is not loaded in Beemesh processes "
                              f"({REFUSED[name]}; see beemesh/import_guard.py)", name=name)
        if name == VERSION_MODULE:
            return importlib.util.spec_from_loader(name, _VersionLoader())
        if name in BARE:
            real = importlib.machinery.PathFinder.find_spec(name, path)
            if real is None:
                return None
            return importlib.util.spec_from_loader(name, _Loader(real), is_package=True)
        if _why(name) is None:
            return None
        return importlib.util.spec_from_loader(name, _Loader(), is_package=True)


_FINDER = _Finder()


def install() -> None:
    """Put the finder first (once). Modules already loaded stay as they are."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
        # requests warns at import that it has no encoding guesser (REFUSED above)
        warnings.filterwarnings("ignore", "Unable to find acceptable character detection")


def loaded() -> list[str]:
    """Modules of UNUSED or REFUSED that were loaded for real, and importlib.metadata
    (empty when the guard did its job)."""
    return sorted(name for name, module in sys.modules.items()
                  if (_why(name) is not None and not isinstance(module, _StandInModule))
                  or name.split(".")[0] in REFUSED or name == "importlib.metadata")
