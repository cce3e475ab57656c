"""The JSON Schemas of ``openapi.yaml``, as validators.

``openapi.yaml`` is the single source: the service validates request bodies with these schemas and
the tests validate responses with them, so the published contract cannot drift from the code.

Two validators read the same schemas: jsonschema-rs (compiled, ~8 µs for a typical request) answers
"is this valid?" on every call; python-jsonschema, the reference implementation, explains why a body is
not (~2 ms, paid only for bad requests). ``tests/test_contract.py`` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cds_service.resources import openapi_path

_DOCUMENT_URI = "urn:naltrexone-cds:openapi"


@cache
def openapi_document(path: Path | None = None) -> dict[str, Any]:
    with (path or openapi_path()).open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


@cache
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>`` with every ``$ref`` resolvable."""
    document = openapi_document()
    if schema_name not in document["components"]["schemas"]:
        raise KeyError(f"openapi.yaml has no schema named {schema_name!r}")
    registry: Registry[Any] = Registry().with_resource(
        _DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=registry)


def errors(schema_name: str, instance: Any) -> Iterator[ValidationError]:
    return validator(schema_name).iter_errors(instance)


@cache
def fast_validator(schema_name: str) -> Any:
    """The compiled validator of ``#/components/schemas/<schema_name>`` (immutable: shared by threads
    and by the workers forked after it was built)."""
    document = openapi_document()
    if schema_name not in document["components"]["schemas"]:
        raise KeyError(f"openapi.yaml has no schema named {schema_name!r}")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{schema_name}",
        "components": document["components"],
    }
    return jsonschema_rs.validator_for(schema)


def first_error(schema_name: str, instance: Any) -> ValidationError | None:
    """None for a valid instance; else the most telling error, as python-jsonschema words it."""
    if fast_validator(schema_name).is_valid(instance):
        return None
    error: ValidationError | None = best_match(errors(schema_name, instance))
    return error


def json_path(error: ValidationError) -> str:
    """``context.draftOrders.entry[0].resource.status`` style path of a validation error."""
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(body)"
