"""The schema as an artefact: the committed SDL is what `sessiongraph export-schema` prints,
and the server's schema contains the contract's (../shared/contract/schema.graphql): every
type, field, argument, enum value and input field, with the same type and nullability, the
same interfaces, and the contract's default values where it gives one."""

import subprocess
import sys
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    get_named_type,
    print_ast,
)

from sessiongraph.schema import SDL_PATH, schema

REPO = Path(__file__).resolve().parent.parent
CONTRACT = REPO.parent / "shared" / "contract" / "schema.graphql"
# The contract's files built so far, each extending schema.graphql's types.
CONTRACT_FILES = [CONTRACT, CONTRACT.parent / "kinds.graphql", CONTRACT.parent / "export.graphql"]


def contract_sdl() -> str:
    return "\n".join(path.read_text() for path in CONTRACT_FILES)
needs_contract = pytest.mark.skipif(
    not CONTRACT.exists(),
    reason=f"the contract is not beside this checkout ({CONTRACT} is missing); CI has it there",
)


def test_committed_sdl_is_what_export_schema_prints():
    exported = subprocess.run(
        [sys.executable, "-m", "sessiongraph.cli", "export-schema"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert SDL_PATH.read_text() == exported, (
        "schema/schema.graphql differs from `sessiongraph export-schema`: after a deliberate "
        "schema change run `make schema` and commit the file"
    )


def _roots(s: GraphQLSchema) -> dict[str, GraphQLObjectType]:
    return {
        kind: root
        for kind, root in (("query", s.query_type), ("mutation", s.mutation_type), ("subscription", s.subscription_type))
        if root is not None
    }


def _reachable(s: GraphQLSchema, start: list[GraphQLNamedType]) -> list[GraphQLNamedType]:
    """The named types reachable from `start`: fields, arguments, input fields, interfaces,
    union members, and the implementations of a reached interface."""
    seen: dict[str, GraphQLNamedType] = {}
    todo = list(start)
    while todo:
        named = todo.pop()
        if named.name in seen:
            continue
        seen[named.name] = named
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for f in named.fields.values():
                todo.append(get_named_type(f.type))
                todo.extend(get_named_type(a.type) for a in f.args.values())
            todo.extend(named.interfaces)
        if isinstance(named, GraphQLInterfaceType):
            todo.extend(s.get_implementations(named).objects)
        if isinstance(named, GraphQLInputObjectType):
            todo.extend(get_named_type(f.type) for f in named.fields.values())
        if isinstance(named, GraphQLUnionType):
            todo.extend(named.types)
    return list(seen.values())


def _default(value) -> str | None:
    node = value.ast_node.default_value if value.ast_node is not None else None
    return None if node is None else print_ast(node)


def _compare_values(where: str, theirs: dict, ours: dict, arguments: bool) -> list[str]:
    """Arguments or input fields: present, same type, the contract's default kept."""
    kind = "argument" if arguments else "input field"
    problems = []
    for name, value in theirs.items():
        mine = ours.get(name)
        if mine is None:
            problems.append(f"{where}: {kind} `{name}` is missing")
            continue
        if str(mine.type) != str(value.type):
            problems.append(f"{where}: {kind} `{name}` is {mine.type}, the contract says {value.type}")
        expected = _default(value)
        if expected is not None and _default(mine) != expected:
            problems.append(f"{where}: {kind} `{name}` defaults to {_default(mine)}, the contract says {expected}")
    if arguments:
        # An argument the contract does not have is fine only when a caller may leave it out.
        for name, mine in ours.items():
            if name not in theirs and str(mine.type).endswith("!") and _default(mine) is None:
                problems.append(f"{where}: extra required argument `{name}` breaks the contract's callers")
    return problems


def _compare_fields(type_name: str, theirs: dict, ours: dict, names) -> list[str]:
    """Output fields `names` of a type: present, same type, same arguments."""
    problems = []
    for name in names:
        field, our_field = theirs[name], ours.get(name)
        if our_field is None:
            problems.append(f"{type_name}.{name} is missing")
            continue
        if str(our_field.type) != str(field.type):
            problems.append(f"{type_name}.{name} is {our_field.type}, the contract says {field.type}")
        problems += _compare_values(f"{type_name}.{name}", field.args, our_field.args, arguments=True)
    return problems


def _required_root_fields(theirs: GraphQLObjectType, mine: GraphQLObjectType) -> list[str]:
    """The contract's fields of a root we serve that we must have. The contract defines its
    roots in blocks (`type Mutation {...}`, then `extend type Mutation {...}` for the write
    side); a block is required whole once we serve any field of it, so a side being built
    is checked from its first field on, and one nobody has started yet waits."""
    blocks = [node for node in [theirs.ast_node, *theirs.extension_ast_nodes] if node is not None]
    required = []
    for block in blocks:
        names = [f.name.value for f in block.fields or ()]
        if any(name in mine.fields for name in names):
            required += names
    return required


def contract_problems(contract: GraphQLSchema, ours: GraphQLSchema) -> list[str]:
    """What of the contract our schema lacks or changed: the fields of the roots we serve (see
    _required_root_fields) and every contract type they reach, and every contract type we
    define, each checked whole."""
    our_roots = _roots(ours)
    problems, start = [], []
    root_names = {root.name for root in _roots(contract).values()}
    for kind, root in _roots(contract).items():
        mine = our_roots.get(kind)
        if mine is None:
            continue
        if mine.name != root.name:
            problems.append(f"the {kind} root is called {mine.name}, the contract says {root.name}")
        required = _required_root_fields(root, mine)
        problems += _compare_fields(root.name, root.fields, mine.fields, required)
        for name in required:
            start.append(get_named_type(root.fields[name].type))
            start += [get_named_type(a.type) for a in root.fields[name].args.values()]
    start += [
        t for name, t in contract.type_map.items()
        if name in ours.type_map and not name.startswith("__") and name not in root_names
    ]
    for theirs in _reachable(contract, start):
        if theirs.name.startswith("__") or theirs.name in root_names:
            continue
        mine = ours.type_map.get(theirs.name)
        if mine is None:
            problems.append(f"type {theirs.name} is missing")
            continue
        if type(mine) is not type(theirs):
            problems.append(f"{theirs.name} is a {type(mine).__name__}, the contract says {type(theirs).__name__}")
            continue
        if isinstance(theirs, GraphQLObjectType | GraphQLInterfaceType):
            missing = {i.name for i in theirs.interfaces} - {i.name for i in mine.interfaces}
            problems += [f"{theirs.name} does not implement {name}" for name in sorted(missing)]
            problems += _compare_fields(theirs.name, theirs.fields, mine.fields, theirs.fields)
        elif isinstance(theirs, GraphQLInputObjectType):
            problems += _compare_values(theirs.name, theirs.fields, mine.fields, arguments=False)
            for name, field in mine.fields.items():
                if name not in theirs.fields and str(field.type).endswith("!") and _default(field) is None:
                    problems.append(f"{theirs.name}: extra required input field `{name}` breaks the contract's callers")
        elif isinstance(theirs, GraphQLEnumType):
            missing = set(theirs.values) - set(mine.values)
            problems += [f"enum {theirs.name} lacks {value}" for value in sorted(missing)]
        elif isinstance(theirs, GraphQLUnionType):
            missing = {t.name for t in theirs.types} - {t.name for t in mine.types}
            problems += [f"union {theirs.name} lacks {name}" for name in sorted(missing)]
    return problems


@needs_contract
def test_schema_is_a_superset_of_the_contract():
    contract = build_schema(contract_sdl())
    ours = build_schema(schema.as_str())
    problems = contract_problems(contract, ours)
    assert not problems, "the schema breaks the contract:\n" + "\n".join(problems)


@needs_contract
def test_contract_query_side_is_checked_whole():
    """The check above covers at least every type the contract's Query reaches."""
    contract = build_schema(contract_sdl())
    reached = {t.name for t in _reachable(contract, [contract.query_type])}
    assert {"Query", "Session", "Turn", "Event", "SessionConnection", "SessionFilter", "SessionOrder"} <= reached
    ours = build_schema(schema.as_str())
    assert reached <= set(ours.type_map), f"missing: {sorted(reached - set(ours.type_map))}"


CONTRACT_SAMPLE = """
interface Node { id: ID! }
enum Color { RED GREEN }
input Order { field: Color! = RED, limit: Int }
type Item implements Node { id: ID!, name: String!, tags(first: Int, all: Boolean = false): [String!]! }
type Query { item(id: ID!): Item, items(order: Order): [Item!]! }
type Mutation { touch(id: ID!): Item! }
extend type Mutation { poke(input: PokeInput!): Item!, prod: Int }
input PokeInput { id: ID! }
"""


def test_contract_check_passes_for_the_same_schema_and_additions():
    contract = build_schema(CONTRACT_SAMPLE)
    extended = build_schema(
        CONTRACT_SAMPLE.replace("enum Color { RED GREEN }", "enum Color { RED GREEN BLUE }")
        .replace("name: String!,", "name: String!, extra(x: Int): Int,")
        .replace("type Mutation { touch(id: ID!): Item! }", "type Mutation { touch(id: ID!): Item!, ping: Int }")
    )
    assert contract_problems(contract, contract) == []
    assert contract_problems(contract, extended) == []


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (("name: String!,", "name: String,"), "Item.name is String, the contract says String!"),
        (("name: String!,", ""), "Item.name is missing"),
        (("item(id: ID!)", "item(id: ID)"), "Query.item: argument `id` is ID, the contract says ID!"),
        (("tags(first: Int,", "tags("), "Item.tags: argument `first` is missing"),
        (("all: Boolean = false", "all: Boolean = true"), "Item.tags: argument `all` defaults to true, the contract says false"),
        (("all: Boolean = false", "all: Boolean"), "Item.tags: argument `all` defaults to None, the contract says false"),
        (("field: Color! = RED", "field: Color! = GREEN"), "Order: input field `field` defaults to GREEN, the contract says RED"),
        (("limit: Int }", "limit: String }"), "Order: input field `limit` is String, the contract says Int"),
        (("enum Color { RED GREEN }", "enum Color { RED }"), "enum Color lacks GREEN"),
        (("type Item implements Node", "type Item"), "Item does not implement Node"),
        (("item(id: ID!)", "item(id: ID!, strict: Boolean!)"), "Query.item: extra required argument `strict` breaks the contract's callers"),
        (("touch(id: ID!): Item!", "touch(id: ID!): Int"), "Mutation.touch is Int, the contract says Item!"),
    ],
)
def test_contract_check_reports_what_breaks_the_contract(change, reported):
    contract = build_schema(CONTRACT_SAMPLE)
    ours = build_schema(CONTRACT_SAMPLE.replace(*change))
    assert reported in contract_problems(contract, ours)


def test_contract_check_waits_for_a_root_the_server_does_not_serve_yet():
    contract = build_schema(CONTRACT_SAMPLE)
    without_mutation = build_schema(CONTRACT_SAMPLE.split("type Mutation")[0])
    assert contract_problems(contract, without_mutation) == []


def test_contract_check_requires_a_block_of_mutations_whole_once_one_of_it_is_served():
    contract = build_schema(CONTRACT_SAMPLE)
    first_block_only = build_schema(CONTRACT_SAMPLE.split("extend type Mutation")[0])
    assert contract_problems(contract, first_block_only) == []
    started = build_schema(CONTRACT_SAMPLE.replace("poke(input: PokeInput!): Item!, ", "").replace("input PokeInput { id: ID! }", ""))
    assert contract_problems(contract, started) == ["Mutation.poke is missing", "type PokeInput is missing"]
    retyped_input = build_schema(CONTRACT_SAMPLE.replace("input PokeInput { id: ID! }", "input PokeInput { id: String! }"))
    assert contract_problems(contract, retyped_input) == ["PokeInput: input field `id` is String!, the contract says ID!"]
