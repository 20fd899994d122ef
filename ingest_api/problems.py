"""RFC 9457 problem details for every error the API answers."""

from __future__ import annotations

from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str,
    instance: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


MAX_LISTED_ERRORS = 50  # a 1 MB body of bad values must not get a 30 MB answer


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors()[:MAX_LISTED_ERRORS]:
        loc = [str(part) for part in err.get("loc", ())]
        errors.append({"field": ".".join(loc), "reason": str(err.get("msg", "invalid"))})
    return errors


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        total = len(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        if total > len(errors):
            detail += f" ({total} errors in all; the first {len(errors)} are listed)"
        return problem_response(
            422, "Invalid request", detail, request.url.path, errors=errors, errors_total=total
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            "Payload too large" if exc.status_code == 413 else "Error",
            str(exc.detail),
            request.url.path,
            dict(exc.headers or {}),
        )

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            503,
            "Storage unavailable",
            "the event store is unreachable; nothing was written, retry later",
            request.url.path,
            {"Retry-After": "1"},
        )
