"""Input types of the read API."""

import uuid
from datetime import datetime
from enum import Enum

import strawberry


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


@strawberry.input
class SessionFilter:
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the title or the external id."
    )
    created_after: datetime | None = None
    created_before: datetime | None = None
    external_ids: list[str] | None = strawberry.field(default=None, description="Only these external ids.")
    user_id: uuid.UUID | None = strawberry.field(
        default=None,
        description="Only this owner's sessions (an ADMIN's filter; a USER sees only its own anyway).",
    )
