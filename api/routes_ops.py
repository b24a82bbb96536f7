"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.access.guard import Public
from api.services import services_of

router = APIRouter(dependencies=[Depends(Public())])
"""Open to anyone: a load balancer and Prometheus ask without a key; nothing here names a tenant."""


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the sink runs and both the store and the broker answer: what a load balancer
    and an operator need to know (``/healthz`` only says the process is up)."""
    services = services_of(request)
    sink = services.sink
    if sink is not None and not sink.running:
        return JSONResponse({"status": "sink stopped"}, status_code=503)
    if sink is not None and sink.stalled:
        return JSONResponse({"status": "sink stalled: messages wait and it makes no progress"}, status_code=503)
    if not services.store_answers():
        return JSONResponse({"status": "clickhouse unreachable"}, status_code=503)
    if not services.intake.broker_reachable():
        return JSONResponse({"status": "broker unreachable"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
