"""All reference cases, gathered from the ``cases_*.py`` modules beside this one."""

import importlib
import pkgutil
from pathlib import Path

from .case import Case


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("cases_"):
            cases += importlib.import_module(f"{__package__}.{info.name}").CASES
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases


CASES = all_cases()
