"""GET /downloads/{token}: a download link (downloads/), answered without an API key: the
link is the credential. 403 for a link not signed by this deployment, altered or expired;
404 when its key was revoked or its session deleted or no longer visible; 503 with
Retry-After when the database cannot answer before the file starts; else 200 and the file,
streamed as it is read."""

import logging

import anyio
from starlette.responses import PlainTextResponse, StreamingResponse

from sessiongraph.downloads import export
from sessiongraph.gate.operation import RETRY_HEADERS
from sessiongraph.models.availability import is_unavailable

log = logging.getLogger("sessiongraph.downloads")


def download_endpoint(engine):
    async def download(request):
        token = request.path_params["token"]
        # The connection (and the process's download slot) is held from the checks to the
        # last byte, and given back when the client goes away too.
        holding = export.download_connection(engine)
        try:
            connection = await holding.__aenter__()
        except Exception as e:
            if is_unavailable(e):
                return _unavailable(e)
            raise
        try:
            opened = await export.open_link(engine, connection, token)
        except export.BadLink as e:
            await holding.__aexit__(None, None, None)
            return PlainTextResponse(f"Forbidden: {e}.", status_code=403)
        except export.Gone as e:
            await holding.__aexit__(None, None, None)
            return PlainTextResponse(f"Not found: {e}.", status_code=404)
        except BaseException as e:
            await holding.__aexit__(type(e), e, e.__traceback__)
            if isinstance(e, Exception) and is_unavailable(e):
                return _unavailable(e)
            raise

        async def body():
            try:
                async for chunk in export.file_chunks(connection, opened):
                    yield chunk
            except Exception:
                # The status line has gone: the client sees the file cut short.
                log.exception("download of session %s failed", opened.session.id)
                raise

        return _Download(
            holding,
            body(),
            media_type=opened.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{opened.file_name}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return download


def _unavailable(error: Exception) -> PlainTextResponse:
    """The database could not answer before anything was sent (models/availability.py)."""
    log.warning("download: the database is unavailable: %s", error)
    return PlainTextResponse(
        "Service unavailable: the database is not answering; try again shortly.", status_code=503, headers=RETRY_HEADERS
    )


class _ClientIdle(Exception):
    """The client left a part of the file untaken for the idle time (export.idle_seconds)."""


class _Download(StreamingResponse):
    """The response, giving the download's connection and slot back however it ends: sent,
    failed, or the client gone (even before the first chunk, when the body never ran)."""

    def __init__(self, holding, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.holding = holding

    async def __call__(self, scope, receive, send) -> None:
        idle = export.idle_seconds()

        async def bounded(message) -> None:
            # Waits while the client does not read (the server's buffers are full).
            try:
                with anyio.fail_after(idle):
                    await send(message)
            except TimeoutError:
                raise _ClientIdle from None

        try:
            await super().__call__(scope, receive, bounded)
        except _ClientIdle:
            # The file cannot be ended properly: the connection is closed, cut short.
            log.warning("download cut off: the client took nothing for %d s", idle)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self.holding.__aexit__(None, None, None)
