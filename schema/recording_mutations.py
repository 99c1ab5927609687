"""createSession, startTurn, appendEvents and completeTurn: Relay-style inputs and
payloads, `clientMutationId` echoed. The inputs of a TERMINAL or RED_TEAM session's details
(kinds.graphql) are here too; the resolvers take them as plain snake_case dictionaries
(`plain`), the form an import line has, so both go through the same rules."""

import dataclasses
import uuid
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from sessiongraph.resolvers import recording_mutations
from sessiongraph.schema.types import (
    Event,
    ReviewStatus,
    Session,
    SessionKind,
    SessionStatus,
    TerminalVerb,
    Turn,
    TurnStatus,
)

SESSION_ID_DESCRIPTION = "Global id, UUID or the caller's external id of the session."


def plain(value):
    """An input object -> a dictionary of its given fields by Python (snake_case) name, a
    field left out (UNSET) absent; enums by value, lists and nested inputs alike."""
    if value is None or value is strawberry.UNSET:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not strawberry.UNSET
        }
    return value


@strawberry.input
class ResourceInput:
    name: str
    type: str
    subtype: str | None = None
    resource_name: str | None = None
    tags: JSON | None = None


@strawberry.input
class ReviewDecisionInput:
    group: str
    status: ReviewStatus
    reviewer_email: str | None = None
    decided_at: datetime | None = None


@strawberry.input
class ReviewInput:
    status: ReviewStatus
    created_at: datetime | None = None
    decisions: list[ReviewDecisionInput] | None = None


@strawberry.input
class TerminalInput:
    verb: TerminalVerb
    resource: ResourceInput
    input: str | None = None
    columns: int | None = None
    rows: int | None = None
    user_email: str | None = None
    user_display_name: str | None = None
    user_subject: str | None = None
    machine_identity_id: str | None = None
    review: ReviewInput | None = None


@strawberry.input(
    description="Fields left out stay as they are; a field given as null is cleared "
    "(contextStrategyPromptCount: back to 5)."
)
class RedTeamSettingsInput:
    attack_module: str | None = strawberry.UNSET
    context_strategy: str | None = strawberry.UNSET
    context_strategy_prompt_count: int | None = strawberry.UNSET
    prompt_template: str | None = strawberry.UNSET
    metric: str | None = strawberry.UNSET
    system_prompt: str | None = strawberry.UNSET


@strawberry.input
class RedTeamInput:
    runner_id: str = strawberry.field(description="1..255 characters, no control character, like an external id.")
    endpoints: list[str] = strawberry.field(description="At least one, distinct, each 1..255 characters.")
    settings: RedTeamSettingsInput | None = None


@strawberry.input
class CreateSessionInput:
    external_id: str | None = None
    title: str | None = None
    user_id: uuid.UUID | None = None
    token_budget: int | None = None
    metadata: JSON | None = None
    client_mutation_id: str | None = None
    kind: SessionKind | None = strawberry.field(
        default=None,
        description="AGENT when left out. TERMINAL needs `terminal`, RED_TEAM needs `redTeam`; any other "
        "pairing is BAD_USER_INPUT.",
    )
    status: SessionStatus | None = strawberry.field(default=None, description="READY or OPEN (the default).")
    batch_id: str | None = None
    correlation_id: str | None = None
    terminal: TerminalInput | None = None
    red_team: RedTeamInput | None = None


@strawberry.type
class CreateSessionPayload:
    session: Session
    client_mutation_id: str | None


@strawberry.input
class StartTurnInput:
    session_id: strawberry.ID = strawberry.field(description=SESSION_ID_DESCRIPTION)
    task_id: str
    workflow_id: str | None = None
    user_query: str | None = None
    client_mutation_id: str | None = None
    endpoint: str | None = strawberry.field(
        default=None,
        description="RED_TEAM sessions: one of the session's endpoints (else BAD_USER_INPUT); the turn keeps "
        "the session's settings as they are now.",
    )
    prepared_prompt: str | None = None


@strawberry.type
class StartTurnPayload:
    turn: Turn
    client_mutation_id: str | None


@strawberry.input
class EventInput:
    type: str
    agent_id: str | None = None
    message: str | None = strawberry.field(default=None, description="Text content; at most one of message and messageBase64.")
    message_base64: str | None = strawberry.field(default=None, description="Raw bytes, base64-encoded.")
    timestamp: datetime | None = strawberry.field(default=None, description="When it happened; the server's clock when absent.")
    payload: JSON | None = None
    dedup_key: str | None = strawberry.field(
        default=None,
        description="A writer's own id for the event, unique within the session, making retries safe.",
    )


@strawberry.input
class AppendEventsInput:
    session_id: strawberry.ID = strawberry.field(description=SESSION_ID_DESCRIPTION)
    turn_id: strawberry.ID | None = strawberry.field(
        default=None, description="The turn the events belong to (global id); none for session-level events."
    )
    events: list[EventInput]
    client_mutation_id: str | None = None


@strawberry.type
class AppendEventsPayload:
    events: list[Event]
    client_mutation_id: str | None


@strawberry.input
class CompleteTurnInput:
    turn_id: strawberry.ID
    status: TurnStatus
    result: str | None = None
    tokens_used: int | None = None
    completed_at: datetime | None = None
    client_mutation_id: str | None = None
    cost_usd: float | None = strawberry.field(
        default=None,
        description="Same rules as Turn.costUsd; compared like the other fields when a completion is repeated.",
    )


@strawberry.type
class CompleteTurnPayload:
    turn: Turn
    client_mutation_id: str | None


@strawberry.type
class RecordingMutations:
    @strawberry.mutation(
        description="Starts a session. A USER key creates its own (another `userId`: FORBIDDEN); a "
        "MACHINE or ADMIN key may create one for any user of its organisation (`userId`), or for a "
        "user id never seen before, who then joins it; a user of another organisation: NOT_FOUND. "
        "The title follows renameSession's rules; `externalId` is at most 255 characters with no "
        "control character, and one the owner already uses on a live session is BAD_USER_INPUT; "
        "`tokenBudget` >= 0; `metadata` a JSON object of at most 64 KB."
    )
    async def create_session(self, info: strawberry.Info, input: CreateSessionInput) -> CreateSessionPayload:
        row = await recording_mutations.create_session(
            info.context,
            input.external_id,
            input.title,
            input.user_id,
            input.token_budget,
            input.metadata,
            recording_mutations.KindInput(
                kind=plain(input.kind) or "AGENT",
                status=plain(input.status) or "OPEN",
                batch_id=input.batch_id,
                correlation_id=input.correlation_id,
                terminal=plain(input.terminal),
                red_team=plain(input.red_team),
            ),
        )
        return CreateSessionPayload(session=Session.from_row(row), client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        description="Starts a turn in a session. Retrying with a `taskId` the session already has "
        "returns that turn unchanged, whatever else the retry says (idempotent)."
    )
    async def start_turn(self, info: strawberry.Info, input: StartTurnInput) -> StartTurnPayload:
        row = await recording_mutations.start_turn(
            info.context,
            input.session_id,
            input.task_id,
            input.workflow_id,
            input.user_query,
            input.endpoint,
            input.prepared_prompt,
        )
        return StartTurnPayload(turn=Turn.from_row(row), client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        description="Appends events, atomically: all of them or none. They get the session's next "
        "`seq` numbers in the order given, with no gap and no duplicate however many writers append "
        "to the same session at once. An event whose `dedupKey` the session already has is not "
        "stored again (its stored copy is returned, content not compared; twice in one call, it is "
        "stored once). At most 1,000 events a call; none is a no-op. A `turnId` that is not a turn "
        "of this session: BAD_USER_INPUT. Events may follow a turn's completion; they take the "
        "turn's `workflowId`. The payload has one event for each given, in order."
    )
    async def append_events(self, info: strawberry.Info, input: AppendEventsInput) -> AppendEventsPayload:
        events = [
            recording_mutations.EventInput(
                type=e.type,
                agent_id=e.agent_id,
                message=e.message,
                message_base64=e.message_base64,
                timestamp=e.timestamp,
                payload=e.payload,
                dedup_key=e.dedup_key,
            )
            for e in input.events
        ]
        rows = await recording_mutations.append_events(info.context, input.session_id, input.turn_id, events)
        return AppendEventsPayload(events=[Event.from_row(r) for r in rows], client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        description="Ends a running turn with its status (not RUNNING), result and token count; "
        "fields left out stay as they are, and `completedAt` defaults to now. Ending an ended turn "
        "again with the same given values is a no-op (fields left out are not compared); with "
        "other values: BAD_USER_INPUT. The turn's tokens count in the session's `tokensUsed`."
    )
    async def complete_turn(self, info: strawberry.Info, input: CompleteTurnInput) -> CompleteTurnPayload:
        row = await recording_mutations.complete_turn(
            info.context,
            input.turn_id,
            input.status.value,
            input.result,
            input.tokens_used,
            input.completed_at,
            input.cost_usd,
        )
        return CompleteTurnPayload(turn=Turn.from_row(row), client_mutation_id=input.client_mutation_id)
