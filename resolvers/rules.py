"""Input rules shared by the mutations and the importer: whatever way a value comes in, the
same rule refuses it with the same message. They raise `RuleBroken`, a plain ValueError, so
that the importer uses them without GraphQL; a resolver's RuleBroken leaves as
BAD_USER_INPUT (schema/errors.py). A message names the rule in the domain's words, not a
field's spelling in one format: the caller puts where the value was in front of it
(`at(where, ...)`)."""

import base64
import binascii
import re
import unicodedata
from contextlib import contextmanager

import orjson

MAX_TITLE_LENGTH = 60
MAX_EXTERNAL_ID_LENGTH = 255
MAX_NAME_LENGTH = 255  # task, workflow and agent ids, dedup keys
MAX_TYPE_LENGTH = 64
MAX_CONTENT_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_METADATA_BYTES = 64 * 1024
_INVISIBLE = {"\u200b", "\ufeff"}
# Unicode's White_Space property (PropList.txt); str.isspace() adds U+001C..U+001F.
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
# Unicode's control characters (category Cc) are exactly these two ranges.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class RuleBroken(ValueError):
    """A value breaks an input rule; the message names the rule."""


@contextmanager
def at(where: str):
    """Puts `where` (the value's place in its input: "events[2]") in front of the message of
    a rule broken inside."""
    try:
        yield
    except RuleBroken as broken:
        raise RuleBroken(f"{where}: {broken}") from None


def sanitize_title(title: str) -> str:
    """Trimmed of Unicode White_Space, then stripped of control characters (Cc), U+200B and
    U+FEFF; RuleBroken, naming the rule, when empty or longer than 60 code points."""
    trimmed = title.strip(WHITE_SPACE)
    if not trimmed:
        raise RuleBroken("The title is empty after trimming white space.")
    cleaned = "".join(c for c in trimmed if c not in _INVISIBLE and unicodedata.category(c) != "Cc")
    if not cleaned:
        raise RuleBroken("The title is empty after removing control characters.")
    if len(cleaned) > MAX_TITLE_LENGTH:
        raise RuleBroken(f"The title is longer than {MAX_TITLE_LENGTH} characters ({len(cleaned)}).")
    return cleaned


def check_external_id(external_id: str) -> str:
    if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise RuleBroken(f"The external id is longer than {MAX_EXTERNAL_ID_LENGTH} characters.")
    if not external_id or CONTROL.search(external_id):
        raise RuleBroken("The external id must be non-empty and have no control character.")
    return external_id


def is_name(value: str) -> bool:
    """Whether `check_name` takes `value` (for a caller's fast path)."""
    # A printable string has no control character: most names, told at C speed.
    return len(value) <= MAX_NAME_LENGTH and bool(value.strip()) and (value.isprintable() or not CONTROL.search(value))


def check_name(value: str | None, what: str) -> str | None:
    """A caller's identifier (`what`: "task id", "workflow id", "agent id", "dedup key"):
    None stays None; else not blank, no control character, at most 255 characters."""
    if value is None:
        return None
    if not value.strip() or CONTROL.search(value):
        raise RuleBroken(f"The {what} must be non-empty and have no control character.")
    if len(value) > MAX_NAME_LENGTH:
        raise RuleBroken(f"The {what} is longer than {MAX_NAME_LENGTH} characters.")
    return value


def is_event_type(value: str) -> bool:
    return len(value) <= MAX_TYPE_LENGTH and value.isprintable() and bool(value.strip())


def check_event_type(value: str) -> str:
    if not is_event_type(value):
        raise RuleBroken(f"The event type must be 1 to {MAX_TYPE_LENGTH} printable characters.")
    return value


def event_content(message: str | None, message_base64: str | None) -> bytes | None:
    """An event's content: its message's UTF-8, or its base64 message decoded; at most one of
    the two, at most 1 MiB."""
    if message is not None and message_base64 is not None:
        raise RuleBroken("An event has both a message and a base64 message; give at most one.")
    content = None
    if message is not None:
        content = message.encode("utf-8", "surrogatepass")
    elif message_base64 is not None:
        try:
            content = base64.b64decode(message_base64, validate=True)
        except (binascii.Error, ValueError):  # or a character beyond ASCII
            raise RuleBroken("The base64 message is not base64.") from None
    if content is not None and len(content) > MAX_CONTENT_BYTES:
        raise RuleBroken(f"The event has more than {MAX_CONTENT_BYTES} bytes of content.")
    return content


def json_size(value, what: str) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:
        raise RuleBroken(f"The {what} is not JSON.") from None


def check_payload(payload):
    if payload is not None and json_size(payload, "payload") > MAX_PAYLOAD_BYTES:
        raise RuleBroken(f"The payload is larger than {MAX_PAYLOAD_BYTES} bytes.")
    return payload


def check_metadata(metadata) -> dict:
    """A session's metadata: a JSON object ({} for None) of at most 64 KiB."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise RuleBroken("The metadata must be a JSON object.")
    if json_size(metadata, "metadata") > MAX_METADATA_BYTES:
        raise RuleBroken(f"The metadata is larger than {MAX_METADATA_BYTES} bytes.")
    return metadata


def check_count(value: int | None, what: str) -> int | None:
    """A token budget, tokens used: None, or 0 or more."""
    if value is not None and value < 0:
        raise RuleBroken(f"The {what} must be 0 or more.")
    return value


def check_completion(started, completed):
    """A turn's end: not before its start."""
    if completed is not None and completed < started:
        raise RuleBroken("A turn cannot end before it started.")
    return completed
