"""Probe IO (beemesh.probing) against real sockets on 127.0.0.1; each test runs its own trio.run."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
import trio

from beemesh.manifest import ProbeSpec
from beemesh.node import checks as probing
from beemesh.node.checks import exec_probe, http_probe, run_probe, tcp_probe
from beemesh.node.health import Outcome
from beemesh.runtime import RuntimeFailure, RuntimeUnavailable

Handler = Callable[[trio.SocketStream, bytes], Awaitable[None]]


async def read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


def serve_and_probe(handler: Handler, probe: Callable[[int], Awaitable[Outcome]]
                    ) -> tuple[Outcome, list[bytes], float]:
    """Serve `handler` on a free loopback port, run `probe(port)`: (outcome, requests, seconds)."""
    requests: list[bytes] = []

    async def on_connection(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                head = await read_head(stream)
                requests.append(head)
                await handler(stream, head)
            except trio.BrokenResourceError:
                pass  # the probe hung up first

    async def main() -> tuple[Outcome, float]:
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            start = trio.current_time()
            outcome = await probe(port)
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
        return outcome, elapsed

    outcome, elapsed = trio.run(main)
    return outcome, requests, elapsed


def reply(raw: bytes) -> Handler:
    async def handler(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(raw)
    return handler


def status(code: int) -> Handler:
    return reply(f"HTTP/1.1 {code} Whatever\r\nContent-Length: 2\r\n\r\nok".encode())


async def never_answer(stream: trio.SocketStream, head: bytes) -> None:
    await trio.sleep_forever()


def get(path: str = "/healthz", headers: tuple[tuple[str, str], ...] = (),
        timeout_s: float = 2.0) -> Callable[[int], Awaitable[Outcome]]:
    return lambda port: http_probe("127.0.0.1", port, path, headers, timeout_s)


@contextmanager
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# ---- http -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [
    (200, Outcome.SUCCESS), (204, Outcome.SUCCESS), (302, Outcome.SUCCESS),
    (399, Outcome.SUCCESS), (400, Outcome.FAILURE), (404, Outcome.FAILURE),
    (500, Outcome.FAILURE), (503, Outcome.FAILURE),
])
def test_http_status_decides(code: int, expected: Outcome) -> None:
    outcome, _, _ = serve_and_probe(status(code), get())
    assert outcome is expected


def test_http_request_carries_our_headers_and_the_probes() -> None:
    _, requests, _ = serve_and_probe(status(200), get("/healthz?deep=1", (("X-Probe", "yes"),)))
    lines = requests[0].decode().split("\r\n")
    assert lines[0] == "GET /healthz?deep=1 HTTP/1.1"
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    assert headers["host"].startswith("127.0.0.1:")
    assert headers["user-agent"] == "beemesh-probe/1"
    assert headers["connection"] == "close"
    assert headers["x-probe"] == "yes"


def test_http_probe_headers_override_host_and_user_agent() -> None:
    given = (("Host", "app.example"), ("user-agent", "mine"), ("Connection", "keep-alive"))
    _, requests, _ = serve_and_probe(status(200), get(headers=given))
    head = requests[0].decode().lower()
    assert "host: app.example\r\n" in head
    assert "user-agent: mine\r\n" in head
    assert "beemesh-probe" not in head
    assert "connection: close\r\n" in head
    assert "keep-alive" not in head
    assert head.count("host:") == 1


def test_http_non_ascii_path_is_percent_encoded() -> None:
    _, requests, _ = serve_and_probe(status(200), get("/gesundheit/ö?a=%20"))
    assert requests[0].startswith(b"GET /gesundheit/%C3%B6?a=%20 HTTP/1.1\r\n")


def test_http_ipv6_host_header_is_bracketed() -> None:
    headers = dict(probing._request_headers("fd00::1", 8080, ()))
    assert headers[b"Host"] == b"[fd00::1]:8080"


def test_http_skips_informational_responses() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    outcome, _, _ = serve_and_probe(reply(raw), get())
    assert outcome is Outcome.SUCCESS


def test_http_reads_only_the_head() -> None:
    async def head_then_endless_body(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        await trio.sleep_forever()

    outcome, _, elapsed = serve_and_probe(head_then_endless_body, get(timeout_s=2.0))
    assert outcome is Outcome.SUCCESS
    assert elapsed < 1.0


def test_http_endless_head_fails_without_reading_it_all() -> None:
    async def endless_header(stream: trio.SocketStream, head: bytes) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nX-Big: ")
        while True:
            await stream.send_all(b"a" * 65536)

    outcome, _, elapsed = serve_and_probe(endless_header, get(timeout_s=2.0))
    assert outcome is Outcome.FAILURE
    assert elapsed < 1.0


@pytest.mark.parametrize("raw", [b"", b"not http at all\r\n\r\n", b"HTTP/1.1 200 OK\r\n"])
def test_http_closed_or_garbled_answer_fails(raw: bytes) -> None:
    outcome, _, _ = serve_and_probe(reply(raw), get())
    assert outcome is Outcome.FAILURE


def test_http_timeout_fails_within_the_timeout() -> None:
    outcome, _, elapsed = serve_and_probe(never_answer, get(timeout_s=0.3))
    assert outcome is Outcome.FAILURE
    assert 0.3 <= elapsed < 1.0


def test_http_refused_connection_fails() -> None:
    with closed_port() as port:
        assert trio.run(get(), port) is Outcome.FAILURE


# ---- tcp ------------------------------------------------------------------------------------


def test_tcp_open_port_succeeds() -> None:
    outcome, _, _ = serve_and_probe(never_answer,
                                    lambda port: tcp_probe("127.0.0.1", port, 1.0))
    assert outcome is Outcome.SUCCESS


def test_tcp_closed_port_fails() -> None:
    with closed_port() as port:
        assert trio.run(tcp_probe, "127.0.0.1", port, 1.0) is Outcome.FAILURE


# ---- exec -----------------------------------------------------------------------------------


def exec_outcome(run_exec: Callable[[], int], timeout_s: float = 1.0) -> Outcome:
    return trio.run(exec_probe, run_exec, timeout_s)


@pytest.mark.parametrize(("code", "expected"), [(0, Outcome.SUCCESS), (1, Outcome.FAILURE),
                                                (137, Outcome.FAILURE)])
def test_exec_exit_code_decides(code: int, expected: Outcome) -> None:
    assert exec_outcome(lambda: code) is expected


@pytest.mark.parametrize("error", [RuntimeFailure("podman did not answer"),
                                   RuntimeUnavailable("no socket")])
def test_exec_runtime_failure_is_unknown(error: RuntimeFailure) -> None:
    def fail() -> int:
        raise error
    assert exec_outcome(fail) is Outcome.UNKNOWN


def test_exec_other_errors_are_bugs_and_propagate() -> None:
    def broken() -> int:
        raise ValueError("bug")
    with pytest.raises(ValueError, match="bug"):
        exec_outcome(broken)


def test_exec_gets_a_grace_period_for_runtime_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probing, "EXEC_GRACE_S", 0.5)

    def slow_setup() -> int:
        time.sleep(0.3)  # longer than timeout_s, shorter than timeout_s + grace
        return 0

    assert exec_outcome(slow_setup, timeout_s=0.1) is Outcome.SUCCESS


def test_exec_overrunning_the_deadline_fails_without_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probing, "EXEC_GRACE_S", 0.2)
    release = threading.Event()

    def hang() -> int:
        release.wait(10)
        return 0

    start = time.monotonic()
    try:
        assert exec_outcome(hang, timeout_s=0.1) is Outcome.FAILURE
        assert time.monotonic() - start < 1.5
    finally:
        release.set()


# ---- dispatch -------------------------------------------------------------------------------


def test_run_probe_http_uses_the_spec() -> None:
    spec = ProbeSpec(action="http", port=0, path="/ready", headers=(("X-A", "1"),))

    def probe(port: int) -> Awaitable[Outcome]:
        return run_probe(ProbeSpec(**{**spec.__dict__, "port": port}), "127.0.0.1", no_exec)

    outcome, requests, _ = serve_and_probe(status(404), probe)
    assert outcome is Outcome.FAILURE
    assert requests[0].startswith(b"GET /ready HTTP/1.1\r\n")
    assert b"X-A: 1\r\n" in requests[0]


def test_run_probe_tcp() -> None:
    outcome, _, _ = serve_and_probe(
        never_answer, lambda port: run_probe(ProbeSpec(action="tcp", port=port), "127.0.0.1",
                                             no_exec))
    assert outcome is Outcome.SUCCESS
    with closed_port() as port:
        spec = ProbeSpec(action="tcp", port=port)
        assert trio.run(run_probe, spec, "127.0.0.1", no_exec) is Outcome.FAILURE


def no_exec() -> int:
    raise AssertionError("exec must not run for an http or tcp probe")


@pytest.mark.parametrize("action", ["http", "tcp"])
def test_run_probe_without_address_is_unknown(action: str) -> None:
    spec = ProbeSpec(action=action, port=80)
    assert trio.run(run_probe, spec, None, no_exec) is Outcome.UNKNOWN


def test_run_probe_exec_runs_the_callable() -> None:
    calls: list[int] = []

    def run_exec() -> int:
        calls.append(1)
        return 3

    spec = ProbeSpec(action="exec", command=("false",))
    assert trio.run(run_probe, spec, None, run_exec) is Outcome.FAILURE
    assert calls == [1]


@pytest.mark.parametrize("spec", [ProbeSpec(action="grpc", port=80), ProbeSpec(action="http")])
def test_run_probe_refuses_a_malformed_spec(spec: ProbeSpec) -> None:
    with pytest.raises(ValueError, match="not a runnable probe"):
        trio.run(run_probe, spec, "127.0.0.1", no_exec)
