"""Error responses that always serialise and never echo much of what the client sent.

FastAPI's own 422 echoes the whole offending input, which fails to serialise when it holds NaN, Infinity
or a lone surrogate (a 500 instead of a 422) and hands a 64 MiB body straight back. Here every error
body is plain JSON-safe data: `loc`, `msg`, `type`, and at most a short, escaped excerpt of the input.
"""

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

EXCERPT_CHARS = 80


def safe_text(value: Any, limit: int = 1000) -> str:
    """`value` as text that any JSON encoder accepts: lone surrogates escaped, cut at `limit`."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def excerpt(value: Any) -> str:
    """A short, escaped rendering of a client's input (NaN, Infinity and surrogates spelled out)."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    return safe_text(text, EXCERPT_CHARS)


def safe_detail(detail: Any, depth: int = 0) -> Any:
    """An HTTPException's detail made JSON-safe: strings escaped and bounded, non-finite floats as
    text, anything else as its string."""
    if isinstance(detail, str):
        return safe_text(detail)
    if isinstance(detail, bool | int) or detail is None:
        return detail
    if isinstance(detail, float):
        return detail if detail == detail and abs(detail) != float("inf") else str(detail)
    if depth > 5:
        return safe_text(detail)
    if isinstance(detail, dict):
        return {safe_text(k, 100): safe_detail(v, depth + 1) for k, v in list(detail.items())[:100]}
    if isinstance(detail, list | tuple):
        return [safe_detail(v, depth + 1) for v in list(detail)[:100]]
    return safe_text(detail)


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in list(errors)[:50]:
        item = {"loc": [safe_text(p, 100) if isinstance(p, str) else p for p in e.get("loc", ())],
                "msg": safe_text(e.get("msg", "")), "type": safe_text(e.get("type", ""), 100)}
        if "input" in e and e.get("type") != "missing":
            item["input"] = excerpt(e["input"])
        out.append(item)
    return out


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)


async def _http_handler(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": safe_detail(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
