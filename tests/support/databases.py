"""Throwaway audit databases for tests: SQLite files, and databases on a real PostgreSQL server.

PostgreSQL is part of every development and CI machine (127.0.0.1:5432, trust auth): a server that cannot
be reached is a failure, not a skip.  ``NALTREXONE_CDS_TEST_POSTGRES_URL`` names another one (any database
on it: the tests create their own throwaway databases there and drop them at the end).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from cds_service.store import sqlite_url
from cds_service.store.models import Base

PG_ADMIN_URL = os.environ.get("NALTREXONE_CDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Backend:
    name: str
    workdir: Path
    created: list[str] = field(default_factory=list)

    def new_url(self) -> str:
        """An empty database of its own."""
        if self.name == "sqlite":
            return sqlite_url(self.workdir / f"{uuid.uuid4().hex}.db")
        database = f"naltrexone_cds_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        self.created.append(database)
        return (
            make_url(PG_ADMIN_URL)
            .set(drivername="postgresql+psycopg", database=database)
            .render_as_string(hide_password=False)
        )

    def down_url(self) -> str:
        """A database that cannot be reached."""
        if self.name == "sqlite":
            blocker = self.workdir / "not-a-directory"
            blocker.write_text("a file where the database's directory should be")
            return sqlite_url(blocker / "audit.db")
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return f"postgresql://postgres@127.0.0.1:{port}/test"

    def drop_all(self) -> None:
        if not self.created:
            return
        with psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True, connect_timeout=3) as admin:
            for database in self.created:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def postgres_reachable() -> str | None:
    """None when the test server answers, else why not."""
    try:
        psycopg.connect(libpq_url(PG_ADMIN_URL), connect_timeout=3).close()
    except psycopg.Error as exc:
        where = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        return f"PostgreSQL at {where} is not reachable ({exc}); start it with: {START_POSTGRES}"
    return None


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (read through the models' types where there is one)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: [
                    dict(row._mapping)
                    for row in conn.execute(
                        select(Base.metadata.tables[name])
                        if name in Base.metadata.tables
                        else text(f"SELECT * FROM {name}")
                    )
                ]
                for name in inspect(conn).get_table_names()
            }
    finally:
        engine.dispose()


def raw_text(url: str) -> str:
    """All the database holds, as text the way the server renders it (PostgreSQL) or the file's bytes."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        files = [Path(f"{parsed.database}{suffix}") for suffix in ("", "-wal")]
        return "".join(p.read_bytes().decode("latin-1") for p in files if p.exists())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return "\n".join(
                str(value)
                for table in tables
                for value in conn.execute(text(f"SELECT t::text FROM {table} t"))
            )
    finally:
        engine.dispose()


def migrated(backend: Backend, secret: str) -> str:
    """The URL of a new, empty database of ``backend`` with the audit schema in place."""
    from cds_service.store import Store

    url = backend.new_url()
    store = Store(url, secret=secret)
    store.migrate()
    store.close()
    return url
