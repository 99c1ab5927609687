"""Persisted documents: automatic persisted queries (APQ), trusted documents and the
trusted-documents-only mode; parsing and validation cached per document."""

from pathlib import Path

import httpx
import pytest

from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from sessiongraph.gate.persisted import DEFAULT_TRUSTED_DIR, DocumentStore, load_manifest, sha256_hex
from sessiongraph.gate import limits
from sessiongraph.schema import schema
from tests.live_server import app_client, key  # noqa: F401 (key: a fixture)

VIEWER = "query Me { viewer { role } }"
OTHER = "query Other { viewer { userId } }"


def apq(sha256: str, query: str | None = None) -> dict:
    body: dict = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}}}
    if query is not None:
        body["query"] = query
    return body


def codes(response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", ())]


# --- automatic persisted queries ---------------------------------------------------------


async def test_apq_unknown_hash_then_register_then_hash_alone_runs(client, key):
    headers = {"X-API-Key": key, "Accept": "application/graphql-response+json"}
    sha = sha256_hex(VIEWER)
    unknown = await client.post("/graphql", json=apq(sha), headers=headers)
    assert unknown.status_code == 400
    assert codes(unknown) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert "data" not in unknown.json()

    registered = await client.post("/graphql", json=apq(sha, VIEWER), headers=headers)
    assert registered.json()["data"] == {"viewer": {"role": "ADMIN"}}

    by_hash = await client.post("/graphql", json=apq(sha), headers=headers)
    assert by_hash.json()["data"] == {"viewer": {"role": "ADMIN"}}
    over_get = await client.get(
        "/graphql", params={"extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "%s"}}' % sha}, headers=headers
    )
    assert over_get.json()["data"] == {"viewer": {"role": "ADMIN"}}


async def test_apq_unknown_hash_is_200_for_application_json_clients(client, key):
    response = await client.post("/graphql", json=apq("0" * 64), headers={"X-API-Key": key, "Accept": "application/json"})
    assert response.status_code == 200
    assert codes(response) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_apq_hash_that_does_not_match_the_document_is_refused_and_not_stored(client, key):
    headers = {"X-API-Key": key}
    wrong = sha256_hex(OTHER)
    mismatch = await client.post("/graphql", json=apq(wrong, VIEWER), headers=headers)
    assert mismatch.status_code == 400
    assert codes(mismatch) == ["BAD_REQUEST"]
    assert codes(await client.post("/graphql", json=apq(wrong), headers=headers)) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    "persisted", [{"version": 2, "sha256Hash": "0" * 64}, {"version": 1, "sha256Hash": "short"}, "yes", {"version": 1}]
)
async def test_malformed_persisted_query_extension_is_400(client, key, persisted):
    response = await client.post("/graphql", json={"extensions": {"persistedQuery": persisted}}, headers={"X-API-Key": key})
    assert response.status_code == 400
    assert codes(response) == ["BAD_REQUEST"]


async def test_a_mutation_registered_by_hash_still_cannot_run_over_get(client, key):
    mutation = "mutation M { __typename }"
    sha = sha256_hex(mutation)
    await client.post("/graphql", json=apq(sha, mutation), headers={"X-API-Key": key})
    over_get = await client.get(
        "/graphql",
        params={"extensions": '{"persistedQuery": {"version": 1, "sha256Hash": "%s"}}' % sha},
        headers={"X-API-Key": key},
    )
    assert over_get.status_code == 405


def test_apq_store_is_bounded_by_size_least_recently_used_first_out():
    store = DocumentStore(max_bytes=30)
    store.put("a", "x" * 10)
    store.put("b", "y" * 10)
    assert store.get("a") == "x" * 10  # a is now the most recently used
    store.put("c", "z" * 15)
    assert store.get("b") is None
    assert (store.get("a"), store.get("c")) == ("x" * 10, "z" * 15)
    store.put("huge", "w" * 31)
    assert store.get("huge") is None and store.size <= 30


# --- trusted documents ----------------------------------------------------------------


@pytest.fixture
def trusted_dir(tmp_path) -> Path:
    (tmp_path / "Me.graphql").write_text(VIEWER)
    (tmp_path / "notes.txt").write_text("not a document")
    return tmp_path


def test_manifest_holds_every_document_of_graphql_queries_by_its_sha256():
    files = sorted(DEFAULT_TRUSTED_DIR.glob("*.graphql"))
    assert files, "graphql_queries/ has the frontends' documents"
    manifest = load_manifest(DEFAULT_TRUSTED_DIR)
    assert manifest == {sha256_hex(p.read_text()): p.read_text() for p in files}


async def test_trusted_document_runs_by_hash_without_registration(engine, key, trusted_dir):
    async with app_client(engine, trusted_documents_dir=trusted_dir) as client:
        response = await client.post("/graphql", json=apq(sha256_hex(VIEWER)), headers={"X-API-Key": key})
    assert response.json()["data"] == {"viewer": {"role": "ADMIN"}}


async def test_trusted_documents_only_runs_nothing_else(engine, key, trusted_dir, monkeypatch):
    monkeypatch.setenv("SESSIONGRAPH_TRUSTED_DOCUMENTS_ONLY", "1")
    monkeypatch.setenv("SESSIONGRAPH_TRUSTED_DOCUMENTS", str(trusted_dir))
    settings = Settings.from_env(str(engine.url))
    app = create_app(settings, engine=engine)
    headers = {"X-API-Key": key, "Accept": "application/graphql-response+json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        by_hash = await client.post("/graphql", json=apq(sha256_hex(VIEWER)), headers=headers)
        by_text = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
        other = await client.post("/graphql", json={"query": OTHER}, headers=headers)
        registering = await client.post("/graphql", json=apq(sha256_hex(OTHER), OTHER), headers=headers)
        unknown = await client.post("/graphql", json=apq(sha256_hex(OTHER)), headers=headers)
    assert by_hash.json()["data"] == by_text.json()["data"] == {"viewer": {"role": "ADMIN"}}
    assert (other.status_code, codes(other)) == (400, ["DOCUMENT_NOT_TRUSTED"])
    assert codes(registering) == ["DOCUMENT_NOT_TRUSTED"]
    assert codes(unknown) == ["PERSISTED_QUERY_NOT_FOUND"]


# --- caches ---------------------------------------------------------------------------------


async def test_parsing_and_validation_run_once_per_document(monkeypatch):
    validated = []

    def counting_validate(*args):
        validated.append(args[1])
        return original(*args)

    original = limits.validate_document
    monkeypatch.setattr(limits, "validate_document", counting_validate)
    document = "{ cachedProbe: __typename }"
    misses = limits.parse_cached.cache_info().misses
    for _ in range(3):
        assert (await schema.execute(document)).data == {"cachedProbe": "Query"}
    assert limits.parse_cached.cache_info().misses == misses + 1
    assert len(validated) == 1


async def test_introspection_switch_does_not_share_cached_validation():
    document = "{ __schema { queryType { name } } }"
    assert (await schema.execute(document)).errors is None
    closed = schema.configured(schema.limits, introspection=False)
    assert {e.extensions["code"] for e in (await closed.execute(document)).errors} == {"GRAPHQL_VALIDATION_FAILED"}
