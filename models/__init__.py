"""The database: SQLAlchemy models, the engine and its sessions. Knows nothing of GraphQL."""

from sessiongraph.models.database import create_engine, database_url
from sessiongraph.models.tables import ApiKey, Base, Event, Session, Turn, User

__all__ = ["ApiKey", "Base", "Event", "Session", "Turn", "User", "create_engine", "database_url"]
