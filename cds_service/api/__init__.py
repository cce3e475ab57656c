"""The HTTP transport (Flask): the views, the one error mapping, the JSON encoding of answers.

Nothing below this package imports Flask; the views only parse, authenticate and hand to the pipeline.
"""

from __future__ import annotations

from flask import Flask

from cds_service.api import errors, views
from cds_service.api.views import ServiceState

__all__ = ["ServiceState", "register"]


def register(app: Flask) -> None:
    views.register(app)
    errors.register(app)
