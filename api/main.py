"""Entry point of the API process: ``python -m api.main``."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from meterline.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning")


if __name__ == "__main__":
    main()
