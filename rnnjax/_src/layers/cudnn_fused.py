"""Bidirectional pairs and stacks of cuDNN LSTM layers, run as cuDNN's own directions and
layers in one call (:func:`rnnjax._src.scan.cudnn.lstm_layers`).

A layer built by :func:`rnnjax.layer` with ``backend="cudnn"`` is recorded with its cell and
settings (``CUDNN_LAYERS``). Where a composition is exactly what cuDNN's multi-layer,
bidirectional LSTM computes, it runs as one call:

* :func:`rnnjax.bidirectional` of two such layers over the same cell, the first forward and
  the second reversed, ``merge="concat"``, no input dropout (cuDNN reads one input, so one
  mask per direction cannot be);
* :func:`rnnjax.stack` of such forward layers, or of such pairs, with no dropout between or
  within the layers and ``residual=False``.

Everything else runs layer by layer, as before. Values and gradients are the same either way.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src.core.checks import check_carry
from rnnjax._src.core.contract import Carry, Cell, Layer, Params
from rnnjax._src.core.settings import LayerSettings
from rnnjax._src.core.validate import check_bool
from rnnjax._src.layers.layer import CUDNN_LAYERS, check_layer_inputs
from rnnjax._src.scan.cudnn import check_backend_inputs, lstm_layers

Array = jax.Array


class Fused(NamedTuple):
    """A layer cuDNN runs as one of its layers: the cell, the settings and its directions."""

    cell: Cell
    settings: LayerSettings
    directions: int


PAIRS: weakref.WeakKeyDictionary[Callable[..., Any], Fused] = weakref.WeakKeyDictionary()
"""The ``apply`` of each bidirectional pair that runs fused, so a stack of them fuses too."""


def _fusable(layer: Layer) -> Fused | None:
    """``layer`` as one cuDNN layer (forward, no dropout), or ``None``."""
    if layer.apply in PAIRS:
        return PAIRS[layer.apply]
    found = CUDNN_LAYERS.get(layer.apply)
    if found is None or found[1].dropout > 0 or found[1].reverse:
        return None
    return Fused(found[0], found[1], 1)


def fused_bidirectional(forward: Layer, backward: Layer, merge: str) -> Fused | None:
    """The pair as one cuDNN layer with both directions, or ``None`` where it differs."""
    first, second = CUDNN_LAYERS.get(forward.apply), CUDNN_LAYERS.get(backward.apply)
    if merge != "concat" or first is None or second is None or first[0] is not second[0]:
        return None
    if first[1].reverse or not second[1].reverse or first[1].dropout or second[1].dropout:
        return None
    return Fused(first[0], first[1], 2)


def fused_stack(layers: Sequence[Layer], dropout: float, residual: bool) -> Fused | None:
    """The stack as cuDNN's layers (all alike: one-way or pairs), or ``None``."""
    found = [_fusable(layer) for layer in layers]
    if dropout > 0 or residual or any(item is None for item in found):
        return None
    kinds = {(item.cell, item.directions) for item in found if item is not None}
    return found[0] if len(kinds) == 1 else None


def _directions(fused: Fused, per_layer: Any) -> list[Any]:
    """One layer's params or carry as a list per direction."""
    return [per_layer] if fused.directions == 1 else [per_layer[0], per_layer[1]]


def _check(
    where: str, fused: Fused, params: Sequence[Any], xs: Any, carries: Sequence[Any], lengths: Any
) -> None:
    """Each direction's params (layer 0 reading ``xs``, the others ``directions * H``),
    carry, lengths and dtypes, as the layers themselves would check them."""
    for index, (layer_params, layer_carry) in enumerate(zip(params, carries, strict=True)):
        directions = _directions(fused, layer_params)
        layer_carries = [None] * len(directions)
        if layer_carry is not None:
            layer_carries = _directions(fused, layer_carry)
        for p, carry in zip(directions, layer_carries, strict=True):
            if index == 0:
                check_layer_inputs(where, fused.cell, p, xs, carry, lengths)
            else:
                _check_upper(where, fused, index, p, xs, carry)
            check_backend_inputs(where, fused.settings, p, xs, carry)


def _check_upper(where: str, fused: Fused, index: int, params: Params, xs: Any, carry: Any) -> None:
    hidden = fused.cell.output(jax.eval_shape(lambda: fused.cell.initial_carry(params, 1)))
    expected = fused.directions * hidden.shape[-1]
    if fused.cell.input_size(params) != expected:
        raise ValueError(
            f"{where}: layer {index} reads the previous layer's {expected} features; its"
            f" params take {fused.cell.input_size(params)}"
        )
    if carry is not None:
        batch = jnp.shape(xs)[:-2]
        check_carry(carry, jax.eval_shape(lambda: fused.cell.initial_carry(params, batch)), where)


def run_fused(
    where: str,
    fused: Fused,
    params: Sequence[Any],
    xs: Array,
    carries: Sequence[Any],
    seq_lengths: Array | None,
    deterministic: bool,
) -> tuple[list[Carry], Array]:
    """``params`` and ``carries`` one entry per layer (a pair's: ``(forward, backward)``);
    returns the final carries, one entry per layer, and ``ys [*batch, time, directions*H]``."""
    check_bool(where, "deterministic", deterministic)  # nothing to drop in a fused run
    _check(where, fused, params, xs, carries, seq_lengths)
    xs = jnp.asarray(xs)
    batch, time = xs.shape[:-2], xs.shape[-2]
    rows = math.prod(batch)
    pseudo = [p for layer_params in params for p in _directions(fused, layer_params)]
    fresh = fused.cell.initial_carry(pseudo[0], batch, jnp.float32)
    states = [
        fresh if state is None else state
        for carry in carries
        for state in ([None] * fused.directions if carry is None else _directions(fused, carry))
    ]
    h_0, c_0 = (
        jnp.stack([jax.tree.leaves(state)[part].reshape(rows, -1) for state in states])
        for part in (0, 1)
    )
    lengths = jnp.full((rows,), time) if seq_lengths is None else seq_lengths.reshape(rows)
    inputs = xs.reshape(rows, time, xs.shape[-1])
    inputs = jnp.where((jnp.arange(time)[None, :] < lengths[:, None])[..., None], inputs, 0)
    ys, h_n, c_n = lstm_layers(pseudo, inputs, h_0, c_0, lengths, fused.directions == 2)
    treedef = jax.tree.structure(fresh)
    finals = [
        jax.tree.unflatten(treedef, [h.reshape(*batch, -1), c.reshape(*batch, -1)])
        for h, c in zip(h_n, c_n, strict=True)
    ]
    if fused.directions == 2:
        finals = [(finals[2 * i], finals[2 * i + 1]) for i in range(len(params))]
    return finals, ys.reshape(*batch, time, -1)
