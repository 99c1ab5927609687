"""Schemathesis, in its GraphQL mode, sends generated queries and mutations (every root field
the live schema has) to a live server on each database: no answer is a 5xx, and every error
carries one of the codes the README lists."""

import time
from datetime import UTC, datetime

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from sessiongraph.schema.errors import CODES
from tests.conftest import api_key, event_, store, turn_
from tests.live_server import live_server

EXAMPLES_PER_OPERATION = 30
BUDGET_SECONDS = 50  # shared out evenly between the root fields

# Strategies for the schema's own scalars: mostly well-formed values (to get past argument
# parsing), some arbitrary text (to check the refusals).
instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
schemathesis.graphql.scalar(
    "DateTime", st.one_of(instants.map(lambda t: t.isoformat().replace("+00:00", "Z")), st.text(max_size=30)).map(nodes.String)
)
schemathesis.graphql.scalar("UUID", st.one_of(st.uuids().map(str), st.text(max_size=40)).map(nodes.String))
schemathesis.graphql.scalar(
    "JSON", st.one_of(st.integers(-(2**31), 2**31).map(nodes.Int), st.text(max_size=20).map(nodes.String))
)


def assert_coded_and_no_5xx(response, body) -> None:
    assert response.status_code < 500, f"{response.status_code} for {body}: {response.text[:500]}"
    payload = response.json()
    for error in payload.get("errors", ()):
        code = (error.get("extensions") or {}).get("code")
        assert code in CODES, f"error without a contract code for {body}: {error}"


async def test_generated_queries_and_mutations_never_get_a_5xx_and_every_error_is_coded(engine, org, database_url):
    await store(
        engine,
        org.admin,
        1,
        title="Fuzzed",
        external_id="fuzz-1",
        turns=[turn_("task-1", 2, events=[event_("LLM_OUTPUT", 3, "hello"), event_("TOOL_INVOKED", 4, "ls")])],
        events=[event_("OUTPUT", 1.5, b"\xff\x00raw")],
    )
    key = await api_key(engine, org.admin, machine=True)
    headers = {"X-API-Key": key}
    with live_server(database_url) as server:
        schema = schemathesis.graphql.from_url(server.url, headers=headers)
        operations = [result.ok() for result in schema.get_all_operations()]
        kinds = {operation.label.split(".")[0] for operation in operations}
        assert "Query" in kinds
        share = BUDGET_SECONDS / len(operations)
        sent, unexpected, outcomes = [], [], []
        with requests.Session() as http:
            for operation in operations:
                deadline = time.monotonic() + share

                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    derandomize=True,  # the same documents on every run: a failure can be replayed
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy())
                def probe(case) -> None:
                    if time.monotonic() > deadline:
                        return
                    response = case.call(session=http, headers=headers)
                    sent.append(operation.label)
                    assert_coded_and_no_5xx(response, case.body)
                    outcomes.append("errors" in response.json())
                    if "INTERNAL_SERVER_ERROR" in response.text:
                        unexpected.append((case.body, response.text[:300]))

                probe()
    assert unexpected == [], "unexpected errors (see the server log)"
    assert len(set(sent)) == len(operations), "every root field was fuzzed within the time budget"
    assert False in outcomes, "some generated documents ran without errors (the fuzzer got past the front door)"
    if "Mutation" in kinds:
        assert any(label.startswith("Mutation.") for label in sent)


def test_the_fuzz_check_itself_rejects_5xx_and_uncoded_errors():
    """The assertion the fuzzer applies fails on a 5xx or an error without a listed code."""

    class Fake:
        def __init__(self, status, payload):
            self.status_code, self._payload, self.text = status, payload, str(payload)

        def json(self):
            return self._payload

    with pytest.raises(AssertionError):
        assert_coded_and_no_5xx(Fake(500, {}), {})
    with pytest.raises(AssertionError):
        assert_coded_and_no_5xx(Fake(200, {"errors": [{"message": "x"}]}), {})
    with pytest.raises(AssertionError):
        assert_coded_and_no_5xx(Fake(200, {"errors": [{"message": "x", "extensions": {"code": "OOPS"}}]}), {})
    assert_coded_and_no_5xx(Fake(400, {"errors": [{"message": "x", "extensions": {"code": "BAD_REQUEST"}}]}), {})
