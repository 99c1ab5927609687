"""The GraphQL schema: Strawberry types, connections, inputs and the Schema object."""

from pathlib import Path

import strawberry
from strawberry.schema.config import StrawberryConfig

from sessiongraph.schema.errors import assign_code
from sessiongraph.schema.query import Query
from sessiongraph.schema.scalars import SCALARS

SDL_PATH = Path(__file__).with_name("schema.graphql")



class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        executed = execution_context is not None and execution_context.result is not None
        for error in errors:
            assign_code(error, executed)


schema = Schema(query=Query, config=StrawberryConfig(scalar_map=SCALARS))
