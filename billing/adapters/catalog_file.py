"""The catalog as a YAML file: how ``make run`` seeds an empty store, and what tests and benches load."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from billing.catalog import Catalog, describe
from meterline.exceptions import InvalidCatalog


def load_catalog(path: Path) -> Catalog:
    """Read a YAML catalog; every malformed entry is reported at once, with where it is."""
    try:
        return Catalog.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as error:
        raise InvalidCatalog(f"{path}: {describe(error)}") from error
