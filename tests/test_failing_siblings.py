"""A field that fails while its siblings are still loading: graphql-core cancels the
siblings, and a sibling may be waiting on a DataLoader future that another part of the
document shares. The request still answers, with the error where it belongs."""

import pytest

from sessiongraph.resolvers.ids import to_global_id
from tests.conftest import event_, execute, ok, store

SHARED_LOAD = """query ($id: ID!) {
  a: node(id: $id) { ... on Session { turns(after: "garbage") { totalCount } events { nodes { seq } } } }
  b: node(id: $id) { ... on Session { events { nodes { seq } } } }
}"""


@pytest.mark.usefixtures("both_executions")
async def test_a_failing_field_does_not_fail_another_field_sharing_its_load(engine, org):
    session_id = await store(engine, org.alice, events=[event_("OUTPUT", 1, "x"), event_("OUTPUT", 2, "y")])
    result = await execute(engine, org.alice, SHARED_LOAD, {"id": to_global_id("Session", session_id)})
    assert [(e.path, e.extensions["code"]) for e in result.errors] == [(["a", "turns"], "BAD_USER_INPUT")]
    assert result.data == {"a": None, "b": {"events": {"nodes": [{"seq": 1}, {"seq": 2}]}}}
    # The connections the cancelled work ran on are still good.
    data = await ok(engine, org.alice, "{ sessions { totalCount } }")
    assert data["sessions"]["totalCount"] == 1
