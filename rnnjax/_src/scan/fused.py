"""The default differentiation of :func:`rnnjax.rnn` for cells with ``gate_split``.

Autodiff of the scan accumulates the weight gradients inside the reverse scan: per step,
``h_{t-1}^T dz_t`` and ``x_t^T dz_t``, small matmuls with the batch as the contraction. Here
``jax.custom_jvp`` gives the scan a tangent rule shaped for reverse mode: the tangents of the
weights and inputs enter through the cell's ``project`` and ``recurrent`` applied to all
steps at once (large matmuls, outside any scan), and the scan carries only the state's
tangent through the recurrent matmul and the gates. The rule is linear in the tangents, so
JAX transposes it into the hand-scheduled backward pass: a reverse scan of the state's
cotangent, then the weight gradients as large matmuls. And being a JVP, ``jax.jvp``,
``jax.jacfwd``, ``jax.hessian`` and ``grad`` of ``grad`` all work.

The forward pass keeps each step's carry and pre-activations ``z`` (with ``remat``, the carry
only, and the backward pass recomputes ``z``); the gates' activations are recomputed in the
backward pass from those (``jax.checkpoint``), as a hand-written backward would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.scan.updates import advance, reset

Array = jax.Array


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3, 4))
def _fused_scan(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    hoist: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Carry,
) -> tuple[Carry, Array]:
    """``lax.scan`` of the cell over ``inputs [time, *batch, features]`` with the tangent rule
    above; ``valid`` and ``flags`` (resets, entering ``fresh``) are ``[time, *batch]``."""
    outputs, _ = _forward(cell, reverse, unroll, remat, hoist, params, initial_carry, inputs,
                          valid, flags, fresh)  # fmt: skip
    return outputs


def _preactivations(cell: Cell, params: Params, projected: Array, carry: Carry) -> Any:
    """A step's ``z`` (an array or a pytree) from its input projection and the carry."""
    assert cell.gate_split is not None
    split = cell.gate_split
    return split.combine(projected, split.recurrent(params, cell.output(carry)))


def _forward(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    hoist: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Carry,
) -> tuple[tuple[Carry, Array], Any]:
    """The scan, and what the tangent rule reads: each step's carry (after any reset) and,
    without ``remat``, its pre-activations."""
    assert cell.projection is not None and cell.gate_split is not None
    project, gates = cell.projection.project, cell.gate_split.gates
    output_dtype = cell.output(initial_carry).dtype
    read = project(params, inputs) if hoist else inputs

    def body(carry: Carry, inputs_t: tuple[Array, Any, Any]) -> tuple[Carry, Any]:
        read_t, valid_t, flag_t = inputs_t
        entering = reset(carry, fresh, flag_t)
        projected = read_t if hoist else project(params, read_t)
        z = _preactivations(cell, params, projected, entering)
        new_carry, y = advance(carry, *gates(params, entering, z), valid_t, output_dtype)
        return new_carry, (y, entering if remat else (entering, z))

    final, (ys, saved) = jax.lax.scan(
        body, initial_carry, (read, valid, flags), reverse=reverse, unroll=unroll
    )
    return (final, ys), saved


def _fused_scan_jvp(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    hoist: bool,
    primals: tuple[Any, ...],
    tangents: tuple[Any, ...],
) -> tuple[Any, Any]:
    assert cell.projection is not None and cell.gate_split is not None
    project, (recurrent, combine, gates) = cell.projection.project, cell.gate_split
    params, _, inputs, valid, flags, _ = primals
    d_params, d_initial, d_inputs, _, _, d_fresh = tangents
    d_fresh = _instantiate(d_fresh)
    d_gate_params = _instantiate(d_params)
    (final, ys), saved = _forward(cell, reverse, unroll, remat, hoist, *primals)
    carries = saved if remat else saved[0]  # the carry entering each step, [time, *batch, ...]
    output_dtype = ys.dtype

    # The weights' and inputs' share of each step's pre-activation tangent, for all steps at
    # once, ``x dW + dx W + db`` and ``h dU`` over [time, *batch, n]: large matmuls (the
    # built-in cells' ``matmul`` folds the leading axes into rows).
    hs = cell.output(carries)
    d_projected = _jvp_of_nonzero(project, (params, inputs), (d_params, d_inputs))
    d_recurrent = _jvp_of_nonzero(lambda p: recurrent(p, hs), (params,), (d_params,))
    shapes = jax.eval_shape(lambda: (project(params, inputs), recurrent(params, hs)))
    if d_projected is None and d_recurrent is None:
        d_outside = None
    else:
        zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        d_outside = combine(
            zeros[0] if d_projected is None else d_projected,
            zeros[1] if d_recurrent is None else d_recurrent,
        )
    no_projected = jnp.zeros(shapes[0].shape[1:], shapes[0].dtype)  # one step's

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def linear_step(
        carry: Carry, z: Any, x_t: Array | None, d_carry: Carry, d_outside_t: Any
    ) -> Any:
        """The step's tangent, given its primal inputs; activations (and, with ``remat``,
        the pre-activations) are recomputed in the backward pass rather than saved."""
        if z is None:
            assert x_t is not None, "with remat the tangent scan reads the inputs"
            z = _preactivations(cell, params, project(params, x_t), carry)
        _, d_h_matmul = jax.jvp(lambda c: recurrent(params, cell.output(c)), (carry,), (d_carry,))
        d_z = combine(no_projected, d_h_matmul)
        if d_outside_t is not None:
            d_z = jax.tree.map(jnp.add, d_z, d_outside_t)
        # Gates with weights of their own (peepholes, layer norm) see the params'
        # tangent too; only the leaves they read enter the scan.
        return jax.jvp(gates, (params, carry, z), (d_gate_params, d_carry, d_z))[1]

    def body(d_carry: Carry, inputs_t: Any) -> tuple[Carry, Array]:
        carry, z, x_t, d_outside_t, valid_t, flag_t = inputs_t
        d_entering = reset(d_carry, d_fresh, flag_t)
        d_new, d_y = linear_step(carry, z, x_t, d_entering, d_outside_t)
        return advance(d_carry, d_new, d_y, valid_t, output_dtype)

    zs = None if remat else saved[1]
    xs_needed = inputs if remat else None
    d_final, d_ys = jax.lax.scan(
        body,
        _instantiate(d_initial),
        (carries, zs, xs_needed, d_outside, valid, flags),
        reverse=reverse,
        unroll=unroll,
    )
    return (final, ys), (d_final, d_ys)


def _jvp_of_nonzero(fn: Callable[..., Array], primals: tuple, tangents: tuple) -> Array | None:
    """``jax.jvp(fn, primals, tangents)[1]`` over the arguments whose tangent is not a
    symbolic zero (no matmul against zeros); ``None`` when every tangent is zero."""
    live = [i for i, t in enumerate(tangents) if not _is_zero(t)]
    if not live:
        return None

    def of_live(*args: Any) -> Array:
        full = list(primals)
        for i, arg in zip(live, args, strict=True):
            full[i] = arg
        return fn(*full)

    live_primals = tuple(primals[i] for i in live)
    return jax.jvp(of_live, live_primals, tuple(_instantiate(tangents[i]) for i in live))[1]


def _is_zero(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree, is_leaf=lambda t: isinstance(t, SymbolicZero))
    return all(isinstance(t, SymbolicZero) for t in leaves)


def _instantiate(tree: Any) -> Any:
    return jax.tree.map(
        lambda t: jnp.zeros(t.shape, t.dtype) if isinstance(t, SymbolicZero) else t,
        tree,
        is_leaf=lambda t: isinstance(t, SymbolicZero),
    )


_fused_scan.defjvp(_fused_scan_jvp, symbolic_zeros=True)

# Called outside ``jit`` (eager ``jax.grad``), the rule would run op by op; as one jitted call
# it compiles once per cell, settings and shapes.
fused_scan = jax.jit(_fused_scan, static_argnums=(0, 1, 2, 3, 4))
