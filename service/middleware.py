"""Pure ASGI middleware: request bodies bounded before they are read, and headers every response gets.

Body limits sit here rather than in a route because a route only runs once FastAPI has read and parsed
the whole body: a 64 MiB JSON body was parsed on the event loop (stalling every other request) before
anything could refuse it. Here a declared `Content-Length` over the cap is answered 413 before one byte
is read, a body that turns out longer than it said (or a chunked one) is cut off at the cap while it
streams, and a client that stops sending mid-body gets 408 after `body_timeout` seconds instead of
holding its connection forever. Waiting for a slow body never blocks the event loop, so other requests
go on meanwhile.
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"request body is larger than the limit of {limit} bytes",
                         headers={"Connection": "close"})


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(status.HTTP_408_REQUEST_TIMEOUT,
                         f"the request body did not arrive within {seconds:g} s",
                         headers={"Connection": "close"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class BodyLimitMiddleware:
    """413 for bodies over the cap (multipart uploads: `max_upload_request_bytes`, anything else:
    `max_json_bytes`), 408 for a body that stalls (`body_timeout_seconds`). The errors are
    HTTPExceptions, so FastAPI's body parsing lets them through to the error handler unchanged."""

    def __init__(self, app: ASGIApp, settings: Any):
        self.app, self.settings = app, settings  # read per request: tests change settings in place

    def limit_for(self, scope: Scope) -> int:
        content_type = (_header(scope, b"content-type") or b"").lower()
        if content_type.startswith(b"multipart/form-data"):
            return self.settings.max_upload_request_bytes
        return self.settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, timeout = self.limit_for(scope), self.settings.body_timeout_seconds
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(scope, receive, send, BodyTooLarge(limit) if declared.isdigit() else
                          HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Content-Length"))
            return
        received, done, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, done
            if done:  # the body is complete: what follows is the wait for a disconnect, untimed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:  # raised outside FastAPI's own handling
            if started:
                raise
            await _refuse(scope, receive, send, exc)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: HTTPException) -> None:
    response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers={**(exc.headers or {}), "Connection": "close"})
    await response(scope, receive, send)


class SecurityHeadersMiddleware:
    """`nosniff` on every response; API responses not cacheable unless the route said otherwise (some
    carry secrets, e.g. a new token; crops and files set their own private caching)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if is_api and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
