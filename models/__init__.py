"""The database: SQLAlchemy models, the engine and its sessions. Knows nothing of GraphQL."""

from sessiongraph.models.database import create_engine, database_url

__all__ = ["ApiKey", "Base", "Event", "Session", "Turn", "User", "create_engine", "database_url"]


def __getattr__(name: str):
    # The tables load SQLAlchemy and its ORM, a sixth of a second: only when asked for (the
    # console script's commands that need no database run without them).
    if name in __all__:
        from sessiongraph.models import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
