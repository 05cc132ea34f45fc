"""CLI output: aligned tables, JSON, human-readable byte counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from beemesh.output import NODE_COLUMNS, Column, emit, human_bytes, table

COLUMNS: list[Column] = [
    ("name", lambda r: r["name"]),
    ("cpu", lambda r: r["cpu"]),
    ("zone", lambda r: r["zone"]),
]
ROWS: list[dict[str, Any]] = [
    {"name": "alpha", "cpu": 4, "zone": "a"},
    {"name": "b", "cpu": 16, "zone": "north-east"},
]


def test_table_headers_upper_case() -> None:
    lines = table(ROWS, COLUMNS).split("\n")
    assert lines[0].split() == ["NAME", "CPU", "ZONE"]
    assert len(lines) == 3


def test_table_alignment() -> None:
    lines = table(ROWS, COLUMNS).split("\n")
    assert lines == [
        "NAME   CPU  ZONE",
        "alpha  4    a",
        "b      16   north-east",
    ]
    # Every column starts where its header starts, two spaces after the widest cell.
    for header in ("CPU", "ZONE"):
        start = lines[0].index(header)
        for line in lines:
            assert line[start - 2:start] == "  " and line[start] != " "


def test_table_no_trailing_whitespace() -> None:
    rows = [{"name": "x", "cpu": 1, "zone": ""}]
    for line in table(rows, COLUMNS).split("\n"):
        assert line == line.rstrip()


def test_table_header_wider_than_values() -> None:
    cols: list[Column] = [("long header", lambda r: r["v"]), ("x", lambda r: r["v"])]
    assert table([{"v": 1}], cols).split("\n") == ["LONG HEADER  X", "1            1"]


def test_table_empty_rows_prints_header() -> None:
    assert table([], COLUMNS) == "NAME  CPU  ZONE"


def test_table_stringifies_values() -> None:
    cols: list[Column] = [("v", lambda r: r["v"])]
    assert table([{"v": None}, {"v": 1.5}], cols).split("\n") == ["V", "None", "1.5"]


def test_emit_table(capsys: pytest.CaptureFixture[str]) -> None:
    emit(ROWS, COLUMNS, "table")
    assert capsys.readouterr().out == table(ROWS, COLUMNS) + "\n"


def test_emit_json_is_array(capsys: pytest.CaptureFixture[str]) -> None:
    emit(ROWS, COLUMNS, "json")
    out = capsys.readouterr().out
    assert out.endswith("\n")
    assert json.loads(out) == ROWS
    assert isinstance(json.loads(out), list)


def test_emit_json_empty(capsys: pytest.CaptureFixture[str]) -> None:
    emit([], COLUMNS, "json", empty="nothing here")
    assert json.loads(capsys.readouterr().out) == []


def test_emit_empty_message(capsys: pytest.CaptureFixture[str]) -> None:
    emit([], COLUMNS, "table", empty="no machines known yet")
    assert capsys.readouterr().out == "no machines known yet\n"
    emit([], COLUMNS, "table")
    assert capsys.readouterr().out == "NAME  CPU  ZONE\n"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1023, "1023B"),
        (1024, "1.0KiB"),
        (1536, "1.5KiB"),
        (1024**2 - 1, "1024.0KiB"),
        (1024**2, "1.0MiB"),
        (8 * 1024**3, "8.0GiB"),
        (int(2.5 * 1024**4), "2.5TiB"),
        (1024**5, "1024.0TiB"),  # no PiB: stays in TiB
        (-2048, "-2.0KiB"),
    ],
)
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


def test_node_columns_render_a_machine() -> None:
    row = {
        "peer_id": "12D3KooWabc", "self": True, "arch": "aarch64", "cpu": 1.5,
        "memory": 2 * 1024**3, "labels": {"zone": "a", "ssd": "yes"}, "age_s": 3.4,
        "cordoned": False,
    }
    other = {**row, "self": False, "labels": {}, "cordoned": True}
    lines = table([row, other], NODE_COLUMNS).split("\n")
    assert lines[0].split() == ["PEER", "ID", "ARCH", "CPU", "MEMORY", "STATUS", "LABELS", "AGE"]
    assert lines[1].split() == [
        "12D3KooWabc", "(self)", "aarch64", "1.5", "2.0GiB", "ready", "ssd=yes,zone=a", "3s",
    ]
    assert lines[2].split() == ["12D3KooWabc", "aarch64", "1.5", "2.0GiB", "cordoned", "-",
                                "3s"]
    accused = table([{**other, "suspect": True}], NODE_COLUMNS).split("\n")[1]
    assert accused.split()[4] == "suspect"  # its monitors miss its answers: says so first
