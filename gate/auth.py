"""API keys: made, stored hashed, looked up for each request, revoked."""

import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sessiongraph.models import ApiKey
from sessiongraph.models.recording import ensure_user
from sessiongraph.resolvers.context import Viewer

KEY_PREFIX = "sg_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_headers(headers) -> str | None:
    """`X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    if key := headers.get("x-api-key"):
        return key.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


# Live keys recently found, per engine: (engine, key hash) -> (viewer, monotonic expiry).
# Looking a key up is a statement and a pool connection per request, more than a small
# query costs. A revocation made by this process (`revoke_key`) takes effect at once; one
# made elsewhere (`sessiongraph apikey revoke`, another worker) within the TTL.
_live_keys: dict[tuple, tuple[Viewer, float]] = {}
MAX_CACHED_KEYS = 10_000


async def authenticate(engine: AsyncEngine, key: str | None, cache_seconds: float = 0.0) -> Viewer | None:
    """The caller a live key belongs to; None for no key, an unknown or a revoked one. With
    `cache_seconds`, a live key is trusted that long before it is looked up again."""
    if not key:
        return None
    key_hash = hash_key(key)
    now = time.monotonic()
    if cache_seconds > 0 and (cached := _live_keys.get((engine, key_hash))) is not None and cached[1] > now:
        return cached[0]
    async with engine.connect() as connection:
        viewer = await live_key_caller(connection, ApiKey.key_hash == key_hash)
    if viewer is None:
        _live_keys.pop((engine, key_hash), None)
        return None
    if cache_seconds > 0:
        if len(_live_keys) >= MAX_CACHED_KEYS:
            _live_keys.pop(next(iter(_live_keys)))  # the oldest entry
        _live_keys[engine, key_hash] = (viewer, now + cache_seconds)
    return viewer


async def live_key_caller(connection, which) -> Viewer | None:
    """The caller of the key the condition `which` picks (by its hash, by its id), when that
    key is live; else None."""
    row = (
        await connection.execute(
            select(ApiKey.id, ApiKey.user_id, ApiKey.org_id, ApiKey.role, ApiKey.identity_type).where(
                which, ApiKey.revoked_at.is_(None)
            )
        )
    ).first()
    return None if row is None else Viewer(row.user_id, row.org_id, row.role, row.identity_type, row.id)


class KeyOrganisationConflict(Exception):
    """The user already belongs to another organisation."""


async def create_key(
    engine: AsyncEngine,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str = "USER",
    machine: bool = False,
    name: str | None = None,
) -> tuple[uuid.UUID, str]:
    """A new key for the user (who joins `org_id` if never seen): (its id, the plain key).
    The plain key is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        if not await ensure_user(connection, user_id, org_id, now):
            raise KeyOrganisationConflict(f"user {user_id} belongs to another organisation")
        await connection.execute(
            ApiKey.__table__.insert().values(
                id=key_id,
                key_hash=hash_key(key),
                user_id=user_id,
                org_id=org_id,
                role=role.upper(),
                identity_type="MACHINE" if machine else "USER",
                name=name,
                created_at=now,
            )
        )
    return key_id, key


async def revoke_key(engine: AsyncEngine, key_id: uuid.UUID) -> bool:
    async with engine.begin() as connection:
        result = await connection.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    for cache_key, (viewer, _) in list(_live_keys.items()):
        if viewer.key_id == key_id:
            del _live_keys[cache_key]
    return result.rowcount == 1
