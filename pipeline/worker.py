"""Entry point of one Faust worker process: ``python -m pipeline.worker``."""

from __future__ import annotations

import gc
import os

import faust
from prometheus_client import start_http_server

from meterline.logs import quiet_repeats
from meterline.settings import Settings


def main() -> None:
    # Parallelism comes from running a worker per core; a polars thread pool in each worker would
    # only contend with the others (and costs ~25% more CPU per event). Set before polars loads.
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    from pipeline.app import create_app

    settings = Settings()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.api_host)
    app = create_app(settings)
    quiet_repeats("aiokafka", "faust", "mode")
    # Everything loaded so far lives as long as the process: leave it out of the garbage
    # collector's full passes, which otherwise walk all of it while the worker waits.
    gc.freeze()
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG so that every record turns it: then
    # aiokafka formats a debug line for every request and record it handles (each fetched batch
    # in full), which cost most of a worker's CPU and, held by the repeat filter, its memory.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
