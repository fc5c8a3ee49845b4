"""A bidirectional pair of cuDNN LSTM layers run as cuDNN's own two directions, in one call.

:func:`rnnjax.bidirectional` of two layers built by :func:`rnnjax.layer` with
``backend="cudnn"`` over the same plain LSTM, the first forward and the second reversed,
merged by ``"concat"`` and without input dropout, is exactly what cuDNN's bidirectional LSTM
computes; :func:`fused_bidirectional` gives that pair's ``apply`` as one call
(:func:`rnnjax._src.scan.cudnn.lstm_layers`). Every other pair runs its layers one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Cell, Layer, Params
from rnnjax._src.core.validate import check_bool
from rnnjax._src.layers.layer import CUDNN_LAYERS, check_layer_inputs
from rnnjax._src.scan.cudnn import check_backend_inputs, lstm_layers

Array = jax.Array


def fused_bidirectional(forward: Layer, backward: Layer, merge: str) -> Callable[..., Any] | None:
    """The pair run as one cuDNN call, ``(params, xs, carries, seq_lengths, deterministic) ->
    (final_carries, ys)`` with ``carries`` a pair (``None``: the default), or ``None`` where
    the structure differs."""
    forward_found = CUDNN_LAYERS.get(forward.apply)
    backward_found = CUDNN_LAYERS.get(backward.apply)
    if merge != "concat" or forward_found is None or backward_found is None:
        return None
    (cell, settings), (backward_cell, backward_settings) = forward_found, backward_found
    if cell is not backward_cell or settings.reverse or not backward_settings.reverse:
        return None
    if settings.dropout > 0 or backward_settings.dropout > 0:
        return None  # one mask per direction: cuDNN reads one input
    return _apply_both(cell, settings)


def _apply_both(cell: Cell, settings: Any) -> Callable[..., Any]:
    where = "rnnjax.layer"

    def apply(
        params: Any,
        xs: Array,
        carries: tuple[Carry | None, Carry | None],
        seq_lengths: Array | None,
        deterministic: bool,
    ) -> tuple[tuple[Carry, Carry], Array]:
        check_bool(where, "deterministic", deterministic)  # no dropout in a fused pair
        for direction, carry in zip(params, carries, strict=True):
            check_layer_inputs(where, cell, direction, xs, carry, seq_lengths)
            check_backend_inputs(where, settings, direction, xs, carry)
        return _run_both(cell, params, jnp.asarray(xs), carries, seq_lengths)

    return apply


def _run_both(
    cell: Cell, params: Any, xs: Array, carries: tuple[Any, Any], seq_lengths: Array | None
) -> tuple[tuple[Carry, Carry], Array]:
    """``xs [*batch, time, I]`` through both directions at once: ``ys [*batch, time, 2H]``."""
    batch, time = xs.shape[:-2], xs.shape[-2]
    rows = math.prod(batch)
    fresh = cell.initial_carry(params[0], batch, jnp.float32)
    states = [fresh if carry is None else carry for carry in carries]
    h_0, c_0 = (
        jnp.stack([jax.tree.leaves(state)[part].reshape(rows, -1) for state in states])
        for part in (0, 1)
    )
    lengths = jnp.full((rows,), time) if seq_lengths is None else seq_lengths.reshape(rows)
    inputs = xs.reshape(rows, time, xs.shape[-1])
    inputs = jnp.where((jnp.arange(time)[None, :] < lengths[:, None])[..., None], inputs, 0)
    pseudo_layers: list[Params] = [params[0], params[1]]
    ys, h_n, c_n = lstm_layers(pseudo_layers, inputs, h_0, c_0, lengths, bidirectional=True)
    treedef = jax.tree.structure(fresh)
    finals = tuple(
        jax.tree.unflatten(treedef, [h_n[d].reshape(*batch, -1), c_n[d].reshape(*batch, -1)])
        for d in (0, 1)
    )
    return (finals[0], finals[1]), ys.reshape(*batch, time, -1)
