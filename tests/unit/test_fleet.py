"""Fleet material: swarm.key, operator.key and the operator trust list."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from beemesh.errors import UserError
from beemesh.fleet import (
    OPERATOR_KEY,
    POLICY,
    SWARM_KEY,
    TRUST_LIST,
    Fleet,
    format_swarm_key,
    format_trust_entry,
    init_fleet,
    load_policy,
    parse_swarm_key,
    parse_trust_list,
    write_policy,
)
from beemesh.identity import KEY_PREFIX, KeyPair, load_key

HEX64 = "ab" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    out = tmp_path / "fleet"
    init_fleet(out)
    return out


def write_swarm_key(directory: Path, text: str) -> Path:
    path = directory / SWARM_KEY
    path.unlink(missing_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_init_creates_swarm_key(tmp_path: Path) -> None:
    out, _ = init_fleet(tmp_path / "f")
    path = out / SWARM_KEY
    assert mode(path) == 0o600
    lines = path.read_text().split("\n")
    assert lines[-1] == ""  # ends with a newline
    assert lines[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"]
    assert re.fullmatch(r"[0-9a-f]{64}", lines[2])
    assert len(lines) == 4


def test_init_creates_operator_key_and_trust_list(tmp_path: Path) -> None:
    out, operator = init_fleet(tmp_path / "f", operator_name="alice")
    key_path = out / OPERATOR_KEY
    assert mode(key_path) == 0o600
    assert load_key(key_path, "operator key", "fix") == operator
    trust = (out / TRUST_LIST).read_text()
    assert f"{KEY_PREFIX}{operator.public_key.hex()} alice" in trust
    assert parse_trust_list(trust, out / TRUST_LIST) == {operator.public_key: "alice"}


def test_init_makes_fresh_material_each_time(tmp_path: Path) -> None:
    a_out, a_op = init_fleet(tmp_path / "a")
    b_out, b_op = init_fleet(tmp_path / "b")
    assert a_op.seed != b_op.seed
    assert (a_out / SWARM_KEY).read_text() != (b_out / SWARM_KEY).read_text()


def test_load_matches_init(tmp_path: Path) -> None:
    out, operator = init_fleet(tmp_path / "f")
    fleet = Fleet.load(out)
    assert fleet.directory == out
    assert fleet.psk_hex == (out / SWARM_KEY).read_text().split("\n")[2]
    assert len(fleet.psk_hex) == 64
    assert operator.public_key in fleet.trusted_operators()
    assert fleet.trusted_operators()[operator.public_key] == "operator"
    assert fleet.operator_key() == operator


@pytest.mark.parametrize("existing", [SWARM_KEY, OPERATOR_KEY, TRUST_LIST])
def test_init_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    out = tmp_path / "f"
    out.mkdir()
    (out / existing).write_text("keep me\n")
    with pytest.raises(UserError) as e:
        init_fleet(out)
    assert str(out / existing) in str(e.value)
    assert "refusing to overwrite" in str(e.value)
    assert (out / existing).read_text() == "keep me\n"
    # Nothing else was written either.
    assert sorted(p.name for p in out.iterdir()) == [existing]


def test_init_twice_refused_and_material_kept(fleet_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in fleet_dir.iterdir()}
    with pytest.raises(UserError):
        init_fleet(fleet_dir)
    assert {p.name: p.read_bytes() for p in fleet_dir.iterdir()} == before


@pytest.mark.parametrize(
    "text",
    [
        f"/key/swarm/psk/2.0.0/\n/base16/\n{HEX64}\n",  # wrong header
        f"/key/swarm/psk/1.0.0/\n/base64/\n{HEX64}\n",  # wrong encoding line
        f"/base16/\n/key/swarm/psk/1.0.0/\n{HEX64}\n",  # header lines swapped
        "/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 31 + "\n",  # short hex
        "/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 33 + "\n",  # long hex
        "/key/swarm/psk/1.0.0/\n/base16/\n" + "zz" * 32 + "\n",  # non-hex
        "/key/swarm/psk/1.0.0/\n/base16/\n",  # key line missing
        f"{HEX64}\n",  # bare hex
        f"/key/swarm/psk/1.0.0/\n/base16/\n{HEX64}\n{HEX64}\n",  # extra line
        "",
    ],
    ids=[
        "header", "encoding", "swapped", "short", "long", "nonhex", "nokey", "bare", "extra",
        "empty",
    ],
)
def test_malformed_swarm_key_names_file(fleet_dir: Path, text: str) -> None:
    path = write_swarm_key(fleet_dir, text)
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert str(path) in str(e.value)
    assert "network key" in str(e.value)


def test_parse_swarm_key_accepts_uppercase_and_whitespace(tmp_path: Path) -> None:
    text = f"  /key/swarm/psk/1.0.0/ \n/base16/\n  {HEX64.upper()}  \n\n"
    assert parse_swarm_key(text, tmp_path / SWARM_KEY) == HEX64


def test_format_parse_swarm_key_round_trip(tmp_path: Path) -> None:
    psk = bytes(range(32))
    assert parse_swarm_key(format_swarm_key(psk), tmp_path / SWARM_KEY) == psk.hex()


def test_missing_swarm_key(fleet_dir: Path) -> None:
    (fleet_dir / SWARM_KEY).unlink()
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert str(fleet_dir / SWARM_KEY) in str(e.value)
    assert "not found" in str(e.value)


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604])
def test_world_readable_swarm_key_refused(fleet_dir: Path, bad_mode: int) -> None:
    path = fleet_dir / SWARM_KEY
    path.chmod(bad_mode)
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert f"chmod 600 {path}" in str(e.value)


def test_missing_fleet_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(UserError) as e:
        Fleet.load(missing)
    assert str(missing) in str(e.value)
    assert "fleet init" in str(e.value)


def test_missing_trust_list(fleet_dir: Path) -> None:
    (fleet_dir / TRUST_LIST).unlink()
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert str(fleet_dir / TRUST_LIST) in str(e.value)
    assert "not found" in str(e.value)


def test_trust_list_not_a_file(fleet_dir: Path) -> None:
    path = fleet_dir / TRUST_LIST
    path.unlink()
    path.mkdir()
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert str(path) in str(e.value)


def test_trust_list_not_utf8(fleet_dir: Path) -> None:
    path = fleet_dir / TRUST_LIST
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    assert str(path) in str(e.value)


def test_trust_list_need_not_be_private(fleet_dir: Path) -> None:
    (fleet_dir / TRUST_LIST).chmod(0o644)
    assert len(Fleet.load(fleet_dir).trusted_operators()) == 1


@pytest.mark.parametrize(
    ("bad_line", "line_no"),
    [
        ("ed25519:" + "ab" * 31, 4),  # short key
        ("ab" * 32 + " bob", 4),  # no prefix
        ("ed25519:" + "zz" * 32, 4),  # not hex
        ("rsa:" + "ab" * 32, 4),
    ],
)
def test_malformed_trust_line_names_line_number(
    tmp_path: Path, bad_line: str, line_no: int
) -> None:
    good = format_trust_entry(KeyPair(b"\x01" * 32).public_key, "alice")
    text = "# comment\n\n" + good + bad_line + "\n" + good
    path = tmp_path / TRUST_LIST
    with pytest.raises(UserError) as e:
        parse_trust_list(text, path)
    assert f"line {line_no}" in str(e.value)
    assert str(path) in str(e.value)


def test_malformed_trust_line_via_fleet_load(fleet_dir: Path) -> None:
    path = fleet_dir / TRUST_LIST
    path.write_text(path.read_text() + "\nnot a key\n")
    with pytest.raises(UserError) as e:
        Fleet.load(fleet_dir)
    n = len(path.read_text().splitlines())
    assert f"line {n}" in str(e.value)
    assert str(path) in str(e.value)


def test_trust_list_comments_and_blank_lines(tmp_path: Path) -> None:
    a = KeyPair(b"\x01" * 32).public_key
    b = KeyPair(b"\x02" * 32).public_key
    c = KeyPair(b"\x03" * 32).public_key
    text = (
        "# header comment\n"
        "\n"
        "   \n"
        f"{KEY_PREFIX}{a.hex()} alice   # trailing comment\n"
        f"   {KEY_PREFIX}{b.hex()}\n"
        "#" + f"{KEY_PREFIX}{c.hex()} commented-out\n"
        f"{KEY_PREFIX}{c.hex()} carol the operator\n"
    )
    trusted = parse_trust_list(text, tmp_path / TRUST_LIST)
    assert trusted == {a: "alice", b: "operator-5", c: "carol the operator"}


def test_empty_trust_list_is_empty(tmp_path: Path) -> None:
    assert parse_trust_list("", tmp_path / TRUST_LIST) == {}
    assert parse_trust_list("# nobody yet\n", tmp_path / TRUST_LIST) == {}


def test_operator_key_missing_names_file(fleet_dir: Path) -> None:
    (fleet_dir / OPERATOR_KEY).unlink()
    fleet = Fleet.load(fleet_dir)  # machines do not need the operator key
    with pytest.raises(UserError) as e:
        fleet.operator_key()
    assert str(fleet_dir / OPERATOR_KEY) in str(e.value)


# --- the policy and the trust list's reload -------------------------------------------------


def test_new_fleets_require_admission_and_older_ones_do_not(tmp_path: Path) -> None:
    out, _ = init_fleet(tmp_path / "new")
    assert Fleet.load(out).admission_required
    (out / POLICY).unlink()  # a fleet made before admission
    assert not Fleet.load(out).admission_required
    write_policy(out, "required")
    assert Fleet.load(out).admission_required


@pytest.mark.parametrize("text", ['admission = "maybe"\n', "admission = true\n", "x = 1\n",
                                  "not toml ["])
def test_a_malformed_policy_is_one_clear_line(tmp_path: Path, text: str) -> None:
    out, _ = init_fleet(tmp_path / "f")
    (out / POLICY).write_text(text)
    with pytest.raises(UserError, match=r"fleet policy .*fleet\.toml") as exc:
        load_policy(out)
    assert "\n" not in str(exc.value)


def test_the_trust_list_reloads_when_its_file_changes(tmp_path: Path) -> None:
    out, operator = init_fleet(tmp_path / "f")
    trust = Fleet.load(out).trusted_operators
    assert set(trust()) == {operator.public_key}
    new = KeyPair.generate()
    path = out / TRUST_LIST
    path.write_text(path.read_text() + format_trust_entry(new.public_key, "bob"))
    os.utime(path, ns=(1, 2))  # a new stamp even within the clock's resolution
    assert trust()[new.public_key] == "bob"
    path.write_text("garbage that is no key\n")  # a broken edit keeps the list in force
    os.utime(path, ns=(3, 4))
    assert set(trust()) == {operator.public_key, new.public_key}
    path.write_text(format_trust_entry(new.public_key, "bob"))  # the old key removed
    os.utime(path, ns=(5, 6))
    assert set(trust()) == {new.public_key}
