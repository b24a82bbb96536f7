"""The one place where meterline errors become HTTP answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.event_intake import PublishFailed
from meterline.exceptions import InvalidEvent, InvalidQuery, MeterlineError

STATUS = {InvalidEvent: 400, InvalidQuery: 400, PublishFailed: 503}


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status, headers=headers)

    app.add_exception_handler(MeterlineError, handle)
