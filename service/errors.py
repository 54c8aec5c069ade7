"""Domain errors, one type per problem status. The HTTP layer turns them into problem+json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ErrorItem:
    loc: Loc
    msg: str

    def text(self) -> str:
        place = ".".join(str(part) for part in self.loc)
        return f"{place}: {self.msg}" if place else self.msg


class ServiceError(Exception):
    """Base of every error a client may see; ``status`` and ``title`` give the problem type."""

    status = 500
    title = "Internal error"
    slug = "internal"
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, errors: Sequence[ErrorItem] = ()) -> None:
        self.errors = list(errors)
        if detail is None:
            detail = self.errors[0].text() if self.errors else self.title
            if len(self.errors) > 1:
                detail += f" (and {len(self.errors) - 1} more)"
        self.detail = detail
        super().__init__(detail)

    @classmethod
    def at(cls, loc: Loc, msg: str) -> Self:
        """One error at one place: ``InvalidInput.at(("inputs", "target"), "expected ...")``."""
        return cls(errors=[ErrorItem(tuple(loc), msg)])


class MalformedRequest(ServiceError):
    status, title, slug = 400, "Malformed request", "malformed-request"


class Unauthenticated(ServiceError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class UnknownLoss(ServiceError):
    status, title, slug = 404, "Unknown loss", "unknown-loss"


class NotFound(ServiceError):
    status, title, slug = 404, "Not found", "not-found"


class MethodNotAllowed(ServiceError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


class TooLarge(ServiceError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(ServiceError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class InvalidInput(ServiceError):
    status, title, slug = 422, "Invalid input", "invalid-input"


class Overloaded(ServiceError):
    status, title, slug = 429, "Too many requests", "overloaded"
    retry_after = 1


class NotReady(ServiceError):
    status, title, slug = 503, "Service unavailable", "not-ready"
    retry_after = 1


class DeadlineExceeded(ServiceError):
    status, title, slug = 504, "Deadline exceeded", "deadline-exceeded"


class ComputeFailed(ServiceError):
    status, title, slug = 500, "Compute failed", "compute-failed"


def collect(errors: list[ErrorItem], cls: type[ServiceError] = InvalidInput) -> None:
    """Raise ``cls`` carrying every collected error, if there is any."""
    if errors:
        raise cls(errors=errors)


def lower_first(text: str) -> str:
    """A library's sentence as one of our phrases: 'Input should be...' -> 'input should be...'."""
    return text[:1].lower() + text[1:]


def pydantic_message(error: ErrorDetails) -> str:
    """One pydantic error's message in our style."""
    return lower_first(error["msg"].removeprefix("Value error, "))


def from_pydantic(errors: Sequence[ErrorDetails], prefix: Loc = ()) -> InvalidInput:
    """pydantic's errors rebuilt as short messages at their places."""
    items = []
    for e in errors:
        text = f"unknown field {e['loc'][-1]!r}" if e["type"] == "extra_forbidden" else pydantic_message(e)
        items.append(ErrorItem((*prefix, *e["loc"]), text))
    return InvalidInput(errors=items)
