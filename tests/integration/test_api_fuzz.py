"""Every operation of the OpenAPI document, called with values built from the document itself
(schemathesis: examples, boundaries, random data, and chains of calls), never gets a 500."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import vm_sample
from tests.integration.harness import System, wait_for
from tests.integration.test_invoicing import OCTOBER, post, push, rated_rows

pytestmark = pytest.mark.integration
ARTIFACTS = Path("test-artifacts")
EXAMPLES_PER_OPERATION = "20"


def test_no_request_built_from_the_openapi_document_gets_a_server_error(billing: System):
    push(billing, [vm_sample("vm-1", customer_id="direct", at=OCTOBER)])
    wait_for(lambda: rated_rows(billing, "direct") == 4, what="usage")
    post(billing, "/v1/periods/2026-10/close")  # invoices to find, issue, void and drill into
    fuzzer = Path(sys.executable).parent / "st"
    run = subprocess.run(
        [str(fuzzer), "run", f"{billing.url}/openapi.json", "--max-examples", EXAMPLES_PER_OPERATION]
        + ["--checks", "not_a_server_error", "--seed", "20261202", "--request-timeout", "30"]
        + ["--header", f"Authorization: Bearer {billing.env['METERLINE_ADMIN_KEY']}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    cases = re.search(r"(\d+) generated", run.stdout)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"schemathesis-{billing.broker.__class__.__name__}.txt").write_text(run.stdout)
    assert cases and int(cases[1]) > 500, run.stdout[-2000:]
    assert run.returncode == 0, run.stdout[-4000:]
