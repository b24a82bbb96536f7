"""The benchmarks import only what exists: nothing else runs them before `make bench`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"agents", "api", "billing", "meterline", "pipeline", "schemas", "sinks", "storage", "tests", "bench"}


@pytest.mark.parametrize("bench", sorted((ROOT / "bench").glob("*.py")), ids=lambda path: path.name)
def test_every_name_a_benchmark_imports_exists(bench: Path):
    missing = []
    for node in ast.walk(ast.parse(bench.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FIRST_PARTY:
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{alias.name}" for alias in node.names if not hasattr(module, alias.name)]
    assert missing == []


def test_the_guard_benchmark_runs_the_guard_as_the_routes_do():
    """It builds the parts of the API's state the guard reads: a change there broke it once."""
    from bench.auth import guard_us_per_call

    assert guard_us_per_call(calls=10) > 0
