"""The GraphQL schema: Strawberry types, connections, inputs and the Schema object."""

from pathlib import Path

import strawberry
from strawberry.schema.config import StrawberryConfig

from sessiongraph.planner.extension import PlannedExecution
from sessiongraph.schema.errors import assign_code
from sessiongraph.gate.limits import DocumentGuard, Limits
from sessiongraph.schema.mutation import Mutation
from sessiongraph.schema.query import Query
from sessiongraph.schema.scalars import SCALARS
from sessiongraph.schema.subscriptions import Subscription

SDL_PATH = Path(__file__).with_name("schema.graphql")



class Schema(strawberry.Schema):
    """The schema with the server's document limits and introspection switch (see limits.py)
    and, unless switched off, the planner (planner/); `configured` gives the same types under
    other settings."""

    def __init__(self, *, limits: Limits = Limits(), introspection: bool = True, planner: bool = True, **types) -> None:
        self.limits, self.introspection, self.planner, self._types = limits, introspection, planner, types
        super().__init__(**types, extensions=[DocumentGuard, PlannedExecution] if planner else [DocumentGuard])

    def configured(self, limits: Limits, introspection: bool, planner: bool = True) -> "Schema":
        if (limits, introspection, planner) == (self.limits, self.introspection, self.planner):
            return self
        return Schema(limits=limits, introspection=introspection, planner=planner, **self._types)

    def process_errors(self, errors, execution_context=None) -> None:
        executed = execution_context is not None and execution_context.result is not None
        for error in errors:
            assign_code(error, executed)


schema = Schema(query=Query, mutation=Mutation, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALARS))
