"""Download links that carry their own authority: what to download (session, format,
options), the API key that asked and the expiry, signed with HMAC-SHA256 under a secret the
whole deployment shares, so that any server process accepts a link another one made.

The token is `<payload>.<signature>`, both base64url without padding, as itsdangerous and
Django's signing lay theirs out: the payload a compact JSON object, the signature the HMAC of
the payload's text under a key derived from the secret and this purpose (Django's
`salted_hmac`: a secret used for something else one day signs nothing here). Signatures are
compared in constant time (`hmac.compare_digest`).

The secret: `SESSIONGRAPH_DOWNLOAD_SECRET` when a deployment sets its own (every process must
be given the same), else the one migration 0004 made and stored in the database
(`deployment_secrets`), made there on first use if a database lacks it."""

import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

SECRET_ENV = "SESSIONGRAPH_DOWNLOAD_SECRET"
SECRET_NAME = "downloads"  # its row in deployment_secrets
MIN_SECRET_LENGTH = 32
PURPOSE = b"sessiongraph.downloads.link"


class BadLink(Exception):
    """Not a link this deployment signed, altered, or expired: 403."""


@dataclass(frozen=True, slots=True)
class Link:
    """What a link names. `expires_ms`: Unix time in milliseconds."""

    session_id: uuid.UUID
    format: str
    event_types: tuple[str, ...] | None
    event_time: bool
    newline: bool
    key_id: uuid.UUID
    expires_ms: int

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires_ms / 1000, UTC)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    key = hashlib.sha256(PURPOSE + secret.encode()).digest()
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def sign(secret: str, link: Link) -> str:
    payload = _b64(
        orjson.dumps(
            {
                "s": link.session_id.hex,
                "f": link.format,
                "t": None if link.event_types is None else list(link.event_types),
                "et": link.event_time,
                "nl": link.newline,
                "k": link.key_id.hex,
                "x": link.expires_ms,
            }
        )
    )
    return f"{payload}.{_signature(secret, payload)}"


def verify(secret: str, token: str, now_ms: int | None = None) -> Link:
    """The link `token` names; BadLink when it is not one this secret signed, or has expired."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload.isascii() or not signature.isascii():
        raise BadLink("not a download link")
    if not hmac.compare_digest(_signature(secret, payload), signature):
        raise BadLink("the link was altered or is not this deployment's")
    try:
        named = orjson.loads(_unb64(payload))
        link = Link(
            session_id=uuid.UUID(hex=named["s"]),
            format=named["f"],
            event_types=None if named["t"] is None else tuple(named["t"]),
            event_time=bool(named["et"]),
            newline=bool(named["nl"]),
            key_id=uuid.UUID(hex=named["k"]),
            expires_ms=int(named["x"]),
        )
    except (ValueError, KeyError, TypeError):  # signed by us, so only an older layout gets here
        raise BadLink("not a download link") from None
    if (time.time() * 1000 if now_ms is None else now_ms) >= link.expires_ms:
        raise BadLink("the link has expired")
    return link


# -- the deployment's secret

_secrets: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def configured_secret() -> str | None:
    """The deployment's own secret, from the environment; ValueError when it is too short."""
    secret = os.environ.get(SECRET_ENV) or None
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters")
    return secret


async def deployment_secret(engine) -> str:
    """The secret links are signed with: the environment's, else the database's (made there,
    once, when missing). Kept per engine once read: it does not change while a deployment runs."""
    if (secret := configured_secret()) is not None:
        return secret
    found = _secrets.get(engine)
    if found is None:
        found = _secrets[engine] = await _stored_secret(engine)
    return found


async def _stored_secret(engine) -> str:
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from sessiongraph.models.tables import DeploymentSecret

    table = DeploymentSecret.__table__
    query = select(table.c.value).where(table.c.name == SECRET_NAME)
    async with engine.connect() as connection:
        value = await connection.scalar(query)
    if value is not None:
        return value
    try:  # a database made without migration 0004's row (emptied by hand): made now, once
        async with engine.begin() as connection:
            await connection.execute(table.insert().values(name=SECRET_NAME, value=new_secret(), created_at=datetime.now(UTC)))
    except IntegrityError:
        pass  # another process made it first: theirs is the deployment's
    async with engine.connect() as connection:
        return await connection.scalar(query)


def forget_secrets() -> None:
    """Drops the secrets read (tests that change the database's)."""
    _secrets.clear()
