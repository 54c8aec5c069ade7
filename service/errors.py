"""Domain errors, one type per problem status. The HTTP layer turns them into problem+json."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]

# What one problem may hold, whatever the request: its size must not follow a hostile input's.
MAX_ERRORS = 20  # errors listed; one more item counts the rest
ECHO_CHARS = 64  # characters of a client's name (a loss, a key, a role) quoted in a message or a loc
MAX_TEXT = 1000  # characters of one message or detail: a net under messages that quote clipped names


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``repr(text)``; of a long text, its start and its length: ``'abc...'... (1048576 characters)``."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def common_loc(locs: Iterable[Loc]) -> Loc:
    """The longest loc that starts every one of ``locs`` (their parent)."""
    it = iter(locs)
    prefix = next(it, ())
    for loc in it:
        if loc[: len(prefix)] != prefix:
            n = 0
            while n < len(prefix) and n < len(loc) and loc[n] == prefix[n]:
                n += 1
            prefix = prefix[:n]
            if not prefix:
                break
    return tuple(prefix)


@dataclass(frozen=True)
class ErrorItem:
    loc: Loc
    msg: str

    def text(self) -> str:
        place = ".".join(str(part) for part in self.loc)
        return f"{place}: {self.msg}" if place else self.msg

    def bounded(self) -> ErrorItem:
        """This error with a loc cut before any overlong name (the message quotes it, clipped) and
        a message of at most ``MAX_TEXT`` characters."""
        loc = self.loc
        for i, part in enumerate(loc):
            if isinstance(part, str) and len(part) > ECHO_CHARS:
                loc = loc[:i]
                break
        if loc is self.loc and len(self.msg) <= MAX_TEXT:
            return self
        return ErrorItem(loc, _cut(self.msg))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


class ServiceError(Exception):
    """Base of every error a client may see; ``status`` and ``title`` give the problem type."""

    status = 500
    title = "Internal error"
    slug = "internal"
    retry_after: int | None = None

    def __init__(
        self, detail: str | None = None, errors: Sequence[ErrorItem] = (), *, more: int = 0, more_loc: Loc = ()
    ) -> None:
        """``errors``, and ``more`` errors found but not listed (under ``more_loc``): at most
        ``MAX_ERRORS`` are kept, then one item counts the rest."""
        listed = [e.bounded() for e in islice(errors, MAX_ERRORS)]
        total = len(errors) + more
        if total > len(listed):
            rest = [e.loc for e in islice(errors, MAX_ERRORS, None)] + ([tuple(more_loc)] if more else [])
            n = total - len(listed)
            listed.append(ErrorItem(common_loc(rest), f"... and {n} more error{'s' if n > 1 else ''}").bounded())
        self.errors = listed
        if detail is None:
            detail = listed[0].text() if listed else self.title
            if total > 1:
                detail += f" (and {total - 1} more)"
        self.detail = _cut(detail)
        super().__init__(self.detail)

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


class RequestTimeout(ServiceError):
    status, title, slug = 408, "Request timeout", "request-timeout"


class TooLarge(ServiceError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UriTooLong(ServiceError):
    status, title, slug = 414, "URI too long", "uri-too-long"


class HeadersTooLarge(ServiceError):
    status, title, slug = 431, "Request header fields too large", "headers-too-large"


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
    """Raise ``cls`` carrying the collected errors (the first ``MAX_ERRORS``, and how many more), if
    there is any."""
    if errors:
        raise cls(errors=errors)


def unknown_keys(
    data: Mapping[str, object], known: Collection[str], loc: Loc, message: Callable[[str], str]
) -> InvalidInput:
    """The error for a mapping holding many unknown keys (more than ``MAX_ERRORS``): ``message`` of
    the first ones, and how many more there are, found without any work per key beyond them."""
    unknown = (k for k in data if k not in known)
    items = [ErrorItem((*loc, k), message(k)) for k in islice(unknown, MAX_ERRORS)]
    total = len(data) - sum(1 for k in known if k in data)
    return InvalidInput(errors=items, more=total - len(items), more_loc=loc)


def lower_first(text: str) -> str:
    """A library's sentence as one of our phrases: 'Input should be...' -> 'input should be...'."""
    return text[:1].lower() + text[1:]


def pydantic_message(error: ErrorDetails) -> str:
    """One pydantic error's message in our style."""
    return lower_first(error["msg"].removeprefix("Value error, "))


def from_pydantic(errors: Sequence[ErrorDetails], prefix: Loc = ()) -> InvalidInput:
    """pydantic's errors rebuilt as short messages at their places (the first ``MAX_ERRORS``, and
    how many more)."""
    items = []
    for e in islice(errors, MAX_ERRORS):
        text = f"unknown field {clip(str(e['loc'][-1]))}" if e["type"] == "extra_forbidden" else pydantic_message(e)
        items.append(ErrorItem((*prefix, *e["loc"]), text))
    rest = errors[MAX_ERRORS:]
    return InvalidInput(errors=items, more=len(rest), more_loc=common_loc((*prefix, *e["loc"]) for e in rest))
