"""Shape contracts in PyTorch's notation, e.g. ``(N, C, *)``, and the roles that carry them.

A pattern is a tuple of tokens: a letter (``N``, ``C``, ``D``...) binds one dimension, ``*``
binds any number of dimensions (the same ones wherever it appears), a digit string is a literal
size. Roles are checked in declaration order; the first role that binds a letter is named as its
source in error messages:

    expected shape (N, *) = (2, 3, 4) from input (N, C, *) = (2, 10, 3, 4); got (2, 3, 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arrays import fmt_shape

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

    def match(self, shape: tuple[int, ...], dims: Dims) -> Dims | None:
        """The bindings extended by ``shape``, or None when it does not fit."""
        star = self.pattern.index("*") if "*" in self.pattern else None
        if star is None and len(shape) != len(self.pattern):
            return None
        if star is not None and len(shape) < len(self.pattern) - 1:
            return None
        new = dict(dims)
        if star is None:
            pairs = list(zip(self.pattern, shape))
        else:
            tail = len(self.pattern) - star - 1
            rest = shape[star : len(shape) - tail]
            if "*" in new and new["*"] != tuple(rest):
                return None
            new["*"] = tuple(rest)
            pairs = list(zip(self.pattern[:star], shape[:star]))
            pairs += list(zip(self.pattern[star + 1 :], shape[len(shape) - tail :]))
        for token, size in pairs:
            if token.isdigit():
                if int(token) != size:
                    return None
            elif token in new and new[token] != size:
                return None
            else:
                new[token] = size
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


def check_shapes(roles: tuple[Role, ...], shapes: dict[str, tuple[int, ...]]) -> Binding:
    """Bind every present role's shape against its forms; raise InvalidInput on the first misfit."""
    from ..errors import InvalidInput

    binding = Binding()
    for r in roles:
        if r.name not in shapes:
            continue
        shape = tuple(shapes[r.name])
        for f in r.forms:
            new = f.match(shape, binding.dims)
            if new is not None:
                for letter in new.keys() - binding.dims.keys():
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
