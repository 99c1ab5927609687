"""DateTime as the contract writes it: UTC with a Z, microseconds only when there are any,
whatever offset or precision the value came with."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sessiongraph.schema.scalars import serialize_datetime


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (datetime(2025, 10, 29, 6, 0, 1, 513288, tzinfo=UTC), "2025-10-29T06:00:01.513288Z"),
        (datetime(2025, 10, 29, 6, 0, 0, tzinfo=UTC), "2025-10-29T06:00:00Z"),
        (datetime(2025, 10, 29, 6, 0, 0, 1, tzinfo=UTC), "2025-10-29T06:00:00.000001Z"),
        (datetime(2025, 10, 29, 8, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))), "2025-10-29T06:00:00Z"),
        (datetime(2025, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2025-01-01T05:00:00Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_datetimes_are_written_in_utc_with_z(value, written):
    assert serialize_datetime(value) == written
