"""The one place where meterline errors become HTTP answers."""

from __future__ import annotations

import logging

from clickhouse_connect.driver.exceptions import OperationalError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.event_intake import IntakeFull
from meterline.exceptions import (
    IncompleteUsage,
    InvalidCatalog,
    InvalidEvent,
    InvalidQuery,
    InvoiceStateError,
    MeterlineError,
    UnknownCustomer,
    UnknownInvoice,
)

log = logging.getLogger(__name__)
STATUS = {
    InvalidEvent: 400,
    InvalidQuery: 400,
    InvalidCatalog: 422,
    UnknownCustomer: 404,
    UnknownInvoice: 404,
    InvoiceStateError: 409,
    IncompleteUsage: 409,
    IntakeFull: 503,
}


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)
        headers = {"Retry-After": str(getattr(error, "retry_after_s", 5))} if status == 503 else None
        return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status, headers=headers)

    async def storage_unavailable(_request: Request, error: Exception) -> JSONResponse:
        log.warning("ClickHouse did not answer: %s", error)
        return JSONResponse(
            {"error": "StorageUnavailable", "detail": "usage storage is not answering; retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(MeterlineError, handle)
    app.add_exception_handler(OperationalError, storage_unavailable)
