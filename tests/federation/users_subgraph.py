"""The second subgraph of the gateway test: a `users` service owning User's name, served on
127.0.0.1 (`python users_subgraph.py PORT NAMES_JSON`, NAMES_JSON {user id: name}). It answers
only callers that send a key (the one the gateway forwards), so the test proves forwarding."""

import json
import sys

import strawberry
import uvicorn
from strawberry.asgi import GraphQL

NAMES: dict[str, str] = {}


@strawberry.federation.type(keys=["id"])
class User:
    id: strawberry.ID

    @strawberry.field
    def name(self, info: strawberry.Info) -> str:
        headers = info.context["request"].headers
        if not (headers.get("x-api-key") or headers.get("authorization")):
            raise PermissionError("no key forwarded")
        return NAMES[str(self.id)]

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> "User":
        return cls(id=id)


@strawberry.type
class Query:
    @strawberry.field
    def users(self) -> list[User]:
        return [User(id=strawberry.ID(i)) for i in NAMES]


schema = strawberry.federation.Schema(query=Query, federation_version="2.9")


if __name__ == "__main__":
    NAMES.update(json.loads(sys.argv[2]))
    uvicorn.run(GraphQL(schema), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
