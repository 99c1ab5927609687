"""Downloads in the schema (the contract's export.graphql): the ExportFormat enum, the Download
type and `Session.download`, which makes a signed link (downloads/export.py)."""

from datetime import datetime
from enum import Enum

import strawberry

from sessiongraph.downloads import export
from sessiongraph.downloads.formats import ExportFormat as Formats


@strawberry.enum
class ExportFormat(Enum):
    CSV = strawberry.enum_value(
        "CSV", description="One row per event: seq, timestamp, elapsed_ms, type, turn, agent_id, message (RFC 4180)."
    )
    JSON = strawberry.enum_value(
        "JSON", description="One JSON document: the session with its turns and events, in the import format."
    )
    JSONL = strawberry.enum_value(
        "JSONL",
        description="The import format itself, one line: importing the file into an empty database gives the same session back.",
    )
    TEXT = strawberry.enum_value(
        "TEXT",
        description="The events' contents as they are, optionally each prefixed with its time and followed by a newline.",
    )
    ASCIICAST = strawberry.enum_value(
        "ASCIICAST",
        description="asciicast v2 (asciinema): INPUT as 'i', OUTPUT and ERROR as 'o', times from the session's start.",
    )


@strawberry.type
class Download:
    url: str
    expires_at: datetime
    format: ExportFormat


DOWNLOAD_DESCRIPTION = (
    "A link to download this session as a file, valid for `expiresInSeconds` (1..3600, default 300) "
    "from any server process of this deployment, without an API key: the link is the credential. "
    "`eventTypes` keeps only those event types (e.g. [\"OUTPUT\", \"ERROR\"]); `eventTime` prefixes "
    "each event of a TEXT export with its elapsed seconds; `newline` ends each of them with a newline. "
    "The download is streamed; a session deleted after the link was made, or a link whose key was "
    "revoked, answers 404; an expired or altered link, 403."
)


async def download(
    root: strawberry.Parent[object],
    info: strawberry.Info,
    format: ExportFormat,
    event_types: list[str] | None = None,
    event_time: bool | None = False,
    newline: bool | None = False,
    expires_in_seconds: int | None = 300,
) -> Download:
    options = export.check_options(Formats(format.value), event_types, event_time, newline, expires_in_seconds)
    token, link = await export.make_link(info.context.engine, info.context.viewer, root.row.id, options, expires_in_seconds)
    return Download(url=export.link_url(token), expires_at=link.expires_at, format=format)


download_field = strawberry.field(resolver=download, description=DOWNLOAD_DESCRIPTION)
