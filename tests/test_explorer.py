"""GraphiQL from the server itself: the page loads only this server's assets, which are
served with long cache headers (gzipped when the browser takes it) and ship in the package;
only a `serve --demo` server puts a key in the page."""

import fnmatch
import re
import tomllib
from pathlib import Path

from sessiongraph.explorer import ASSETS, STATIC
from tests.live_server import app_client, key  # noqa: F401 (a fixture)

ROOT = Path(__file__).parent.parent
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def page_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


async def test_the_page_loads_nothing_from_another_host(client):
    page = (await client.get("/graphql", headers=BROWSER)).text
    urls = [url for url in page_urls(page) if not url.startswith("data:")]
    assert len(urls) == len(ASSETS)
    assert all(url.startswith("/graphiql/static/") for url in urls), urls
    assert "unpkg" not in page and "esm.sh" not in page and "//" not in "".join(urls)


async def test_every_asset_is_served_for_a_year_and_gzipped_when_asked(client):
    page = (await client.get("/graphql", headers=BROWSER)).text
    for url in page_urls(page):
        if url.startswith("data:"):
            continue
        name = url.split("?")[0].rsplit("/", 1)[1]
        plain = await client.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert plain.content == (STATIC / name).read_bytes()
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert plain.headers["content-type"].startswith("text/javascript" if name.endswith(".js") else "text/css")
        zipped = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == plain.content  # httpx undoes the gzip
    assert (await client.get("/graphiql/static/nothing.js")).status_code == 404
    assert (await client.get("/graphiql/static/../pyproject.toml")).status_code == 404


async def test_no_key_in_the_page_of_a_server_not_started_for_the_demo(client, key):
    page = (await client.get("/graphql", headers=BROWSER)).text
    assert key not in page
    assert '"headers"' not in page


async def test_a_demo_server_puts_its_key_in_the_headers_tab(engine, key):
    async with app_client(engine, demo_key=key) as client:
        page = (await client.get("/graphql", headers=BROWSER)).text
    assert f'"headers": "{{\\n  \\"X-API-Key\\": \\"{key}\\"\\n}}"' in page


async def test_no_graphiql_serves_no_page(engine):
    async with app_client(engine, graphiql=False) as client:
        response = await client.get("/graphql", headers=BROWSER)
    assert not response.headers["content-type"].startswith("text/html")


def test_the_assets_and_their_licenses_ship_in_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["sessiongraph.explorer"] == "explorer"
    patterns = config["package-data"]["sessiongraph.explorer"]
    shipped = {path.name for path in STATIC.iterdir() if any(fnmatch.fnmatch(f"static/{path.name}", p) for p in patterns)}
    assert set(ASSETS) <= shipped
    assert {"LICENSE.graphiql", "LICENSE.react", "LICENSE.react-dom", "VERSIONS"} <= shipped
    assert sum((STATIC / name).stat().st_size for name in shipped) < 5_000_000
