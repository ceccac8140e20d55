"""Alembic environment for regdb.

regdb runs its migrations from code (``regdb.inventory.db.upgrade``), handing over an open connection through
``config.attributes["connection"]``, so this works from an installed wheel as well as from a checkout.
"""

from alembic import context
from sqlalchemy import create_engine

from regdb.inventory.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Plain `alembic -x url=...` use from a checkout (development only).
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
        with create_engine(url).connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
