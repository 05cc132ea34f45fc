"""Agent settings: defaults <- TOML file <- flags, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from beemesh.config import (
    DEFAULT_LISTEN,
    DEFAULT_STATE_DIR,
    AgentConfig,
    load_config,
    parse_labels,
)
from beemesh.errors import UserError


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    cfg = load_config(None, {})
    assert cfg == AgentConfig()
    assert cfg.state_dir == DEFAULT_STATE_DIR == Path("/var/lib/beemesh")
    assert cfg.fleet is None
    assert cfg.listen == [DEFAULT_LISTEN] == ["/ip4/0.0.0.0/tcp/4001"]
    assert cfg.bootstrap == []
    assert cfg.labels == {}
    assert cfg.dead_after_s == 10
    assert cfg.record_refresh_s == 3.0
    assert cfg.gossip_heartbeat_s == 1.0
    assert cfg.bootstrap_backoff_max_s == 10.0


def test_derived_paths() -> None:
    cfg = load_config(None, {"state_dir": Path("/srv/bm")})
    assert cfg.fleet_dir == Path("/srv/bm/fleet")
    assert cfg.api_socket == Path("/srv/bm/api.sock")
    assert cfg.machine_key_path == Path("/srv/bm/machine.key")
    cfg = load_config(None, {"state_dir": Path("/srv/bm"), "fleet": Path("/f"),
                             "api": Path("/run/a.sock")})
    assert cfg.fleet_dir == Path("/f")
    assert cfg.api_socket == Path("/run/a.sock")


def test_default_lists_not_shared() -> None:
    a, b = AgentConfig(), AgentConfig()
    a.listen.append("x")
    a.labels["k"] = "v"
    assert b.listen == [DEFAULT_LISTEN]
    assert b.labels == {}


def test_file_values(tmp_path: Path) -> None:
    path = toml(tmp_path, """
state_dir = "/srv/beemesh"
fleet = "/etc/beemesh/fleet"
api = "/run/beemesh.sock"
listen = ["/ip4/0.0.0.0/tcp/5001", "/ip6/::/tcp/5001"]
bootstrap = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWabc"]
dead_after_s = 30
record_refresh_s = 10
gossip_heartbeat_s = 0.5
bootstrap_backoff_max_s = 60

[labels]
zone = "a"
ssd = "yes"
""")
    cfg = load_config(path, {})
    assert cfg.state_dir == Path("/srv/beemesh")
    assert isinstance(cfg.state_dir, Path)
    assert cfg.fleet == Path("/etc/beemesh/fleet")
    assert cfg.api == Path("/run/beemesh.sock")
    assert cfg.listen == ["/ip4/0.0.0.0/tcp/5001", "/ip6/::/tcp/5001"]
    assert cfg.bootstrap == ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWabc"]
    assert cfg.labels == {"zone": "a", "ssd": "yes"}
    assert cfg.dead_after_s == 30
    assert cfg.record_refresh_s == 10.0
    assert isinstance(cfg.record_refresh_s, float)
    assert cfg.gossip_heartbeat_s == 0.5
    assert cfg.bootstrap_backoff_max_s == 60.0


def test_flags_override_file(tmp_path: Path) -> None:
    path = toml(tmp_path, """
state_dir = "/srv/file"
listen = ["/ip4/0.0.0.0/tcp/5001"]
bootstrap = ["/ip4/10.0.0.2/tcp/4001"]
labels = { zone = "file" }
""")
    cfg = load_config(path, {
        "state_dir": Path("/srv/flag"),
        "listen": ["/ip4/127.0.0.1/tcp/6001"],
        "labels": {"zone": "flag"},
    })
    assert cfg.state_dir == Path("/srv/flag")
    assert cfg.listen == ["/ip4/127.0.0.1/tcp/6001"]
    assert cfg.labels == {"zone": "flag"}
    assert cfg.bootstrap == ["/ip4/10.0.0.2/tcp/4001"]  # not overridden: file value kept


def test_unset_flags_do_not_override(tmp_path: Path) -> None:
    path = toml(tmp_path, 'state_dir = "/srv/file"\nlisten = ["/ip4/0.0.0.0/tcp/1"]\n'
                          'labels = { a = "b" }\n')
    cfg = load_config(path, {"state_dir": None, "listen": None, "labels": None,
                             "bootstrap": [], "fleet": None})
    assert cfg.state_dir == Path("/srv/file")
    assert cfg.listen == ["/ip4/0.0.0.0/tcp/1"]
    assert cfg.labels == {"a": "b"}
    cfg = load_config(path, {"labels": {}, "listen": []})
    assert cfg.labels == {"a": "b"}
    assert cfg.listen == ["/ip4/0.0.0.0/tcp/1"]


def test_unknown_key_names_key(tmp_path: Path) -> None:
    path = toml(tmp_path, 'state_dir = "/x"\nrecord_tll_s = 5\n')
    with pytest.raises(UserError) as e:
        load_config(path, {})
    assert "'record_tll_s'" in str(e.value)
    assert "dead_after_s" in str(e.value)  # lists the known keys


def test_unknown_override_key() -> None:
    with pytest.raises(UserError, match="'colour'"):
        load_config(None, {"colour": "blue"})


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("state_dir = 5", "state_dir"),
        ("fleet = ['a']", "fleet"),
        ("listen = '/ip4/0.0.0.0/tcp/1'", "listen"),
        ("listen = [1, 2]", "listen"),
        ("bootstrap = 'x'", "bootstrap"),
        ("labels = 'a=b'", "labels"),
        ("labels = { a = 1 }", "labels"),
        ("dead_after_s = '10'", "dead_after_s"),
        ("dead_after_s = true", "dead_after_s"),
        ("record_refresh_s = false", "record_refresh_s"),
        ("gossip_heartbeat_s = [1]", "gossip_heartbeat_s"),
    ],
)
def test_wrong_type_names_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(UserError) as e:
        load_config(toml(tmp_path, line + "\n"), {})
    assert f"config key {key!r}" in str(e.value)


def test_int_setting_accepts_integer(tmp_path: Path) -> None:
    cfg = load_config(toml(tmp_path, "dead_after_s = 20\nrecord_refresh_s = 5\n"), {})
    assert cfg.dead_after_s == 20
    assert isinstance(cfg.dead_after_s, int)


def test_fractional_int_setting_refused(tmp_path: Path) -> None:
    """An integer setting given as 2.5 must be refused, not silently truncated to 2."""
    path = toml(tmp_path, "dead_after_s = 2.5\nrecord_refresh_s = 1\n")
    with pytest.raises(UserError) as e:
        load_config(path, {})
    assert "config key 'dead_after_s'" in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(UserError) as e:
        load_config(path, {})
    assert str(path) in str(e.value)
    assert "not found" in str(e.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "state_dir = \n[[[")
    with pytest.raises(UserError) as e:
        load_config(path, {})
    assert str(path) in str(e.value)
    assert "not valid TOML" in str(e.value)


def test_config_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        load_config(tmp_path, {})
    assert str(tmp_path) in str(e.value)


def test_non_utf8_config(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b"state_dir = '\xff\xfe'\n")
    with pytest.raises(UserError) as e:
        load_config(path, {})
    assert str(path) in str(e.value)


@pytest.mark.parametrize("refresh", [0, -1, 301])
def test_refresh_range(tmp_path: Path, refresh: float) -> None:
    path = toml(tmp_path, f"record_refresh_s = {refresh}\n")
    with pytest.raises(UserError, match="record_refresh_s"):
        load_config(path, {})


@pytest.mark.parametrize("dead", [0, -5, 301])
def test_dead_after_range(tmp_path: Path, dead: int) -> None:
    path = toml(tmp_path, f"dead_after_s = {dead}\nrecord_refresh_s = 0.5\n")
    with pytest.raises(UserError, match="dead_after_s"):
        load_config(path, {})


@pytest.mark.parametrize(("dead", "refresh"), [(1, 0.5), (300, 300), (10, 60)])
def test_dead_after_and_refresh_bounds_ok(tmp_path: Path, dead: int, refresh: float) -> None:
    cfg = load_config(toml(tmp_path, f"dead_after_s = {dead}\nrecord_refresh_s = {refresh}\n"),
                      {})
    assert (cfg.dead_after_s, cfg.record_refresh_s) == (dead, refresh)


# --- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("zone=a", {"zone": "a"}),
        ("zone=a,ssd=yes", {"zone": "a", "ssd": "yes"}),
        (" zone = a , ssd=yes ", {"zone": "a", "ssd": "yes"}),
        ("zone=a,,ssd=yes,", {"zone": "a", "ssd": "yes"}),
        ("empty=", {"empty": ""}),
        ("url=a=b", {"url": "a=b"}),
        ("zone=a,zone=b", {"zone": "b"}),
    ],
)
def test_parse_labels_ok(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", ["zone", "=a", " =a", "zone=a,ssd", "a=b, =c"])
def test_parse_labels_errors(text: str) -> None:
    with pytest.raises(UserError) as e:
        parse_labels(text)
    assert "is not key=value" in str(e.value)
    assert "--labels zone=a" in str(e.value)
