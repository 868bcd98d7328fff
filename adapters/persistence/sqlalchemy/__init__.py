"""The SQLAlchemy persistence adapter: SQLite (one machine) and PostgreSQL (several), same schema.

`create_engine_for(url)` configures the engine, `migrate(url)` brings the schema to the latest Alembic
revision, `SqlAlchemyUnitOfWorkFactory(engine)` hands out units of work.
"""

from adapters.persistence.sqlalchemy.engine import create_engine_for
from adapters.persistence.sqlalchemy.migrate import migrate
from adapters.persistence.sqlalchemy.uow import SqlAlchemyUnitOfWork, SqlAlchemyUnitOfWorkFactory

__all__ = ["SqlAlchemyUnitOfWork", "SqlAlchemyUnitOfWorkFactory", "create_engine_for", "migrate"]
