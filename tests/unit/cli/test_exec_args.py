"""`beemesh exec POD [-c C] -- CMD`: every word after `--` is the command."""

from __future__ import annotations

import pytest

from beemesh.cli.parser import parse


@pytest.mark.parametrize(("argv", "pod", "container", "cmd"), [
    (["exec", "web-0", "--", "ls", "/"], "web-0", "", ["ls", "/"]),
    # flags of the command stay the command's, even one spelled like exec's own -c
    (["exec", "web-0", "-c", "web", "--", "sh", "-c", "exit 7"], "web-0", "web",
     ["sh", "-c", "exit 7"]),
    (["exec", "-c", "side", "db-1", "--", "cat", "--", "-x"], "db-1", "side",
     ["cat", "--", "-x"]),
    (["exec", "web-0"], "web-0", "", []),
])
def test_exec_keeps_the_words_after_the_separator(argv: list[str], pod: str, container: str,
                                                  cmd: list[str]) -> None:
    args = parse(argv)
    assert (args.pod, args.container, args.cmd) == (pod, container, cmd)


def test_a_usage_error_exits_1_as_every_error_does(capsys: pytest.CaptureFixture[str]) -> None:
    """2 is kept for "nothing could be placed" (`apply --wait`)."""
    with pytest.raises(SystemExit) as stop:
        parse(["exec", "web-0", "ls"])  # the command needs `--` before it
    assert stop.value.code == 1
    assert "unrecognized arguments: ls" in capsys.readouterr().err
