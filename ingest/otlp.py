"""OpenTelemetry ingest: the spans of an OTLP ExportTraceServiceRequest recorded as sessions,
turns and events (the contract README's "OpenTelemetry ingest").

- A span's session: the first of SESSION_ATTRIBUTES on the span, else on its resource, as
  the external id of a session of the key's user (a key that writes for others may name
  another user with `user.id`); a span without one takes its trace's (from another span of
  the trace in the request, else from the stored turn of the trace); else the trace is its
  own session, whose external id is the trace id.
- A trace is a turn (task id: the trace id in hex), started by the first of its spans seen
  and completed by its root span; its tokens are the sum over its spans, added once a span.
- A span is an event whose dedup key is its span id: a retried request stores nothing twice.

Everything is written through the one writer (models/recording.py), every input checked by
the rules the mutations check (resolvers/rules.py), who may write where decided by
resolvers/visibility.py, and announced to live subscribers as the mutations announce. A
span a rule refuses is counted with the reason; the other spans of the request are stored.
A request's spans are written in one transaction, so they land whole or not at all.
"""

import base64
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status as StatusMessage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sessiongraph.live.broker import Publication, events_appended, publishing, session_changed
from sessiongraph.models import Event, Session, Turn
from sessiongraph.models.recording import (
    NewEvent,
    NewSession,
    NewTurn,
    SessionEnded,
    TokensOver,
    Stored,
    add_turn_tokens,
    append_events_once,
    end_turn,
    ensure_user,
    lock_session,
    session_started_by,
    store_session,
)
from sessiongraph.observability.metrics import events_written
from sessiongraph.resolvers.context import Viewer
from sessiongraph.resolvers.rules import (
    ENDED,
    TOKENS_OVER,
    RuleBroken,
    check_completion,
    check_count,
    check_event_type,
    check_external_id,
    check_name,
    check_payload,
    check_no_nul,
    event_content,
)
from sessiongraph.resolvers.visibility import may_write, writes_for_others

SESSION_ATTRIBUTES = ("session.id", "gen_ai.conversation.id", "langfuse.session.id")
USER_ATTRIBUTE = "user.id"
EVENT_TYPES = {
    "chat": "LLM_OUTPUT",
    "text_completion": "LLM_OUTPUT",
    "generate_content": "LLM_OUTPUT",
    "execute_tool": "TOOL_INVOKED",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}
OTHER_EVENT_TYPE = "SPAN"
SPAN_KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in SpanMessage.SpanKind.items()}
STATUS_CODES = {value: name.removeprefix("STATUS_CODE_") for name, value in StatusMessage.StatusCode.items()}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Malformed(ValueError):
    """The body is not an ExportTraceServiceRequest in the format it claims."""


# -- decoding


def decode_request(body: bytes, json: bool) -> ExportTraceServiceRequest:
    """The request a body holds: protobuf, or OTLP's JSON (whose trace and span ids are hex,
    where protobuf's JSON mapping has base64; unknown fields ignored, as OTLP requires)."""
    request = ExportTraceServiceRequest()
    try:
        if not json:
            request.ParseFromString(body)
            return request
        document = orjson.loads(body)
        if not isinstance(document, dict):
            raise Malformed("The body is not an OTLP ExportTraceServiceRequest: not a JSON object.")
        _ids_to_base64(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (DecodeError, orjson.JSONDecodeError, json_format.ParseError) as e:
        raise Malformed(f"The body is not an OTLP ExportTraceServiceRequest: {e}") from None
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _ids_to_base64(document: dict) -> None:
    """OTLP/JSON's hex ids, in spans and their links, as base64 for json_format."""
    for resource_spans in _list(document, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                _hex_ids(span)
                for link in _list(span, "links"):
                    _hex_ids(link)


def _list(obj, *names: str) -> list:
    if not isinstance(obj, dict):
        raise Malformed("The body is not an OTLP ExportTraceServiceRequest: an object was expected.")
    for name in names:
        value = obj.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise Malformed(f"The body is not an OTLP ExportTraceServiceRequest: {name} is not a list.")
            return value
    return []


def _hex_ids(obj) -> None:
    if not isinstance(obj, dict):
        raise Malformed("The body is not an OTLP ExportTraceServiceRequest: a span is not an object.")
    for name in _ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, str) and value:
            try:
                obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise Malformed(f"The body is not an OTLP ExportTraceServiceRequest: {name} {value!r} is not hex.") from None


def encode_response(rejected: Counter, json: bool) -> bytes:
    """OTLP's ExportTraceServiceResponse: partial_success counts the spans not stored, its
    message says why (each reason with its count)."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(ExportTracePartialSuccess(
            rejected_spans=sum(rejected.values()),
            error_message="; ".join(f"{count} span{'s' if count > 1 else ''}: {reason}" for reason, count in rejected.items()),
        ))
    return _encode(response, json)


def encode_status(code: int, message: str, json: bool) -> bytes:
    """An error's body, as OTLP/HTTP has it: a google.rpc.Status (`code`: its gRPC code)."""
    return _encode(status_pb2.Status(code=code, message=message), json)


def _encode(message, json: bool) -> bytes:
    if json:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def _value(any_value):
    """An AnyValue as plain JSON (bytes as base64)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(any_value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode()
    return getattr(any_value, kind)


def _attributes(key_values) -> dict:
    return {kv.key: _value(kv.value) for kv in key_values}


def _time(nanos: int) -> datetime:
    return EPOCH + timedelta(microseconds=nanos // 1000)


# -- what a span says


@dataclass(slots=True)
class SpanFacts:
    """One span, read: where it goes, what event it makes, what its trace's turn takes from it."""

    trace_id: str
    span_id: str
    is_root: bool
    start: datetime
    end: datetime
    failed: bool
    owner: uuid.UUID
    session_name: str | None  # the external id its attributes give, if any
    event: NewEvent
    tokens: int
    user_query: str | None
    result: str | None


def _first(names, *attribute_sets):
    for attributes in attribute_sets:
        for name in names:
            value = attributes.get(name)
            if value is not None and value != "":
                return value
    return None


def _messages(value) -> list:
    """gen_ai.*.messages: a JSON string (as the semantic conventions record it on spans) or
    a structured value; [] when it is neither."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return []
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _text_parts(message: dict) -> list[str]:
    parts = message.get("parts")
    if isinstance(parts, list):
        return [p["content"] for p in parts if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("content"), str)]
    content = message.get("content")  # the older convention: the message's text as its content
    return [content] if isinstance(content, str) else []


def _joined(parts: list[str]) -> str | None:
    return "\n".join(parts) if parts else None


def _text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def input_text(attributes: dict) -> str | None:
    """A span's input: the text parts of the last `user` message of gen_ai.input.messages,
    else OpenInference's input.value."""
    users = [m for m in _messages(attributes.get("gen_ai.input.messages")) if m.get("role") == "user"]
    if users and (text := _joined(_text_parts(users[-1]))) is not None:
        return text
    return _text(attributes.get("input.value"))


def output_text(attributes: dict) -> str | None:
    """A span's output: the text parts of gen_ai.output.messages, else output.value, else
    (a tool's span) gen_ai.tool.call.result."""
    parts = [part for m in _messages(attributes.get("gen_ai.output.messages")) for part in _text_parts(m)]
    if parts:
        return "\n".join(parts)
    return _text(attributes.get("output.value", attributes.get("gen_ai.tool.call.result")))


def _tokens(attributes: dict) -> int:
    """gen_ai.usage.input_tokens + output_tokens, else llm.token_count.total."""
    counts = [attributes.get("gen_ai.usage.input_tokens"), attributes.get("gen_ai.usage.output_tokens")]
    if all(c is None for c in counts):
        counts = [attributes.get("llm.token_count.total")]
    total = 0
    for count in counts:
        if count is None:
            continue
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if not isinstance(count, int) or isinstance(count, bool):
            raise RuleBroken(f"The token count {count!r} is not an integer.")
        total += check_count(count, "token count")
    return total


def read_span(span, resource: dict, viewer: Viewer) -> SpanFacts:
    """What a span becomes; RuleBroken (the reason) when it cannot be stored."""
    if len(span.trace_id) != 16 or not any(span.trace_id) or len(span.span_id) != 8 or not any(span.span_id):
        raise RuleBroken("A span needs a 16-byte trace id and an 8-byte span id, not all zero.")
    if not span.start_time_unix_nano:
        raise RuleBroken("A span needs a start time.")
    attributes = _attributes(span.attributes)
    owner = viewer.user_id
    if (user := _first((USER_ATTRIBUTE,), attributes, resource)) is not None:
        try:
            owner = uuid.UUID(str(user))
        except ValueError:
            raise RuleBroken(f"{USER_ATTRIBUTE} {user!r} is not a user id (a UUID).") from None
        if owner != viewer.user_id and not writes_for_others(viewer):
            raise RuleBroken("A USER key records only for its own user.")
    session_name = _first(SESSION_ATTRIBUTES, attributes, resource)
    if session_name is not None:
        session_name = check_external_id(str(session_name), "session attribute")
    start, end = _time(span.start_time_unix_nano), _time(span.end_time_unix_nano or span.start_time_unix_nano)
    status = STATUS_CODES.get(span.status.code, "UNSET")
    output = output_text(attributes)
    span_id = span.span_id.hex()
    event_type = check_event_type(EVENT_TYPES.get(attributes.get("gen_ai.operation.name"), OTHER_EVENT_TYPE))
    agent = _first(("gen_ai.agent.name", "gen_ai.agent.id"), attributes)
    payload = {
        "name": span.name,
        "kind": SPAN_KINDS.get(span.kind, "UNSPECIFIED"),
        "traceId": span.trace_id.hex(),
        "spanId": span_id,
        "parentSpanId": span.parent_span_id.hex() or None,
        "durationMs": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6 if span.end_time_unix_nano else None,
        "status": {"code": status, "message": span.status.message or None},
        "attributes": attributes,
    }
    event = NewEvent(
        type=event_type,
        timestamp=start,
        agent_id=check_name(None if agent is None else str(agent), "agent id"),
        content=event_content(output if output is not None else span.name, None),
        payload=check_payload(payload),
        dedup_key=check_name(span_id, "dedup key"),
    )
    is_root = not span.parent_span_id
    return SpanFacts(
        trace_id=span.trace_id.hex(),
        span_id=span_id,
        is_root=is_root,
        start=start,
        end=check_completion(start, end) if is_root else end,
        failed=status == "ERROR",
        owner=owner,
        session_name=session_name,
        event=event,
        tokens=_tokens(attributes),
        user_query=check_no_nul(input_text(attributes), "user query") if is_root else None,
        result=check_no_nul(output, "result") if is_root else None,
    )


# -- storing

TURN_FIGURES = (Turn.id, Turn.task_id, Turn.session_id, Turn.status, Turn.tokens_used, Turn.cost_usd_micros)


def _start(span: SpanFacts) -> datetime:
    return span.start


def _status(root: SpanFacts) -> str:
    return "FAILED" if root.failed else "COMPLETED"


def _new_turn(trace: str, spans: list[SpanFacts]) -> NewTurn:
    """A trace's turn as its first spans seen make it: complete if its root is among them."""
    root = next((s for s in spans if s.is_root), None)
    return NewTurn(
        task_id=trace,
        created_at=spans[0].start if root is None else root.start,
        status="RUNNING" if root is None else _status(root),
        completed_at=None if root is None else root.end,
        user_query=None if root is None else root.user_query,
        result=None if root is None else root.result,
        tokens_used=sum(s.tokens for s in spans),
        events=[s.event for s in spans],
    )


@dataclass
class Outcome:
    """What became of a request's spans: stored (new or already there), rejected by reason."""

    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)


async def ingest(engine: AsyncEngine, viewer: Viewer, request: ExportTraceServiceRequest) -> Outcome:
    """Records the request's spans in one transaction (a span a rule refuses is left out and
    counted; nothing else is lost)."""
    outcome = Outcome()
    spans: list[SpanFacts] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    spans.append(read_span(span, resource, viewer))
                except RuleBroken as e:
                    outcome.rejected[str(e)] += 1
    if not spans:
        return outcome
    groups = await _sessions_of(engine, viewer, spans)
    # Sessions in one order for every request (by owner and name), so that two requests
    # never wait for each other's session locks the other way round.
    order = sorted(groups, key=lambda key: (key[0], key[1][0], str(key[1][1])))
    # Sessions whose tokens these spans would take past the largest Int: refused whole, the
    # transaction run again without them (what the writer had written for them is undone).
    over: set = set()
    conflicts = 0
    while True:
        try:
            rejected: Counter = Counter()
            async with publishing(engine) as publication:
                for key in order:
                    if key not in over:
                        try:
                            rejected.update(await _store(publication, viewer, *key, groups[key]))
                        except TokensOver:
                            over.add(key)
                            raise
            break
        except TokensOver:
            continue
        except IntegrityError:
            # A concurrent request created one of these sessions (its external id) first:
            # the second attempt finds it.
            conflicts += 1
            if conflicts == 2:
                raise
    for key in over:
        rejected[TOKENS_OVER] += len(groups[key])
    outcome.rejected.update(rejected)
    outcome.accepted += len(spans) - sum(rejected.values())
    return outcome


async def _sessions_of(engine: AsyncEngine, viewer: Viewer, spans: list[SpanFacts]) -> dict:
    """The spans by (owner, session): ("external", id) from their attributes or their trace's;
    for a trace whose turn is stored already, that session's ("external", id) (or ("id",
    session id) when it has none); else ("external", trace id)."""
    named: dict[tuple, str] = {}
    for s in spans:
        if s.session_name is not None:
            named.setdefault((s.owner, s.trace_id), s.session_name)
    unnamed = {(s.owner, s.trace_id) for s in spans if s.session_name is None and (s.owner, s.trace_id) not in named}
    stored: dict[tuple, tuple] = {}
    if unnamed:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(Session.user_id, Turn.task_id, Session.id, Session.external_id)
                .join(Turn, Turn.session_id == Session.id)
                .where(
                    Session.org_id == viewer.org_id,
                    Session.user_id.in_({owner for owner, _ in unnamed}),
                    Turn.task_id.in_({trace for _, trace in unnamed}),
                    Session.deleted_at.is_(None),
                )
                .order_by(Session.created_at)
            )).all()
        for row in rows:
            # By its external id where it has one (any the ingest made has): one name a
            # session, so the order its lock is taken in is the same for every request.
            stored.setdefault((row.user_id, row.task_id), ("id", row.id) if row.external_id is None else ("external", row.external_id))
    groups: dict[tuple, list[SpanFacts]] = defaultdict(list)
    for s in spans:
        key = (s.owner, s.trace_id)
        if s.session_name is not None:
            name = ("external", s.session_name)
        elif key in named:
            name = ("external", named[key])
        elif key in stored:
            name = stored[key]
        else:
            name = ("external", s.trace_id)
        groups[s.owner, name].append(s)
    return groups


async def _store(publication: Publication, viewer: Viewer, owner: uuid.UUID, name: tuple, spans: list[SpanFacts]) -> Counter:
    """Stores the spans of one session; the rejected ones by reason.

    The traces the session has no turn for yet come as new turns with their events and
    figures in one `store_session` (a new session with all of it in a few statements, or
    `add_turns` into the stored one); the spans of traces it has a turn for are appended to
    that turn, less those it has already (a retry), adding their tokens, the root
    completing the turn."""
    rejected: Counter = Counter()
    connection = publication.connection
    # The key's own user is in its organisation (the key made it so); another joins it if
    # never seen, as createSession has it.
    if owner != viewer.user_id and not await ensure_user(connection, owner, viewer.org_id, datetime.now(UTC)):
        rejected[f"No user {owner} in this organisation."] += len(spans)
        return rejected
    unique: dict[str, SpanFacts] = {}  # a span id twice in a request: the first
    for s in spans:
        unique.setdefault(s.span_id, s)
    # A trace's spans in start-time order; the traces in the order they started.
    traces: dict[str, list[SpanFacts]] = defaultdict(list)
    for s in sorted(unique.values(), key=_start):
        traces[s.trace_id].append(s)

    how, value = name
    stored = Stored(value, False, 0, 0)
    if how == "external":
        new = NewSession(
            org_id=viewer.org_id,
            user_id=owner,
            created_at=min(s.start for s in unique.values()),
            session_id=uuid.uuid4(),
            external_id=value,
            identity_type=viewer.identity_type,
            turns=[_new_turn(trace, trace_spans) for trace, trace_spans in traces.items()],
        )
        try:
            stored = await store_session(connection, new)
        except SessionEnded:  # a DONE session takes no new turn: its spans are refused below
            new.turns = []
            stored = await store_session(connection, new)
    session = await lock_session(connection, stored.session_id)
    if not may_write(viewer, session):
        rejected[f"No session {value!s} for this key."] += len(spans)
        return rejected
    if stored.created:
        events_written(stored.events)  # the writer counts the events it appends, not a new session's
        publication.announce(session_changed("CREATED", session))
    added: set[str] = set()
    if stored.turns:  # the session's last turns
        for row in (await connection.execute(
            select(Turn.id, Turn.task_id, Turn.status)
            .where(Turn.session_id == session.id, Turn.position > session.turn_count - stored.turns)
            .order_by(Turn.position)
        )).all():
            added.add(row.task_id)
            publication.announce(session_changed("TURN_STARTED", session, row.id))
            if row.status != "RUNNING":
                publication.announce(session_changed("TURN_COMPLETED", session, row.id))
    written = [s for trace in added for s in traces[trace]]

    # The traces the session has a turn for already: the spans it does not have yet.
    rest = {trace: trace_spans for trace, trace_spans in traces.items() if trace not in added}
    appended = 0
    if rest:
        known = set((await connection.scalars(select(Event.dedup_key).where(
            Event.session_id == session.id, Event.dedup_key.in_({s.span_id for ss in rest.values() for s in ss})
        ))).all())
        fresh = {trace: kept for trace, trace_spans in rest.items() if (kept := [s for s in trace_spans if s.span_id not in known])}
        if fresh and session.status == "DONE":
            rejected[ENDED] += sum(map(len, fresh.values()))
            fresh = {}
        turns = {
            row.task_id: row
            for row in (await connection.execute(
                select(*TURN_FIGURES).where(Turn.session_id == session.id, Turn.task_id.in_(set(fresh)))
            )).all()
        } if fresh else {}
        for trace, trace_spans in fresh.items():
            turn = turns[trace]
            await append_events_once(connection, session.id, turn.id, [s.event for s in trace_spans])
            await add_turn_tokens(connection, session.id, turn.id, sum(s.tokens for s in trace_spans))
            root = next((s for s in trace_spans if s.is_root), None)
            if root is not None and turn.status == "RUNNING":
                await end_turn(
                    connection, turn, _status(root), root.end, result=root.result, started_at=root.start, user_query=root.user_query
                )
                publication.announce(session_changed("TURN_COMPLETED", session, turn.id))
            appended += len(trace_spans)
            written += trace_spans

    if written:
        # The session began with its earliest span, whichever came first.
        if (earliest := min(s.start for s in written)) < session.created_at:
            await session_started_by(connection, session.id, earliest)
        # The events written here took the session's last seqs.
        last = session.event_count + appended
        publication.announce(events_appended(session, last - len(written) + 1, last))
    return rejected
