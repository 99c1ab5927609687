"""A stored session in the import format (the contract's "Import format"; what
ingest/importer.py reads): the objects the JSON and JSON Lines exports are made of, so that
importing an export into an empty database gives the same session back.

Which keys the format has follows from models/fields.py (the fields marked `imported`, and
the TERMINAL and RED_TEAM details by their declared fields); each value is the
declaration's own (`Field.getter`), written as JSON: enums by value, times as
ISO 8601 in UTC with microseconds and a Z, ids as text, the detail objects by their declared
fields. Events are written by `event_object`, the loop of a large export."""

import base64
import uuid
from datetime import datetime
from enum import Enum

from sessiongraph.models import fields as declared

# The details of TERMINAL and RED_TEAM sessions: objects of the line the importer reads by
# their own rules (not marked `imported`); their keys are their declared fields'.
SESSION_DETAILS = ("terminal", "red_team")
# A TERMINAL session's details, less the figures the writers keep from the others.
TERMINAL_COMPUTED = {"input_size", "stream_size"}


def _declared(fields: tuple, names) -> tuple:
    by_name = {f.name: f for f in fields}
    return tuple(by_name[name] for name in names)


def iso(value: datetime) -> str:
    """UTC, always with microseconds: '2025-10-28T06:00:00.268000Z' (the importer's fast form)."""
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def to_json(value, annotation):
    """A declared value as the import format writes it."""
    if value is None:
        return None
    if isinstance(annotation, declared.Nested):
        nested = [f for f in declared.NESTED[annotation.name] if f.exposed and f.name not in TERMINAL_COMPUTED]
        one = lambda found: {f.name: to_json(f.getter(found), f.annotation) for f in nested}  # noqa: E731
        return [one(v) for v in value] if annotation.many else one(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# What the import format carries, as models/fields.py marks it (`imported`), in declared order.
_SESSION = declared.imported("Session") + _declared(declared.SESSION_FIELDS, SESSION_DETAILS)
_TURN = declared.imported("Turn")
# An event's keys (`event_object` writes them by hand: the loop of a large export), with
# `message` or `message_b64` for its content.
EVENT_KEYS = tuple(f.name for f in declared.imported("Event"))


def session_object(row) -> dict:
    """A session row (every column) -> its line's keys but `events` and `turns`."""
    return {f.name: to_json(f.getter(row), f.annotation) for f in _SESSION}


def turn_object(row) -> dict:
    """A turn row -> its object but `events`."""
    return {f.name: to_json(f.getter(row), f.annotation) for f in _TURN}


def event_object(type_: str, agent_id, content: bytes | None, timestamp: datetime, payload, dedup_key) -> dict:
    """An event's object; keys without a value are left out (an export may hold millions).
    Content that is UTF-8 text without NUL (which the format's text cannot carry) is
    `message`, anything else `message_b64`."""
    found = {"type": type_}
    if agent_id is not None:
        found["agent_id"] = agent_id
    if content is not None:
        message, encoded = message_or_base64(content)
        if message is None:
            found["message_b64"] = encoded
        else:
            found["message"] = message
    found["timestamp"] = iso(timestamp)
    if payload is not None:
        found["payload"] = payload
    if dedup_key is not None:
        found["dedup_key"] = dedup_key
    return found


def text_of(content: bytes) -> str | None:
    """The content as text, when it is UTF-8 without NUL; else None (write it as base64)."""
    if b"\x00" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def message_or_base64(content: bytes) -> tuple[str | None, str | None]:
    """(`message`, `message_b64`) of a content: its text when that can carry it, else its
    base64, so that any bytes come back out of a file exactly."""
    message = text_of(content)
    return (message, None) if message is not None else (None, base64.b64encode(content).decode("ascii"))
