"""The one place where errors become HTTP answers, all as RFC 9457 problem details.

Every error body is ``application/problem+json``: ``type`` (a URN naming the kind of problem,
listed in the README), ``title``, ``status``, ``detail``, and extension members where a client
needs more (``errors`` for an invalid request, the per-event outcome of a refused batch).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.status import HTTP_500_INTERNAL_SERVER_ERROR
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.event_intake import IntakeFull
from api.portal.pages import error_page, is_portal
from billing.adapters.kafka_catalog import CatalogNotPublished
from billing.catalog import Catalog
from meterline.exceptions import (
    BadSignature,
    CurrencyInUse,
    Forbidden,
    GatewayRefused,
    GatewayUnavailable,
    IdempotencyConflict,
    IncompleteUsage,
    InvalidCatalog,
    InvalidEvent,
    InvalidQuery,
    InvalidRange,
    InvoiceStateError,
    LimitReached,
    MeterlineError,
    PaymentMismatch,
    PeriodIssued,
    RateLimited,
    Unauthenticated,
    UnknownCustomer,
    UnknownEntry,
    UnknownGrant,
    UnknownInvoice,
    UnknownPayment,
    UnsupportedMediaType,
)
from storage.connection import StoreUnavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
STATUS = {
    InvalidEvent: 400,
    InvalidRange: 422,  # before InvalidQuery, which it is a kind of: the first match counts
    InvalidQuery: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    UnknownCustomer: 404,
    UnknownInvoice: 404,
    UnknownEntry: 404,
    UnknownGrant: 404,
    UnknownPayment: 404,
    BadSignature: 400,
    PaymentMismatch: 422,
    GatewayRefused: 502,
    GatewayUnavailable: 503,
    InvoiceStateError: 409,
    PeriodIssued: 409,
    CurrencyInUse: 409,
    IncompleteUsage: 409,
    IdempotencyConflict: 409,
    LimitReached: 409,
    UnsupportedMediaType: 415,
    InvalidCatalog: 422,
    RateLimited: 429,
    IntakeFull: 503,
    CatalogNotPublished: 503,
}
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error (extension members vary by ``type``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:meterline:problem:unknown-invoice"])
    title: str
    status: int
    detail: str


def _documented(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": f"{description} (application/problem+json)"}


GUARDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented("No credential, or a key or token that is unknown, expired or revoked"),
    403: _documented("The caller's role does not allow this"),
    404: _documented("Not found, or another tenant's"),
    429: _documented("Over the key's rate: retry after Retry-After seconds"),
}
"""What every protected operation may answer, for the OpenAPI document."""


def problem(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None, **extensions: Any
) -> JSONResponse:
    """A problem details answer; ``kind`` is the problem's name in kebab case (``unknown-invoice``)."""
    body = {
        "type": f"urn:meterline:problem:{kind}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **jsonable_encoder(extensions),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def install_error_handlers(app: FastAPI) -> None:
    async def meterline_error(request: Request, error: Exception) -> Response:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)
        headers = None
        if status in (429, 503):
            headers = {"Retry-After": str(getattr(error, "retry_after_s", 5))}
        elif status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if is_portal(request):
            return error_page(
                request, _catalog(request), status, str(error), retry_after=(headers or {}).get("Retry-After")
            )
        return problem(status, kebab(type(error).__name__), str(error), headers)

    async def invalid_request(request: Request, error: Exception) -> Response:
        if not isinstance(error, RequestValidationError):
            raise error
        errors = [{"location": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in error.errors()]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        if is_portal(request):
            return error_page(request, _catalog(request), 422, detail)
        return problem(422, "invalid-request", detail, errors=errors)

    async def http_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, HTTPException):
            raise error
        if is_portal(request):
            return error_page(request, _catalog(request), error.status_code, str(error.detail))
        kind = {404: "no-such-route", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        return problem(error.status_code, kind, str(error.detail), dict(error.headers or {}))

    async def storage_unavailable(request: Request, error: Exception) -> Response:
        log.warning("ClickHouse did not answer: %s", error)
        detail = "usage storage is not answering; retry shortly"
        if is_portal(request):
            return error_page(request, _catalog(request), 503, detail, retry_after="5")
        return problem(503, "storage-unavailable", detail, {"Retry-After": "5"})

    app.add_exception_handler(MeterlineError, meterline_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(StoreUnavailable, storage_unavailable)
    app.add_middleware(UnexpectedErrors)


def _catalog(request: Request) -> Catalog | None:
    """The catalog a portal error page is branded from, if the API has one yet."""
    services = getattr(request.app.state, "services", None)
    return services.catalog_admin.catalog if services is not None else None


class UnexpectedErrors:
    """An error no handler expects is answered 500 and logged, and the connection is kept.

    Starlette's own last-resort handler answers too, then raises the error again for the server
    to log, and the server closes the connection: a client's next request on it was lost."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def noting_the_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, noting_the_start)
        except Exception as error:
            if started:  # a response half sent cannot become a 500: the server cuts it
                raise
            log.error("unexpected error", exc_info=error)
            answer = problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal-error", "an unexpected error; it is logged")
            await answer(scope, receive, send)
