"""The contract's limits on a document (size, depth, estimated nodes, selected fields), checked
by one walk over the parsed document before validation, and the per-document caches of parsing
and validation. `DocumentGuard` is a Strawberry extension, so HTTP and WebSocket operations
pass the same checks; every result reports what its document cost in `extensions.cost`."""

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import orjson

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from sessiongraph.resolvers.pagination import MAX_PAGE_SIZE
from sessiongraph.resolvers.queries import EVENTS_PAGE, SESSIONS_PAGE, TURNS_PAGE
from sessiongraph.resolvers.search import SEARCH_PAGE

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
# What a connection returns when neither `first` nor `last` is given; a connection not listed
# here is assumed to return a full page, so a new connection is never under-counted.
DEFAULT_PAGE_SIZES = {
    "SessionConnection": SESSIONS_PAGE, "TurnConnection": TURNS_PAGE, "EventConnection": EVENTS_PAGE,
    "EventSearchConnection": SEARCH_PAGE,
}
# Fields whose list argument says how many nodes they return (a gateway's entity fetch: one
# entity, and what is selected under it, per representation).
LIST_ARGUMENT_FIELDS = {("Query", "nodes"): "ids", ("Query", "_entities"): "representations"}
# A connection's arguments that size its page (the first one given counts).
PAGE_SIZE_ARGUMENTS = ("first", "last")
INTROSPECTION_ROOTS = {"__schema", "__type"}
CACHED_DOCUMENTS = 512
REPORTED_MAX = 2**53 - 1
# How graphql-core's parser says it stopped at `max_tokens`.
TOKENS_MESSAGE = "Syntax Error: Document contains more than"


@dataclass(frozen=True)
class Limits:
    max_depth: int = 15
    max_nodes: int = 50_000
    max_fields: int = 1_000
    max_document_bytes: int = 100_000
    # Not in the contract: bounds the parser's work, which dominates for a large document
    # (a 100 KB document of 30,000 tokens takes about half a second to parse), so that a
    # document over the field limit is refused sooner. 15 tokens per allowed field.
    max_tokens: int = 15_000


@dataclass(frozen=True)
class Cost:
    """What one document asks for. `depth` leaves introspection fields out."""

    depth: int
    nodes: int
    fields: int


@dataclass(frozen=True)
class _Measure:
    """A selection set's figures relative to where it is used: `nodes` per unit of the
    multiplier it is used under, `depth` below the field that holds it."""

    depth: int = 0
    nodes: int = 0
    fields: int = 0

    def __add__(self, other: "_Measure") -> "_Measure":
        return _Measure(max(self.depth, other.depth), self.nodes + other.nodes, self.fields + other.fields)


def default_page_size(field: GraphQLField) -> int | None:
    """How many nodes a connection field returns without `first` or `last`; None for a field
    that is no connection. The gateway's cost directives read it too (schema/federation.py)."""
    type_name = get_named_type(field.type).name
    if not (type_name.endswith("Connection") and "first" in field.args):
        return None
    return DEFAULT_PAGE_SIZES.get(type_name, MAX_PAGE_SIZE)


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


class _Walk:
    """Measures a document in one pass: each fragment is measured once (its figures do not
    depend on where it is spread) and reused, so neither fragment fan-out nor a fragment cycle
    costs more than the document's own size."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict) -> None:
        self.schema, self.variables = schema, variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.measured: dict[str, _Measure] = {}
        self.used: set[str] = set()
        self.open: set[str] = set()  # fragments being measured: a spread of one of them is a cycle
        self.operation_variables: dict = {}
        self.variables_read: set[str] = set()  # the figures depend on these variables only

    def operation(self, operation: OperationDefinitionNode) -> _Measure:
        # A fragment's figures depend on the operation's variable defaults: measured anew per operation.
        self.used |= set(self.measured)
        self.measured = {}
        self.operation_variables = {
            d.variable.name.value: d.default_value for d in operation.variable_definitions or () if d.default_value
        }
        root = self.schema.get_root_type(operation.operation)
        return self.selection_set(operation.selection_set, root)

    def fragment(self, name: str) -> _Measure:
        if name in self.measured:
            return self.measured[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return _Measure()  # unknown or cyclic: validation refuses the document
        self.open.add(name)
        parent = self.schema.get_type(definition.type_condition.name.value)
        found = self.selection_set(definition.selection_set, parent)
        self.open.discard(name)
        self.measured[name] = found
        return found

    def selection_set(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> _Measure:
        total = _Measure()
        if selection_set is None:
            return total
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_set(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value)
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> _Measure:
        name = node.name.value
        # The document is not validated yet: a field may name nothing in the schema.
        field = parent.fields.get(name) if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)) else None
        inner = self.selection_set(node.selection_set, get_named_type(field.type) if field else None)
        if name in INTROSPECTION_ROOTS or name == "__typename":
            return _Measure(0, inner.nodes, inner.fields + 1)
        multiplier = self.multiplier(node, parent, field)
        nodes = inner.nodes if multiplier is None else multiplier + multiplier * inner.nodes
        return _Measure(inner.depth + 1, nodes, inner.fields + 1)

    def multiplier(self, node: FieldNode, parent, field) -> int | None:
        """How many nodes this field returns, when it returns a list of them: a connection's page
        size, or the length of a list argument such as `nodes(ids:)`. None for other fields."""
        if field is None:
            return None
        arguments = {a.name.value: a.value for a in node.arguments or ()}
        list_argument = LIST_ARGUMENT_FIELDS.get((parent.name, node.name.value))
        if list_argument is not None:
            value = self.value(arguments.get(list_argument))
            return len(value) if isinstance(value, list) else 1
        default = default_page_size(field)
        if default is None:
            return None
        for name in PAGE_SIZE_ARGUMENTS:
            value = self.value(arguments.get(name))
            if isinstance(value, int) and not isinstance(value, bool):
                # Past the maximum page size the resolver refuses the argument (BAD_USER_INPUT).
                return min(max(value, 0), MAX_PAGE_SIZE)
        return default

    def value(self, node):
        """An argument's value as far as counting needs it: ints, lists, variables resolved."""
        if isinstance(node, VariableNode):
            name = node.name.value
            self.variables_read.add(name)
            if name in self.variables:
                return self.variables[name]
            node = self.operation_variables.get(name)
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, ListValueNode):
            return list(node.values)
        return None


def measure(schema: GraphQLSchema, document: DocumentNode, variables: dict | None) -> Cost | None:
    """The document's cost: fields and nodes summed over its operations (and over fragments no
    operation uses, since validation reads them all), depth the deepest operation's. None for
    a document nested too deeply to walk (thousands of levels through fragments)."""
    return _measure(schema, document, variables if isinstance(variables, dict) else {})[0]


# A document's cost depends on it and on the variables its walk read (page sizes, id lists):
# (schema, document) -> names of those variables; (schema, document, their values) -> cost.
_variables_read: OrderedDict = OrderedDict()
_costs: OrderedDict = OrderedDict()


def measure_cached(schema: GraphQLSchema, query: str, document: DocumentNode, variables: dict | None) -> Cost | None:
    """`measure`, remembered per document text and values of the variables that count."""
    variables = variables if isinstance(variables, dict) else {}
    names = _variables_read.get((schema, query))
    if names is not None and (values := _values(names, variables)) is not None:
        key = (schema, query, values)
        if key in _costs:
            _costs.move_to_end(key)
            return _costs[key]
    cost, read = _measure(schema, document, variables)
    names = tuple(sorted(read))
    _remember(_variables_read, (schema, query), names)
    if (values := _values(names, variables)) is not None:
        _remember(_costs, (schema, query, values), cost)
    return cost


def cost_reads_variables(schema: GraphQLSchema, query: str) -> bool:
    """Whether the cost `measure_cached` found for `query` depends on its variables (True
    when it has not measured the text yet)."""
    return _variables_read.get((schema, query)) != ()


def _values(names: tuple[str, ...], variables: dict) -> bytes | None:
    """The variables' values as a key; orjson tells 1, 1.0 and true apart, which count
    differently. None for values that are not JSON (possible only in process)."""
    try:
        return orjson.dumps([[n, n in variables, variables.get(n)] for n in names])
    except TypeError:
        return None


def _remember(cache: OrderedDict, key, value) -> None:
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > CACHED_DOCUMENTS:
        cache.popitem(last=False)


def _measure(schema: GraphQLSchema, document: DocumentNode, variables: dict) -> tuple[Cost | None, set[str]]:
    walk = _Walk(schema, document, variables)
    total = _Measure()
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode) and schema.get_root_type(definition.operation):
                total += walk.operation(definition)
        used = walk.used | set(walk.measured)
        for name in walk.fragments:
            if name not in used:
                total += walk.fragment(name)
    except RecursionError:
        return None, walk.variables_read
    # Fragment fan-out can ask for astronomically many fields; what is reported stays a JSON number.
    return Cost(total.depth, min(total.nodes, REPORTED_MAX), min(total.fields, REPORTED_MAX)), walk.variables_read


def refusal(cost: Cost | None, limits: Limits) -> GraphQLError | None:
    if cost is None:
        return too_complex("The document is nested too deeply.")
    if cost.depth > limits.max_depth:
        return too_complex(f"The document is {cost.depth} levels deep; the limit is {limits.max_depth}.")
    if cost.nodes > limits.max_nodes:
        return too_complex(f"The document asks for an estimated {cost.nodes} nodes; the limit is {limits.max_nodes}.")
    if cost.fields > limits.max_fields:
        return too_complex(f"The document selects {cost.fields} fields, aliases included; the limit is {limits.max_fields}.")
    return None


@lru_cache(maxsize=CACHED_DOCUMENTS)
def parse_cached(query: str, max_tokens: int | None = None) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


# Keyed by the document's text (hashed once by Python) and the validation rules in force,
# so introspection on and off never share an entry.
_validated: OrderedDict = OrderedDict()


def validate_cached(schema, query: str, document: DocumentNode, rules: tuple) -> list[GraphQLError]:
    if not query:
        return validate_document(schema, document, rules)
    key = (schema, query, rules)
    if key in _validated:
        _validated.move_to_end(key)
        return _validated[key]
    errors = validate_document(schema, document, rules)
    _validated[key] = errors
    if len(_validated) > CACHED_DOCUMENTS:
        _validated.popitem(last=False)
    return errors


def parse_document(limits: Limits, query: str, document_bytes: int) -> DocumentNode:
    """The document of `query` (`document_bytes` long in UTF-8), parsed once per text; a
    GraphQLError when it is over the limits or does not parse."""
    if document_bytes > limits.max_document_bytes:
        raise too_complex(f"The document is {document_bytes} bytes; the limit is {limits.max_document_bytes}.")
    try:
        return parse_cached(query, limits.max_tokens)
    except RecursionError:
        raise too_complex("The document is nested too deeply to parse.") from None
    except GraphQLSyntaxError as e:
        if e.message.startswith(TOKENS_MESSAGE):
            raise too_complex(f"The document has more than {limits.max_tokens} tokens.") from None
        raise


def check_document(schema, query: str | None, document: DocumentNode, variables, rules: tuple) -> tuple[Cost | None, list[GraphQLError]]:
    """The document's cost and what stands against executing it: over a limit (validation
    is then skipped: it is the costly part), else validation's errors (cached per text)."""
    if query:
        cost = measure_cached(schema._schema, query, document, variables)
    else:
        cost = measure(schema._schema, document, variables)
    refused = refusal(cost, schema.limits)
    if refused is not None:
        return cost, [refused]
    if not schema.introspection:
        rules = (*rules, NoSchemaIntrospectionCustomRule)
    return cost, validate_cached(schema._schema, query or "", document, rules)


def cost_extension(limits: Limits, cost: Cost | None, document_bytes: int | None) -> dict:
    """What every result reports in `extensions`."""
    return {
        "cost": {
            "requestedQueryCost": cost.nodes if cost else None,
            "maximumAvailable": limits.max_nodes,
            "depth": cost.depth if cost else None,
            "maximumDepth": limits.max_depth,
            "fields": cost.fields if cost else None,
            "maximumFields": limits.max_fields,
            "documentBytes": document_bytes,
            "maximumDocumentBytes": limits.max_document_bytes,
        }
    }


class DocumentGuard(SchemaExtension):
    """Parses (cached), refuses what is over the schema's limits before validation, validates
    (cached), and reports the cost. One instance per operation: extensions hold state."""

    def __init__(self) -> None:
        self.cost: Cost | None = None
        self.document_bytes: int | None = None

    @property
    def limits(self) -> Limits:
        return self.execution_context.schema.limits

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            self.document_bytes = len(context.query.encode())  # reported even when it is refused
            context.graphql_document = parse_document(self.limits, context.query, self.document_bytes)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        self.cost, context.pre_execution_errors = check_document(
            context.schema, context.query, context.graphql_document, context.variables, tuple(context.validation_rules)
        )
        yield

    def get_results(self) -> dict:
        return cost_extension(self.limits, self.cost, self.document_bytes)
