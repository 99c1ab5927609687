"""JSON containment as PostgreSQL's jsonb `@>` has it, in Python: what the session list's
`metadata` and `endpoint` filters mean on SQLite (registered on every SQLite connection as
the SQL function `sg_json_contains`), so that both databases give the same answers.

The rules (PostgreSQL's JsonbDeepContains): an object contains another when it has each of
the other's keys with a value that contains the other's value; an array contains another
when each of the other's elements is contained in one of its own (order and duplicates do
not matter); a scalar contains only an equal scalar of the same JSON type, numbers equal by
value (1 and 1.0 are, "1" and 1 are not, true and 1 are not); an object never contains an
array nor the other way round. Numbers are read as Decimal, as PostgreSQL's numeric reads
them, so 0.3 and 0.30000000000000001 differ as they do there.
"""

import json
from decimal import Decimal
from functools import lru_cache

def contains(stored, wanted) -> bool:
    """Whether the JSON value `stored` contains `wanted` (both parsed)."""
    if isinstance(wanted, dict):
        if not isinstance(stored, dict):
            return False
        for key, value in wanted.items():
            if key not in stored or not _member_contains(stored[key], value):
                return False
        return True
    if isinstance(wanted, list):
        if not isinstance(stored, list):
            return False
        for value in wanted:
            if _is_container(value):
                if not any(_is_container(s) and contains(s, value) for s in stored):
                    return False
            elif not any(_same_scalar(s, value) for s in stored if not _is_container(s)):
                return False
        return True
    return _same_scalar(stored, wanted)


def _member_contains(stored, wanted) -> bool:
    """An object's value against the wanted one: scalars equal, containers contain."""
    if _is_container(stored) != _is_container(wanted):
        return False
    return contains(stored, wanted) if _is_container(wanted) else _same_scalar(stored, wanted)


def _is_container(value) -> bool:
    return isinstance(value, (dict, list))


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"


def _same_scalar(a, b) -> bool:
    return _kind(a) == _kind(b) and a == b


def parse(text: str):
    """JSON text -> value, numbers as PostgreSQL's numeric reads them."""
    return json.loads(text, parse_float=Decimal)


@lru_cache(maxsize=256)
def _parsed_wanted(text: str):
    return parse(text)


def sql_json_contains(stored_text: str | None, wanted_text: str | None) -> int:
    """The SQL function: 1 when the stored JSON text contains the wanted one (the filter's
    value, the same on every row of a statement: parsed once), else 0; NULL contains
    nothing."""
    if stored_text is None or wanted_text is None:
        return 0
    return int(contains(parse(stored_text), _parsed_wanted(wanted_text)))
