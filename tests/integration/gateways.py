"""stripe-mock (the Stripe API's official mock server, installed by ``make test``) and a proxy in
front of it that can fail, stall or pass calls through: a gateway down, slow, then back."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.harness import ROOT, free_port, wait_for

STRIPE_MOCK = ROOT / ".cache" / "go" / "bin" / "stripe-mock"
WEBHOOK_SECRET = "whsec_meterline_tests"  # noqa: S105 - signs the test webhooks only
API_KEY = "sk_test_meterline"


def start_stripe_mock(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """stripe-mock started, and its address (http://127.0.0.1:port)."""
    port, https_port = free_port(), free_port()
    log = (log_dir / "stripe-mock.log").open("wb")
    process = subprocess.Popen(
        [str(STRIPE_MOCK), "-http-port", str(port), "-https-port", str(https_port)], stdout=log, stderr=log
    )
    wait_for(lambda: _answers(port), timeout_s=30, what="stripe-mock")
    return process, f"http://127.0.0.1:{port}"


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/v1/customers/cus_1", headers={"Authorization": f"Bearer {API_KEY}"})
        return connection.getresponse().status == 200
    except OSError:
        return False


def gateway_settings(name: str, api_base: str, **more: Any) -> dict[str, Any]:
    return {name: {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "api_base": api_base, **more}}


class FaultyGateway:
    """A proxy to stripe-mock: ``mode`` "pass", "fail" (503) or "stall" (answers after ``stall_s``).
    It records each call's method, path and Idempotency-Key."""

    def __init__(self, upstream: str, stall_s: float = 3) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.mode = "pass"
        self.stall_s = stall_s
        self.calls: list[tuple[str, str, str]] = []
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultyGateway:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's hook name)
                self._relay()

            def do_POST(self) -> None:  # noqa: N802
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.calls.append((self.command, self.path, self.headers.get("Idempotency-Key", "")))
                if proxy.mode == "fail":
                    self._answer(503, json.dumps({"error": {"message": "down for maintenance"}}).encode())
                    return
                if proxy.mode == "stall":
                    time.sleep(proxy.stall_s)
                host, port = proxy.upstream.split(":")
                upstream = http.client.HTTPConnection(host, int(port), timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                self._answer(answer.status, answer.read())

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting (a stall): nothing to answer
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
