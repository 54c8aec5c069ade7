"""The plugin API: what a deployer's loss may import. Stable: names here keep their meaning.

Install a plugin by naming it in ``LOSS_SERVICE_PLUGINS`` (``module:attr``, comma-separated) or by
an entry point of the group ``loss_service.losses`` in an installed distribution. The object is
one of:

1. An ``nn.Module`` subclass, the template PyTorch users write::

       class MyLoss(nn.Module):
           def __init__(self, param1: float = 0.0):  # hyper-parameters: typed, with defaults
               super().__init__()
               self.param1 = param1

           def forward(self, predict, label):  # roles, by parameter name
               return torch.mean(torch.pow(predict - label, 2))

   Served as ``my_loss`` (aliases ``MyLoss``, ``myloss``): params from ``__init__`` (float, int,
   bool, str, Literal, Optional, list or tuple of them, ``Annotated[..., Field(...)]`` for ranges
   and descriptions; an unannotated one takes its default's type), roles from ``forward``
   (``(N, *)`` float each, the same ``*`` for all; a parameter with a default is an optional
   role), gradients from autograd.

   - Without a ``reduction`` parameter, ``forward`` returns one scalar: that is the value, under
     the reduction ``"mean"`` (the only one it takes); the loss runs alone, with no elementwise
     values.
   - With ``reduction`` (PyTorch's convention), the service calls it with ``reduction="none"``:
     ``forward`` returns the elementwise values, batch dimension first; the service reduces them
     (mean over every element, sum, none) and batches concurrent requests, as for a built-in
     loss.

   One instance is made per distinct params (and device and dtype), moved to the compute device
   and dtype, in eval mode, and reused.

2. The same module, decorated with ``@loss_plugin(...)`` to say what the signature cannot: its
   ``name`` and ``aliases``, ``summary``, ``category`` and ``reference`` (shown by the catalog),
   ``roles`` (``role("target", "(N)", kind=INTEGER, differentiable=False)``: shape contracts in
   the catalog's notation, dtype kinds; roles not listed keep the default), ``elementwise_shape``,
   ``validate`` (functions of the checked request's arrays returning ``ErrorItem``\\ s: 422s before
   compute) and ``mean_weights`` (per-element weights of a weighted mean, for a module that takes
   ``reduction``)::

       @loss_plugin(category="segmentation", reference="Smith et al. 2024",
                    roles=[role("logits", "(N, C, *)"), role("target", "(N, *)", kind=INTEGER)])
       class MyCE(nn.Module): ...

3. A ``Loss``, built as the service builds its own losses (see ``service/losses/*.py``): a
   ``Params`` subclass, ``role``\\ s, ``forward(inputs, params)`` returning the elementwise values,
   ``mean_weights`` (a weighted mean) or ``sample_terms`` (each sample's share S_i and weight
   W_i of the mean, from which values, dataset aggregates and per-sample values all follow; a
   decomposable loss gives one of them, or neither for the plain mean), validators; or a list of
   any of these. A loss that is not decomposable (``decomposable=False``) gives its own ``reduce``.

A plugin that cannot be loaded (import error, unusable signature, a name or alias in use) stops the
service at start-up with a line naming it and the reason. A plugin whose forward raises fails that
request alone, with a 500 that names no internals (the error is logged).
"""

from __future__ import annotations

from .errors import ErrorItem
from .losses.base import (
    Checked,
    Inputs,
    Loss,
    MeanWeights,
    Params,
    SampleTerms,
    Validator,
    element_count,
    mean_or_sum,
    param_tensor,
    reduce_by_weights,
    row_counts,
    row_sums,
    rows,
    weighted_mean,
)
from .losses.contract import EITHER, FLOAT, INTEGER, Form, Role, form, role
from .losses.plugins import ENTRY_POINT_GROUP, loss_plugin

__all__ = [
    "EITHER",
    "ENTRY_POINT_GROUP",
    "FLOAT",
    "INTEGER",
    "Checked",
    "ErrorItem",
    "Form",
    "Inputs",
    "Loss",
    "MeanWeights",
    "Params",
    "Role",
    "SampleTerms",
    "Validator",
    "element_count",
    "form",
    "loss_plugin",
    "mean_or_sum",
    "param_tensor",
    "reduce_by_weights",
    "role",
    "row_counts",
    "row_sums",
    "rows",
    "weighted_mean",
]
