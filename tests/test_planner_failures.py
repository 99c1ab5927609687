"""The planner hides no bug: an unexpected failure while it runs a plan is logged with the
request's id and counted (the suite's autouse fixture fails any test that makes one), while
the caller still gets graphql-core's answer; an error a resolver raises on purpose is handed
to graphql-core without a word. Plans are cached by the document's text, never by an id()."""

import logging

import pytest
from graphql import parse

from sessiongraph.planner import compiled
from sessiongraph.planner.errors import PlannerBug
from sessiongraph.planner.extension import PlannedExecution, planner_for
from sessiongraph.schema import schema
from sessiongraph.schema.errors import current_request_id
from tests.conftest import execute, ok, store


@pytest.mark.planner_bugs(1)
async def test_an_unexpected_failure_is_logged_with_the_request_id_counted_and_answered(
    engine, org, monkeypatch, caplog
):
    await store(engine, org.alice, title="one")
    query = "{ failing_compile: sessions { nodes { title } } }"  # a text no other test plans

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the planner")

    monkeypatch.setattr(compiled, "compile_node", broken)
    bugs, fell_back = PlannerBug.count, PlannedExecution.fell_back
    token = current_request_id.set("req-planner-bug")
    try:
        with caplog.at_level(logging.ERROR, logger="sessiongraph.planner"):
            data = await ok(engine, org.alice, query)
    finally:
        current_request_id.reset(token)
    assert data == {"failing_compile": {"nodes": [{"title": "one"}]}}
    assert (PlannerBug.count, PlannedExecution.fell_back) == (bugs + 1, fell_back + 1)
    [record] = [r for r in caplog.records if r.name == "sessiongraph.planner"]
    assert "req-planner-bug" in record.getMessage() and "a bug in the planner" in str(record.exc_info[1])


async def test_a_coded_error_is_handed_to_graphql_core_and_not_counted(engine, org):
    await store(engine, org.alice)
    bugs, fell_back = PlannerBug.count, PlannedExecution.fell_back
    result = await execute(engine, org.alice, '{ sessions(after: "garbage") { nodes { title } } }')
    assert [e.extensions["code"] for e in result.errors] == ["BAD_USER_INPUT"]
    assert (PlannerBug.count, PlannedExecution.fell_back) == (bugs, fell_back + 1)


def test_a_document_without_text_gets_a_plan_of_its_own_each_time():
    """A plan keyed by id(document) would go to another document once the first is freed and
    its id reused; without a text to key by, nothing is cached."""
    planner = planner_for(schema)
    for _ in range(50):
        for text in ("{ viewer { userId } }", "{ sessions { totalCount } }"):
            document = parse(text)
            plan = planner.plan(None, document, None)
            assert plan.operation is document.definitions[0]
            del document, plan
