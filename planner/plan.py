"""Plans: what a query document selects, learnt once; and their level-by-level execution."""

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import FragmentDetails, collect_fields, collect_subfields
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.types.arguments import convert_arguments
from strawberry.types.nodes import convert_selections

from sessiongraph.planner import compiled
from sessiongraph.planner.errors import Fallback, PlannerBug, expected

SKIP_INCLUDE = {"skip", "include"}


class Same:
    """A dict key standing for one AST node, by identity. Nodes hash and compare by value,
    recursively (a whole selection set hashed at every lookup; two equal selections at two
    places one key); an id() would do, but only while the node lives. A Same holds its node,
    so no other object can take its identity while the key is kept."""

    __slots__ = ("node", "_hash")

    def __init__(self, node) -> None:
        self.node = node
        self._hash = object.__hash__(node)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, Same) and other.node is self.node


@dataclass(slots=True)
class PlannedInfo:
    """What the resolvers under the planner may use of `info`: the context and, as
    Strawberry's Info has them, the fields selected under the field being resolved."""

    context: Any
    run: Any = None
    details: Any = ()

    @property
    def selected_fields(self) -> list:
        return self.run.selected_fields(self.details)

    @property
    def page_columns(self) -> dict:
        """The columns the plan's pages fetch, by type (compiled.page_columns)."""
        return self.run.plan.columns


@dataclass(slots=True)
class FieldRunner:
    """How to get one field of one type from its source object."""

    python_name: str
    resolver: Any  # the resolver's function, or None for a plain attribute
    is_async: bool
    takes_info: str | None  # name of the info parameter
    arguments: list  # Strawberry arguments, for converting coerced values


@dataclass(frozen=True, slots=True)
class Shape:
    """What a field's type asks of its values."""

    named: Any
    non_null: bool
    is_list: bool
    item_non_null: bool
    leaf: bool
    abstract: bool
    serialize: Any
    text: bool  # String or ID: a str is its own serialization
    int32: bool  # Int: an int within 32 bits is its own serialization

    @classmethod
    def of(cls, type_) -> "Shape":
        non_null = isinstance(type_, GraphQLNonNull)
        inner = type_.of_type if non_null else type_
        is_list = isinstance(inner, GraphQLList)
        item_non_null = non_null
        if is_list:
            item = inner.of_type
            item_non_null = isinstance(item, GraphQLNonNull)
            if isinstance(item.of_type if item_non_null else item, GraphQLList):
                raise Fallback  # lists of lists: none in this schema
        named = get_named_type(type_)
        leaf = is_leaf_type(named)
        return cls(
            named=named,
            non_null=non_null,
            is_list=is_list,
            item_non_null=item_non_null,
            leaf=leaf,
            abstract=is_abstract_type(named),
            serialize=named.serialize if leaf else None,
            text=named.name in ("String", "ID"),
            int32=named.name == "Int",
        )


# Sets of variables whose coerced values (and what follows from them) a plan keeps, and the
# longest JSON of variables kept (a list of a thousand ids is worth coercing again).
VARIABLE_SETS = 32
VARIABLES_KEPT_BYTES = 2048


@dataclass(slots=True)
class _Learnt:
    """The coerced variables of a request, and the arguments and selections learnt from them."""

    variables: dict
    arguments: dict = field(default_factory=dict)
    subfields: dict = field(default_factory=dict)
    selections: dict = field(default_factory=dict)
    selected_fields: dict = field(default_factory=dict)


@dataclass
class Plan:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDetails]
    # Without @skip/@include the selections do not depend on variables: learnt once.
    static: bool
    subfields: dict = field(default_factory=dict)
    # Arguments given as literals, converted once.
    arguments: dict = field(default_factory=dict)
    # The columns pages of turns and of events fetch (compiled.page_columns).
    columns: dict = field(default_factory=dict)
    # Compiled selections by type and field nodes (None: not compilable), when static.
    compiled: dict = field(default_factory=dict)
    # What was learnt from the variables of recent requests, by their JSON.
    by_variables: OrderedDict = field(default_factory=OrderedDict)
    without_variables: _Learnt = field(default_factory=lambda: _Learnt({}))


class Planner:
    def __init__(self, schema, max_plans: int = 1000) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema
        self.max_plans = max_plans
        self._plans: OrderedDict[tuple, Plan | None] = OrderedDict()
        # (document text, operation name) -> (plan, cost report) of documents whose checks do
        # not depend on their variables (planner/extension.execute_planned).
        self.ready: OrderedDict[tuple, tuple] = OrderedDict()
        self._runners = self._field_runners()
        self._shapes: dict[tuple[str, str], Shape] = {}

    def _field_runners(self) -> dict[tuple[str, str], FieldRunner]:
        runners = {}
        name_of = self.schema.config.name_converter.get_graphql_name
        for type_name, graphql_type in self.graphql_schema.type_map.items():
            if not isinstance(graphql_type, GraphQLObjectType) or type_name.startswith("__"):
                continue
            definition = self.schema.get_type_by_name(type_name)
            if definition is None or not hasattr(definition, "fields"):
                continue
            for strawberry_field in definition.fields:
                resolver = strawberry_field.base_resolver
                info = resolver.info_parameter if resolver is not None else None
                runners[type_name, name_of(strawberry_field)] = FieldRunner(
                    python_name=strawberry_field.python_name,
                    resolver=None if resolver is None else resolver.wrapped_func,
                    is_async=resolver is not None and resolver.is_async,
                    takes_info=None if info is None else info.name,
                    arguments=strawberry_field.arguments,
                )
        return runners

    def shape(self, type_name: str, field_name: str) -> "Shape":
        """What the field's type asks of its values."""
        key = (type_name, field_name)
        found = self._shapes.get(key)
        if found is None:
            found = self._shapes[key] = Shape.of(self.graphql_schema.type_map[type_name].fields[field_name].type)
        return found

    # -- planning ---------------------------------------------------------------------

    def plan(self, key: str | None, document: DocumentNode, operation_name: str | None) -> Plan | None:
        """The plan of a validated document, None when the planner does not cover it. Cached
        under the document's text `key` and the operation name; made for this run alone
        without a text (a document built in process)."""
        if key is None:
            return self._make_plan(document, operation_name)
        cache_key = (key, operation_name)
        if cache_key in self._plans:
            self._plans.move_to_end(cache_key)
            return self._plans[cache_key]
        plan = self._make_plan(document, operation_name)
        self._plans[cache_key] = plan
        if len(self._plans) > self.max_plans:
            self._plans.popitem(last=False)
        return plan

    def keep_ready(self, key: tuple, ready: tuple) -> None:
        self.ready[key] = ready
        if len(self.ready) > self.max_plans:
            self.ready.popitem(last=False)

    def _make_plan(self, document: DocumentNode, operation_name: str | None) -> Plan | None:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(operations) != 1 or operations[0].operation is not OperationType.QUERY:
            return None
        operation = operations[0]
        fragments = {
            d.name.value: FragmentDetails(d)
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        if any(d.variable_definitions for d in (f.definition for f in fragments.values())):
            return None
        state = {"static": True, "read": {}}
        if not self._covers(operation.selection_set, self.graphql_schema.query_type, fragments, state, set()):
            return None
        return Plan(operation, fragments, state["static"], columns=compiled.page_columns(state["read"]))

    def _covers(self, selection_set: SelectionSetNode, parent, fragments, state, seen: set) -> bool:
        """Whether every field under `selection_set` is one the planner can run."""
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                if directive.name.value not in SKIP_INCLUDE:
                    return False
                state["static"] = False
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name == "__typename":
                    continue
                if name.startswith("__"):
                    return False
                candidates = self.graphql_schema.get_possible_types(parent) if is_abstract_type(parent) else [parent]
                child = None
                for candidate in candidates:
                    if candidate.name in compiled.READERS or candidate.name in compiled.DETAIL_READERS:
                        # what the document reads of each type
                        name_read = name if compiled.readable(candidate.name, selection) else f"{name}($)"
                        state["read"].setdefault(candidate.name, set()).add(name_read)
                    if name in candidate.fields:
                        if (candidate.name, name) not in self._runners:
                            return False
                        child = get_named_type(candidate.fields[name].type)
                if child is None and name not in getattr(parent, "fields", {}):
                    return False
                if child is None:
                    child = get_named_type(parent.fields[name].type)
                if selection.selection_set and not self._covers(selection.selection_set, child, fragments, state, seen):
                    return False
            elif isinstance(selection, InlineFragmentNode):
                condition = (
                    self.graphql_schema.get_type(selection.type_condition.name.value)
                    if selection.type_condition
                    else parent
                )
                if not self._covers(selection.selection_set, condition, fragments, state, seen):
                    return False
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in seen:
                    continue
                fragment = fragments[name].definition
                condition = self.graphql_schema.get_type(fragment.type_condition.name.value)
                if not self._covers(fragment.selection_set, condition, fragments, state, seen | {name}):
                    return False
        return True

    # -- execution --------------------------------------------------------------------

    def _learnt(self, plan: Plan, variables: dict | None) -> "_Learnt":
        """What a run learns from its variables -- their coerced values, and the arguments and
        selections that depend on them -- kept in the plan for the next request that sends
        the same values (a frontend sends the same few again and again)."""
        if not plan.operation.variable_definitions:
            return plan.without_variables
        try:
            key = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not JSON (possible in process only): learnt for this run alone
            key = None
        if key is not None and len(key) > VARIABLES_KEPT_BYTES:
            key = None
        learnt = plan.by_variables.get(key) if key is not None else None
        if learnt is None:
            coerced = get_variable_values(self.graphql_schema, plan.operation.variable_definitions, variables or {})
            if isinstance(coerced, list):
                raise Fallback
            learnt = _Learnt(coerced)
            if key is not None:
                plan.by_variables[key] = learnt
                if len(plan.by_variables) > VARIABLE_SETS:
                    plan.by_variables.popitem(last=False)
        return learnt

    async def execute(self, plan: Plan, context: Any, variables: dict | None) -> dict:
        """The `data` of the operation; raises Fallback where normal execution must answer,
        having reported it as a bug when it was not an expected error (planner/errors.py)."""
        try:
            run = _Run(self, plan, context, self._learnt(plan, variables))
            query_type = self.graphql_schema.query_type
            data: dict = {}
            await run.complete(query_type, run.root_fields(query_type), [None], [data])
        except Exception as error:  # noqa: BLE001  normal execution answers, and reports the error
            if not expected(error):
                PlannerBug.report(error)
            raise Fallback from error
        return data


class _Run:
    """One execution of a plan."""

    def __init__(self, planner: Planner, plan: Plan, context: Any, learnt: "_Learnt") -> None:
        self.planner = planner
        self.plan = plan
        self.info = PlannedInfo(context)
        self.variables = learnt.variables
        # Learnt once per set of variables when the selections depend on them (@skip,
        # @include); else once for the plan.
        self.subfields = plan.subfields if plan.static else learnt.subfields
        self.selections = plan.compiled if plan.static else learnt.selections
        self.run_arguments = learnt.arguments
        self.learnt = learnt

    def root_fields(self, query_type):
        key = ("root",)
        if key not in self.subfields:
            self.subfields[key] = collect_fields(
                self.planner.graphql_schema, self.plan.fragments, self.variables, query_type, self.plan.operation
            ).grouped_field_set
        return self.subfields[key]

    def child_fields(self, runtime_type, details):
        key = _key(runtime_type.name, details)
        if key not in self.subfields:
            self.subfields[key] = collect_subfields(
                self.planner.graphql_schema,
                self.plan.fragments,
                self.variables,
                self.plan.operation,
                runtime_type,
                details,
            ).grouped_field_set
        return self.subfields[key]

    def selected_fields(self, details) -> list:
        """Strawberry's `info.selected_fields` of a field (its directives' and arguments'
        variables are this run's: learnt once per set of variables)."""
        key = tuple(map(Same, (d.node for d in details)))
        found = self.learnt.selected_fields.get(key)
        if found is None:
            fragments = {name: f.definition for name, f in self.plan.fragments.items()}
            nodes = SimpleNamespace(fragments=fragments, variable_values=self.variables)
            found = self.learnt.selected_fields[key] = convert_selections(nodes, [d.node for d in details])
        return found

    def compiled_selection(self, graphql_type, details):
        """The compiled selection of `details` on this type, None where there is none."""
        key = _key(graphql_type.name, details)
        if key not in self.selections:
            fields = graphql_type.fields
            if graphql_type.name in compiled.READERS:
                found = compiled.compile_node(self, graphql_type, details)
            elif "nodes" in fields and "pageInfo" in fields:
                found = compiled.compile_connection(self, graphql_type, details)
            else:
                found = compiled.compile_attributes(self, graphql_type, details)
            self.selections[key] = found
        return self.selections[key]

    def _complete_sources(self, graphql_type, details, sources: list, outs: list[dict]):
        """The completion of objects of one type: compiled where it can be. A coroutine, or
        None when the objects were completed at once (a compiled selection with no
        connections under it reads nothing more)."""
        selection = self.compiled_selection(graphql_type, details)
        if selection is None:
            return self.complete(graphql_type, self.child_fields(graphql_type, details), sources, outs)
        compiled.COUNTS["completions"] += 1
        if not isinstance(selection, compiled.NodeSelection):
            return _update(outs, compiled.complete_pages(self, selection, [source.page for source in sources]))
        rows = sources if selection.of_objects else [source.row for source in sources]
        if selection.connections or selection.relations:
            return _update(outs, compiled.run_nodes(self, selection, rows))
        for out, values in zip(outs, selection.build(rows), strict=True):
            out.update(values)
        return None

    def argument_values(self, runner: FieldRunner, field_def, node: FieldNode) -> dict:
        """The field's arguments as its resolver takes them; kept in the plan when they are
        literals, else for this run only (they depend on the variables)."""
        key = Same(node)
        found = self.plan.arguments.get(key)
        if found is None:
            found = self.run_arguments.get(key)
        if found is None:
            raw = get_argument_values(field_def, node, self.variables) if field_def.args else {}
            schema = self.planner.schema
            found = convert_arguments(raw, runner.arguments, schema.schema_converter.scalar_registry, schema.config)
            uses_variables = any(_has_variable(argument.value) for argument in node.arguments or ())
            (self.run_arguments if uses_variables else self.plan.arguments)[key] = found
        return found

    async def complete(self, parent_type, fields, sources: list, outs: list[dict]) -> None:
        """Fills `outs[i]` with the selected fields of `sources[i]`, all of one type."""
        pending = []
        for key, details in fields.items():
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                for out in outs:
                    out[key] = parent_type.name
                continue
            field_def = parent_type.fields[name]
            runner = self.planner._runners[parent_type.name, name]
            kwargs = self.argument_values(runner, field_def, node)
            shape = self.planner.shape(parent_type.name, name)
            if runner.takes_info:
                kwargs = {**kwargs, runner.takes_info: PlannedInfo(self.info.context, self, details)}
            if runner.resolver is None:
                attribute = runner.python_name
                values = [getattr(source, attribute) for source in sources]
            elif runner.is_async:
                for out in outs:
                    out[key] = None  # keeps the key's place in the response
                pending.append(self._complete_async(runner, kwargs, key, shape, details, sources, outs))
                continue
            else:
                resolver = runner.resolver
                values = [resolver(source, **kwargs) for source in sources]
            pending.extend(self._complete_values(key, shape, details, values, outs))
        if pending:
            await _all(pending)

    async def _complete_async(self, runner, kwargs, key, shape, details, sources, outs) -> None:
        resolver = runner.resolver
        values = await _all([resolver(source, **kwargs) for source in sources])
        await _all(self._complete_values(key, shape, details, values, outs))

    def _complete_values(self, key, shape, details, values, outs) -> list:
        """Sets `key` of each out from its value; returns the completions of the objects
        found, one per runtime type, for the caller to await together."""
        if shape.leaf:
            self._complete_leaves(key, shape, values, outs)
            return []
        named = shape.named
        if not shape.abstract:
            return self._complete_objects(key, shape, details, values, outs)
        children: dict[str, tuple[list, list]] = {}

        def child(value) -> dict:
            if value is None:
                raise Fallback  # a null where the type forbids it: normal execution reports it
            runtime = self._runtime_type(value) if shape.abstract else named
            out: dict = {}
            sources, child_outs = children.setdefault(runtime.name, ([], []))
            sources.append(value)
            child_outs.append(out)
            return out

        for out, value in zip(outs, values, strict=True):
            if value is None:
                if shape.non_null:
                    raise Fallback
                out[key] = None
            elif shape.is_list:
                out[key] = [child(v) if (v is not None or shape.item_non_null) else None for v in value]
            else:
                out[key] = child(value)
        completions = []
        for type_name, (sources, child_outs) in children.items():
            runtime = self.planner.graphql_schema.get_type(type_name)
            if (completion := self._complete_sources(runtime, details, sources, child_outs)) is not None:
                completions.append(completion)
        return completions

    def _complete_objects(self, key, shape, details, values, outs) -> list:
        """`_complete_values` for a field of one object type (not an interface): every value
        is completed as that type, in one completion."""
        sources: list = []
        child_outs: list = []
        for out, value in zip(outs, values, strict=True):
            if value is None:
                if shape.non_null:
                    raise Fallback  # a null where the type forbids it: normal execution reports it
                out[key] = None
            elif shape.is_list:
                items = []
                for item in value:
                    if item is None:
                        if shape.item_non_null:
                            raise Fallback
                        items.append(None)
                    else:
                        child: dict = {}
                        items.append(child)
                        sources.append(item)
                        child_outs.append(child)
                out[key] = items
            else:
                child = {}
                out[key] = child
                sources.append(value)
                child_outs.append(child)
        if not sources:
            return []
        completion = self._complete_sources(shape.named, details, sources, child_outs)
        return [] if completion is None else [completion]

    @staticmethod
    def _complete_leaves(key, shape, values, outs) -> None:
        leaf = compiled.leaf_serializer(shape)
        for out, value in zip(outs, values, strict=True):
            if value is None:
                if shape.non_null:
                    raise Fallback
                out[key] = None
            elif shape.is_list:
                out[key] = [leaf(v) if (v is not None or shape.item_non_null) else None for v in value]
            elif shape.text and type(value) is str:
                out[key] = value
            elif shape.int32 and type(value) is int and compiled.INT_MIN <= value <= compiled.INT_MAX:
                out[key] = value  # what Int's serializer returns for it
            else:
                out[key] = leaf(value)

    def _runtime_type(self, value):
        definition = getattr(type(value), "__strawberry_definition__", None)
        if definition is None:
            raise Fallback
        return self.planner.graphql_schema.get_type(definition.name)


async def _update(outs: list[dict], built) -> None:
    """Adds to each out its values, once `built` (a coroutine) has made them."""
    for out, values in zip(outs, await built, strict=True):
        out.update(values)


def _key(type_name: str, details) -> tuple:
    """A selection's key: its type and its field nodes (most often one)."""
    if len(details) == 1:
        return (type_name, Same(details[0].node))
    return (type_name, *(Same(d.node) for d in details))


def _has_variable(value) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


async def _all(coroutines: list) -> list:
    """Runs the coroutines concurrently (so their DataLoader calls batch). When one fails, the
    others still run to their end before the failure is raised: cancelling a statement
    half-way would leave its connection unusable."""
    if not coroutines:
        return []
    if len(coroutines) == 1:
        return [await coroutines[0]]
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
