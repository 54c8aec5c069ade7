"""The catalog: canonical names, aliases and lookup with close-match suggestions."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

from ..errors import Loc, UnknownLoss
from .base import Loss


@functools.lru_cache(maxsize=4096)
def normalize(name: str) -> str:
    """``CrossEntropyLoss``, ``cross_entropy`` and ``crossentropyloss`` all become ``crossentropy``."""
    key = re.sub(r"[\s_\-]", "", name).lower()
    return key[:-4] if key.endswith("loss") and len(key) > 4 else key


class Registry:
    def __init__(self, losses: Iterable[Loss]) -> None:
        self.losses: dict[str, Loss] = {}
        self._index: dict[str, str] = {}
        for loss in losses:
            if loss.name in self.losses:
                raise ValueError(f"duplicate loss {loss.name!r}")
            self.losses[loss.name] = loss
            for alias in (loss.name, *loss.aliases):
                key = normalize(alias)
                if self._index.setdefault(key, loss.name) != loss.name:
                    raise ValueError(f"alias {alias!r} of {loss.name!r} is taken")

    def __iter__(self):
        return iter(self.losses.values())

    def __len__(self) -> int:
        return len(self.losses)

    def get(self, name: str, loc: Loc = ("loss",)) -> Loss:
        found = self._index.get(normalize(name))
        if found is not None:
            return self.losses[found]
        raise UnknownLoss.at(loc, self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        query = normalize(name)
        scored = sorted(((difflib.SequenceMatcher(None, query, k).ratio(), k) for k in self._index), reverse=True)
        best = scored[0][0] if scored else 0.0
        # only names nearly as close as the closest one: 'cross_entropyy' suggests cross_entropy, not bce
        keys = [k for score, k in scored if score >= max(0.6, best - 0.1)]
        close = list(dict.fromkeys(self._index[k] for k in keys))[:3]
        msg = f"unknown loss {name!r}"
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        else:
            msg += "; see GET /v1/losses for the catalog"
        return msg


def default_registry() -> Registry:
    from .catalog import ALL_LOSSES

    return Registry(ALL_LOSSES)
