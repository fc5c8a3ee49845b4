"""Cells made from cells: recurrent dropout and a compute dtype, each a complete :class:`Cell`.

A derived cell has honest params (the inner cell's, or a small wrapper around them, as
``optax.masked`` wraps an inner state), a working ``init``, the contract's one step signature
and every capability its inner cell has, so derived cells nest in any order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.core.contract import (
    BatchShape,
    Carry,
    Cell,
    GateSplit,
    LinearScan,
    Params,
    Projection,
    StartFn,
)
from rnnjax._src.core.matmul import apply_mask

Array = jax.Array


def _delegate(cell: Cell, view: Callable[[Any], Params]) -> Cell:
    """``cell`` taking params ``q`` of which ``view(q)`` are its own: every function delegated.

    ``init`` stays the inner cell's; callers replace it (and anything else that differs).
    """

    def initial_carry(q: Any, batch_shape: BatchShape, dtype: DTypeLike | None = None) -> Carry:
        return cell.initial_carry(view(q), batch_shape, dtype)

    def step(q: Any, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return cell.step(view(q), carry, x)

    def input_size(q: Any) -> int:
        return cell.input_size(view(q))

    projection = gate_split = None
    if cell.projection is not None:
        inner = cell.projection

        def project(q: Any, xs: Array) -> Array:
            return inner.project(view(q), xs)

        def projected_step(q: Any, carry: Carry, u: Array, mask: Array | None) -> Any:
            return inner.step(view(q), carry, u, mask)

        projection = Projection(project, projected_step)
    if cell.gate_split is not None:
        split = cell.gate_split

        def recurrent(q: Any, h: Array) -> Array:
            return split.recurrent(view(q), h)

        def gates(q: Any, carry: Carry, z: Any) -> tuple[Carry, Array]:
            return split.gates(view(q), carry, z)

        gate_split = GateSplit(recurrent, split.combine, gates)
    linear_scan = None
    if cell.linear_scan is not None:
        inner_coefficients = cell.linear_scan.coefficients

        def coefficients(q: Any, xs: Array) -> tuple[Array, Array]:
            return inner_coefficients(view(q), xs)

        linear_scan = LinearScan(coefficients, _viewed(cell.linear_scan.start, view))
    return Cell(
        cell.init, initial_carry, step, input_size, cell.output, projection, gate_split, linear_scan
    )


def _viewed(start: StartFn | None, view: Callable[[Any], Any]) -> StartFn | None:
    """``start`` on the inner cell's params, or ``None``."""
    if start is None:
        return None
    inner_start = start

    def start_of(q: Any, xs: Array) -> Array:
        return inner_start(view(q), xs)

    return start_of


def _cast_floating(tree: Any, dtype: DTypeLike) -> Any:
    """Every floating array of ``tree`` cast to ``dtype``; other leaves as they are."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


@functools.cache
def with_compute_dtype(cell: Cell, compute_dtype: jnp.dtype) -> Cell:
    """``cell`` computing with its params cast to ``compute_dtype`` inside every step.

    Its params are ``cell``'s (in their own dtype, float32 say), so autodiff accumulates their
    gradients over the time steps in that dtype, not in ``compute_dtype`` (in bfloat16 the
    recurrent kernel's gradient was 20% off after 1024 steps); XLA hoists the casts out of the
    loop. ``initial_carry`` is ``cell``'s on the uncast params: the state keeps their dtype.
    """
    derived = _delegate(cell, functools.partial(_cast_floating, dtype=compute_dtype))
    return derived._replace(initial_carry=cell.initial_carry, input_size=cell.input_size)


class RecurrentDropoutParams(NamedTuple):
    """Params of :func:`with_recurrent_dropout`: the cell's own and the mask of this call.

    Attributes:
      params: the inner cell's params.
      recurrent_mask: ``[*batch, hidden]``, or ``None`` for no dropout (what ``init`` gives).
    """

    params: Params
    recurrent_mask: Array | None


def _both(mask: Array | None, other: Array | None) -> Array | None:
    if mask is None or other is None:
        return other if mask is None else mask
    return mask * other


@functools.cache
def with_recurrent_dropout(cell: Cell) -> Cell:
    """``cell`` whose ``h`` enters the recurrent matmuls times ``params.recurrent_mask``.

    Keras's recurrent dropout with a mask fixed over time (Gal & Ghahramani 2016); the mask
    is drawn per call by :func:`rnnjax.layer`. Needs the cell's ``projection`` capability,
    which takes the mask.
    """
    if cell.projection is None:
        raise ValueError(
            "rnnjax.layer: recurrent_dropout needs a cell with a recurrent matmul to drop into"
            " (the `projection` capability, whose step takes a recurrent mask); this cell has"
            " none (min_gru's and min_lstm's gates never read h: use dropout)"
        )
    inner = cell.projection
    derived = _delegate(cell, lambda q: q.params)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> Any:
        return RecurrentDropoutParams(cell.init(key, input_size, dtype), None)

    def projected_step(q: Any, carry: Carry, u: Array, mask: Array | None) -> Any:
        return inner.step(q.params, carry, u, _both(q.recurrent_mask, mask))

    def step(q: Any, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(q, carry, inner.project(q.params, x), None)

    assert derived.projection is not None
    gate_split = None
    if derived.gate_split is not None:
        split = cell.gate_split
        assert split is not None

        def recurrent(q: Any, h: Array) -> Array:
            return split.recurrent(q.params, apply_mask(h, q.recurrent_mask))

        gate_split = derived.gate_split._replace(recurrent=recurrent)
    return derived._replace(
        init=init,
        step=step,
        projection=derived.projection._replace(step=projected_step),
        gate_split=gate_split,
    )
