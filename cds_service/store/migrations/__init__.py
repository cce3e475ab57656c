"""Alembic migrations of the audit store, shipped inside the package (no alembic.ini needed).

``Store.migrate()`` applies them.  To write a new revision after changing ``models.py``::

    from alembic import command
    from cds_service.store.migrations import alembic_config
    command.revision(alembic_config("sqlite:////tmp/dev.db"), message="what changed", autogenerate=True)

(upgrade that database to head first), then review the generated file in ``versions/``: it must work on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at these migrations (and at ``url`` when given)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
