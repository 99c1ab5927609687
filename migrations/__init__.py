"""Alembic migrations; `upgrade` brings a database to the newest version."""

import asyncio
import re
from pathlib import Path

HERE = Path(__file__).parent


def alembic_config(url: str):
    from alembic.config import Config  # imported when used: a command that finds its database current needs none of Alembic

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate synchronously; call from a thread when an event loop is already running."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]\s*$", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|['\"]([^'\"]+)['\"])\s*$", re.MULTILINE
)


def head_revision() -> str | None:
    """The newest revision, read from the migration files' `revision` and `down_revision`
    lines without importing Alembic; None when they are not one plain chain of single
    revisions (a merge, a branch, a line this does not read): then ask Alembic."""
    revisions, downs = set(), set()
    for path in (HERE / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        revision, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        downs.add(down[0])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 and len(downs - {""}) == len(revisions) - 1 else None


async def upgrade_if_behind(engine, url: str) -> None:
    """`upgrade`, unless the database's one recorded version is the head already: that check
    costs one query, where Alembic's costs importing it (about a tenth of a second)."""
    head = head_revision()
    if head is not None:
        try:
            async with engine.connect() as connection:
                versions = (await connection.exec_driver_sql("SELECT version_num FROM alembic_version")).scalars().all()
        except Exception:  # no such table yet, or unreadable: Alembic decides
            versions = None
        if versions == [head]:
            return
    await upgrade_async(url)
