"""Deployer plugins: losses named by ``LOSS_SERVICE_PLUGINS`` and the ``loss_service.losses`` entry points.

A plugin object is a :class:`Loss` (used as is), an ``nn.Module`` subclass written as PyTorch users
write losses (hyper-parameters in ``__init__``, typed, with defaults; roles as ``forward``'s
parameters), or a list of them. A module becomes a ``Loss`` here: its params model is built from
the ``__init__`` signature, its roles from ``forward``'s, and ``@loss_plugin(...)`` may add what the
signature cannot say (shape contracts, kinds, validators, mean weights, category, reference).

- A module that takes ``reduction`` is computed with ``reduction="none"``: its elementwise values
  are reduced by the service (mean, sum or none) and batched like a built-in's.
- A module that does not returns one scalar: the value itself. Its only reduction is ``"mean"``
  (the default, so a request names none), it is not decomposable and runs alone.

Instances are made per (params, device, dtype), kept (``INSTANCES_KEPT`` per plugin), moved to
the compute device and dtype, in eval mode, without gradients of their own.

Everything here runs at start-up: a plugin that cannot be loaded raises ``PluginError``, which
names the plugin and the reason, and the service does not start. Nothing a request says is ever
imported or run: requests name losses of the registry built here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import torch
from pydantic import BeforeValidator, ValidationError, create_model
from torch import Tensor, nn

from ..errors import pydantic_message
from .base import Inputs, Loss, MeanWeights, Params, Validator
from .contract import Role, role
from .registry import Registry, normalize

ENTRY_POINT_GROUP = "loss_service.losses"
INSTANCES_KEPT = 32  # module instances per plugin, one per (params, device, dtype)
KEY_CHARS = 1 << 16  # params longer than this as JSON (a huge list) make an instance per request
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
LEGACY = ("size_average", "reduce")  # torch.nn's deprecated arguments beside reduction: never params
SCALARS = (bool, int, float, str)
JSON_TYPES = "float, int, bool, str, a Literal, an Optional, or a list or tuple of them"
M = TypeVar("M", bound=type[nn.Module])


class PluginError(Exception):
    """A plugin that cannot be served: which one (as the deployer named it) and why."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin, self.reason = plugin, reason
        super().__init__(f"plugin {plugin}: {reason}")


@dataclass(frozen=True)
class Declaration:
    """What ``@loss_plugin`` adds to a module (see ``service.plugins``)."""

    name: str | None = None
    aliases: tuple[str, ...] = ()
    summary: str | None = None
    category: str = "custom"
    reference: str | None = None
    roles: tuple[Role, ...] = ()
    elementwise_shape: str | None = None
    validate: tuple[Validator, ...] = ()
    mean_weights: MeanWeights | None = None


def loss_plugin(
    *,
    name: str | None = None,
    aliases: Sequence[str] = (),
    summary: str | None = None,
    category: str = "custom",
    reference: str | None = None,
    roles: Sequence[Role] = (),
    elementwise_shape: str | None = None,
    validate: Sequence[Validator] = (),
    mean_weights: MeanWeights | None = None,
) -> Callable[[M], M]:
    """Declare what a module's signature cannot say; the class itself is returned unchanged."""
    declaration = Declaration(
        name, tuple(aliases), summary, category, reference, tuple(roles), elementwise_shape, tuple(validate),
        mean_weights,
    )  # fmt: skip

    def declare(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError("@loss_plugin decorates an nn.Module subclass")
        cls.__loss_plugin__ = declaration  # type: ignore[attr-defined]
        return cls

    return declare


# --- the registry: built-in losses, then the plugins -------------------------------------------


@functools.lru_cache(maxsize=4)
def registry(specs: tuple[str, ...] = ()) -> Registry:
    """The catalog with the plugins of ``specs`` (``module:attr``) and of the entry points; raises
    ``PluginError`` for the first plugin that cannot be served. Built once per process."""
    from .catalog import ALL_LOSSES

    losses = list(ALL_LOSSES)
    # normalized name -> (the name as spelled, its loss, who declared it)
    owners = {normalize(a): (a, x, f"the built-in loss {x.name!r}") for x in ALL_LOSSES for a in (x.name, *x.aliases)}
    seen: set[int] = set()
    for label, obj in [*(_from_setting(spec) for spec in specs), *_from_entry_points()]:
        if id(obj) in seen:  # the same object named twice (in the setting and by an entry point)
            continue
        seen.add(id(obj))
        for loss in as_losses(label, obj):
            mine = (loss, f"{loss.name!r} of plugin {label}")
            for alias in (loss.name, *loss.aliases):
                spelled, owner, who = owners.setdefault(normalize(alias), (alias, *mine))
                if owner is not loss:
                    same = "" if spelled == alias else " (names are compared ignoring case, '_', '-' and 'loss')"
                    raise PluginError(label, f"name {alias!r} is already in use by {who}{same}")
            losses.append(loss)
    return Registry(losses)


def _from_setting(spec: str) -> tuple[str, object]:
    label = repr(spec)
    module, sep, attr = spec.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise PluginError(label, "expected 'module:attr'")
    try:
        obj: object = importlib.import_module(module.strip())
    except Exception as exc:
        raise PluginError(label, f"cannot import {module.strip()!r}: {_one_line(exc)}") from None
    path = module.strip()
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise PluginError(label, f"{path!r} has no attribute {part!r}")
        obj, path = getattr(obj, part), f"{path}.{part}"
    return label, obj


def _from_entry_points() -> list[tuple[str, object]]:
    found = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f" of {ep.dist.name}" if ep.dist is not None else ""
        label = f"{ep.value!r} (entry point {ep.name!r}{dist})"
        try:
            found.append((label, ep.load()))
        except Exception as exc:
            raise PluginError(label, f"cannot load it: {_one_line(exc)}") from None
    return found


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}" if lines else type(exc).__name__


def as_losses(label: str, obj: object) -> list[Loss]:
    """The losses a plugin object stands for: a Loss, a module class, or a list or tuple of them."""
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    losses = []
    for item in items:
        if isinstance(item, Loss):
            if not (isinstance(item.params, type) and issubclass(item.params, Params)):
                raise PluginError(label, f"the params of {item.name!r} are not a subclass of Params")
            loss = item
        elif isinstance(item, type) and issubclass(item, nn.Module):
            loss = module_loss(item, label)
        else:
            raise PluginError(label, f"expected an nn.Module subclass, a Loss, or a list of them; got {_what(item)}")
        for alias in (loss.name, *loss.aliases):
            if not NAME.fullmatch(alias):
                raise PluginError(label, f"{alias!r} is no loss name (a letter, then letters, digits, '_' or '-'; "
                                         "at most 64 characters)")  # fmt: skip
        losses.append(loss)
    return losses


def _what(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if isinstance(obj, types.FunctionType):
        return f"the function {obj.__name__}"
    if isinstance(obj, nn.Module):
        return f"an instance of {type(obj).__name__} (name the class: instances are made per params)"
    return f"an instance of {type(obj).__name__}"


# --- a module as a Loss -----------------------------------------------------------------------


def module_loss(cls: type[nn.Module], label: str) -> Loss:
    declared: Declaration = cls.__dict__.get("__loss_plugin__") or Declaration()
    fields, elementwise = _hyper_parameters(cls, label)
    with warnings.catch_warnings():  # a param named like a pydantic method (json, copy) shadows it: harmless here
        warnings.simplefilter("ignore", UserWarning)
        params = create_model(f"{cls.__name__}Params", __base__=Params, __module__=cls.__module__, **fields)
    _check_defaults(params, fields, label)
    roles = _roles(cls, declared, label)
    if declared.mean_weights is not None and not elementwise:
        raise PluginError(label, "mean_weights needs a module whose __init__ takes reduction")
    name = declared.name or snake_case(cls.__name__)
    aliases = [*declared.aliases, cls.__name__, cls.__name__.lower()]
    doc = (cls.__dict__.get("__doc__") or "").strip()
    instances = _Instances(cls, params, {"reduction": "none"} if elementwise else {})
    try:
        return Loss(
            name=name,
            summary=declared.summary or (doc.splitlines()[0] if doc else f"{cls.__name__} (a deployer plugin)"),
            category=declared.category,
            reference=declared.reference or f"deployer plugin {cls.__module__}:{cls.__qualname__}",
            roles=roles,
            forward=_elementwise(instances, name, roles[0]) if elementwise else _scalar(instances, name),
            elementwise_shape=declared.elementwise_shape or ("(N, *)" if elementwise else "() the module's scalar"),
            params=params,
            mean_weights=declared.mean_weights,
            reductions=("mean", "sum", "none") if elementwise else ("mean",),
            aliases=tuple(a for a in dict.fromkeys(aliases) if a != name),
            validate=declared.validate,
            decomposable=elementwise,
        )
    except ValueError as exc:
        raise PluginError(label, str(exc)) from None


def snake_case(name: str) -> str:
    """``MyLoss`` -> ``my_loss``, ``MSELoss`` -> ``mse_loss``, ``Focal2d`` -> ``focal2d``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _signature(func: Callable, what: str, label: str) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """``func``'s parameters after ``self``, and its resolved annotations."""
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise PluginError(label, f"cannot resolve the annotations of {what}: {_one_line(exc)}") from None
    parameters = list(inspect.signature(func).parameters.values())[1:]
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind == p.VAR_POSITIONAL else "**"
            raise PluginError(label, f"{what} takes {star}{p.name}; every parameter must be named")
        if p.kind == p.POSITIONAL_ONLY:
            raise PluginError(label, f"{what} parameter {p.name!r} is positional-only; it must be passed by name")
    return parameters, hints


def _hyper_parameters(cls: type[nn.Module], label: str) -> tuple[dict[str, Any], bool]:
    """The params model's fields from ``__init__``, and whether it takes ``reduction``."""
    if cls.__init__ is nn.Module.__init__:  # no __init__ of its own: no hyper-parameters
        return {}, False
    parameters, hints = _signature(cls.__init__, "__init__", label)
    names = {p.name for p in parameters}
    fields: dict[str, Any] = {}
    for p in parameters:
        if p.name == "reduction" or (p.name in LEGACY and "reduction" in names):
            continue
        where = f"__init__ parameter {p.name!r}"
        if p.default is p.empty:
            raise PluginError(label, f"{where} has no default; every hyper-parameter needs one")
        if p.name.startswith("_"):
            raise PluginError(label, f"{where} starts with '_'; params are public names")
        if p.name in hints:
            tp = _json_type(hints[p.name])
            if tp is None:
                raise PluginError(label, f"{where}: {_type_name(hints[p.name])} is no JSON param ({JSON_TYPES})")
        else:
            tp = _type_of(p.default)
            if tp is None:
                raise PluginError(label, f"{where} has no annotation, and its default {p.default!r} tells no type")
        fields[p.name] = (tp, p.default)
    return fields, "reduction" in names


def _json_type(tp: Any) -> Any:
    """The params model's type for an annotation, or None when it is no JSON param."""
    if tp in SCALARS or tp is types.NoneType:
        return tp
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        inner = _json_type(args[0])
        return None if inner is None else Annotated[(inner, *tp.__metadata__)]
    if origin is Literal:
        return tp if all(type(a) in SCALARS for a in args) else None
    if origin in (Union, types.UnionType):
        parts = [_json_type(a) for a in args]
        return None if any(p is None for p in parts) else Union[tuple(parts)]  # noqa: UP007
    if origin is list and len(args) == 1 and args[0] in SCALARS:
        return tp
    if origin is tuple and args and all(a in SCALARS for a in args if a is not Ellipsis):
        if Ellipsis in args and (len(args) != 2 or args[1] is not Ellipsis):
            return None
        return Annotated[tp, BeforeValidator(_tuple)]  # JSON sends an array: strict tuples refuse lists
    return None


def _tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _type_of(default: object) -> Any:
    """The type of an unannotated hyper-parameter, from its default."""
    if type(default) in SCALARS:
        return type(default)
    if isinstance(default, (list, tuple)) and default and all(type(v) in (int, float) for v in default):
        item = float if any(type(v) is float for v in default) else int
        return list[item] if isinstance(default, list) else _json_type(tuple[item, ...])  # type: ignore[valid-type]
    return None


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and not get_args(tp) else repr(tp).replace("typing.", "")


def _check_defaults(params: type[Params], fields: dict[str, Any], label: str) -> None:
    """Each default as a client could send it: valid JSON of the param's type."""
    for name, (_, default) in fields.items():
        try:
            params.model_validate_json(json.dumps({name: default}))
        except (TypeError, ValueError) as exc:
            why = pydantic_message(exc.errors()[0]) if isinstance(exc, ValidationError) else "it is not JSON"
            raise PluginError(
                label, f"__init__ parameter {name!r}: the default {default!r} is no valid value ({why})"
            ) from None


def _roles(cls: type[nn.Module], declared: Declaration, label: str) -> tuple[Role, ...]:
    """One role per ``forward`` parameter: the declared one, or ``(N, *)`` float."""
    if cls.forward is nn.Module.forward:
        raise PluginError(label, "the module has no forward")
    parameters, _ = _signature(cls.forward, "forward", label)
    if not parameters:
        raise PluginError(label, "forward takes no roles")
    by_name = {r.name: r for r in declared.roles}
    unknown = [name for name in by_name if name not in {p.name for p in parameters}]
    if unknown:
        raise PluginError(label, f"declares role {unknown[0]!r}, which forward does not take")
    roles = []
    for p in parameters:
        r = by_name.get(p.name) or role(p.name, "(N, *)", optional=p.default is not p.empty)
        if r.optional and p.default is p.empty:
            raise PluginError(label, f"role {p.name!r} is optional, but forward's parameter has no default")
        roles.append(r)
    if roles[0].optional:
        raise PluginError(label, f"forward's first role {roles[0].name!r} is optional; it gives the batch size")
    return tuple(roles)


class _Instances:
    """A plugin module's instances, one per (params, device, dtype), the most recent kept; made in
    normal (not inference) mode, so that tensors they make and keep can take part in a gradient."""

    def __init__(self, cls: type[nn.Module], params: type[Params], fixed: dict[str, Any]) -> None:
        self.cls, self.params, self.fixed = cls, params, fixed
        self._kept = functools.lru_cache(maxsize=INSTANCES_KEPT)(self._make)

    def get(self, params: Params, inputs: Inputs) -> nn.Module:
        like = next((t for t in inputs.values() if t.is_floating_point()), None)
        device = next(iter(inputs.values())).device
        key = params.model_dump_json()
        dtype = None if like is None else like.dtype
        return self._make(key, device, dtype) if len(key) > KEY_CHARS else self._kept(key, device, dtype)

    def _make(self, key: str, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
        values = dict(self.params.model_validate_json(key))
        with torch.inference_mode(False), torch.no_grad():
            module = self.cls(**values, **self.fixed).to(device=device)
            if dtype is not None:
                module = module.to(dtype=dtype)
            for p in module.parameters():  # the gradients wanted are the inputs', never the module's
                p.requires_grad_(False)
        return module.eval()


def _call(module: nn.Module, inputs: Inputs) -> Any:
    if torch.is_inference_mode_enabled():  # what the module makes and keeps must not be inference tensors
        with torch.inference_mode(False), torch.no_grad():
            return module(**inputs)
    return module(**inputs)


def _scalar(instances: _Instances, name: str) -> Callable[[Inputs, Any], Tensor]:
    def forward(inputs: Inputs, params: Any) -> Tensor:
        out = _call(instances.get(params, inputs), inputs)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ValueError(f"plugin {name} returned {_described(out)}; expected a scalar tensor")
        return out.reshape(())

    return forward


def _elementwise(instances: _Instances, name: str, first: Role) -> Callable[[Inputs, Any], Tensor]:
    def forward(inputs: Inputs, params: Any) -> Tensor:
        out = _call(instances.get(params, inputs), inputs)
        lead = inputs[first.name].shape[first.batch_dim or 0] if first.name in inputs else None
        if not isinstance(out, Tensor) or out.dim() == 0 or (lead is not None and out.shape[0] != lead):
            raise ValueError(
                f"plugin {name} returned {_described(out)} with reduction='none'; expected {lead} rows first"
            )
        return out

    return forward


def _described(out: object) -> str:
    return f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else f"a {type(out).__name__}"
