"""The contract's error codes, as exceptions a resolver raises."""

from graphql import GraphQLError


class CodedError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": self.code})


class BadUserInput(CodedError):
    code = "BAD_USER_INPUT"


class NotFound(CodedError):
    code = "NOT_FOUND"


class Forbidden(CodedError):
    code = "FORBIDDEN"


class Unauthenticated(CodedError):
    code = "UNAUTHENTICATED"


class ServiceUnavailable(CodedError):
    # The database cannot answer now (models/availability.py): retryable. HTTP answers it
    # 503 with Retry-After.
    code = "SERVICE_UNAVAILABLE"
