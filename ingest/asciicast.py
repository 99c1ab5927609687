"""`sessiongraph import --format asciicast`: an asciinema recording (asciicast v2 or v3) stored
as a TERMINAL session, as the contract README's "Downloads" says: CONNECT, through a resource
of type `custom` named as asked (default `asciinema`), created at the header's `timestamp`
(else the file's modification time), its `i` and `o` events as INPUT and OUTPUT at that time
plus their offsets, its columns and rows from the header, its title the one given or else the
header's. The recording has ended: the session is DONE, ended at its last event's time.

The recording becomes one line of the import format, stored by the JSON Lines importer
(ingest/importer.py), so every rule of a session, its title and its events holds alike.

v2 (docs.asciinema.org/manual/asciicast/v2): a header `{"version": 2, "width", "height", ...}`,
then `[time, code, data]` lines, `time` in seconds from the start. v3 (.../v3): a header
`{"version": 3, "term": {"cols", "rows", ...}, ...}`, then `[interval, code, data]` lines,
`interval` in seconds since the previous event; lines starting with `#` are comments. Other
codes (`m` marker, `r` resize, `x` exit) are left out."""

import io
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson

from sessiongraph.downloads.import_format import iso

CODES = {"i": "INPUT", "o": "OUTPUT"}
DEFAULT_RESOURCE = "asciinema"


class RecordingError(ValueError):
    """Not an asciicast v2 or v3 recording; the message names the line."""


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RecordingError(f"{where}: the time must be a number of seconds, 0 or more")
    return value


def _size(value, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordingError(f"line 1: `{what}` must be a whole number")
    return value


def session_line(
    lines: Iterable[bytes],
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str | None = None,
    resource: str = DEFAULT_RESOURCE,
    modified_at: datetime | None = None,
    session_id: uuid.UUID | None = None,
) -> bytes:
    """The recording read from `lines` -> its session as a line of the import format."""
    lines = iter(lines)
    try:
        header = orjson.loads(next(lines))
    except StopIteration:
        raise RecordingError("the file is empty") from None
    except orjson.JSONDecodeError:
        raise RecordingError("line 1: the header is not JSON") from None
    if not isinstance(header, dict) or header.get("version") not in (2, 3):
        raise RecordingError("line 1: not an asciicast v2 or v3 header (`version` 2 or 3)")
    version = header["version"]
    if version == 2:
        columns, rows = _size(header.get("width"), "width"), _size(header.get("height"), "height")
    else:
        term = header.get("term")
        if not isinstance(term, dict):
            raise RecordingError("line 1: a v3 header needs `term`")
        columns, rows = _size(term.get("cols"), "term.cols"), _size(term.get("rows"), "term.rows")
    stamp = header.get("timestamp")
    if stamp is not None:
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise RecordingError("line 1: `timestamp` must be a Unix time")
        created = datetime.fromtimestamp(stamp, UTC)
    else:
        created = modified_at or datetime.now(UTC)
    events, offset, last = [], 0.0, 0.0
    for number, raw in enumerate(lines, start=2):
        text = raw.strip()
        if not text or (version == 3 and text.startswith(b"#")):
            continue
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise RecordingError(f"line {number}: not JSON") from None
        if not isinstance(event, list) or len(event) != 3 or not isinstance(event[1], str) or not isinstance(event[2], str):
            raise RecordingError(f"line {number}: an event is [time, code, data]")
        time = _number(event[0], f"line {number}")
        offset = offset + time if version == 3 else time
        last = max(last, offset)
        if event[1] in CODES:
            at = created + timedelta(seconds=offset)
            events.append({"type": CODES[event[1]], "message": event[2], "timestamp": iso(at)})
    title = title if title is not None else header.get("title")
    line = {
        "session_id": str(session_id or uuid.uuid4()),
        "org_id": str(org_id),
        "user_id": str(user_id),
        "title": title if isinstance(title, str) and title.strip() else None,
        "created_at": iso(created),
        "kind": "TERMINAL",
        "status": "DONE",
        "ended_at": iso(created + timedelta(seconds=last)),
        "terminal": {"verb": "CONNECT", "columns": columns, "rows": rows, "resource": {"name": resource, "type": "custom"}},
        "events": events,
    }
    return orjson.dumps(line) + b"\n"


async def import_recording(url: str, path: str, org_id, user_id, title=None, resource=DEFAULT_RESOURCE):
    """`sessiongraph import --format asciicast`: the recording at `path` stored; (the
    importer's report, the new session's id). RecordingError when it is not a recording."""
    from sessiongraph.ingest.importer import import_file

    modified_at = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    session_id = uuid.uuid4()
    with open(path, "rb") as stream:
        line = session_line(stream, org_id, user_id, title, resource, modified_at, session_id)
    return await import_file(url, io.BytesIO(line)), session_id
