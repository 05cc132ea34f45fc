# Beemesh .pyz preamble: pex runs this code first (`pex --preamble-file`), before its own
# bootstrap. It turns the usual ways the file fails to start into one line naming the problem
# and the fix, instead of a traceback from deep inside pex:
#   - a Python that is not CPython 3.11 (the native wheels inside are cp311 only),
#   - the wrong machine (e.g. the aarch64 file on an x86_64 machine, or a 32-bit Python),
#   - an extraction directory (PEX_ROOT) that cannot be written or is out of space.
# It must stay valid on any Python 3 (no f-strings, no walrus) so that an old interpreter
# reaches the message instead of a SyntaxError. It runs in the same module namespace as pex's
# bootstrap, so it leaves no names behind. packaging/build_pyz.py fills in the arguments of
# the call at the bottom for each file it builds.


def _beemesh_pyz_check(arch, version, need_mb):
    import os
    import platform
    import sys

    here = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not here.endswith(".pyz"):
        here = "beemesh-{}-linux-{}.pyz".format(version, arch)
    other = "beemesh-{}-linux-{}.pyz".format(version, "x86_64" if arch == "aarch64" else "aarch64")

    def fail(message):
        sys.stderr.write("beemesh: error: " + message + "\n")
        sys.stderr.flush()
        sys.exit(1)  # as every beemesh error (2 means "nothing could be placed")

    impl = platform.python_implementation()
    py_version = ".".join(str(n) for n in sys.version_info[:3])
    if impl != "CPython" or tuple(sys.version_info[:2]) != (3, 11):
        fail(
            "{} needs CPython 3.11 but was started with {} {} ({}): run it with python3.11 "
            "(Debian 12 / Raspberry Pi OS bookworm `python3`, or `apt-get install "
            "python3.11`)".format(here, impl, py_version, sys.executable or "python")
        )

    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if machine != arch:
        if arch == "aarch64" and machine in ("armv6l", "armv7l", "armv8l"):
            fix = "install a 64-bit (arm64) OS, e.g. Raspberry Pi OS bookworm 64-bit"
        elif machine in ("x86_64", "aarch64"):
            fix = "use {} on this machine".format(other)
        else:
            fix = "only x86_64 and aarch64 builds exist"
        fail(
            "{} is built for {} but this machine is {}: {}".format(
                here, arch, machine or "unknown", fix
            )
        )
    if sys.maxsize <= 2**32:
        fail(
            "{} needs a 64-bit Python but {} is 32-bit: install a 64-bit (arm64) OS".format(
                here, sys.executable or "python"
            )
        )

    # Where pex extracts the dependencies (native code included) on first run: $PEX_ROOT,
    # else the runtime pex root baked into the file (~/.cache/pex). It must stay writable even
    # once populated (pex takes lock files there); otherwise pex would only warn and fall back
    # to a throw-away temporary directory, re-extracting ~110 MB on every start.
    root = os.path.realpath(os.path.expanduser(os.environ.get("PEX_ROOT") or "~/.cache/pex"))
    probe = root
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if not parent or parent == probe:
            break
        probe = parent
    if not (os.path.isdir(probe) and os.access(probe, os.R_OK | os.W_OK | os.X_OK)):
        fail(
            "cannot extract into PEX_ROOT={} ({} is not a writable directory): set PEX_ROOT "
            "to a writable directory with {} MB free, e.g. "
            "PEX_ROOT=/var/lib/beemesh/pex".format(root, probe, need_mb)
        )
    if not os.path.isdir(os.path.join(root, "venvs")):
        try:
            st = os.statvfs(probe)
            free_mb = st.f_bavail * st.f_frsize // (1024 * 1024)
        except OSError:
            free_mb = need_mb
        if free_mb < need_mb:
            fail(
                "the first run needs {} MB free in PEX_ROOT={} to extract into but only {} MB "
                "are free there: free some space or set PEX_ROOT to a roomier directory".format(
                    need_mb, root, free_mb
                )
            )


_beemesh_pyz_check("x86_64", "0.0.0", 200)
del _beemesh_pyz_check
