"""uvicorn's HTTP/1.1 protocols with TCP_NODELAY set on every connection they serve.

asyncio turns Nagle's algorithm off only on sockets whose `proto` is IPPROTO_TCP. uvicorn's
`--workers N` binds the listening socket itself with proto 0, and accepted sockets inherit it, so
their connections keep Nagle on (Kludex/uvicorn#3149). h11 writes a response's headers and body in two
sends; the body then waits for the client's delayed ACK, ~40 ms on Linux, on every keep-alive request.
Measured here with two workers: GET /api/me 52 ms, against 6 ms with one worker or with this class.
uvicorn 0.55 (the version pinned) sets TCP_NODELAY itself there, so these classes are now a belt
for an older uvicorn; tests/service/test_http_protocol.py fails if uvicorn regresses.

The deployment runs `uvicorn --http service.http_protocol:NoDelayHttpToolsProtocol --loop uvloop`
(httptools and uvloop save ~1.5 ms a request over h11 and asyncio); NoDelayH11Protocol is the same fix
for the pure-Python parser. With one worker and the asyncio loop they change nothing.
"""

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def enable_nodelay(transport: asyncio.BaseTransport) -> bool:
    """Turn Nagle's algorithm off on a TCP transport; False for anything else (a Unix socket)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        enable_nodelay(transport)
        super().connection_made(transport)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        enable_nodelay(transport)
        super().connection_made(transport)
