"""Catalog entries: what GET /v1/losses returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..losses.base import Loss, reference_text


class RoleInfo(BaseModel):
    name: str
    kind: str
    shape: str
    differentiable: bool
    optional: bool
    description: str = ""


class LossInfo(BaseModel):
    name: str
    aliases: list[str]
    summary: str
    category: str
    reference: str = Field(description="the library (and function) or the paper the loss follows")
    decomposable: bool = Field(
        description="false: the value reduces the whole request (no elementwise values, no reduction none, "
        "never batched with other requests)"
    )
    whole_request_when: str | None = Field(
        None, description="for a decomposable loss, the param that makes its value reduce the whole request"
    )
    roles: list[RoleInfo]
    params: dict[str, Any]
    reductions: list[str]
    default_reduction: str = "mean"
    elementwise_shape: str


class Catalog(BaseModel):
    losses: list[LossInfo]


def loss_info(loss: Loss) -> LossInfo:
    schema = loss.params.model_json_schema()
    schema.pop("title", None)
    roles = [
        RoleInfo(name=r.name, kind=r.kind, shape=r.shape, differentiable=r.differentiable,
                 optional=r.optional, description=r.description)
        for r in loss.roles
    ]  # fmt: skip
    return LossInfo(
        name=loss.name,
        aliases=list(loss.aliases),
        summary=loss.summary,
        category=loss.category,
        reference=reference_text(loss.reference),
        decomposable=loss.decomposable,
        whole_request_when=loss.whole_when,
        roles=roles,
        params=schema,
        reductions=list(loss.reductions),
        elementwise_shape=loss.elementwise_shape,
    )
