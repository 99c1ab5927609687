"""The GraphQL schema: Strawberry types, connections, inputs and the Schema object."""

from pathlib import Path

import warnings

import strawberry
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig

from sessiongraph.planner.extension import PlannedExecution
from sessiongraph.schema.errors import assign_code
from sessiongraph.schema.federation import SERVED_SDL, FederationFields, public_sdl, with_costs
from sessiongraph.gate.limits import DocumentGuard, Limits
from sessiongraph.schema.mutation import Mutation
from sessiongraph.schema.query import Query
from sessiongraph.schema.scalars import SCALARS
from sessiongraph.schema.subscriptions import Subscription

SDL_PATH = Path(__file__).with_name("schema.graphql")



class Schema(strawberry.Schema):
    """The schema with the server's document limits and introspection switch (see limits.py)
    and, unless switched off, the planner (planner/); `configured` gives the same types under
    other settings, as a federation subgraph (`FederatedSchema`) or not."""

    federation = False

    def __init__(self, *, limits: Limits = Limits(), introspection: bool = True, planner: bool = True, **types) -> None:
        self.limits, self.introspection, self.planner, self._types = limits, introspection, planner, types
        with warnings.catch_warnings():
            # The types carry their @key directives either way; only a federated schema serves them.
            warnings.filterwarnings("ignore", "Federation directive found in schema")
            super().__init__(
                **self.types_for(types), extensions=[DocumentGuard, PlannedExecution] if planner else [DocumentGuard]
            )

    @staticmethod
    def types_for(types: dict) -> dict:
        return types

    def configured(self, limits: Limits, introspection: bool, planner: bool = True, federation: bool | None = None) -> "Schema":
        federation = self.federation if federation is None else federation
        if (limits, introspection, planner, federation) == (self.limits, self.introspection, self.planner, self.federation):
            return self
        kind = FederatedSchema if federation else Schema
        return kind(limits=limits, introspection=introspection, planner=planner, **self._types)

    def process_errors(self, errors, execution_context=None) -> None:
        executed = execution_context is not None and execution_context.result is not None
        for error in errors:
            assign_code(error, executed)

    def public_sdl(self) -> str:
        """The SDL `export-schema` prints and schema.graphql holds: the schema without
        federation, whichever this one is (federation.public_sdl says why)."""
        if getattr(self, "_public_sdl", None) is None:
            plain = self.configured(self.limits, self.introspection, self.planner, federation=False)
            self._public_sdl = public_sdl(strawberry.Schema.as_str(plain))
        return self._public_sdl


class FederatedSchema(Schema, strawberry.federation.Schema):
    """The schema as an Apollo Federation v2 subgraph (schema/federation.py): the same types
    and Query, with `_entities` and `_service` and the federation directives declared."""

    federation = True

    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        SERVED_SDL["sdl"] = with_costs(self._schema, print_schema(self))

    def as_str(self) -> str:
        """The schema as its clients read it (`public_sdl`): what `print_schema` gives, with the
        federation directives and their @link, is a gateway's (`_service { sdl }`); a tool that
        does not know federation cannot build it."""
        return self.public_sdl()

    @staticmethod
    def types_for(types: dict) -> dict:
        query = strawberry.type(type("Query", (FederationFields, types["query"]), {}))
        # 2.9: the newest the composers know (@theguild/federation-composition 0.27), and the
        # first with @cost and @listSize.
        return {**types, "query": query, "federation_version": "2.9"}


_types = dict(query=Query, mutation=Mutation, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALARS))
# The server's schema by default (serve's --no-federation: `configured(..., federation=False)`).
schema = FederatedSchema(**_types)
