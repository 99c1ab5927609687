"""The formats a session downloads as, and their writers: each turns the session's row and
its rows, a batch at a time (downloads/rows.py), into chunks of the file, so that a file of
any size is written in the memory of a batch.

- CSV (RFC 4180, Python's csv module: CRLF, fields quoted when they must be): a header, then
  one row per event: seq, timestamp, elapsed_ms, type, turn, agent_id, message (the
  contract's columns), then message_b64. `message` is the content when it is UTF-8 text
  without NUL, else empty, and `message_b64` the content in base64 (empty when `message`
  holds it), so that any bytes come back out of the file exactly. `timestamp` ISO 8601 UTC,
  `elapsed_ms` milliseconds from the session's creation with three decimals (exact: times are
  kept to the microsecond), `turn` the turn's position (empty: no turn).
- JSON: one document, the session in the import format (indented); JSONL: the same object on
  one line, the import format itself.
- TEXT: the contents as stored; `event_time` puts each event's seconds from the session's
  creation before it ('12.345 '), `newline` a newline after it.
- ASCIICAST: asciicast v2: a header (terminal size, else 80x24; the creation time; the
  title), then INPUT as 'i' and OUTPUT and ERROR as 'o', other types left out, at their
  seconds from the session's creation (never going back: a recording's times do not).
  The contents as text (invalid UTF-8 replaced, as asciinema records).
"""

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import orjson

from sessiongraph.downloads import rows
from sessiongraph.downloads.import_format import event_object, iso, message_or_base64, session_object, turn_object


class ExportFormat(Enum):
    CSV = "CSV"
    JSON = "JSON"
    JSONL = "JSONL"
    TEXT = "TEXT"
    ASCIICAST = "ASCIICAST"


# Each format's file name extension and media type (the contract's "Downloads").
FILES = {
    ExportFormat.CSV: ("csv", "text/csv; charset=utf-8"),
    ExportFormat.JSON: ("json", "application/json"),
    ExportFormat.JSONL: ("jsonl", "application/x-ndjson"),
    ExportFormat.TEXT: ("txt", "text/plain"),
    ExportFormat.ASCIICAST: ("cast", "application/x-asciicast"),
}

CSV_COLUMNS = ("seq", "timestamp", "elapsed_ms", "type", "turn", "agent_id", "message", "message_b64")
ASCIICAST_CODES = {"INPUT": "i", "OUTPUT": "o", "ERROR": "o"}
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Options:
    format: ExportFormat
    event_types: tuple[str, ...] | None = None
    event_time: bool = False
    newline: bool = False


def file_name(session_id, format: ExportFormat) -> str:
    return f"{session_id}.{FILES[format][0]}"


def media_type(format: ExportFormat) -> str:
    return FILES[format][1]


def write(connection, session, options: Options) -> AsyncIterator[bytes]:
    """The file's chunks: `session` is the session's row, `connection` the one its rows are
    read through (held until the last chunk)."""
    writer = {
        ExportFormat.CSV: _csv,
        ExportFormat.JSON: _json,
        ExportFormat.JSONL: _json,
        ExportFormat.TEXT: _text,
        ExportFormat.ASCIICAST: _asciicast,
    }[options.format]
    return writer(connection, session, options)


def _micros(delta: timedelta) -> int:
    return delta // MICROSECOND


async def _csv(connection, session, options: Options) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    out = csv.writer(buffer)  # RFC 4180: the excel dialect, CRLF
    out.writerow(CSV_COLUMNS)
    created = session.created_at
    async for batch in rows.events(connection, session.id, options.event_types):
        # Rows unpacked as tuples: reading a Row's columns by name costs more than the rest.
        for seq, type_, agent_id, content, timestamp, _payload, _dedup_key, turn in batch:
            message, encoded = (None, None) if content is None else message_or_base64(content)
            micros = (timestamp - created) // MICROSECOND
            out.writerow((seq, iso(timestamp), f"{micros / 1000:.3f}", type_, turn, agent_id, message, encoded))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


async def _text(connection, session, options: Options) -> AsyncIterator[bytes]:
    created = session.created_at
    newline = b"\n" if options.newline else b""
    async for batch in rows.events(connection, session.id, options.event_types):
        parts = []
        for _seq, _type, _agent_id, content, timestamp, *_ in batch:
            if options.event_time:
                parts.append(f"{_micros(timestamp - created) / 1_000_000:.3f} ".encode())
            if content is not None:
                parts.append(content)
            parts.append(newline)
        yield b"".join(parts)


async def _asciicast(connection, session, options: Options) -> AsyncIterator[bytes]:
    header = {
        "version": 2,
        "width": session.terminal_columns or 80,
        "height": session.terminal_rows or 24,
        "timestamp": int(session.created_at.timestamp()),
    }
    if session.title is not None:
        header["title"] = session.title
    yield orjson.dumps(header) + b"\n"
    wanted = ASCIICAST_CODES if options.event_types is None else options.event_types  # [] keeps none
    types = tuple(t for t in wanted if t in ASCIICAST_CODES)
    created, last = session.created_at, 0
    async for batch in rows.events(connection, session.id, types):
        lines = []
        for _seq, type_, _agent_id, content, timestamp, *_ in batch:
            last = max(last, _micros(timestamp - created))
            data = "" if content is None else content.decode("utf-8", "replace")
            # The time as asciinema writes it (six decimals), as a JSON number.
            lines.append(b"[%s, %s, %s]\n" % (f"{last / 1_000_000:.6f}".encode(), orjson.dumps(ASCIICAST_CODES[type_]), orjson.dumps(data)))
        yield b"".join(lines)


class _Layout:
    """How the JSON document is laid out: on one line (JSONL) or indented (JSON). Objects
    are opened from their dumped text (without the closing brace), so that arrays streamed
    in afterwards go inside them."""

    def __init__(self, indented: bool) -> None:
        self.indented = indented
        self.option = orjson.OPT_INDENT_2 if indented else 0

    def open(self, obj: dict, depth: int) -> bytes:
        text = orjson.dumps(obj, option=self.option)
        if self.indented:
            text = text.replace(b"\n", b"\n" + b"  " * depth)
            return text[: text.rindex(b"\n")]  # the closing brace's line
        return text[:-1]

    def array(self, key: str, depth: int) -> bytes:
        return b',\n%s"%s": [' % (b"  " * (depth + 1), key.encode()) if self.indented else b',"%s":[' % key.encode()

    def item(self, obj: dict, depth: int, first: bool) -> bytes:
        """An object of an array inside an object at `depth`."""
        if not self.indented:
            return orjson.dumps(obj) if first else b"," + orjson.dumps(obj)
        pad = b"\n" + b"  " * (depth + 2)
        return (b"" if first else b",") + pad + orjson.dumps(obj, option=self.option).replace(b"\n", pad)

    def open_item(self, obj: dict, depth: int, first: bool) -> bytes:
        """An object of an array, left open for arrays of its own."""
        if not self.indented:
            return (b"" if first else b",") + self.open(obj, 0)
        return (b"" if first else b",") + b"\n" + b"  " * (depth + 2) + self.open(obj, depth + 2)

    def close_array(self, depth: int, empty: bool) -> bytes:
        return b"]" if not self.indented or empty else b"\n" + b"  " * (depth + 1) + b"]"

    def close(self, depth: int) -> bytes:
        return b"}" if not self.indented else b"\n" + b"  " * depth + b"}"


async def _json(connection, session, options: Options) -> AsyncIterator[bytes]:
    layout = _Layout(indented=options.format is ExportFormat.JSON)
    types = options.event_types
    parts = [layout.open(session_object(session), 0), layout.array("events", 0)]
    first = True
    async for batch in rows.loose_events(connection, session.id, types):
        for _seq, type_, agent_id, content, timestamp, payload, dedup_key in batch:
            parts.append(layout.item(event_object(type_, agent_id, content, timestamp, payload, dedup_key), 0, first))
            first = False
        yield b"".join(parts)
        parts = []
    parts.append(layout.close_array(0, first))
    parts.append(layout.array("turns", 0))
    turn_id, first_turn, first_event = None, True, True
    async for batch in rows.turns_with_events(connection, session.id, types):
        for r in batch:
            if r.id != turn_id:
                if turn_id is not None:
                    parts.append(layout.close_array(2, first_event) + layout.close(2))
                turn_id, first_event = r.id, True
                parts.append(layout.open_item(turn_object(r), 0, first_turn))
                parts.append(layout.array("events", 2))
                first_turn = False
            if r.event_seq is not None:
                parts.append(
                    layout.item(
                        event_object(r.event_type, r.event_agent_id, r.event_content, r.event_timestamp, r.event_payload, r.event_dedup_key),
                        2,
                        first_event,
                    )
                )
                first_event = False
        yield b"".join(parts)
        parts = []
    if turn_id is not None:
        parts.append(layout.close_array(2, first_event) + layout.close(2))
    parts.append(layout.close_array(0, first_turn))
    parts.append(layout.close(0))
    parts.append(b"\n")
    yield b"".join(parts)
