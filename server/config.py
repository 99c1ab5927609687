"""Settings of a server process, from the command line or the environment."""

import os
from dataclasses import dataclass

from sessiongraph.models import database_url


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str
    graphiql: bool = True
    max_body_bytes: int = 1_000_000

    @classmethod
    def from_env(cls, database: str | None = None) -> "Settings":
        return cls(
            database_url=database_url(database),
            graphiql=not _env_flag("SESSIONGRAPH_NO_GRAPHIQL"),
        )
