"""Global ids (Relay): base64 of `Type:key`, opaque to clients."""

import base64
import binascii
import uuid

KEY_TYPES = {"Session": uuid.UUID, "Turn": int, "Event": int}


def to_global_id(type_name: str, key: object) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def from_global_id(value: str) -> tuple[str, uuid.UUID | int] | None:
    """(type, key) of a global id this server issued, else None."""
    try:
        type_name, _, key = base64.b64decode(value, validate=True).decode().partition(":")
        key_type = KEY_TYPES[type_name]
        parsed = key_type(key)
    except (binascii.Error, UnicodeDecodeError, UnicodeEncodeError, KeyError, ValueError):
        return None
    # Turn and event ids are 64-bit: a larger one names nothing this server issued.
    if key_type is int and (str(parsed) != key or not 0 < parsed < 2**63):
        return None
    return type_name, parsed


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
