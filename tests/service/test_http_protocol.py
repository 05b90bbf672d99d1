"""The API's HTTP protocol turns Nagle off on the socket uvicorn's `--workers N` listens on."""

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.http_protocol import NoDelayH11Protocol, NoDelayHttpToolsProtocol, enable_nodelay


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def nodelay_seen_by(protocol: type, loop: str = "asyncio") -> tuple[httpx.Response, list[int]]:
    """Serve `hello` on a socket bound as `--workers N` binds it; TCP_NODELAY of each accepted socket."""
    seen: list[int] = []

    class Probe(protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            seen.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    config = uvicorn.Config(hello, host="127.0.0.1", port=0, http=Probe, loop=loop, lifespan="off",
                            log_level="warning")
    sock = config.bind_socket()  # the supervisor's path: a socket made with proto 0
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started
        with httpx.Client() as client:
            response = client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    return response, seen


def test_uvicorn_itself_now_turns_nagle_off_for_a_pre_bound_socket():
    """The bug the NoDelay protocols were written for (Kludex/uvicorn#3149: Nagle left on under
    `--workers N`) is fixed in the uvicorn the project pins (>= 0.55, seen here); the protocols stay
    harmless belts. If this fails, uvicorn regressed and the protocols matter again."""
    response, seen = nodelay_seen_by(H11Protocol)
    assert response.text == "ok"
    assert seen == [1]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("protocol", [NoDelayH11Protocol, NoDelayHttpToolsProtocol])
def test_the_api_protocols_turn_nagle_off_and_still_serve(protocol, loop):
    response, seen = nodelay_seen_by(protocol, loop)
    assert response.status_code == 200 and response.text == "ok"
    assert seen and all(seen)


def test_a_unix_socket_is_left_alone():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        class Transport:
            def get_extra_info(self, name):
                return a if name == "socket" else None

        assert enable_nodelay(Transport()) is False
