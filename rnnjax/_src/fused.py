"""The hand-scheduled backward pass of :func:`rnnjax.rnn` (``fused_backward=True``).

Autodiff of the scan accumulates the weight gradients inside the reverse scan: per step,
``h_{t-1}^T dz_t`` and ``x_t^T dz_t``, small matmuls with the batch as the contraction. Here
the reverse scan computes only ``dz_t`` (the cotangent of the pre-activations) and the
state's cotangent through the recurrent matmul; the gradients of the weights and inputs are
then the VJPs of the cell's ``project`` and ``recurrent`` over all steps at once, as large
matmuls. The forward pass keeps each step's carry and pre-activations ``z`` (with ``remat``,
the carry only, and the backward pass recomputes ``z``). Everything is asked of the cell's
``projection`` and ``gate_split`` capabilities.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.contract import Carry, Cell, Params
from rnnjax._src.updates import advance, select

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def fused_scan(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
) -> tuple[Carry, Array]:
    """``lax.scan`` of the cell over ``inputs [time, *batch, features]``, hand-differentiated."""
    outputs, _ = _forward(cell, reverse, unroll, remat, params, initial_carry, inputs, valid)
    return outputs


def _preactivations(cell: Cell, params: Params, carry: Carry, x_t: Array) -> Array:
    assert cell.projection is not None and cell.gate_split is not None
    split = cell.gate_split
    projected = cell.projection.project(params, x_t)
    return split.combine(projected, split.recurrent(params, cell.output(carry)))


def _forward(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
) -> tuple[tuple[Carry, Array], Any]:
    assert cell.gate_split is not None
    gates = cell.gate_split.gates
    output_dtype = cell.output(initial_carry).dtype

    def body(carry: Carry, inputs_t: tuple[Array, Array | None]) -> tuple[Carry, Any]:
        x_t, valid_t = inputs_t
        z = _preactivations(cell, params, carry, x_t)
        new_carry, y = advance(carry, *gates(carry, z), valid_t, output_dtype)
        return new_carry, (y, carry if remat else (carry, z))

    final_carry, (ys, saved) = jax.lax.scan(
        body, initial_carry, (inputs, valid), reverse=reverse, unroll=unroll
    )
    return (final_carry, ys), (params, inputs, valid, saved)


def _backward(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    residuals: Any,
    cotangents: tuple[Carry, Array],
) -> tuple[Params, Carry, Array, None]:
    assert cell.projection is not None and cell.gate_split is not None
    project, (recurrent, combine, gates) = cell.projection.project, cell.gate_split
    params, inputs, valid, saved = residuals
    ct_final, ct_ys = cotangents
    carries = saved if remat else saved[0]  # the carry before each step, [time, *batch, ...]

    def split_cotangent(ct_z: Array, h: Array, x: Array) -> tuple[Array, Array]:
        """``combine``'s transpose: the cotangents of ``projected`` and ``recurrent``, with
        the leading axes of ``ct_z`` (``h`` and ``x`` give their widths and dtypes)."""
        widths = jax.eval_shape(lambda h, x: (project(params, x), recurrent(params, h)), h, x)
        lead = ct_z.shape[:-1]
        shapes = [jax.ShapeDtypeStruct((*lead, w.shape[-1]), w.dtype) for w in widths]
        return jax.linear_transpose(combine, *shapes)(ct_z)

    def body(ct_carry: Carry, inputs_t: Any) -> tuple[Carry, Array]:
        x_t, valid_t, saved_t, ct_y = inputs_t
        carry, z = (saved_t, _preactivations(cell, params, saved_t, x_t)) if remat else saved_t
        ct_new, ct_kept = ct_carry, None
        if valid_t is not None:
            ct_y = select(valid_t, ct_y, jnp.zeros_like(ct_y))
            ct_new = jax.tree.map(lambda ct: select(valid_t, ct, jnp.zeros_like(ct)), ct_carry)
            ct_kept = jax.tree.map(lambda ct: select(valid_t, jnp.zeros_like(ct), ct), ct_carry)
        outputs, gates_vjp = jax.vjp(gates, carry, z)
        ct_outputs = jax.tree.map(lambda ct, out: ct.astype(out.dtype), (ct_new, ct_y), outputs)
        ct_carry, ct_z = gates_vjp(ct_outputs)
        _, ct_recurrent = split_cotangent(ct_z, cell.output(carry), x_t)
        _, through_matmul = jax.vjp(lambda c: recurrent(params, cell.output(c)), carry)
        ct_carry = jax.tree.map(jnp.add, ct_carry, through_matmul(ct_recurrent)[0])
        if ct_kept is not None:
            ct_carry = jax.tree.map(jnp.add, ct_carry, ct_kept)
        return ct_carry, ct_z

    ct_initial, ct_zs = jax.lax.scan(
        body, ct_final, (inputs, valid, saved, ct_ys), reverse=not reverse, unroll=unroll
    )

    # The weight and input gradients over all steps at once: one large matmul each. ``project``
    # and ``combine`` see rows ``[time * batch, n]``; ``recurrent`` sees ``[time, *batch, H]``,
    # as a derived cell's per-sequence recurrent mask ``[*batch, H]`` needs.
    hs = cell.output(carries)
    ct_projected, ct_recurrent = split_cotangent(_rows(ct_zs), hs, inputs)
    _, project_vjp = jax.vjp(project, params, _rows(inputs))
    ct_params, ct_inputs = project_vjp(ct_projected)
    _, recurrent_vjp = jax.vjp(lambda p: recurrent(p, hs), params)
    ct_recurrent = ct_recurrent.reshape(*hs.shape[:-1], ct_recurrent.shape[-1])
    ct_params = jax.tree.map(jnp.add, ct_params, recurrent_vjp(ct_recurrent)[0])
    return ct_params, ct_initial, ct_inputs.reshape(inputs.shape), None


def _rows(a: Array) -> Array:
    """``[time, *batch, n] -> [time * batch, n]``."""
    return a.reshape(-1, a.shape[-1])


fused_scan.defvjp(_forward, _backward)
