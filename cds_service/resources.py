"""Where the data files the service reads at start-up are found.

In a source checkout (and an editable install) they are the repository's own ``rules/`` and
``openapi.yaml``; a built wheel carries copies under ``cds_service/_bundled/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE_DIR / "_bundled"
_REPOSITORY = _PACKAGE_DIR.parent


def _locate(name: str) -> Path:
    for candidate in (_BUNDLED / name, _REPOSITORY / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} is neither bundled with the package nor beside it at {_REPOSITORY}")


def default_rules_dir() -> Path:
    return _locate("rules")


def openapi_path() -> Path:
    return _locate("openapi.yaml")


def scenarios_dir() -> Path:
    """The clinical scenarios the demo page offers (``fhir_fixtures/``)."""
    return _locate("fhir_fixtures")
