"""Compiled selections: a selection of sessions, turns and events (and their connections)
made, once per document, into a function that turns rows straight into the response's
dicts, and statements that fetch only the columns the document reads.

Where a selection has a field these readers do not know (a relation such as `Turn.session`,
an argument from a variable where the value shapes the reading), the level-by-level
execution of plan.py completes it through the types' own resolvers instead. A value the
type forbids (a null in a non-null field, an Int beyond 32 bits) raises Fallback: normal
execution then answers the whole operation, error and all.
"""

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any, Callable

from graphql import FieldNode, VariableNode, get_named_type

from sessiongraph.resolvers import queries
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.scalars import serialize_datetime
from sessiongraph.schema.types import (
    ContentEncoding,
    TurnStatus,
    elapsed_ms,
    execution_time_ms,
    final_output,
    message_of,
)

from sessiongraph.planner.errors import Fallback

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Completions made by compiled selections in this process: for the tests and the benchmark.
COUNTS = {"completions": 0}
STATUSES = frozenset(s.value for s in TurnStatus)


def _nn(value):
    if value is None:
        raise Fallback
    return value


def _i32(value):
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    raise Fallback


def _i32n(value):
    return None if value is None else _i32(value)


def _dt(value):
    return serialize_datetime(_nn(value))


def _dtn(value):
    return None if value is None else serialize_datetime(value)


def _status(value):
    if value in STATUSES:
        return value
    raise Fallback


def _strs(value):
    if type(value) is not list or not all(type(v) is str for v in value):
        raise Fallback
    return list(value)


def _b64(content):
    return None if content is None else base64.b64encode(content).decode()


HELPERS = {
    "_nn": _nn,
    "_i32": _i32,
    "_i32n": _i32n,
    "_dt": _dt,
    "_dtn": _dtn,
    "_status": _status,
    "_strs": _strs,
    "_b64": _b64,
    "_gid": to_global_id,
    "_str": str,
    "_final_output": final_output,
    "_execution_time_ms": execution_time_ms,
    "_message": message_of,
    "_elapsed_ms": elapsed_ms,
}

# Each readable field: the expression of its serialized value from `row`, and the columns it
# reads. The same functions as the types' `from_row` (schema/types.py), then the scalar's
# serialization; the differential test (tests/test_planner.py) holds the two paths equal.
READERS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Session": {
        "id": ('_gid("Session", row.id)', ("id",)),
        "sessionId": ("_str(row.id)", ("id",)),
        "externalId": ("row.external_id", ("external_id",)),
        "title": ("row.title", ("title",)),
        "userId": ("_str(_nn(row.user_id))", ("user_id",)),
        "createdAt": ("_dt(row.created_at)", ("created_at",)),
        "updatedAt": ("_dt(row.updated_at)", ("updated_at",)),
        "lastActivityAt": ("_dt(row.last_activity_at)", ("last_activity_at",)),
        "turnCount": ("_i32(row.turn_count)", ("turn_count",)),
        "tokensUsed": ("_i32(row.tokens_used)", ("tokens_used",)),
        "tokenBudget": ("_i32n(row.token_budget)", ("token_budget",)),
        "metadata": ("_nn(row.metadata)", ("metadata",)),
    },
    "Turn": {
        "id": ('_gid("Turn", row.id)', ("id",)),
        "turn": ("_i32(row.position)", ("position",)),
        "taskId": ("_nn(row.task_id)", ("task_id",)),
        "workflowId": ("row.workflow_id", ("workflow_id",)),
        "userQuery": ("row.user_query", ("user_query",)),
        "finalOutput": ("_final_output(row.result, row.fallback_output)", ("result", "fallback_output")),
        "status": ("_status(row.status)", ("status",)),
        "createdAt": ("_dt(row.created_at)", ("created_at",)),
        "completedAt": ("_dtn(row.completed_at)", ("completed_at",)),
        "tokensUsed": ("_i32(row.tokens_used)", ("tokens_used",)),
        "executionTimeMs": (
            "_i32n(_execution_time_ms(row.duration_ms, row.created_at, row.completed_at))",
            ("duration_ms", "created_at", "completed_at"),
        ),
        "agentsInvolved": ("_strs(row.agents)", ("agents",)),
    },
    "Event": {
        "id": ('_gid("Event", row.id)', ("id",)),
        "seq": ("_i32(row.seq)", ("seq",)),
        "type": ("_nn(row.type)", ("type",)),
        "workflowId": ("row.workflow_id", ("workflow_id",)),
        "agentId": ("row.agent_id", ("agent_id",)),
        "message": ("_message(row.content)", ("content",)),
        "timestamp": ("_dt(row.timestamp)", ("timestamp",)),
        "elapsedMs": ("_elapsed_ms(row.timestamp, row.session_created_at)", ("timestamp", "session_created_at")),
        "payload": ("row.payload", ("payload",)),
        # `content(encoding:)`: chosen by its argument when the plan is made (see _reader).
        "content": ("", ("content",)),
    },
}

# What a page of each type always fetches besides its parent's id: its own id (the parent
# of the next level) and the sort key (its cursor).
KEY_COLUMNS = {"Turn": ("id", "position"), "Event": ("id", "seq")}


async def _turns(ctx, rows, kwargs, columns) -> list:
    return await queries.turn_pages(
        ctx, rows, kwargs["first"], kwargs["after"], kwargs["last"], kwargs["before"], columns
    )


def _events(parent_kind: str):
    async def fetch(ctx, rows, kwargs, columns) -> list:
        return await queries.event_pages(
            ctx,
            parent_kind,
            [row.id for row in rows],
            kwargs["first"],
            kwargs["after"],
            kwargs["last"],
            kwargs["before"],
            kwargs["types"],
            kwargs["include_partial"],
            columns,
        )

    return fetch


# (parent type, field) -> (node type, how the pages of all parents are fetched at once)
CONNECTIONS: dict[tuple[str, str], tuple[str, Callable]] = {
    ("Session", "turns"): ("Turn", _turns),
    ("Session", "events"): ("Event", _events("session")),
    ("Turn", "events"): ("Event", _events("turn")),
}


def readable(type_name: str, node: FieldNode) -> bool:
    """Whether a compiled selection can read this field of this type (its arguments, if it
    has any, written in the document)."""
    name = node.name.value
    if name == "__typename" or (type_name, name) in CONNECTIONS:
        return True
    if name not in READERS.get(type_name, ()):
        return False
    return not any(isinstance(a.value, VariableNode) for a in node.arguments or ())


def page_columns(fields_read: dict[str, set[str]]) -> dict[str, tuple[str, ...] | None]:
    """The columns to fetch for pages of turns and of events: what the document's fields of
    that type read. All of them (None) as soon as the document reads any field of these
    types that compiled selections cannot read: that selection's pages are fetched by the
    types' resolvers, with every column their `from_row` needs, and a compiled selection
    asking for the same page must find it among the DataLoader's, not fetch it again."""
    for type_name, names in fields_read.items():
        if any(n != "__typename" and (type_name, n) not in CONNECTIONS and n not in READERS[type_name] for n in names):
            return dict.fromkeys(KEY_COLUMNS)
    chosen = {}
    for type_name, keys in KEY_COLUMNS.items():
        columns = dict.fromkeys(keys)
        for n in sorted(fields_read.get(type_name, ())):
            if n in READERS[type_name]:
                columns.update(dict.fromkeys(READERS[type_name][n][1]))
        chosen[type_name] = tuple(columns)
    return chosen


@dataclass(slots=True)
class NodeSelection:
    """A compiled selection of one node type (built from rows), or of plain attributes of
    any object (`of_objects`: built from the objects themselves)."""

    type_name: str
    build: Callable[[list], list[dict]]  # rows -> dicts, connection keys set to None
    connections: list = field(default_factory=list)  # (key, node, ConnectionSelection)
    of_objects: bool = False


@dataclass(slots=True)
class ConnectionSelection:
    type_name: str
    node_type: str
    fetch: Callable
    runner: Any
    field_def: Any
    # (key, what, detail): what is __typename, nodes, edges, pageInfo or totalCount
    fields: list = field(default_factory=list)


def compile_node(run, graphql_type, details) -> NodeSelection | None:
    type_name = graphql_type.name
    if type_name not in READERS:
        return None
    expressions, connections = [], []
    for key, field_details in run.child_fields(graphql_type, details).items():
        node = field_details[0].node
        name = node.name.value
        if not readable(type_name, node):
            return None
        if name == "__typename":
            expressions.append((key, repr(type_name)))
        elif (type_name, name) in CONNECTIONS:
            field_def = graphql_type.fields[name]
            connection = compile_connection(
                run, get_named_type(field_def.type), field_details, (type_name, name, field_def)
            )
            if connection is None:
                return None
            expressions.append((key, "None"))
            connections.append((key, node, connection))
        else:
            expressions.append((key, _reader(run, graphql_type, node)))
    return NodeSelection(type_name, _builder(expressions), connections)


def compile_attributes(run, graphql_type, details) -> NodeSelection | None:
    """A selection of leaf fields that are plain attributes of the objects (no resolver),
    such as the viewer's: each read off the object and serialized as its type says."""
    expressions, helpers = [], {}
    for key, field_details in run.child_fields(graphql_type, details).items():
        name = field_details[0].node.name.value
        if name == "__typename":
            expressions.append((key, repr(graphql_type.name)))
            continue
        runner = run.planner._runners.get((graphql_type.name, name))
        if runner is None or runner.resolver is not None:
            return None
        shape = run.planner.shape(graphql_type.name, name)
        if not shape.leaf or shape.is_list:
            return None
        helper = f"_leaf{len(helpers)}"
        helpers[helper] = leaf_serializer(shape) if shape.non_null else _nullable(leaf_serializer(shape))
        expressions.append((key, f"{helper}(row.{runner.python_name})"))
    return NodeSelection(graphql_type.name, _builder(expressions, helpers), of_objects=True)


def leaf_serializer(shape):
    """A non-null leaf value's serialization, as graphql-core completes it: a str of a
    String or ID and an Int within 32 bits are their own; Fallback where graphql-core would
    report an error (a null, a value the scalar refuses)."""
    serialize, text, int32 = shape.serialize, shape.text, shape.int32

    def leaf(value):
        if value is None:
            raise Fallback
        if text and type(value) is str:
            return value
        if int32 and type(value) is int and INT_MIN <= value <= INT_MAX:
            return value
        serialized = serialize(value)
        if serialized is None:
            raise Fallback
        return serialized

    return leaf


def _nullable(leaf):
    return lambda value: None if value is None else leaf(value)


def _reader(run, graphql_type, node: FieldNode) -> str:
    name = node.name.value
    if name != "content":
        return READERS[graphql_type.name][name][0]
    runner = run.planner._runners[graphql_type.name, name]
    encoding = run.argument_values(runner, graphql_type.fields[name], node).get("encoding", ContentEncoding.UTF8)
    return "_message(row.content)" if encoding is ContentEncoding.UTF8 else "_b64(row.content)"


def compile_connection(run, connection_type, details, fetched=None) -> ConnectionSelection | None:
    """`fetched`: (parent type, field name, field definition) when the compiled selection
    fetches the pages itself; None when they come from a resolver (the session list)."""
    node_type = get_named_type(connection_type.fields["nodes"].type)
    if node_type.name not in READERS:
        return None
    fetch = runner = field_def = None
    if fetched is not None:
        parent_type, name, field_def = fetched
        fetch = CONNECTIONS[parent_type, name][1]
        runner = run.planner._runners[parent_type, name]
    selection = ConnectionSelection(connection_type.name, node_type.name, fetch, runner, field_def)
    for key, field_details in run.child_fields(connection_type, details).items():
        what = field_details[0].node.name.value
        if what == "nodes":
            nodes = compile_node(run, node_type, field_details)
            if nodes is None:
                return None
            selection.fields.append((key, what, nodes))
        elif what == "edges":
            edge_type = get_named_type(connection_type.fields["edges"].type)
            edge_fields = []
            for edge_key, edge_details in run.child_fields(edge_type, field_details).items():
                edge_what = edge_details[0].node.name.value
                detail = None
                if edge_what == "node":
                    detail = compile_node(run, node_type, edge_details)
                    if detail is None:
                        return None
                elif edge_what == "__typename":
                    detail = edge_type.name
                edge_fields.append((edge_key, edge_what, detail))
            selection.fields.append((key, what, edge_fields))
        elif what == "pageInfo":
            info_type = get_named_type(connection_type.fields["pageInfo"].type)
            keys = [(k, d[0].node.name.value) for k, d in run.child_fields(info_type, field_details).items()]
            selection.fields.append((key, what, keys))
        elif what in ("totalCount", "__typename"):
            selection.fields.append((key, what, None))
        else:
            return None
    return selection


def _builder(expressions: list[tuple[str, str]], helpers: dict | None = None) -> Callable[[list], list[dict]]:
    """A function making each row's dict in one expression: the selection's keys in order,
    each read as its reader says."""
    body = ", ".join(f"{key!r}: {expression}" for key, expression in expressions)
    namespace = {**HELPERS, **(helpers or {})}
    exec(f"def build(rows):\n    return [{{{body}}} for row in rows]\n", namespace)  # noqa: S102  keys are repr()'d names, expressions from READERS
    return namespace["build"]


# -- execution -------------------------------------------------------------------------


async def run_nodes(run, selection: NodeSelection, rows: list) -> list[dict]:
    if not rows:
        return []
    outs = selection.build(rows)
    for key, node, connection in selection.connections:
        values = await run_connection(run, connection, node, rows)
        for out, value in zip(outs, values, strict=True):
            out[key] = value
    return outs


async def run_connection(run, connection: ConnectionSelection, node, parent_rows: list) -> list[dict]:
    kwargs = run.argument_values(connection.runner, connection.field_def, node)
    pages = await connection.fetch(run.info.context, parent_rows, kwargs, run.plan.columns.get(connection.node_type))
    return await complete_pages(run, connection, pages)


async def complete_pages(run, connection: ConnectionSelection, pages: list) -> list[dict]:
    outs: list[dict] = [{} for _ in pages]
    for key, what, detail in connection.fields:
        if what == "__typename":
            for out in outs:
                out[key] = connection.type_name
        elif what == "nodes":
            built = iter(await run_nodes(run, detail, [row for page in pages for row in page.rows]))
            for out, page in zip(outs, pages):
                out[key] = [next(built) for _ in page.rows]
        elif what == "edges":
            await _edges(run, key, detail, pages, outs)
        elif what == "pageInfo":
            for out, page in zip(outs, pages):
                out[key] = _page_info(page, detail)
        else:  # totalCount: counted for all pages at once
            counts = await asyncio.gather(*(page.count() for page in pages))
            for out, count in zip(outs, counts):
                out[key] = _i32(count)
    return outs


async def _edges(run, key, edge_fields, pages, outs) -> None:
    built = {}
    for edge_key, what, detail in edge_fields:
        if what == "node":
            built[edge_key] = iter(await run_nodes(run, detail, [row for page in pages for row in page.rows]))
    for out, page in zip(outs, pages):
        edges = []
        for row in page.rows:
            edge = {}
            for edge_key, what, detail in edge_fields:
                if what == "cursor":
                    edge[edge_key] = page.cursor(row)
                elif what == "node":
                    edge[edge_key] = next(built[edge_key])
                else:
                    edge[edge_key] = detail
            edges.append(edge)
        out[key] = edges


def _page_info(page, keys) -> dict:
    rows = page.rows
    info = {}
    for key, what in keys:
        if what == "hasNextPage":
            info[key] = page.has_next
        elif what == "hasPreviousPage":
            info[key] = page.has_previous
        elif what == "startCursor":
            info[key] = page.cursor(rows[0]) if rows else None
        elif what == "endCursor":
            info[key] = page.cursor(rows[-1]) if rows else None
        else:
            info[key] = "PageInfo"
    return info
