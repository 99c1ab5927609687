"""Input types of the read API."""

from enum import Enum

import strawberry

from sessiongraph.models.fields import SESSION_FILTERS
from sessiongraph.schema.types import graphql_annotation


@strawberry.enum
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class SessionOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    LAST_ACTIVITY_AT = "LAST_ACTIVITY_AT"
    TOKENS_USED = "TOKENS_USED"


@strawberry.input
class SessionOrder:
    field: SessionOrderField = SessionOrderField.CREATED_AT
    direction: OrderDirection = OrderDirection.DESC


def with_declared_filters(cls):
    """Gives an input class, before `strawberry.input` makes it one, an optional field for
    each declared filter of the session list (models/fields.SESSION_FILTERS). The models'
    Enums are GraphQL enums already (schema/types.py wraps them), `Json` becomes JSON."""
    cls.__annotations__ = {f.name: graphql_annotation(f.annotation) for f in SESSION_FILTERS}
    for f in SESSION_FILTERS:
        setattr(cls, f.name, strawberry.field(default=None, description=f.description))
    return cls


@strawberry.input
@with_declared_filters
class SessionFilter:
    pass
