"""Compiled selections: a selection of sessions, turns and events (and their connections and
relations: an event's turn, a turn's session) made, once per document, into a function that turns rows straight into the response's
dicts, and statements that fetch only the columns the document reads.

What each field reads, and how its value follows from a row, is the field's declaration
(models/fields.py), the same one the types' `from_row` applies; the value is then
serialized as its GraphQL type says, as graphql-core would. Where a selection has a field
these readers do not know (`Session.chats`, a type's resolver field, an argument from a
variable where the value shapes the reading), the level-by-level execution of plan.py completes it
through the types' own resolvers instead. A value the type forbids (a null in a non-null
field, an Int beyond 32 bits) raises Fallback: normal execution then answers the whole
operation, error and all.
"""

import asyncio
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Callable

from graphql import FieldNode, VariableNode, get_named_type
from strawberry.schema.name_converter import NameConverter

from sessiongraph.models import fields as declared
from sessiongraph.resolvers import queries
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.types import ContentEncoding

from sessiongraph.planner.errors import Fallback

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Completions made by compiled selections in this process: for the tests and the benchmark.
COUNTS = {"completions": 0}


@dataclass(frozen=True, slots=True)
class Reader:
    """How one field's value follows from a row (before serialization), the columns it
    reads, and whether that value is its own serialization (`as_is`: a global id; a text
    column, NOT NULL where the field is non-null; any JSON where null is allowed)."""

    value: Callable[[Any], Any]
    columns: tuple[str, ...]
    as_is: bool = False


def _int32(value: int) -> int:
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    raise Fallback


def _global_id(type_name: str) -> Callable:
    return lambda row: to_global_id(type_name, row.id)


def _as_is(declaration: declared.Field) -> bool:
    if declaration.annotation is str:  # a String! read from a column that cannot be NULL
        return declaration.stored is not None and not declaration.stored.nullable and not declaration.value
    return declaration.annotation in (str | None, declared.Json | None)


def _readers(type_name: str) -> dict[str, Reader]:
    name_of = NameConverter().apply_naming_config
    readers = {"id": Reader(_global_id(type_name), ("id",), as_is=True)}
    for f in declared.exposed(type_name):
        readers[name_of(f.name)] = Reader(f.getter, declared.columns_read(f), _as_is(f))
    return readers


# Each readable field of each node type, by its GraphQL name: what the declarations say.
READERS: dict[str, dict[str, Reader]] = {name: _readers(name) for name in declared.FIELDS}
# `Event.content(encoding:)`: a field with an argument, read as its argument says when the
# plan is made (see _content_reader).
READERS["Event"]["content"] = Reader(attrgetter("content"), ("content", "type", "session_kind", "session_resource_subtype"))

# What a page of each type always fetches besides its parent's id: its own id (the parent
# of the next level) and the sort key (its cursor); a session list's page, the number of
# turns its turns' `totalCount` is (the list's sort key is added by the list itself).
KEY_COLUMNS = {"Session": ("id", "turn_count"), "Turn": ("id", "position"), "Event": ("id", "seq")}


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


# (parent type, field) -> (node type, the parent's column holding its id, the loader by id,
# whether the id may be null): a relation such as an event's turn, read by the DataLoaders
# for all parents at once and completed by the node type's compiled selection.
RELATIONS: dict[tuple[str, str], tuple[str, str, str, bool]] = {
    ("Event", "turn"): ("Turn", "turn_id", "turn", True),
    ("Event", "session"): ("Session", "session_id", "session", False),
    ("Turn", "session"): ("Session", "session_id", "session", False),
}


def readable(type_name: str, node: FieldNode) -> bool:
    """Whether a compiled selection can read this field of this type (its arguments, if it
    has any, written in the document)."""
    name = node.name.value
    if name == "__typename" or (type_name, name) in CONNECTIONS or (type_name, name) in RELATIONS:
        return True
    if name not in READERS.get(type_name, ()) and name not in DETAIL_READERS.get(type_name, ()):
        return False
    return not any(isinstance(a.value, VariableNode) for a in node.arguments or ())


def page_columns(fields_read: dict[str, set[str]]) -> dict[str, tuple[str, ...] | None]:
    """The columns to fetch for pages of sessions, turns and events: what the document's
    fields of that type read. All of them (None) as soon as the document reads any field of these
    types that compiled selections cannot read: that selection's pages are fetched by the
    types' resolvers, with every column their `from_row` needs, and a compiled selection
    asking for the same page must find it among the DataLoader's, not fetch it again."""
    for type_name, names in fields_read.items():
        known = READERS.get(type_name) or DETAIL_READERS[type_name]
        linked = CONNECTIONS.keys() | RELATIONS.keys()
        if any(n != "__typename" and (type_name, n) not in linked and n not in known for n in names):
            return dict.fromkeys(KEY_COLUMNS)
    chosen = {}
    for type_name, keys in KEY_COLUMNS.items():
        columns = dict.fromkeys(keys)
        for n in sorted(fields_read.get(type_name, ())):
            if n in READERS[type_name]:
                columns.update(dict.fromkeys(READERS[type_name][n].columns))
            elif (type_name, n) in RELATIONS:
                columns[RELATIONS[type_name, n][1]] = None
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
    relations: list = field(default_factory=list)  # (key, (node type, column, loader, nullable), NodeSelection)


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
    readers, connections, relations = [], [], []
    for key, field_details in run.child_fields(graphql_type, details).items():
        node = field_details[0].node
        name = node.name.value
        if not readable(type_name, node):
            return None
        if name == "__typename":
            readers.append((key, _constant(type_name)))
        elif (type_name, name) in CONNECTIONS:
            field_def = graphql_type.fields[name]
            connection = compile_connection(
                run, get_named_type(field_def.type), field_details, (type_name, name, field_def)
            )
            if connection is None:
                return None
            readers.append((key, _constant(None)))
            connections.append((key, node, connection))
        elif (type_name, name) in RELATIONS:
            relation = RELATIONS[type_name, name]
            target = compile_node(run, run.planner.graphql_schema.type_map[relation[0]], field_details)
            if target is None:
                return None
            readers.append((key, _constant(None)))
            relations.append((key, relation, target))
        else:
            reader = _field_reader(run, graphql_type, node, field_details)
            if reader is None:
                return None
            readers.append((key, reader))
    return NodeSelection(type_name, _builder(readers), connections, relations=relations)


# The declared fields of the types made from a row's columns or its JSON (a session's
# terminal details, a turn's red-teaming settings), by GraphQL name: how each value follows
# from the object the parent's declaration gives (models/fields.NESTED).
DETAIL_READERS: dict[str, dict[str, Callable]] = {
    type_name: {NameConverter().apply_naming_config(f.name): f.getter for f in declared.exposed(type_name)}
    for type_name in declared.NESTED
}


def compile_details(run, graphql_type, details) -> Callable[[list], list[dict]] | None:
    """objects -> dicts, for a selection of declared fields of a declared type (nested ones
    compiled the same way); None when it selects anything else (`RedTeamDetails.chats`,
    a resolver: the level-by-level execution completes it)."""
    readers = []
    for key, field_details in run.child_fields(graphql_type, details).items():
        node = field_details[0].node
        name = node.name.value
        if name == "__typename":
            readers.append((key, _constant(graphql_type.name)))
            continue
        read = DETAIL_READERS.get(graphql_type.name, {}).get(name)
        if read is None or node.arguments:
            return None
        shape = run.planner.shape(graphql_type.name, name)
        reader = _serialized(read, value_serializer(shape)) if shape.leaf else _objects_reader(run, read, shape, field_details)
        if reader is None:
            return None
        readers.append((key, reader))
    return _builder(readers)


def _objects_reader(run, read: Callable, shape, details) -> Callable[[list], list] | None:
    """rows -> the completed objects of a field of a declared type (one, or a list of them,
    as the field's type says): each object read by `read` and built by its compiled selection."""
    build = compile_details(run, shape.named, details)
    if build is None:
        return None

    def one(value):
        if value is None:
            if shape.non_null:
                raise Fallback  # a null where the type forbids it: normal execution reports it
            return None
        if not shape.is_list:
            return build([value])[0]
        if not isinstance(value, list) or None in value:
            raise Fallback  # every declared list holds objects, never null
        return build(value)

    return lambda rows: [one(read(row)) for row in rows]


def compile_attributes(run, graphql_type, details) -> NodeSelection | None:
    """A selection of leaf fields that are plain attributes of the objects (no resolver),
    such as the viewer's: each read off the object and serialized as its type says."""
    readers = []
    for key, field_details in run.child_fields(graphql_type, details).items():
        name = field_details[0].node.name.value
        if name == "__typename":
            readers.append((key, _constant(graphql_type.name)))
            continue
        runner = run.planner._runners.get((graphql_type.name, name))
        if runner is None or runner.resolver is not None:
            return None
        shape = run.planner.shape(graphql_type.name, name)
        if not shape.leaf or shape.is_list:
            return None
        readers.append((key, _serialized(attrgetter(runner.python_name), value_serializer(shape))))
    return NodeSelection(graphql_type.name, _builder(readers), of_objects=True)


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


def value_serializer(shape):
    """A leaf field's value (or list of them), nullable as its type says, serialized."""
    leaf = leaf_serializer(shape)
    if not shape.is_list:
        return leaf if shape.non_null else _nullable(leaf)
    item = leaf if shape.item_non_null else _nullable(leaf)

    def many(values):
        if values is None:
            if shape.non_null:
                raise Fallback
            return None
        if not isinstance(values, list):
            raise Fallback
        return [item(v) for v in values]

    return many


def _nullable(leaf):
    return lambda value: None if value is None else leaf(value)


def _serialized(read: Callable, serialize: Callable) -> Callable[[list], list]:
    """rows -> the serialized values of one field."""
    return lambda rows: list(map(serialize, map(read, rows)))


def _constant(value) -> Callable[[list], list]:
    return lambda rows: [value] * len(rows)


def _field_reader(run, graphql_type, node: FieldNode, details) -> Callable[[list], list] | None:
    name = node.name.value
    reader = READERS[graphql_type.name][name]
    if name == "content" and graphql_type.name == "Event":
        runner = run.planner._runners[graphql_type.name, name]
        encoding = run.argument_values(runner, graphql_type.fields[name], node).get("encoding", ContentEncoding.UTF8)
        render = declared.content_as(encoding)
        return lambda rows: list(map(render, rows))
    if reader.as_is:
        return lambda rows: list(map(reader.value, rows))
    shape = run.planner.shape(graphql_type.name, name)
    if not shape.leaf:  # a declared object (Session.terminal, Turn.redTeamSettings)
        return _objects_reader(run, reader.value, shape, details)
    return _serialized(reader.value, value_serializer(shape))


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
                elif edge_what != "cursor":
                    return None  # a field of the edge's own (a search's snippet): its resolver's
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


def _builder(readers: list[tuple[str, Callable[[list], list]]]) -> Callable[[list], list[dict]]:
    """rows -> a dict a row: the selection's keys in order, each field's values read for
    all rows at once (one `map` a field instead of a call a value)."""
    keys = tuple(key for key, _ in readers)
    columns = tuple(read for _, read in readers)

    def build(rows: list) -> list[dict]:
        if not columns:  # every field skipped (@skip/@include): an empty object a row
            return [{} for _ in rows]
        return [dict(zip(keys, values)) for values in zip(*[read(rows) for read in columns])]

    return build


# -- execution -------------------------------------------------------------------------


async def run_nodes(run, selection: NodeSelection, rows: list) -> list[dict]:
    if not rows:
        return []
    outs = selection.build(rows)
    for key, node, connection in selection.connections:
        values = await run_connection(run, connection, node, rows)
        for out, value in zip(outs, values, strict=True):
            out[key] = value
    for key, (_, column, loader, nullable), target in selection.relations:
        ids = [getattr(row, column) for row in rows]
        if None in ids and not nullable:
            raise Fallback  # a null where the type forbids it: normal execution reports it
        found = await getattr(run.info.context.loaders, loader).load_many([i for i in ids if i is not None])
        if None in found:
            raise Fallback
        built = iter(await run_nodes(run, target, found))
        for out, id_ in zip(outs, ids, strict=True):
            out[key] = None if id_ is None else next(built)
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
                out[key] = _int32(count)
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
