"""A field that fails while its siblings are still loading: graphql-core cancels the
siblings; the request still answers with the error, and the connection pool stays sound."""

import pytest

from tests.conftest import error_codes, event_, ok, store, turn_

SHARED_LOADS = """{
  sessions(first: 5) { nodes {
    a: events(first: 3) { nodes { seq } }
    b: events(first: 3) { nodes { seq } }
    turns(first: 2) { nodes { x: events(first: 2) { nodes { seq } } y: events(first: 2) { nodes { seq } } } }
    broken: turns(first: 101) { totalCount }
  } }
}"""


@pytest.mark.usefixtures("both_executions")
async def test_a_failing_field_leaves_siblings_sharing_a_load_answerable(engine, org):
    for n in range(3):
        await store(engine, org.alice, n, turns=[turn_(f"t{k}", n + k, events=[event_("E", n + k)]) for k in range(2)],
                    events=[event_("OUTPUT", n + 0.5, "x")])
    for _ in range(5):
        assert set(await error_codes(engine, org.alice, SHARED_LOADS)) == {"BAD_USER_INPUT"}
    # The connections the cancelled statements ran on are still good.
    data = await ok(engine, org.alice, "{ sessions(first: 5) { totalCount nodes { events { totalCount } } } }")
    assert data["sessions"]["totalCount"] == 3
