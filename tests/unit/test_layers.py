"""The layout is the architecture: which package may import which, read from the source itself.

Every import of every module is counted, at the top or inside a function. ``meterline`` is the
ground floor (settings, errors, Kafka clients); ``schemas`` the contracts; ``billing`` the pure
domain; ``storage`` ClickHouse (it stores the domain's records); ``agents``, ``pipeline`` and
``sinks`` the stream; ``api`` on top. The HTTP layer is never imported below it, and no two
packages import each other, directly or round about.
"""

from __future__ import annotations

import ast
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("meterline", "schemas", "storage", "billing", "agents", "pipeline", "sinks", "api")
MAY_IMPORT = {
    "meterline": {"meterline"},
    "schemas": {"schemas", "meterline"},
    "billing": {"billing", "schemas", "meterline"},
    "agents": {"agents", "schemas", "meterline"},
    "pipeline": {"pipeline", "billing", "schemas", "meterline"},
    "storage": {"storage", "billing", "schemas", "meterline"},  # it keeps the billing domain's records
    "sinks": {"sinks", "storage", "schemas", "meterline"},
    "api": set(PACKAGES) - {"pipeline"},  # it spools pushed events as agents do (agents)
}


ENGINE_CLIENTS = {"clickhouse_connect", "chdb"}
"""What talks to ClickHouse: only ``storage`` imports them, so only it can send SQL."""


def imported_packages(path: Path, among: set[str] = set(PACKAGES)) -> set[str]:  # noqa: B006 - read only
    """The packages one module imports, of those ``among`` (the first-party ones by default)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & among
    return found


def package_imports() -> dict[str, dict[str, set[str]]]:
    """Per package, per module path, the other first-party packages it imports."""
    return {
        package: {
            str(path.relative_to(ROOT)): imported_packages(path) - {package}
            for path in sorted((ROOT / package).rglob("*.py"))
        }
        for package in PACKAGES
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package):
    trespassing = {
        module: sorted(imported - MAY_IMPORT[package])
        for module, imported in package_imports()[package].items()
        if imported - MAY_IMPORT[package]
    }
    assert trespassing == {}


def test_no_two_packages_import_each_other_even_round_about():
    graph = {
        package: set().union(*modules.values()) if modules else set() for package, modules in package_imports().items()
    }
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"packages import each other: {error.args[1]}")


def test_the_check_sees_an_import_made_inside_a_function(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from api.main import app\n    import billing.money\n")
    assert imported_packages(module) == {"api", "billing"}


def test_only_storage_talks_to_clickhouse():
    talking = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        if package != "storage"
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path, ENGINE_CLIENTS)
    }
    assert talking == set()


def test_sql_built_from_strings_is_allowed_under_storage_only():
    """Ruff's S608 flags SQL put together from strings; only ``storage`` (and the tests and
    benchmarks, which set up and inspect stores) may do it."""
    ignores = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["per-file-ignores"]
    allowed = {pattern for pattern, rules in ignores.items() if "S608" in rules}
    assert allowed == {"storage/**", "tests/**", "bench/**"}
