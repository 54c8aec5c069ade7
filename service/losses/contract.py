"""Shape contracts in PyTorch's notation, e.g. ``(N, C, *)``, and the roles that carry them.

A pattern is a tuple of tokens: a letter (``N``, ``C``, ``D``...) binds one dimension, ``*``
binds any number of dimensions (the same ones wherever it appears), a digit string is a literal
size. Roles are checked in declaration order; the first role that binds a letter is named as its
source in error messages:

    expected shape (N, *) = (2, 3, 4) from input (N, C, *) = (2, 10, 3, 4); got (2, 3, 5)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import cast

from ..arrays import fmt_shape
from ..errors import InvalidInput

FLOAT, INTEGER, EITHER = "float", "integer", "either"

Dims = dict[str, "int | tuple[int, ...]"]


@dataclass(frozen=True)
class Form:
    """One accepted shape of a role, with the dtype kind that shape means (``float``/``integer``)."""

    pattern: tuple[str, ...]
    kind: str
    note: str = ""

    def __str__(self) -> str:
        return "(" + ", ".join(self.pattern) + ")"

    @property
    def min_rank(self) -> int:
        return sum(1 for t in self.pattern if t != "*")

    @functools.cached_property
    def _parts(self) -> tuple[tuple, bool, tuple]:
        """(tokens before ``*``, whether there is a ``*``, tokens after it); literals as ints."""
        tokens = tuple(int(t) if t.isdigit() else t for t in self.pattern)
        if "*" not in tokens:
            return tokens, False, ()
        star = tokens.index("*")
        return tokens[:star], True, tokens[star + 1 :]

    def match(self, shape: tuple[int, ...], dims: Dims) -> Dims | None:
        """The bindings extended by ``shape``, or None when it does not fit."""
        head, star, tail = self._parts
        n, fixed = len(shape), len(head) + len(tail)
        if n < fixed or (not star and n != fixed):
            return None
        new = dict(dims)
        if star:
            rest = tuple(shape[len(head) : n - len(tail)])
            if new.setdefault("*", rest) != rest:
                return None
        for token, size in zip(head + tail, shape[: len(head)] + shape[n - len(tail) :], strict=True):
            if type(token) is int:
                if token != size:
                    return None
            elif new.setdefault(token, size) != size:
                return None
        return new

    def bound(self, dims: Dims) -> str | None:
        """The pattern with its letters replaced by their sizes, when every letter is bound."""
        out: list[int] = []
        for token in self.pattern:
            if token.isdigit():
                out.append(int(token))
            elif token not in dims:
                return None
            elif token == "*":
                out.extend(dims["*"])  # type: ignore[arg-type]
            else:
                out.append(dims[token])  # type: ignore[arg-type]
        return fmt_shape(tuple(out))


def form(text: str, kind: str = FLOAT, note: str = "") -> Form:
    """``form("(N, C, *)")`` -> Form(("N", "C", "*"), "float")."""
    inner = text.strip().strip("()").strip()
    tokens = tuple(t.strip() for t in inner.split(",") if t.strip()) if inner else ()
    return Form(tokens, kind, note)


@dataclass(frozen=True)
class Role:
    """A named tensor a loss takes."""

    name: str
    forms: tuple[Form, ...]
    differentiable: bool = True
    optional: bool = False
    description: str = ""
    batch_dim: int | None = 0
    # dims in which batch-mates may differ: zero-padded to the longest when batched (CTC's T and S)
    ragged_dims: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        kinds = {f.kind for f in self.forms}
        return kinds.pop() if len(kinds) == 1 else EITHER

    @property
    def shape(self) -> str:
        if len(self.forms) == 1:
            return str(self.forms[0])
        return " or ".join(f"{f} {f.note or f.kind}".strip() for f in self.forms)


def role(name: str, *forms: str | Form, kind: str = FLOAT, **kw: object) -> Role:
    """``role("input", "(N, C, *)")``; forms given as text take ``kind``."""
    parsed = tuple(f if isinstance(f, Form) else form(f, kind) for f in forms)
    return Role(name, parsed, **kw)  # type: ignore[arg-type]


@dataclass
class Binding:
    """What checking the shapes found: the letters' sizes and each role's chosen form."""

    dims: Dims = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    sources: dict[str, tuple[str, Form, tuple[int, ...]]] = field(default_factory=dict)

    def size(self, letter: str) -> int:
        """The size bound to ``letter``: an int for every letter (``*`` alone binds a tuple)."""
        return cast(int, self.dims[letter])


def check_shapes(roles: tuple[Role, ...], shapes: dict[str, tuple[int, ...]]) -> Binding:
    """Bind every present role's shape against its forms; raise InvalidInput on the first misfit."""
    binding = Binding()
    for r in roles:
        if r.name not in shapes:
            continue
        shape = tuple(shapes[r.name])
        for f in r.forms:
            new = f.match(shape, binding.dims)
            if new is not None:
                for letter in new:
                    if letter not in binding.sources:
                        binding.sources[letter] = (r.name, f, shape)
                binding.dims = new
                binding.forms[r.name] = f
                break
        else:
            raise InvalidInput.at(("inputs", r.name), _misfit(r, shape, binding))
    return binding


def _misfit(r: Role, shape: tuple[int, ...], binding: Binding) -> str:
    expected = []
    sources: list[str] = []
    for f in r.forms:
        bound = f.bound(binding.dims)
        free = [t for t in f.pattern if not t.isdigit() and t not in binding.dims]
        expected.append(f"{f} = {bound}" if bound and not free else str(f))
        for token in f.pattern:
            src = binding.sources.get(token)
            if src and src[0] != r.name:
                text = f"{src[0]} {src[1]} = {fmt_shape(src[2])}"
                if text not in sources:
                    sources.append(text)
    msg = "expected shape " + " or ".join(expected)
    if sources:
        msg += " from " + " and ".join(sources)
    elif all(not f.match(shape, {}) for f in r.forms) and all("*" in f.pattern for f in r.forms):
        low = min(f.min_rank for f in r.forms)
        msg += f" (at least {low} dimension{'s' if low != 1 else ''})"
    return f"{msg}; got {fmt_shape(shape)}"
