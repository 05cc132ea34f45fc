"""A bundle on a stick is hostile until checked (issue 15, "Bundles"): one test per case,
each named after it. Real bundle create/verify/install on small bundles (stand-in .pyz files);
no network, no agent.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from bundle_kit import install_into, make_bundle, make_fleet, resign, snapshot

from beemesh.errors import UserError
from beemesh.rollout import install as install_mod
from beemesh.rollout import source
from beemesh.rollout.bundle_format import MANIFEST, BundleRefused, copy_bounded, pyz_name
from beemesh.rollout.verify import load_trust, verify

AGENT = Path(__file__).resolve().parents[3] / "agent"
BIG = 200 * 2**20


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return make_fleet(tmp_path)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where install stages files (its temporary directory), to count what it wrote."""
    d = tmp_path / "scratch"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def refused(bundle: Path, fleet: Path, root: Path) -> str:
    with pytest.raises(BundleRefused) as e:
        install_into(bundle, fleet, root)
    assert not root.exists(), "a refused bundle wrote under ROOT"
    return str(e.value)


def written(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


# --- bounded extraction -----------------------------------------------------------------------

def test_bounded_extraction_gzip_bomb_refused_before_decompressing(
        tmp_path: Path, fleet: Path, scratch: Path) -> None:
    """The review's 204 KB tar.gz that expands to 200 MiB: refused at once, nothing written."""
    bundle = make_bundle(tmp_path, fleet)
    (bundle / "images").mkdir()
    with (bundle / "images/zero.tar").open("wb") as f:
        f.truncate(BIG)
    bomb = tmp_path / "bomb.tar"
    with gzip.open(bomb, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.add(bundle, arcname=".", recursive=True)
    assert bomb.stat().st_size < 300_000
    t0 = time.monotonic()
    assert "gzip-compressed" in refused(bomb, fleet, tmp_path / "root")
    assert time.monotonic() - t0 < 1.0
    assert written(scratch) == 0


def test_bounded_extraction_tar_member_bigger_than_listed_never_copied(
        tmp_path: Path, fleet: Path, scratch: Path) -> None:
    """A signed bundle whose tar holds 200 MiB (sparse, a few KB on the stick) where the
    manifest lists a small file: refused from the headers; nothing beyond listed bytes
    written, and the manifest checked before anything else is copied."""
    bundle = make_bundle(tmp_path, fleet)
    (bundle / "site/blob").write_bytes(b"\0" * 1000)
    resign(bundle, fleet)
    os.truncate(bundle / "site/blob", BIG)  # sparse: 200 MiB reads as zeros
    tar = tmp_path / "bomb.tar"
    subprocess.run(["tar", "--sparse", "--format=posix", "-cf", str(tar), "-C", str(bundle),
                    "."], check=True)
    assert tar.stat().st_size < 300_000
    t0 = time.monotonic()
    text = refused(tar, fleet, tmp_path / "root")
    assert "site/blob is a sparse file" in text or "site/blob is 209715200 bytes" in text
    assert time.monotonic() - t0 < 5.0
    assert written(scratch) == 0


def test_bounded_extraction_unlisted_member_never_read(tmp_path: Path, fleet: Path,
                                                       scratch: Path) -> None:
    bundle = make_bundle(tmp_path, fleet)
    tar = tmp_path / "b.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(bundle, arcname=".")
        info = tarfile.TarInfo("images/huge.tar")
        info.size = 4 * 2**20
        tf.addfile(info, io.BytesIO(b"\0" * info.size))
    text = refused(tar, fleet, tmp_path / "root")
    assert "extra: images/huge.tar (not in the manifest" in text
    assert written(scratch) == 0


def test_bounded_extraction_copy_stops_at_the_listed_size() -> None:
    """A file that is (or grows) bigger than listed is read to one byte past its size."""
    src = io.BytesIO(b"x" * (5 * 2**20))
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        got, _ = copy_bounded(src, 1000, w)
        assert got == 1001 and src.tell() <= 1001
        assert len(os.read(r, 1 << 20)) == 1000
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tar"])
def test_bounded_extraction_entry_count_bounded(tmp_path: Path, fleet: Path, as_tar: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """More entries than any bundle holds (here the limit is lowered to 40): refused while
    listing, directories counted too, before any file is read."""
    monkeypatch.setattr(source, "MAX_ENTRIES", 40)
    bundle = make_bundle(tmp_path, fleet)
    deep = bundle / "site"
    for i in range(50):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    target = bundle
    if as_tar:
        target = tmp_path / "b.tar"
        with tarfile.open(target, "w") as tf:
            tf.add(bundle, arcname="")
    assert "more than 40 entries" in refused(target, fleet, tmp_path / "root")


def test_bounded_extraction_tar_cut_short_refused_in_one_line(tmp_path: Path,
                                                              fleet: Path) -> None:
    """A tar cut short inside a listed member's data (a partial copy)."""
    tar = make_bundle(tmp_path, fleet, tar=True)
    rel = f"pyz/{pyz_name('x86_64')}"
    with tarfile.open(tar) as tf:
        cut = tf.getmember(rel).offset_data + 5
    os.truncate(tar, cut)
    text = refused(tar, fleet, tmp_path / "root")
    assert "is damaged (unexpected end of data); copy it again" in text


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a//b", "site/./x", "fleet/\x1b[2J"])
def test_bounded_extraction_unsafe_tar_paths_refused(tmp_path: Path, fleet: Path,
                                                     name: str) -> None:
    bundle = make_bundle(tmp_path, fleet)
    tar = tmp_path / "b.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(bundle, arcname="")
        info = tarfile.TarInfo(name)
        tf.addfile(info, io.BytesIO(b""))
    text = refused(tar, fleet, tmp_path / "root")
    assert "unsafe path in bundle tar" in text and "\x1b" not in text


# --- no links ---------------------------------------------------------------------------------

def test_no_links_symlinked_listed_file_in_directory_refused(tmp_path: Path,
                                                             fleet: Path) -> None:
    """A listed file that is a symlink to an identical file outside the bundle."""
    bundle = make_bundle(tmp_path, fleet)
    outside = tmp_path / "outside.trust"
    shutil.copyfile(bundle / "fleet/operators.trust", outside)
    (bundle / "fleet/operators.trust").unlink()
    (bundle / "fleet/operators.trust").symlink_to(outside)
    text = refused(bundle, fleet, tmp_path / "root")
    assert "not a regular file: fleet/operators.trust is a symlink" in text


def test_no_links_symlinked_directory_in_directory_refused(tmp_path: Path, fleet: Path) -> None:
    bundle = make_bundle(tmp_path, fleet)
    shutil.move(bundle / "fleet", tmp_path / "elsewhere")
    (bundle / "fleet").symlink_to(tmp_path / "elsewhere")
    text = refused(bundle, fleet, tmp_path / "root")
    assert "missing: fleet/swarm.key" in text and "extra: fleet (a symlink" in text


def test_no_links_hardlinked_file_in_directory_refused(tmp_path: Path, fleet: Path) -> None:
    bundle = make_bundle(tmp_path, fleet)
    os.link(bundle / "fleet/swarm.key", tmp_path / "second-name")
    text = refused(bundle, fleet, tmp_path / "root")
    assert "not a regular file: fleet/swarm.key is a hardlink" in text


def test_no_links_fifo_in_directory_refused(tmp_path: Path, fleet: Path) -> None:
    bundle = make_bundle(tmp_path, fleet)
    (bundle / "site/peers.txt").unlink()
    os.mkfifo(bundle / "site/peers.txt")
    assert "site/peers.txt is a fifo" in refused(bundle, fleet, tmp_path / "root")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_no_links_link_or_special_member_in_tar_refused(tmp_path: Path, fleet: Path,
                                                        kind: bytes) -> None:
    bundle = make_bundle(tmp_path, fleet, tar=True)
    bad = tmp_path / "bad.tar"
    with tarfile.open(bundle) as src, tarfile.open(bad, "w") as dst:
        for member in src:
            if member.name == "fleet/operators.trust":
                member.type, member.size, member.linkname = kind, 0, "/etc/passwd"
                dst.addfile(member)
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    text = refused(bad, fleet, tmp_path / "root")
    assert "not a regular file: fleet/operators.trust is a" in text


# --- one read ---------------------------------------------------------------------------------

def test_one_read_stick_swapped_after_verify_installs_the_checked_bytes(
        tmp_path: Path, fleet: Path) -> None:
    """Whoever controls the stick swaps the agent right after it was checked: install must
    still install the bytes it checked (it reads only its private copies)."""
    bundle = make_bundle(tmp_path, fleet)
    pyz = bundle / "pyz" / pyz_name("x86_64")
    checked = pyz.read_bytes()

    def swap(line: str) -> None:
        if line.startswith("bundle OK"):
            pyz.write_bytes(b"evil" * len(checked))
            (bundle / "fleet/operators.trust").write_text("ed25519:00 evil\n")

    root = tmp_path / "root"
    install_into(bundle, fleet, root, progress=swap)
    assert (root / "usr/local/lib/beemesh/beemesh.pyz").read_bytes() == checked
    assert (root / "etc/beemesh/fleet/operators.trust").read_bytes() == \
        (fleet / "operators.trust").read_bytes()


# --- images[].path ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["../../etc/shadow", "images/unlisted.tar", "/dev/zero"])
def test_image_path_outside_the_hashed_list_refused(tmp_path: Path, fleet: Path,
                                                    path: str) -> None:
    bundle = make_bundle(tmp_path, fleet)
    resign(bundle, fleet, images=[{"name": "x", "path": path}])
    text = refused(bundle, fleet, tmp_path / "root")
    assert "unsafe image path in manifest" in text and "not one of the listed" in text


# --- rollback ---------------------------------------------------------------------------------

def test_rollback_podman_load_fails_leaves_root_unchanged(tmp_path: Path,
                                                          fleet: Path) -> None:
    root = tmp_path / "root"
    install_into(make_bundle(tmp_path, fleet, "v1"), fleet, root)
    before = snapshot(root)
    bundle = make_bundle(tmp_path, fleet, "v2", pyz=b"agent v2")
    (bundle / "images").mkdir()
    (bundle / "images/garbage.tar").write_bytes(b"not an image archive" * 100)
    resign(bundle, fleet, images=[{"name": "example/garbage:1", "path": "images/garbage.tar"}])
    with pytest.raises(UserError, match=r"loading image example/garbage:1|podman CLI"):
        install_into(bundle, fleet, root)
    assert snapshot(root) == before


def test_rollback_write_failure_partway_restores_previous_files(
        tmp_path: Path, fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the agent, keys and config were replaced (here: the unit's directory
    cannot be written) puts the old ones back and removes what was new."""
    root = tmp_path / "root"
    install_into(make_bundle(tmp_path, fleet, "v1"), fleet, root)
    (root / "var/lib/beemesh/machine.key").unlink()
    before = snapshot(root)
    real = install_mod.Changes.write

    def failing(self, path, *a, **kw):  # type: ignore[no-untyped-def]
        if path.name == "beemesh.service":
            raise OSError(28, "No space left on device")
        return real(self, path, *a, **kw)

    monkeypatch.setattr(install_mod.Changes, "write", failing)
    with pytest.raises(OSError):
        install_into(make_bundle(tmp_path, fleet, "v2", pyz=b"agent v2"), fleet, root)
    assert snapshot(root) == before


def test_rollback_fresh_machine_left_empty(tmp_path: Path, fleet: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install_mod, "save_key", lambda *a: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(OSError):
        install_into(make_bundle(tmp_path, fleet), fleet, root)
    assert snapshot(root) == {}


# --- anti-rollback ----------------------------------------------------------------------------

def test_anti_rollback_older_bundle_refused_unless_allow_downgrade(tmp_path: Path,
                                                                   fleet: Path) -> None:
    root = tmp_path / "root"
    old = make_bundle(tmp_path, fleet, "old", pyz=b"old agent")
    resign(old, fleet, ts=time.time() - 86400)
    new = make_bundle(tmp_path, fleet, "new", pyz=b"new agent")
    install_into(new, fleet, root)
    before = snapshot(root)
    with pytest.raises(BundleRefused) as e:
        install_into(old, fleet, root)
    assert "older bundle" in str(e.value) and "--allow-downgrade" in str(e.value)
    assert snapshot(root) == before
    install_into(new, fleet, root)  # the same bundle again is fine
    install_into(old, fleet, root, allow_downgrade=True)
    assert (root / "usr/local/lib/beemesh/beemesh.pyz").read_bytes().startswith(b"old agent")


def test_anti_rollback_lower_version_refused(tmp_path: Path, fleet: Path) -> None:
    root = tmp_path / "root"
    install_into(make_bundle(tmp_path, fleet, "new"), fleet, root)
    old = make_bundle(tmp_path, fleet, "old")
    (old / "pyz").rename(tmp_path / "old-pyz")
    (old / "pyz").mkdir()
    for arch in ("x86_64", "aarch64"):
        (old / "pyz" / pyz_name(arch, "0.0.9")).write_bytes(b"ancient")
    resign(old, fleet, ts=time.time() + 3600, version="0.0.9")
    with pytest.raises(BundleRefused, match=r"older bundle.*--allow-downgrade"):
        install_into(old, fleet, root)


def test_anti_rollback_cli_names_the_flag_in_one_line(tmp_path: Path, fleet: Path) -> None:
    root = tmp_path / "root"
    install_into(make_bundle(tmp_path, fleet, "new"), fleet, root)
    old = make_bundle(tmp_path, fleet, "old")
    resign(old, fleet, ts=time.time() - 86400)
    env = {**os.environ, "PYTHONPATH": str(AGENT)}
    proc = subprocess.run([sys.executable, "-m", "beemesh", "bundle", "install", str(old),
                           "--root", str(root), "--fleet", str(fleet), "--arch", "x86_64"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "older bundle" in lines[-2] and "--allow-downgrade" in lines[-2], lines


# --- modes ------------------------------------------------------------------------------------

def test_modes_installed_files_tight_even_under_umask_0(tmp_path: Path, fleet: Path) -> None:
    root = tmp_path / "root"
    old = os.umask(0)
    try:
        install_into(make_bundle(tmp_path, fleet), fleet, root)
    finally:
        os.umask(old)
    for rel, (kind, mode, _) in snapshot(root).items():
        assert kind == "link" or mode & 0o022 == 0, f"{rel} is {oct(mode)}"
    modes = {rel: mode for rel, (_, mode, _) in snapshot(root).items()}
    assert modes["usr/local/lib/beemesh/beemesh.pyz"] == 0o755
    assert modes["etc/beemesh/fleet/swarm.key"] == 0o600
    assert modes["etc/beemesh/fleet/workplane.key"] == 0o600
    assert modes["etc/beemesh/fleet/operators.trust"] == 0o644
    assert modes["etc/beemesh/agent.toml"] == 0o644
    assert modes["etc/systemd/system/beemesh.service"] == 0o644
    assert modes["var/lib/beemesh/machine.key"] == 0o600
    assert (root / "usr/local/lib/beemesh/beemesh.pyz").stat().st_uid == os.geteuid()


def test_modes_files_from_a_tar_are_private_copies(tmp_path: Path, fleet: Path) -> None:
    """What verify copies out of a tar is 0600 in a 0700 directory of the installer's,
    whatever modes the tar claims (create writes 0644 for most)."""
    tar = make_bundle(tmp_path, fleet, tar=True)
    stage = Path(tempfile.mkdtemp(dir=tmp_path))
    trusted, trust_path = load_trust(fleet, None)
    report = verify(tar, trusted, trust_path, stage=stage)
    assert report.ok, report.problems
    assert (stage.stat().st_mode & 0o777) == 0o700
    assert report.staged and MANIFEST not in report.staged
    for path in stage.rglob("*"):
        st = path.stat()
        assert st.st_uid == os.geteuid()
        assert st.st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
