"""An unexpected error is a 500 with a problem body, and nothing is raised to the server."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers


def test_an_unexpected_error_is_answered_and_not_raised_to_the_server():
    """The test client raises what reaches the server, as uvicorn then closes the connection."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise ArithmeticError("a bug")

    @app.get("/fine")
    def fine() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client:
        failed = client.get("/boom")
        assert failed.status_code == 500
        assert failed.json()["detail"] == "an unexpected error; it is logged"
        assert "a bug" not in failed.text
        assert client.get("/fine").json() == {"ok": True}
