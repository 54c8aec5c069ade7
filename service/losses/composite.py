"""Composites: a weighted sum of losses on the same tensors, with one backward pass for its gradient.

A request's composite is ``{"terms": [{"loss": <spec>, "weight": 1.0}, ...]}``; a named composite
(``dice_ce``) is a catalog entry whose params expand into such terms (``Loss.expand``). Each term
is checked as a loss of its own against the roles it declares; the composite's value is the
weighted sum of the terms' values and its gradient that of the sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.tensors import Decoded
from ..errors import ErrorItem, InvalidInput, Loc, clip, collect
from .prepare import Job, Work, parse_params, prepare
from .registry import Registry

COMPOSITE = "composite"  # the name a request's own composite is reported under


@dataclass(frozen=True, slots=True)
class Term:
    """One term as a request (or a named composite's expansion) gives it."""

    name: str
    params: dict[str, Any]
    reduction: str
    weight: float


@dataclass(eq=False, slots=True)
class CompositeJob(Work):
    """A checked composite: its terms as jobs of their own (sharing the converted arrays of the roles
    they have in common), their weights, and the gradient roles of the sum."""

    name: str
    terms: tuple[Job, ...]
    weights: tuple[float, ...]
    arrays: dict[str, np.ndarray]
    dtype: str
    grad_roles: tuple[str, ...]
    return_per_sample: bool = False
    return_elementwise = False  # a composite has no elementwise values

    @property
    def reduction(self) -> str | None:
        """The terms' reduction, when they agree."""
        reductions = {t.reduction for t in self.terms}
        return reductions.pop() if len(reductions) == 1 else None


def prepare_terms(
    registry: Registry,
    name: str,
    terms: list[Term],
    tensors: dict[str, Decoded],
    return_grad: bool | list[str],
    return_elementwise: bool,
    return_per_sample: bool = False,
    loc: Loc = ("loss",),
) -> CompositeJob:
    """Check every term against the roles it declares (a role no term takes is a 422), and the
    composite's own rules: terms reduce by mean or sum (not none), no elementwise values, one
    compute dtype."""
    errors: list[ErrorItem] = []
    if return_elementwise:
        errors.append(ErrorItem(("return_elementwise",), f"{name} has no elementwise values: it is a weighted sum"))
    jobs: list[Job] = []
    declared: set[str] = set()
    converted: dict[tuple[str, str, str], np.ndarray] = {}
    for i, term in enumerate(terms):
        where = (*loc, "terms", i, "loss")
        loss = registry.get(term.name, (*where, "name"))
        roles = {r.name for r in loss.roles}
        declared |= roles
        if loss.expand is not None:
            errors.append(ErrorItem((*where, "name"), f"{loss.name} is a composite itself; give its terms instead"))
            continue
        if term.reduction == "none":
            errors.append(ErrorItem((*where, "reduction"), "a term reduces by 'mean' or 'sum', not 'none'"))
            continue
        try:
            own = {r: t for r, t in tensors.items() if r in roles}
            job = prepare(
                registry, loss.name, term.params, term.reduction, own, return_grad, False,
                some_grads=True, return_per_sample=return_per_sample,
            )  # fmt: skip
        except InvalidInput as exc:
            errors += [under(where, term.name, e) for e in exc.errors]
            continue
        hold_once(job, converted)
        jobs.append(job)
    errors += untaken(tensors, return_grad, declared, f"term of {name}")
    dtypes = sorted({j.dtype for j in jobs})
    if len(dtypes) > 1:
        errors.append(ErrorItem(("inputs",), f"the terms of {name} compute in different dtypes ({', '.join(dtypes)})"))
    collect(errors)
    arrays = {r: a for j in jobs for r, a in j.arrays.items()}
    grads = tuple(dict.fromkeys(r for j in jobs for r in j.grad_roles))
    weights = tuple(t.weight for t in terms)
    return CompositeJob(name, tuple(jobs), weights, arrays, jobs[0].dtype, grads, return_per_sample)


def prepare_named(
    registry: Registry,
    name: str,
    raw_params: dict,
    reduction: str,
    tensors: dict[str, Decoded],
    return_grad: bool | list[str],
    return_elementwise: bool,
    return_per_sample: bool = False,
) -> CompositeJob:
    """A named composite (``dice_ce``): its own params checked, then expanded into terms."""
    loss = registry.get(name)
    assert loss.expand is not None
    errors = []
    if reduction not in loss.reductions:
        msg = f"{loss.name} does not accept reduction {reduction!r}; expected one of {', '.join(loss.reductions)}"
        errors.append(ErrorItem(("loss", "reduction"), msg))
    params, param_errors = parse_params(loss, raw_params)
    collect(errors + param_errors)
    terms, tensors = loss.expand(params, reduction, tensors)
    return prepare_terms(
        registry, loss.name, terms, tensors, return_grad, return_elementwise, return_per_sample, ("loss",)
    )


# What a composite's terms and a request's several losses have alike: they check the same tensors.


def hold_once(job: Job, converted: dict[tuple[str, str, str], np.ndarray]) -> None:
    """A role converted alike by two losses (or terms) is held once: the later takes the earlier's
    array (``converted`` is the request's)."""
    for role, arr in job.arrays.items():
        key = (role, arr.dtype.str, str(arr.shape))
        job.arrays[role] = converted.setdefault(key, arr)


def under(where: Loc, name: str, error: ErrorItem) -> ErrorItem:
    """An error of one loss among others (a term, a labelled loss): its own fields (the ``loss``
    loc ``prepare`` gives them) under ``where``, a tensor's message naming it ``name``."""
    if error.loc[:1] == ("loss",):
        return ErrorItem((*where, *error.loc[1:]), error.msg)
    return ErrorItem(error.loc, f"{name}: {error.msg}")


def untaken(tensors: dict, return_grad: bool | list[str], declared: set[str], who: str) -> list[ErrorItem]:
    """The roles given (and the gradient roles asked for) that no loss takes: ``who`` names one of
    them ("loss of the request", "term of composite")."""
    errors = [
        ErrorItem(("inputs", r), f"no {who} takes this role; they take {', '.join(sorted(declared))}")
        for r in tensors
        if r not in declared
    ]
    if isinstance(return_grad, list):
        errors += [
            ErrorItem(("return_grad", i), f"no {who} takes role {clip(r)}")
            for i, r in enumerate(return_grad)
            if r not in declared
        ]
    return errors


AnyJob = Job | CompositeJob  # what the engine computes
