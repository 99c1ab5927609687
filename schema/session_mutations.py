"""renameSession, deleteSession, updateSession and endSession: Relay-style inputs and
payloads, `clientMutationId` echoed."""

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from sessiongraph.resolvers import session_mutations
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema.recording_mutations import RedTeamSettingsInput, ReviewInput, plain
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


@strawberry.input
class GuardrailMatchInput:
    rule: str
    direction: str
    matched_words: list[str] | None = None


@strawberry.input
class DataMaskingInput:
    error_count: int
    info_types: JSON
    total_redact_count: int
    transformed_bytes: int


@strawberry.input(
    description="Changes what is given and leaves the rest: a field left out is unchanged, a nullable field "
    "given as null is cleared. The same validation as createSession; any broken rule: BAD_USER_INPUT and "
    "nothing changes. A `terminal...` field on a session that is not TERMINAL, or `redTeamSettings` on one "
    "that is not RED_TEAM: BAD_USER_INPUT."
)
class UpdateSessionInput:
    id: strawberry.ID = strawberry.field(description="Global id, UUID or external id.")
    title: str | None = strawberry.field(default=strawberry.UNSET, description="renameSession's rules; null clears the title.")
    token_budget: int | None = strawberry.UNSET
    metadata: JSON | None = strawberry.field(default=strawberry.UNSET, description="Replaces the metadata object.")
    batch_id: str | None = strawberry.UNSET
    correlation_id: str | None = strawberry.UNSET
    red_team_settings: RedTeamSettingsInput | None = strawberry.UNSET
    terminal_review: ReviewInput | None = strawberry.UNSET
    terminal_guardrails: list[GuardrailMatchInput] | None = strawberry.UNSET
    terminal_data_masking: DataMaskingInput | None = strawberry.UNSET
    terminal_ai_analysis: JSON | None = strawberry.UNSET
    client_mutation_id: str | None = None


@strawberry.type
class UpdateSessionPayload:
    session: Session
    client_mutation_id: str | None


@strawberry.input
class EndSessionInput:
    id: strawberry.ID
    ended_at: datetime | None = strawberry.field(default=None, description="Defaults to now.")
    exit_code: int | None = strawberry.field(default=None, description="TERMINAL sessions only.")
    client_mutation_id: str | None = None


@strawberry.type
class EndSessionPayload:
    session: Session
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

    @strawberry.mutation(
        description="Changes what is given of a session and leaves the rest (see UpdateSessionInput), whole or "
        "not at all; subscribers of sessionUpdates hear UPDATED. Who may: as for recording (a USER its own "
        "sessions, a MACHINE or ADMIN key its organisation's). Allowed on a DONE session."
    )
    async def update_session(self, info: strawberry.Info, input: UpdateSessionInput) -> UpdateSessionPayload:
        changes = {
            name: value
            for name, value in plain(input).items()
            if name not in ("id", "client_mutation_id")
        }
        row = await session_mutations.update_session(info.context, input.id, changes)
        return UpdateSessionPayload(session=Session.from_row(row), client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        description="Ends a session: status DONE, `endedAt` set, and no more turns or events (updateSession "
        "still applies). Ending an ended session again with the same given values is a no-op (fields left "
        "out are not compared); with other values: BAD_USER_INPUT. Turns still running stay RUNNING."
    )
    async def end_session(self, info: strawberry.Info, input: EndSessionInput) -> EndSessionPayload:
        row = await session_mutations.end_session(info.context, input.id, input.ended_at, input.exit_code)
        return EndSessionPayload(session=Session.from_row(row), client_mutation_id=input.client_mutation_id)
