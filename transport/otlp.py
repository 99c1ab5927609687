"""POST /v1/traces: OTLP/HTTP trace export (protobuf or JSON; gzip, deflate or neither). The API key, the
body limit and the key cache are the gate's, as for /graphql; what the spans become is
ingest/otlp.py's. Errors are answered as OTLP/HTTP has them: a google.rpc.Status body in the
request's format, with 400 (malformed), 401 (key), 413 (too large) or 415 (format)."""

import logging
import zlib

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from sessiongraph.gate.auth import key_from_headers
from sessiongraph.gate.operation import Gate, Refused
from sessiongraph.ingest.otlp import Malformed, decode_request, encode_response, encode_status, ingest
from sessiongraph.transport.http import header_values, read_body

log = logging.getLogger("sessiongraph.transport.otlp")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# google.rpc.Code values for the Status of an error response.
INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED, INTERNAL = 3, 16, 8, 13
# Content-Encodings the exporters send, as zlib's window bits: gzip's header, zlib's (deflate).
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class TracesEndpoint:
    """An ASGI app for POST /v1/traces."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def __call__(self, scope, receive, send) -> None:
        headers = header_values(scope)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        json = media_type == JSON
        try:
            response = await self.handle(scope, receive, headers, media_type, json)
        except ClientDisconnect:
            return
        except Exception:  # the client learns nothing of it, the log everything
            log.exception("an OTLP export failed")
            response = self.error(500, INTERNAL, "The server failed to store the spans; the log has the details.", json)
        await response(scope, receive, send)

    @staticmethod
    def error(status: int, code: int, message: str, json: bool, headers: dict | None = None) -> Response:
        return Response(encode_status(code, message, json), status, headers, JSON if json else PROTOBUF)

    async def handle(self, scope, receive, headers: dict, media_type: str, json: bool) -> Response:
        if scope["method"] != "POST":
            return self.error(405, INVALID_ARGUMENT, "Export traces with POST.", json, {"Allow": "POST"})
        viewer = await self.gate.caller(key_from_headers(headers))
        if viewer is None:
            return self.error(401, UNAUTHENTICATED, "A valid API key is required.", json)
        if media_type not in (PROTOBUF, JSON):
            return self.error(415, INVALID_ARGUMENT, f"Send {PROTOBUF} or {JSON}.", False)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in (*WBITS, "identity", ""):
            return self.error(415, INVALID_ARGUMENT, "Content-Encoding must be gzip, deflate or none.", json)
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit():
                self.gate.check_size(int(declared))
            body = await read_body(receive, self.gate)
            if encoding in WBITS:
                body = self.inflate(body, encoding)
        except Refused as e:
            return self.error(e.status or 400, RESOURCE_EXHAUSTED if e.status == 413 else INVALID_ARGUMENT, str(e), json)
        try:
            request = decode_request(body, json)
        except Malformed as e:
            return self.error(400, INVALID_ARGUMENT, str(e), json)
        outcome = await ingest(self.gate.engine, viewer, request)
        return Response(encode_response(outcome.rejected, json), 200, None, JSON if json else PROTOBUF)

    def inflate(self, body: bytes, encoding: str) -> bytes:
        """The body decompressed, refused (413) once it grows past the body limit: the limit
        holds for what the body becomes, not only for what was sent."""
        limit = self.gate.max_bytes
        inflater = zlib.decompressobj(wbits=WBITS[encoding])
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise Refused("BAD_REQUEST", f"The body is not {encoding}.", 400) from None
        self.gate.check_size(len(data), "The decompressed body")
        if not inflater.eof:
            raise Refused("BAD_REQUEST", f"The {encoding} body is cut short.", 400)
        return data
