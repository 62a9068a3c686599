"""Alembic environment.

The server migrates inside its own running event loop, so it hands a live
synchronous connection in `config.attributes["connection"]` (run through
`AsyncConnection.run_sync`). Called without one (the alembic CLI), it opens an
async engine on the URL from `sqlalchemy.url` and runs with asyncio.run().
"""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

import dashboard.alerts.schema  # noqa: F401 (puts the alerting tables on the metadata)
from dashboard.storage.schema import metadata

target_metadata = metadata


def run_with(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(run_with)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    asyncio.run(run_async(context.config.get_main_option("sqlalchemy.url")))
