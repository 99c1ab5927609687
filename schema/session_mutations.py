"""renameSession and deleteSession: Relay-style inputs and payloads, `clientMutationId`
echoed."""

import strawberry

from sessiongraph.resolvers import session_mutations
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.types import Session

ID_DESCRIPTION = "Global id, UUID or the caller's external id."


@strawberry.input
class RenameSessionInput:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
    title: str
    client_mutation_id: str | None = None


@strawberry.type
class RenameSessionPayload:
    session: Session
    client_mutation_id: str | None


@strawberry.input
class DeleteSessionInput:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
    client_mutation_id: str | None = None


@strawberry.type
class DeleteSessionPayload:
    deleted_session_id: strawberry.ID = strawberry.field(description="The global id of the deleted session.")
    client_mutation_id: str | None


@strawberry.type
class SessionMutations:
    @strawberry.mutation(
        description="Sets a session's title. The title is trimmed of surrounding white space "
        "(Unicode White_Space), then every control character (category Cc) and U+200B, U+FEFF is "
        "removed. Empty after trimming, empty after removal, or longer than 60 characters (code "
        "points): BAD_USER_INPUT, nothing changed. A session the caller cannot see, or a deleted "
        "one: NOT_FOUND."
    )
    async def rename_session(self, info: strawberry.Info, input: RenameSessionInput) -> RenameSessionPayload:
        row = await session_mutations.rename_session(info.context, input.id, input.title)
        return RenameSessionPayload(session=Session.from_row(row), client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        description="Soft-deletes a session: it and its turns and events stay stored, but no read "
        "returns them again. Idempotent: deleting one's own deleted session succeeds again. A "
        "session the caller cannot see: NOT_FOUND."
    )
    async def delete_session(self, info: strawberry.Info, input: DeleteSessionInput) -> DeleteSessionPayload:
        session_id = await session_mutations.delete_session(info.context, input.id)
        return DeleteSessionPayload(
            deleted_session_id=to_global_id("Session", session_id), client_mutation_id=input.client_mutation_id
        )
