"""GraphiQL served by sessiongraph itself: the page on GET /graphql and its scripts and styles
from the package (static/, a pinned GraphiQL release from npm with its license), so the
explorer works on a network that reaches nothing but this server."""

import gzip
import hashlib
import html
import json
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

STATIC = Path(__file__).parent / "static"
PREFIX = "/graphiql/static/"
ASSETS = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql.min.css", "sessiongraph-graphiql.js")
# The URLs carry each file's hash, so a browser may keep them for a year: a new release is a
# new URL.
CACHE_FOREVER = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

FIRST_QUERY = """\
# Run with Ctrl-Enter or the play button.
# Your API key goes under Headers: {"X-API-Key": "<key>"}
{
  viewer { userId role }
  sessions(first: 5) {
    totalCount
    nodes { title turnCount tokensUsed lastActivityAt }
  }
}
"""
DEMO_QUERY = FIRST_QUERY.replace(
    '# Your API key goes under Headers: {"X-API-Key": "<key>"}', "# The demo key is already under Headers (below)."
)


@dataclass
class Asset:
    body: bytes
    media_type: str

    @cached_property
    def gzipped(self) -> bytes:
        # Once per process, at the first request that takes it: graphiql.min.js is 3.5 MB as
        # shipped, 0.7 MB gzipped (a quarter of a second to compress).
        return gzip.compress(self.body, 6, mtime=0)


@cache
def assets() -> dict[str, Asset]:
    """Read at the first request for the page or an asset, once per process: an app that
    never serves GraphiQL never reads them."""
    return {name: Asset((STATIC / name).read_bytes(), MEDIA_TYPES[Path(name).suffix]) for name in ASSETS}


class Explorer:
    """The GraphiQL page (with the demo key in its Headers tab when `demo_key` is given) and
    the ASGI app serving its assets under PREFIX."""

    def __init__(self, endpoint: str = "/graphql", demo_key: str | None = None) -> None:
        self.endpoint, self.demo_key = endpoint, demo_key

    @cached_property
    def page(self) -> bytes:
        urls = {name: f"{PREFIX}{name}?v={hashlib.sha256(a.body).hexdigest()[:16]}" for name, a in assets().items()}
        config = {"endpoint": self.endpoint, "query": DEMO_QUERY if self.demo_key else FIRST_QUERY}
        if self.demo_key:
            config["headers"] = json.dumps({"X-API-Key": self.demo_key}, indent=2)
        # "</" cannot end the script element from inside the JSON.
        config_json = json.dumps(config).replace("</", "<\\/")
        scripts = "\n".join(
            f'    <script src="{html.escape(urls[name])}"></script>'
            for name in ASSETS
            if name.endswith(".js")
        )
        return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>sessiongraph GraphiQL</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{html.escape(urls["graphiql.min.css"])}">
    <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script type="application/json" id="sessiongraph-config">{config_json}</script>
{scripts}
  </body>
</html>
""".encode()

    async def __call__(self, scope, receive, send) -> None:
        """GET/HEAD of an asset under PREFIX; 404 for anything else."""
        asset = assets().get(scope["path"].removeprefix(PREFIX))
        if asset is None or scope["method"] not in ("GET", "HEAD"):
            status, headers, body = 404, [(b"content-type", b"text/plain; charset=utf-8")], b"not found"
        else:
            accepts = b""
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    accepts = value
            body = asset.gzipped if b"gzip" in accepts else asset.body
            status = 200
            headers = [(b"content-type", asset.media_type.encode()), (b"cache-control", CACHE_FOREVER.encode()), (b"vary", b"accept-encoding")]
            if body is asset.gzipped:
                headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
