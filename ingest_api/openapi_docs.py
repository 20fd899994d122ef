"""The OpenAPI document, honest about errors: every error answer a route can give
is listed, as `application/problem+json` (RFC 9457), with the field-level list
that a 422 carries. FastAPI lists only 422, as plain JSON, so the generated
document is completed here, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from ingest_api.problems import MAX_LISTED_ERRORS, PROBLEM_JSON


class FieldError(BaseModel):
    field: str
    reason: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None  # 422: at most MAX_LISTED_ERRORS of them
    errors_total: int | None = None


WHY = {
    "400": "Bad request (for example a Last-Event-ID that is no stream id)",
    "401": "Missing or wrong key",
    "403": "This key may not do that",
    "404": "Nothing with this id (yet), or a session start for an unknown tariff",
    "409": "This id was used within retention_ms with another body",
    "410": "The share link has expired",
    "413": "Body over BILLING_MAX_BODY_BYTES",
    "422": f"Invalid input: each bad field listed (at most {MAX_LISTED_ERRORS})",
    "503": "Redis is unreachable: nothing was written; retry after Retry-After",
}


# Answers that are not JSON, by path: (status, media type, description).
NOT_JSON = {
    "/metrics": ("200", "text/plain; version=0.0.4; charset=utf-8", "Prometheus metrics"),
    "/v1/shares/{share_id}/qr.png": ("200", "image/png", "The QR code of the scan URL"),
    "/v1/shares/{share_id}/qr.svg": ("200", "image/svg+xml", "The QR code of the scan URL"),
    "/v1/stream": ("200", "text/event-stream", "Server-Sent Events of the outputs"),
    "/s/{token}": ("302", "text/plain", "To the activity page, with scan_id added"),
}


def _codes(path: str, method: str) -> list[str]:
    if path.startswith("/s/"):
        return ["404", "410", "422", "503"]
    if path in ("/healthz",):
        return []
    if path == "/readyz":
        return ["503"]
    codes = ["401", "422", "503"]
    if method in ("post", "put", "delete"):
        codes += ["404", "409", "413"]
    else:
        codes += ["400", "404"]
    return codes


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        problem = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["ProblemDetail"] = problem
        ref = {"$ref": "#/components/schemas/ProblemDetail"}
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if method in ("post", "put") and path.startswith("/v1/"):
                    responses.setdefault(
                        "200",
                        {
                            "description": "The same id and body again within retention_ms: "
                            "the first answer, nothing written",
                            "content": {"application/json": {"schema": {}}},
                        },
                    )
                if path in NOT_JSON:
                    code, media, why = NOT_JSON[path]
                    responses.pop("200", None)
                    responses[code] = {"description": why, "content": {media: {}}}
                for code in _codes(path, method):
                    responses[code] = {
                        "description": WHY[code],
                        "content": {PROBLEM_JSON: {"schema": ref}},
                    }
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
