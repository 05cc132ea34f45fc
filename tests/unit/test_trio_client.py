"""The work plane's API client (`api.trio_client`) against the agent's real API server on a
unix socket, and against sockets that misbehave: every failure is one UserError line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from beemesh.api import answers, trio_client
from beemesh.api.server import ApiError, ApiServer, Request, Response
from beemesh.errors import UserError


async def _echo(request: Request) -> Response:
    return Response(body={"got": request.json(), "method": request.method})


async def _refuse(request: Request) -> Response:
    raise ApiError(409, "replica already held")


async def _text(request: Request) -> Response:
    return Response(body="plain words", content_type="text/plain")


async def _stall(request: Request) -> Response:
    await trio.sleep_forever()
    raise AssertionError


def with_server(test: Callable[[Path], Awaitable[Any]]) -> Any:
    async def main(path: Path) -> Any:
        server = ApiServer(path)
        for target, handler in (("/echo", _echo), ("/refuse", _refuse), ("/text", _text),
                                ("/stall", _stall)):
            server.route("POST", target, handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            outcome = await _outcome(test, path)
            nursery.cancel_scope.cancel()
        return outcome.unwrap()
    return main


class _Outcome:
    def __init__(self, value: Any = None, error: UserError | None = None) -> None:
        self.value, self.error = value, error

    def unwrap(self) -> Any:
        """Raise the test's UserError outside the nursery (which would wrap it in a group)."""
        if self.error is not None:
            raise self.error
        return self.value


async def _outcome(test: Callable[[Path], Awaitable[Any]], path: Path) -> _Outcome:
    try:
        return _Outcome(await test(path))
    except UserError as e:
        return _Outcome(error=e)


def run_with_server(tmp_path: Path, test: Callable[[Path], Awaitable[Any]]) -> Any:
    return trio.run(with_server(test), tmp_path / "api.sock")


def test_a_call_sends_json_and_reads_the_answer(tmp_path: Path) -> None:
    async def test(path: Path) -> Any:
        return (await trio_client.call(path, "POST", "/echo", {"n": [1, 2]}),
                await trio_client.call(path, "POST", "/echo"),
                await trio_client.call(path, "POST", "/text"))
    assert run_with_server(tmp_path, test) == (
        {"got": {"n": [1, 2]}, "method": "POST"}, {"got": None, "method": "POST"}, "plain words")


def test_a_refusal_names_the_agents_reason(tmp_path: Path) -> None:
    async def test(path: Path) -> None:
        await trio_client.call(path, "POST", "/refuse", {})
    with pytest.raises(UserError, match="agent refused: replica already held"):
        run_with_server(tmp_path, test)


def test_no_agent_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no agent is running at .*; start one"):
        trio.run(trio_client.call, tmp_path / "missing.sock", "POST", "/echo")


@pytest.mark.parametrize(("error", "problem"), [
    (FileNotFoundError(2, "gone"), "no agent is running"),
    (ConnectionRefusedError(111, "refused"), "no agent is running"),
    (PermissionError(13, "denied"), "permission denied on /run/a.sock; run as the agent's user"),
    (OSError(5, "I/O error"), None),
])
def test_what_both_clients_say_when_the_socket_fails(error: OSError, problem: str | None) -> None:
    said = answers.unreachable(Path("/run/a.sock"), error)
    assert (said is None) if problem is None else (said is not None and problem in str(said))


def test_an_agent_that_does_not_answer_in_time(tmp_path: Path) -> None:
    async def test(path: Path) -> None:
        await trio_client.call(path, "POST", "/stall", timeout=0.3)
    with pytest.raises(UserError, match="did not answer within 0 s"):
        run_with_server(tmp_path, test)


async def _serve_raw(path: Path, answer: bytes, test: Callable[[Path], Awaitable[Any]]) -> Any:
    """A socket that answers every request with `answer`, whatever it is, and closes."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(4)

    async def handle(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(answer)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, [trio.SocketListener(sock)])
        outcome = await _outcome(test, path)
        nursery.cancel_scope.cancel()
    return outcome.unwrap()


@pytest.mark.parametrize(("answer", "problem"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "broken HTTP"),
    (b"", "closed the connection without answering"),
    (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n{nope",
     "broken JSON"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 9999\r\n\r\nshort", "broken HTTP"),
])
def test_a_broken_answer_is_one_line(tmp_path: Path, answer: bytes, problem: str) -> None:
    async def test(path: Path) -> None:
        await trio_client.call(path, "POST", "/v1/work/view", {})
    with pytest.raises(UserError, match=problem):
        trio.run(_serve_raw, tmp_path / "raw.sock", answer, test)


def test_an_answer_past_the_cap_is_refused(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trio_client, "MAX_ANSWER_BYTES", 1000)
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"x" * 5000

    async def test(path: Path) -> None:
        await trio_client.call(path, "POST", "/v1/work/view", {})
    with pytest.raises(UserError, match="answered more than"):
        trio.run(_serve_raw, tmp_path / "raw.sock", answer, test)
