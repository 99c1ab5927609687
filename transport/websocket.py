"""GraphQL over WebSocket on /graphql, protocol graphql-transport-ws (Strawberry's handler):
every operation passes the gate (gate/operation.py) as an HTTP request does, and what the gate
refuses comes back as an `error` message with the code HTTP would give.

- the API key comes in connection_init's payload (`{"apiKey": "..."}`, or the header names
  `X-API-Key` / `Authorization: Bearer`, which is what GraphiQL sends from its Headers tab)
  or in the upgrade request's headers; a bad or missing key closes the socket with 4401;
- no connection_init in time: 4408 (Strawberry's timer);
- the key cannot be looked up, the database not answering (SERVICE_UNAVAILABLE) or not
  within the request timeout (TIMEOUT): 4503, the reason naming the code; connect again;
- a message is held to the body limit (`--max-body-bytes`), measured before it is decoded,
  and decoded as strictly as a body; one refused names its operation when its `id` can be
  read (else the socket is closed with 4400, as for any message that is not one);
- at most `per_connection` operations at once on a socket, and `Limits.per_key` open
  subscriptions per key (live/broker.py): a refused subscribe gets an `error` message
  with code TOO_MANY_SUBSCRIPTIONS;
- queries and mutations run as over HTTP (the planner, the request timeout); each operation
  has a context of its own and a request id that its log lines name.

Origins are not restricted: an API key is never an ambient credential (no cookies), so a
page on another site cannot act with someone else's rights.
"""

import json
import logging
import re
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta

import orjson
from strawberry.asgi import GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from sessiongraph.gate.auth import key_from_headers
from sessiongraph.gate.operation import Gate, Refused, decode, is_request_error, new_request_id, utf8_size
from sessiongraph.live.broker import TooManySubscriptions
from sessiongraph.schema.errors import INTERNAL_MESSAGE, current_request_id

log = logging.getLogger("sessiongraph.transport.websocket")

# Queries and mutations; a subscription is streamed (Gate.subscribe).
EXECUTED = frozenset({OperationType.QUERY, OperationType.MUTATION})
# The id of a message too large to decode, read off its start: clients write `id` before the
# payload (graphql-ws writes {id, type, payload}).
LEADING_ID = re.compile(r'\s*\{\s*(?:"type"\s*:\s*"subscribe"\s*,\s*)?"id"\s*:\s*"([^"\\]{1,128})"')


# connection_init while the database cannot answer: as HTTP's 503, retryable.
UNAVAILABLE_CLOSE_CODE = 4503


@dataclass(frozen=True)
class SocketLimits:
    init_timeout_seconds: float = 10
    per_connection: int = 20


class SocketContext:
    """A connection's own state: its upgrade request's headers, connection_init's payload and
    the caller, once that is accepted. Operations do not share it: each has its own
    RequestContext (Gate.execute, Gate.subscribe)."""

    def __init__(self, headers) -> None:
        self.headers = headers
        self.connection_params: dict = {}
        self.viewer = None


@dataclass(frozen=True)
class RefusedMessage:
    """A message the gate refused as it came (too large, not decodable); `id` the operation
    it names, None when that cannot be read."""

    id: str | None
    refused: Refused


def key_from_payload(payload: dict) -> str | None:
    if isinstance(key := payload.get("apiKey"), str) and key:
        return key
    headers = {str(name).lower(): value for name, value in payload.items() if isinstance(value, str)}
    return key_from_headers(headers)


def message_id(text, oversized: bool) -> str | None:
    """The `id` of a refused message: read off its start when it is too large to decode,
    else decoded leniently (what strict decoding refused may still be JSON)."""
    if not isinstance(text, str):
        return None
    if oversized:
        found = LEADING_ID.match(text)
        return found.group(1) if found else None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    found = message.get("id") if isinstance(message, dict) else None
    return found if isinstance(found, str) else None


class TransportHandler(BaseGraphQLTransportWSHandler):
    async def handle(self) -> None:
        watch = self.view.gate.watch
        if watch is None:
            return await super().handle()
        with watch.connection():
            return await super().handle()

    async def handle_message(self, message) -> None:
        if isinstance(message, RefusedMessage):
            if message.id is None:  # nothing to answer: not a message of the protocol
                await self.websocket.close(code=4400, reason=str(message.refused))
            elif message.id in self.operations:
                await self.websocket.close(code=4409, reason=f"Subscriber for {message.id} already exists")
            else:
                await self.send_message({"id": message.id, "type": "error", "payload": message.refused.errors})
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message) -> None:
        payload = message.get("payload") or {}
        if isinstance(payload, dict) and not self.connection_init_received and not self.connection_timed_out:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            key = key_from_payload(payload) or key_from_headers(self.context.headers)
            gate = self.view.gate
            try:
                viewer = await gate.bounded(lambda: gate.caller(key))
            except Refused as refused:  # SERVICE_UNAVAILABLE or TIMEOUT: the key could not be looked up
                await self.websocket.close(code=UNAVAILABLE_CLOSE_CODE, reason=f"{refused.code}: try again shortly")
                return
            if viewer is None:
                await self.websocket.close(code=4401, reason="Unauthorized")
                return
            self.context.viewer = viewer
        await super().handle_connection_init(message)

    async def handle_subscribe(self, message) -> None:
        if not self.connection_acknowledged or message["id"] in self.operations:
            await super().handle_subscribe(message)  # closes the socket, as the protocol says
            return
        limit = self.view.limits.per_connection
        try:
            if len(self.operations) >= limit:
                raise TooManySubscriptions(f"At most {limit} operations at once on one connection.")
            payload = message.get("payload")
            if not isinstance(payload, dict):
                raise Refused("BAD_REQUEST", "`payload` must be an object.", 400)
            query = self.view.gate.document(payload)
        except TooManySubscriptions as error:
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        except Refused as refused:
            await self.send_message({"id": message["id"], "type": "error", "payload": refused.errors})
            return
        await super().handle_subscribe({**message, "payload": {**payload, "query": query}})

    async def run_operation(self, operation) -> None:
        """One operation, in its own task: through the gate, then its messages."""
        gate: Gate = self.view.gate
        request_id = new_request_id()
        current_request_id.set(request_id)  # this task's own: its log lines name the operation
        viewer = self.context.viewer
        if gate.watch is not None:  # spans continue the trace connection_init's payload names
            with gate.watch.continuing(self.context.connection_params):
                await self.operate(gate, operation, viewer, request_id)
        else:
            await self.operate(gate, operation, viewer, request_id)

    async def operate(self, gate: Gate, operation, viewer, request_id: str) -> None:
        try:
            if gate.is_subscription(operation.query, operation.operation_name):
                first = True
                results = gate.subscribe(viewer, operation.query, operation.variables, operation.operation_name)
                async with aclosing(results):
                    async for result in results:
                        if first and isinstance(result, PreExecutionError):
                            await operation.send_initial_errors(result.errors)
                            return
                        first = False
                        await operation.send_next(result)
            else:
                result = await gate.execute(viewer, operation.query, operation.variables, operation.operation_name, EXECUTED)
                if is_request_error(result):
                    await operation.send_initial_errors(result.errors)
                    return
                await operation.send_next(result)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except Refused as refused:
            await operation.send_operation_message({"id": operation.id, "type": "error", "payload": refused.errors})
        except WebSocketDisconnected:
            pass
        except Exception:  # the last resort: the client learns nothing of it, the log everything
            log.exception("request %s failed", request_id)
            error = {"message": INTERNAL_MESSAGE, "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
            try:
                await operation.send_operation_message({"id": operation.id, "type": "error", "payload": [error]})
            except WebSocketDisconnected:
                pass
        finally:
            if self.operations.get(operation.id) is operation:  # ended without its last message
                self.forget_id(operation.id)


class GraphQLWebSocket(GraphQL):
    """The WebSocket side of /graphql (the HTTP side is http.GraphQLEndpoint)."""

    graphql_transport_ws_handler_class = TransportHandler

    def __init__(self, gate: Gate, limits: SocketLimits | None = None) -> None:
        self.gate = gate
        self.limits = limits or SocketLimits()
        super().__init__(
            gate.schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=self.limits.init_timeout_seconds),
            max_subscriptions_per_connection=None,
            allowed_origins=("*",),
        )

    def encode_json(self, data: object) -> str:
        """Strawberry's encoding; a message holding a JSON value read as its text (a value
        stored deeper than models/database.READ_AS_TEXT_DEPTH, an orjson.Fragment) by orjson,
        which writes such a text as it is."""
        try:
            return super().encode_json(data)
        except TypeError:
            return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes):
        """A message, held to the body limit before it is decoded, and decoded as a body is."""
        try:
            self.gate.check_size(utf8_size(data, self.gate.max_bytes) if isinstance(data, str) else len(data), "The message")
        except Refused as refused:
            return RefusedMessage(message_id(data, oversized=True), refused)
        try:
            message = decode(data, "The message")
        except Refused as refused:
            return RefusedMessage(message_id(data, oversized=False), refused)
        if not isinstance(message, dict):
            return RefusedMessage(None, Refused("BAD_REQUEST", "The message must be a JSON object.", 400))
        return message

    async def get_context(self, request, response) -> SocketContext:
        return SocketContext(request.headers)
