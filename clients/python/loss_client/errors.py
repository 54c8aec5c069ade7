"""The error a client raises for every answer that is not a success."""

from __future__ import annotations

from typing import Any

import httpx


def error_line(error: dict[str, Any]) -> str:
    """One ``errors[]`` entry as the service writes it in ``detail``: ``inputs.target: msg``."""
    place = ".".join(str(part) for part in error.get("loc") or ())
    msg = str(error.get("msg", ""))
    return f"{place}: {msg}" if place else msg


class LossServiceError(Exception):
    """An error answer (``application/problem+json``, RFC 9457) from the service.

    ``status``, ``title`` and ``detail`` are the problem's; ``errors`` its list of
    ``{"loc": [...], "msg": "..."}``; ``problem`` the whole body. ``str()`` is the detail, followed
    by one ``loc: msg`` line per error where the errors say more than the detail does.
    """

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, Any]], problem: dict[str, Any]
    ) -> None:
        super().__init__(status, title, detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.problem = problem

    def __str__(self) -> str:
        lines = [error_line(error) for error in self.errors]
        if lines == [self.detail]:
            lines = []
        return "\n".join([self.detail, *(f"  {line}" for line in lines)])

    @classmethod
    def from_response(cls, response: httpx.Response) -> LossServiceError:
        """The problem in ``response``; an answer that is not one (a proxy's HTML page) gives its
        status, reason phrase and the start of its text."""
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            text = " ".join(response.text.split())[:200]
            title = response.reason_phrase or f"HTTP {response.status_code}"
            return cls(response.status_code, title, text or title, [], {})
        errors = [e for e in problem.get("errors") or () if isinstance(e, dict)]
        title = str(problem.get("title") or response.reason_phrase)
        detail = str(problem.get("detail") or title)
        return cls(int(problem.get("status") or response.status_code), title, detail, errors, problem)
