"""Alembic environment: runs against the engine handed in by `db.init_db` (or the URL in alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import cxloop.models  # noqa: F401  (registers the tables)
from cxloop.migrations import include_object

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          include_object=include_object)
        context.run_migrations()


run_migrations_online()
