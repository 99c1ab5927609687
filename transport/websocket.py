"""GraphQL over WebSocket on /graphql, protocol graphql-transport-ws (Strawberry's handler,
with the contract's rules on top):

- the API key comes in connection_init's payload (`{"apiKey": "..."}`, or the header names
  `X-API-Key` / `Authorization: Bearer`, which is what GraphiQL sends from its Headers tab)
  or in the upgrade request's headers; a bad or missing key closes the socket with 4401;
- no connection_init in time: 4408 (Strawberry's timer);
- at most `per_connection` operations at once on a socket, and `Limits.per_key` open
  subscriptions per key (resolvers/broker.py): a refused subscribe gets an `error` message
  with code TOO_MANY_SUBSCRIPTIONS;
- errors are coded and masked by the schema, as over HTTP.

Origins are not restricted: an API key is never an ambient credential (no cookies), so a
page on another site cannot act with someone else's rights.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler

from sessiongraph.gate.auth import authenticate, key_from_headers
from sessiongraph.live.broker import TooManySubscriptions
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.loaders import Loaders
from sessiongraph.schema.errors import current_request_id


@dataclass(frozen=True)
class SocketLimits:
    init_timeout_seconds: float = 10
    per_connection: int = 20


class SocketContext(RequestContext):
    """A connection's context, shared by its operations; the caller is known once
    connection_init is accepted."""

    def __init__(self, engine, headers) -> None:
        super().__init__(engine, None)
        self.headers = headers
        self.connection_params: dict = {}


def key_from_payload(payload: dict) -> str | None:
    if isinstance(key := payload.get("apiKey"), str) and key:
        return key
    headers = {str(name).lower(): value for name, value in payload.items() if isinstance(value, str)}
    return key_from_headers(headers)


class TransportHandler(BaseGraphQLTransportWSHandler):
    async def handle_connection_init(self, message) -> None:
        payload = message.get("payload") or {}
        if isinstance(payload, dict) and not self.connection_init_received and not self.connection_timed_out:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            key = key_from_payload(payload) or key_from_headers(self.context.headers)
            viewer = await authenticate(self.context.engine, key)
            if viewer is None:
                await self.websocket.close(code=4401, reason="Unauthorized")
                return
            self.context.viewer = viewer
        await super().handle_connection_init(message)

    async def handle_subscribe(self, message) -> None:
        limit = self.view.limits.per_connection
        if self.connection_acknowledged and message.get("id") not in self.operations and len(self.operations) >= limit:
            error = TooManySubscriptions(f"At most {limit} operations at once on one connection.")
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        # Each operation reads fresh rows (the context, and so its DataLoaders' cache, lives
        # as long as the socket), and its log lines name it; the operation's task, created
        # below, inherits the request id.
        self.context.loaders = Loaders(self.context)
        current_request_id.set(f"ws-{uuid.uuid4().hex[:12]}-{message.get('id')}")
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        await super().shutdown()
        await self.context.close()


class GraphQLWebSocket(GraphQL):
    """The WebSocket side of /graphql (the HTTP side is http.GraphQLEndpoint)."""

    graphql_transport_ws_handler_class = TransportHandler

    def __init__(self, schema, engine, limits: SocketLimits | None = None) -> None:
        self.limits = limits or SocketLimits()
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=self.limits.init_timeout_seconds),
            max_subscriptions_per_connection=None,
            allowed_origins=("*",),
        )
        self.engine = engine

    async def get_context(self, request, response) -> SocketContext:
        return SocketContext(self.engine, request.headers)
