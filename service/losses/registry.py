"""The catalog: canonical names, aliases and lookup with close-match suggestions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from ..errors import ECHO_CHARS, Loc, UnknownLoss, clip
from .base import Loss

SUGGEST_CUTOFF = 0.6  # the least difflib ratio of a suggested name


def normalize(name: str) -> str:
    """``CrossEntropyLoss``, ``cross_entropy`` and ``crossentropyloss`` all become ``crossentropy``."""
    key = re.sub(r"[\s_\-]", "", name).lower()
    return key[:-4] if key.endswith("loss") and len(key) > 4 else key


class Registry:
    def __init__(self, losses: Iterable[Loss]) -> None:
        self.losses: dict[str, Loss] = {}
        self._index: dict[str, str] = {}  # normalized alias -> name
        self._spelled: dict[str, str] = {}  # each alias as declared -> name: most lookups end here
        for loss in losses:
            if loss.name in self.losses:
                raise ValueError(f"duplicate loss {loss.name!r}")
            self.losses[loss.name] = loss
            for alias in (loss.name, *loss.aliases):
                key = normalize(alias)
                if self._index.setdefault(key, loss.name) != loss.name:
                    raise ValueError(f"alias {alias!r} of {loss.name!r} is taken")
                self._spelled[alias] = loss.name
        # A name is short: a longer one is unknown at once, neither normalized nor compared (no
        # work, and no cache, that grows with a client's text).
        self.max_name = max([ECHO_CHARS, *map(len, self._spelled)])

    def __iter__(self):
        return iter(self.losses.values())

    def __len__(self) -> int:
        return len(self.losses)

    def get(self, name: str, loc: Loc = ("loss",)) -> Loss:
        found = self._spelled.get(name)
        if found is None and len(name) <= self.max_name:
            found = self._index.get(normalize(name))
        if found is not None:
            return self.losses[found]
        raise UnknownLoss.at(loc, self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        msg = f"unknown loss {clip(name)}"
        close = self._close(name) if len(name) <= self.max_name else []
        if close:
            msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        else:
            msg += "; see GET /v1/losses for the catalog"
        return msg

    def _close(self, name: str) -> list[str]:
        """Up to three names close to ``name`` (at most ``max_name`` characters: bounded work)."""
        query = normalize(name)
        matcher = difflib.SequenceMatcher(None, query)
        scored = []
        for key in self._index:
            matcher.set_seq2(key)
            if matcher.real_quick_ratio() >= SUGGEST_CUTOFF and matcher.quick_ratio() >= SUGGEST_CUTOFF:
                scored.append((matcher.ratio(), key))
        scored.sort(reverse=True)
        best = scored[0][0] if scored else 0.0
        # only names nearly as close as the closest one: 'cross_entropyy' suggests cross_entropy, not bce
        keys = [k for score, k in scored if score >= max(SUGGEST_CUTOFF, best - 0.1)]
        return list(dict.fromkeys(self._index[k] for k in keys))[:3]


def default_registry() -> Registry:
    from .catalog import ALL_LOSSES

    return Registry(ALL_LOSSES)
