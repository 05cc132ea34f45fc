#!/usr/bin/python3
"""Build the single-file Beemesh executables: dist/beemesh-<version>-linux-<arch>.pyz.

One pex file per target (x86_64, aarch64), each holding Beemesh and every runtime dependency,
native extensions included, for CPython 3.11 (Debian 12 / Raspberry Pi OS bookworm).

Steps, each cached under .cache/pyz/ (override with BEEMESH_PYZ_CACHE):
  tools     venv of /usr/bin/python3 with the pinned pex + setuptools (requirements-build.txt)
  rootfs    Debian bookworm arm64 userland: `debootstrap --foreign` + the .debs unpacked
            (no emulation needed); used as the sysroot for cross compiling and by the tests
  wheels    the source-only native deps (requirements-native.txt, i.e. fastecdsa) compiled
            natively for x86_64 and with Debian's aarch64-linux-gnu-gcc for aarch64
  project   the beemesh wheel, built from a clean copy of the tree with the pinned setuptools
  pyz       pex --complete-platform packaging/platforms/<arch>.json, versions pinned by
            packaging/pyz-constraints.txt, our native wheels via --find-links

`platforms` regenerates the complete-platform JSON files (x86_64 from /usr/bin/python3,
aarch64 from the userland's python3 run under qemu-aarch64-static), `constraints` re-pins
every dependency version from the last build. Both outputs are committed.

`build` skips a .pyz whose inputs did not change since it was made; `repro` builds everything
twice from one snapshot (native wheels and pex cache from scratch the second time) and
compares sha256.

Usage: build_pyz.py [build|repro|platforms|constraints|rootfs|wheels|tools]
                    [--arch x86_64|aarch64|all]
Errors are one line on stderr naming the problem and the fix (exit 1); the failing tool's full
output goes to .cache/pyz/last-error.log.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
CACHE = Path(os.environ.get("BEEMESH_PYZ_CACHE", ROOT / ".cache" / "pyz"))
DIST = Path(os.environ.get("BEEMESH_PYZ_DIST", ROOT / "dist"))
PYTHON = os.environ.get("BEEMESH_PYZ_PYTHON", "/usr/bin/python3")
MIRROR = os.environ.get("BEEMESH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
ARCHES = ("x86_64", "aarch64")
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# Distributions py-libp2p requires that Beemesh never runs: left out of the .pyz with what
# only they need (pyOpenSSL, pylsqpack, httpcore, ...). agent/beemesh/import_guard.py stands in
# for their modules; tests/unit/test_import_guard.py checks the two lists agree.
EXCLUDED = ("aioquic", "blake3", "charset-normalizer", "coincurve", "dnspython", "fastecdsa",
            "grpcio", "httpx", "miniupnpc", "mmh3", "mypy-protobuf", "prometheus-client",
            "trio-websocket", "types-requests", "zeroconf")
PIP_VERSION = "24.2"  # pex's bundled pip cannot resolve these complete platforms
RUNTIME_PEX_ROOT = "~/.cache/pex"
# Free disk the preamble asks for in PEX_ROOT before the first run (measured: ~105 MB after
# the first start, ~130 MB once the agent has run and written its bytecode).
NEED_MB = 200
ROOTFS_PACKAGES = ("python3", "libpython3.11-dev", "libgmp-dev", "libc6-dev")
# Flags for the native wheels: no debug info (it embeds build paths) so that the .so files
# are the same bytes wherever the tree is checked out.
NATIVE_CFLAGS = "-DNDEBUG -fwrapv -O2 -Wall -g0"
NATIVE_LDFLAGS = "-shared -Wl,-O1 -Wl,-Bsymbolic-functions"
# The native wheels depend only on their sdist and this recipe, never on our commit: a wheel
# cached at an older commit must equal a fresh one (pex records the wheel's zip timestamps).
NATIVE_EPOCH = "315532800"  # 1980-01-01
# Bumped when a change here must invalidate the cached wheels / userland.
WHEEL_RECIPE = "2"
ROOTFS_RECIPE = "1"


class BuildError(Exception):
    """A problem the user can fix; printed as one line."""


def log(message: str) -> None:
    print(f"[pyz] {message}", file=sys.stderr, flush=True)


def project_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def pyz_path(arch: str, version: str | None = None) -> Path:
    return DIST / f"beemesh-{version or project_version()}-linux-{arch}.pyz"


def platform_file(arch: str) -> Path:
    return PACKAGING / "platforms" / f"cp311-linux-{arch}.json"


def rootfs_dir() -> Path:
    return CACHE / f"rootfs-{DEB_ARCH['aarch64']}-{SUITE}"


def source_date_epoch() -> str:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        out = ""
    return out if out.isdigit() else "315532800"  # 1980-01-01, the zip epoch


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for every build tool: no user pip/pex/python settings leak in."""
    keep = ("PIP_CERT", "PIP_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
    env = {
        k: v
        for k, v in os.environ.items()
        if k in keep
        or not (
            k.startswith(("PIP_", "PEX_", "PYTHON", "_PYTHON", "VIRTUAL_ENV", "CFLAGS"))
            or k in ("CC", "LDSHARED", "LDFLAGS", "CPPFLAGS", "XDG_CACHE_HOME")
        )
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        SOURCE_DATE_EPOCH=source_date_epoch(),
        LC_ALL="C.UTF-8",
        TZ="UTC",
    )
    env.update(extra)
    return env


def run(cmd: Sequence[str | os.PathLike[str]], *, what: str, fix: str, **kw: object) -> None:
    argv = [str(c) for c in cmd]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        logfile = CACHE / "last-error.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logfile.write_text(
            f"$ {' '.join(argv)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"{what} failed ({tail[0].strip()}); {fix}; full log: {logfile}")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise BuildError(
            f"`{name}` not found: install it with `apt-get install -y {package}` "
            "(or run packaging/ci-setup.sh as root)"
        )
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- tools venv


def tools_dir() -> Path:
    return CACHE / "tools"


def tools_python() -> Path:
    return tools_dir() / "bin" / "python"


def ensure_tools() -> Path:
    reqs = PACKAGING / "requirements-build.txt"
    stamp = tools_dir() / ".beemesh-stamp"
    want = fingerprint(reqs.read_bytes(), PYTHON)
    if stamp.exists() and stamp.read_text() == want and tools_python().exists():
        return tools_python()
    if not Path(PYTHON).exists():
        raise BuildError(
            f"{PYTHON} not found: the build needs Debian 12's python3 (CPython 3.11); "
            "set BEEMESH_PYZ_PYTHON to another CPython 3.11"
        )
    ver = subprocess.run(
        [PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if ver != "3.11":
        raise BuildError(f"{PYTHON} is Python {ver}, the build needs CPython 3.11")
    log(f"creating the build tools venv in {tools_dir()}")
    shutil.rmtree(tools_dir(), ignore_errors=True)
    run(
        [PYTHON, "-m", "venv", tools_dir()],
        what=f"{PYTHON} -m venv",
        fix="install python3-venv (`apt-get install -y python3-venv`)",
        env=clean_env(),
    )
    run(
        [
            tools_python(),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-r",
            reqs,
        ],
        what="installing pex and setuptools from PyPI",
        fix="check that PyPI is reachable",
        env=clean_env(),
    )
    stamp.write_text(want)
    return tools_python()


# --------------------------------------------------------------------------- arm64 userland


def ensure_rootfs() -> Path:
    """A Debian bookworm arm64 userland, unpacked without running any arm64 code."""
    root = rootfs_dir()
    stamp = root / ".beemesh-stamp"
    want = fingerprint(ROOTFS_RECIPE, SUITE, *ROOTFS_PACKAGES)
    if stamp.exists() and stamp.read_text() == want:
        return root
    debootstrap = need_tool("debootstrap", "debootstrap")
    need_tool("dpkg-deb", "dpkg")
    if os.geteuid() != 0:
        raise BuildError(
            "debootstrap must run as root to create the arm64 userland: run `make pyz` as root "
            f"once (later builds reuse {root})"
        )
    log(f"debootstrap --arch=arm64 --foreign {SUITE} into {root} (first build only)")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            debootstrap,
            "--arch=arm64",
            "--foreign",
            "--variant=minbase",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            SUITE,
            root,
            MIRROR,
        ],
        what="debootstrap of the arm64 userland",
        fix=f"check that {MIRROR} is reachable and debootstrap is installed",
        env=clean_env(),
    )
    # --foreign unpacks only the base system; unpack the extra packages it downloaded too.
    # Nothing is configured (that would need arm64 emulation): the tree is used as a
    # sysroot for the cross compiler and to run python3 under qemu-aarch64-static.
    for deb in sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb")):
        run(
            ["dpkg-deb", "-x", deb, root],
            what=f"unpacking {deb.name}",
            fix="delete the userland and retry",
        )
    for must in ("usr/bin/python3.11", "usr/include/python3.11/Python.h"):
        if not (root / must).exists():
            raise BuildError(f"the arm64 userland lacks /{must}; delete {root} and retry")
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()  # 50 MB nobody needs once unpacked
    stamp.write_text(want)
    return root


# --------------------------------------------------------------------------- native wheels


def native_requirements() -> list[tuple[str, str, str]]:
    """(name, version, sha256) of each source-only native dependency."""
    out: list[tuple[str, str, str]] = []
    text = (PACKAGING / "requirements-native.txt").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, hashpart = line.partition("--hash=sha256:")
        name, _, version = spec.strip().partition("==")
        out.append((name.strip(), version.strip(), hashpart.strip()))
    return out


def ensure_sdist(python: Path, name: str, version: str, digest: str) -> Path:
    sdists = CACHE / "sdists"
    path = sdists / f"{name}-{version}.tar.gz"
    if path.exists() and sha256_file(path) == digest:
        return path
    sdists.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        reqs = Path(tmp) / "req.txt"
        reqs.write_text(f"{name}=={version} --hash=sha256:{digest}\n")
        run(
            [
                python,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--no-build-isolation",
                "--require-hashes",
                "-r",
                reqs,
                "-d",
                tmp,
            ],
            what=f"downloading the {name} {version} sdist",
            fix="check that PyPI is reachable",
            env=clean_env(),
        )
        got = Path(tmp) / path.name
        if not got.exists() or sha256_file(got) != digest:
            raise BuildError(f"{name} {version} sdist missing or hash mismatch")
        shutil.move(str(got), path)
    return path


def cross_env(arch: str) -> dict[str, str]:
    cc = need_tool(f"{TRIPLET[arch]}-gcc", "gcc" if arch == "x86_64" else "gcc-aarch64-linux-gnu")
    if arch == "x86_64":
        for header, pkg in (
            ("/usr/include/python3.11/Python.h", "python3-dev"),
            ("/usr/include/x86_64-linux-gnu/gmp.h", "libgmp-dev"),
        ):
            if not Path(header).exists():
                raise BuildError(f"{header} missing: `apt-get install -y {pkg}`")
        if not sysconfig_multiarch_ok():
            raise BuildError(f"{PYTHON} is not Debian's x86_64 python3.11")
        return clean_env(
            SOURCE_DATE_EPOCH=NATIVE_EPOCH,
            CC=cc,
            LDSHARED=f"{cc} {NATIVE_LDFLAGS}",
            CFLAGS=NATIVE_CFLAGS,
            _PYTHON_HOST_PLATFORM="linux-x86_64",
        )
    root = ensure_rootfs()
    sysconfig_dir = CACHE / "sysconfig-aarch64"
    sysconfig_dir.mkdir(parents=True, exist_ok=True)
    name = "_sysconfigdata__aarch64-linux-gnu"
    shutil.copy2(root / "usr" / "lib" / "python3.11" / f"{name}.py", sysconfig_dir)
    cc_sys = f"{cc} --sysroot={root}"
    return clean_env(
        SOURCE_DATE_EPOCH=NATIVE_EPOCH,
        CC=cc_sys,
        LDSHARED=f"{cc_sys} {NATIVE_LDFLAGS}",
        CFLAGS=NATIVE_CFLAGS,
        # the arm64 Python headers first, ahead of the host's /usr/include/python3.11
        CPPFLAGS=f"-I{root}/usr/include/python3.11",
        _PYTHON_HOST_PLATFORM="linux-aarch64",
        _PYTHON_SYSCONFIGDATA_NAME=name,
        PYTHONPATH=str(sysconfig_dir),
    )


def sysconfig_multiarch_ok() -> bool:
    out = subprocess.run(
        [PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('MULTIARCH'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out == "x86_64-linux-gnu"


def ensure_native_wheels(arch: str, wheels: Path | None = None) -> Path:
    python = ensure_tools()
    wheels = wheels or CACHE / "wheels" / arch
    for name, version, digest in native_requirements():
        wheel_name = f"{name}-{version}-cp311-cp311-linux_{arch}.whl"
        stamp = wheels / f"{wheel_name}.stamp"
        want = fingerprint(WHEEL_RECIPE, digest, NATIVE_CFLAGS, NATIVE_LDFLAGS)
        if (wheels / wheel_name).exists() and stamp.exists() and stamp.read_text() == want:
            continue
        sdist = ensure_sdist(python, name, version, digest)
        env = cross_env(arch)
        log(f"compiling {name} {version} for {arch}")
        build = CACHE / "build" / arch
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        with tarfile.open(sdist) as tar:
            # (Debian's 3.11.2 predates extractall(filter=...): check the members by hand.)
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if (
                    member.name.startswith("/")
                    or ".." in parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise BuildError(f"{sdist.name}: unexpected member {member.name}")
            tar.extractall(build)
        src = build / f"{name}-{version}"
        out = build / "out"
        run(
            [
                python,
                "-c",
                "import sys; from setuptools import build_meta as b; "
                "print(b.build_wheel(sys.argv[1]))",
                out,
            ],
            what=f"compiling {name} {version} for {arch}",
            fix=(
                "install the compilers and headers (packaging/ci-setup.sh: gcc, "
                "gcc-aarch64-linux-gnu, libgmp-dev, python3-dev)"
            ),
            cwd=src,
            env=env,
        )
        built = out / wheel_name
        if not built.exists():
            raise BuildError(f"expected {built.name}, got {sorted(p.name for p in out.iterdir())}")
        wheels.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, wheels / wheel_name)
        stamp.write_text(want)
        shutil.rmtree(build, ignore_errors=True)
    return wheels


# --------------------------------------------------------------------------- project wheel


def project_files() -> list[Path]:
    """Files of the project tree that go into the sdist-like copy (tracked + untracked but
    not ignored when in git; everything else is skipped). Caches never go in."""
    wanted_top = ("pyproject.toml", "README.md", "LICENSE", "agent/")
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                "pyproject.toml",
                "README.md",
                "LICENSE",
                "agent",
            ],
            capture_output=True,
            check=True,
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [
            str(p.relative_to(ROOT)) for p in ROOT.joinpath("agent").rglob("*") if p.is_file()
        ] + [n for n in wanted_top if not n.endswith("/") and (ROOT / n).exists()]
    files = []
    for n in sorted(set(names)):
        p = Path(n)
        if (
            "__pycache__" in p.parts
            or p.suffix in (".pyc", ".pyo")
            or any(part.endswith(".egg-info") for part in p.parts)
        ):
            continue
        if (ROOT / p).is_file():
            files.append(p)
    return files


def snapshot_sources(src: Path) -> Path:
    """Copy the project files into `src` (a clean tree: no caches, no egg-info)."""
    shutil.rmtree(src, ignore_errors=True)
    for rel in project_files():
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)
    if not (src / "README.md").exists():
        # pyproject names README.md as the long description; a tree without it still builds.
        (src / "README.md").write_text("Beemesh\n")
    return src


def build_project_wheel(
    python: Path, version: str, src: Path | None = None, out: Path | None = None
) -> Path:
    if src is None:
        src = snapshot_sources(CACHE / "src")
    out = out or CACHE / "project-wheel"
    shutil.rmtree(out, ignore_errors=True)
    run(
        [
            python,
            "-c",
            "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))",
            out,
        ],
        what="building the beemesh wheel",
        fix=f"see the log; the source copy is in {src}",
        cwd=src,
        env=clean_env(),
    )
    wheels = list(out.glob(f"beemesh-{version}-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one beemesh {version} wheel in {out}")
    return wheels[0]


# --------------------------------------------------------------------------- pex


def preamble_for(arch: str, version: str) -> Path:
    text = (PACKAGING / "pyz_preamble.py").read_text()
    call = '_beemesh_pyz_check("x86_64", "0.0.0", 200)'
    if text.count(call) != 1:
        raise BuildError(f"packaging/pyz_preamble.py must end with the line `{call}`")
    text = text.replace(call, f'_beemesh_pyz_check("{arch}", "{version}", {NEED_MB})')
    path = CACHE / f"preamble-{arch}.py"
    path.write_text(text)
    return path


def build_pyz(
    arch: str,
    project_wheel: Path,
    version: str,
    out: Path | None = None,
    pex_root: Path | None = None,
    wheels_dir: Path | None = None,
) -> Path:
    """pex one file for `arch`. The default output is skipped when none of its inputs
    changed since it was built (same bytes would come out: see `repro`)."""
    python = ensure_tools()
    platform_json = platform_file(arch)
    if not platform_json.exists():
        raise BuildError(f"{platform_json} missing: run `make pyz-platforms`")
    wheels = ensure_native_wheels(arch, wheels_dir)
    incremental = out is None and pex_root is None and wheels_dir is None
    out = out or pyz_path(arch, version)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".pyz.tmp")
    preamble = preamble_for(arch, version)
    constraints = PACKAGING / "pyz-constraints.txt"
    options: list[str | Path] = [
        *("--complete-platform", platform_json),
        *("--find-links", wheels),
        *("--pip-version", PIP_VERSION),
        "--venv",
        *("--runtime-pex-root", RUNTIME_PEX_ROOT),
        *("--console-script", "beemesh"),
        *("--python-shebang", "/usr/bin/env python3"),
        *("--preamble-file", preamble),
        "--no-emit-warnings",
        *(f"--exclude={name}" for name in EXCLUDED),
    ]
    if constraints.exists():
        options += ["--constraints", constraints]
    inputs = fingerprint(
        (PACKAGING / "requirements-build.txt").read_bytes(),
        sha256_file(project_wheel),
        platform_json.read_bytes(),
        constraints.read_bytes() if constraints.exists() else b"",
        preamble.read_bytes(),
        *(sha256_file(w) for w in sorted(wheels.glob("*.whl"))),
        *(str(o) for o in options),
    )
    stamp = CACHE / "stamps" / f"{out.name}.json"
    if incremental and out.exists() and stamp.exists():
        seen = json.loads(stamp.read_text())
        if seen.get("inputs") == inputs and seen.get("sha256") == sha256_file(out):
            log(f"{out.name} is up to date (sha256 {seen['sha256']})")
            return out
    log(f"pex: building {out.name}")
    started = time.monotonic()
    pex_cache = pex_root or CACHE / "pex-root"
    argv = [python, "-m", "pex", project_wheel, *options, *ca_bundle_option()]
    run(
        [*argv, "--pex-root", pex_cache, "-o", tmp_out],
        what=f"pex build of {out.name}",
        fix="check PyPI is reachable and packaging/pyz-constraints.txt is satisfiable",
        env=clean_env(),
    )
    check_contents(tmp_out, arch)
    os.replace(tmp_out, out)
    digest = sha256_file(out)
    if incremental:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"inputs": inputs, "sha256": digest}) + "\n")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    log(
        f"built {shown} ({out.stat().st_size / 1e6:.1f} MB, "
        f"{time.monotonic() - started:.0f} s) sha256 {digest}"
    )
    return out


def ca_bundle_option() -> list[str]:
    """pex bootstraps its pip with a vendored pip that trusts only its own CA list: hand it
    the system bundle (which holds any local CA, e.g. of a TLS-inspecting proxy)."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return ["--cert", os.environ[var]]
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    return ["--cert", str(system)] if system.is_file() else []


def check_contents(pyz: Path, arch: str) -> None:
    """Every native wheel in the file is for `arch`, our compiled ones were used, and the
    EXCLUDED distributions are not in it."""
    with zipfile.ZipFile(pyz) as zf:
        dists = list(json.loads(zf.read("PEX-INFO"))["distributions"])
    wrong = [d for d in dists if not d.endswith(("-any.whl", f"{arch}.whl"))]
    if wrong:
        raise BuildError(f"{pyz.name} got wheels for another machine: {wrong}")
    names = {d.split("-")[0].lower().replace("_", "-") for d in dists}
    if names & set(EXCLUDED):
        raise BuildError(f"{pyz.name} holds excluded distributions: {names & set(EXCLUDED)}")
    for name, version, _ in native_requirements():
        if name in EXCLUDED:
            continue  # compiled only so that pex can resolve py-libp2p's requirements
        want = f"{name}-{version}-cp311-cp311-linux_{arch}.whl"
        if want not in dists:
            raise BuildError(f"{pyz.name} lacks {want} (pex picked something else)")


def cmd_build(arches: Iterable[str]) -> None:
    version = project_version()
    python = ensure_tools()
    project_wheel = build_project_wheel(python, version)
    for arch in arches:
        build_pyz(arch, project_wheel, version)


def cmd_repro(arches: Iterable[str]) -> bool:
    """Build everything twice from one snapshot of the tree and compare the bytes: the
    second build compiles the native wheels again and starts from an empty pex cache (every
    wheel downloaded again)."""
    version = project_version()
    python = ensure_tools()
    work = CACHE / "repro"
    shutil.rmtree(work, ignore_errors=True)
    src_a = snapshot_sources(work / "src-a")
    src_b = work / "src-b"
    shutil.copytree(src_a, src_b)
    wheel_a = build_project_wheel(python, version, src_a, work / "wheel-a")
    wheel_b = build_project_wheel(python, version, src_b, work / "wheel-b")
    results = [("beemesh wheel", sha256_file(wheel_a), sha256_file(wheel_b))]
    for arch in arches:
        name = pyz_path(arch, version).name
        a = build_pyz(arch, wheel_a, version, out=work / "a" / name)
        b = build_pyz(
            arch,
            wheel_b,
            version,
            out=work / "b" / name,
            pex_root=work / "pex-root",
            wheels_dir=work / "wheels-b" / arch,  # native wheels compiled again too
        )
        results.append((name, sha256_file(a), sha256_file(b)))
    # keep the two sets of outputs for a look with diffoscope; drop the 200+ MB of caches
    for scratch in ("pex-root", "src-a", "src-b"):
        shutil.rmtree(work / scratch, ignore_errors=True)
    same = True
    for what, a_sum, b_sum in results:
        ok = a_sum == b_sum
        same &= ok
        verdict = "identical" if ok else "DIFFERENT"
        print(f"{verdict}  {what}  {a_sum}" + ("" if ok else f" != {b_sum}"))
    return same


# --------------------------------------------------------------------------- platforms


def qemu_python_wrapper(root: Path) -> Path:
    """A host-side script running the userland's python3.11 under qemu-aarch64-static:
    pex execs it like any interpreter, and no binfmt_misc registration is needed."""
    qemu = need_tool("qemu-aarch64-static", "qemu-user-static")
    wrapper = CACHE / "python3.11-aarch64"
    wrapper.write_text(f'#!/bin/sh\nexec {qemu} -L "{root}" "{root}/usr/bin/python3.11" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def cmd_platforms(arches: Iterable[str]) -> None:
    python = ensure_tools()
    for arch in arches:
        interpreter = PYTHON if arch == "x86_64" else str(qemu_python_wrapper(ensure_rootfs()))
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            raw = Path(tmp) / "inspect.json"
            run(
                [
                    python,
                    "-m",
                    "pex.cli",
                    "interpreter",
                    "inspect",
                    "--markers",
                    "--tags",
                    "--python",
                    interpreter,
                    "--pex-root",
                    Path(tmp) / "pex-root",
                    "--output",
                    raw,
                ],
                what=f"inspecting the {arch} interpreter",
                fix="see the log",
                env=clean_env(),
            )
            data = json.loads(raw.read_text())
        markers = data["marker_environment"]
        if markers.get("platform_machine") != arch or markers.get("python_version") != "3.11":
            raise BuildError(f"{interpreter} is not a CPython 3.11 for {arch}: {markers}")
        # The kernel of the machine that ran the inspection is not a property of the target.
        markers["platform_release"] = ""
        markers["platform_version"] = ""
        doc = {"marker_environment": markers, "compatible_tags": data["compatible_tags"]}
        path = platform_file(arch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        log(f"wrote {path.relative_to(ROOT)} ({len(doc['compatible_tags'])} tags)")


# --------------------------------------------------------------------------- constraints


def pex_distributions(pyz: Path) -> dict[str, str]:
    with zipfile.ZipFile(pyz) as zf:
        info = json.loads(zf.read("PEX-INFO"))
    out: dict[str, str] = {}
    for wheel in info["distributions"]:
        name, version = wheel.split("-")[:2]
        out[name.lower().replace("_", "-")] = version
    return out


def cmd_constraints() -> None:
    version = project_version()
    pins: dict[str, set[str]] = {}
    for arch in ARCHES:
        pyz = pyz_path(arch, version)
        if not pyz.exists():
            raise BuildError(f"{pyz} missing: run `make pyz` first")
        for name, ver in pex_distributions(pyz).items():
            if name != "beemesh":
                pins.setdefault(name, set()).add(ver)
    lines = [
        "# Every runtime dependency of the beemesh .pyz files, pinned so that a rebuild from "
        "the same",
        "# commit resolves the same versions. Regenerate after changing pyproject.toml's "
        "dependencies:",
        "#   rm packaging/pyz-constraints.txt && make pyz && make pyz-constraints && make pyz",
    ]
    for name in sorted(pins):
        vers = pins[name]
        if len(vers) != 1:
            raise BuildError(f"{name} resolved to different versions per arch: {sorted(vers)}")
        lines.append(f"{name}=={vers.pop()}")
    path = PACKAGING / "pyz-constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    log(f"wrote {path.relative_to(ROOT)} ({len(pins)} pins)")


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "command",
        nargs="?",
        default="build",
        choices=("build", "repro", "platforms", "constraints", "rootfs", "wheels", "tools"),
    )
    parser.add_argument("--arch", default="all", choices=(*ARCHES, "all"))
    args = parser.parse_args(argv)
    arches = ARCHES if args.arch == "all" else (args.arch,)
    CACHE.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache (parallel test workers may all ask for `make pyz`).
    lock = (CACHE / ".lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if args.command == "build":
            cmd_build(arches)
        elif args.command == "repro":
            if not cmd_repro(arches):
                print("build_pyz: error: two builds of the same tree differ", file=sys.stderr)
                return 1
        elif args.command == "platforms":
            cmd_platforms(arches)
        elif args.command == "constraints":
            cmd_constraints()
        elif args.command == "rootfs":
            print(ensure_rootfs())
        elif args.command == "wheels":
            for arch in arches:
                print(ensure_native_wheels(arch))
        elif args.command == "tools":
            print(ensure_tools())
    except BuildError as e:
        print(f"build_pyz: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
