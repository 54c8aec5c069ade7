"""Write the README's catalog table from the catalog itself: ``python -m service.catalog_doc [PATH]``.

The table sits between two markers in README.md; a test holds it equal to what this renders, so
the catalog is written once (in ``service/losses/``) and the README follows.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .losses.catalog import ALL_LOSSES
from .schemas.catalog import loss_info

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- catalog:start (python -m service.catalog_doc) -->", "<!-- catalog:end -->"


def table() -> str:
    rows = [
        "| loss | category | roles | reductions | reference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for loss in ALL_LOSSES:
        info = loss_info(loss)
        roles = ", ".join(f"`{r.name}` {r.shape}" + ("" if r.differentiable else " (no gradient)") for r in info.roles)
        reductions = ", ".join(info.reductions) + ("" if info.decomposable else " (whole request)")
        if info.whole_request_when:
            reductions += f" (whole request with {info.whole_request_when})"
        rows.append(f"| `{info.name}` | {info.category} | {roles} | {reductions} | {info.reference} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the table."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the markers {START!r} and {END!r}")
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else README
    path.write_text(render(path.read_text()))
    print(f"wrote the catalog table in {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
