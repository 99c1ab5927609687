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


STORED = [
    datetime(2025, 10, 29, 6, 0, 1, 513288, tzinfo=UTC),
    datetime(2025, 10, 29, 6, 0, 0, tzinfo=UTC),
    datetime(2025, 10, 29, 8, 30, 0, 1, tzinfo=timezone(timedelta(hours=2, minutes=30))),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 1, 1, 12, 0),  # naive: taken as UTC
]


async def test_stored_times_read_back_as_the_same_utc_instants(engine, org):
    """Each database keeps the instant; reading gives it back as an aware UTC datetime,
    NULL as None (SQLite's text is read by a faster way of its own)."""
    from sqlalchemy import select, update

    from sessiongraph.models import Turn
    from tests.conftest import store, turn_

    await store(engine, org.alice, turns=[turn_(f"t{n}", n) for n in range(len(STORED) + 1)])
    async with engine.begin() as connection:
        ids = (await connection.execute(select(Turn.id).order_by(Turn.position))).scalars().all()
        for turn_id, value in zip(ids, STORED):
            await connection.execute(update(Turn).where(Turn.id == turn_id).values(completed_at=value))
        await connection.execute(update(Turn).where(Turn.id == ids[-1]).values(completed_at=None))
        read = (await connection.execute(select(Turn.completed_at).order_by(Turn.position))).scalars().all()
    expected = [v if v.tzinfo else v.replace(tzinfo=UTC) for v in STORED]
    assert read[:-1] == expected and all(v.tzinfo is UTC for v in read[:-1])
    assert read[-1] is None


def test_sqlite_text_of_a_time_is_what_sqlalchemys_datetime_binds():
    """UTCDateTime binds its SQLite text in one call of its own; it must be what its
    process_bind_param and SQLAlchemy's DateTime would bind."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from sessiongraph.models.types import UTCDateTime

    dialect = sqlite.dialect()
    general = DateTime().dialect_impl(dialect).bind_processor(dialect)
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    expected = [general(UTCDateTime().process_bind_param(v, dialect)) for v in [*STORED, None]]
    assert [process(v) for v in [*STORED, None]] == expected
    assert expected[0] == "2025-10-29 06:00:01.513288" and expected[3] == "0001-01-01 00:00:00.000000"
