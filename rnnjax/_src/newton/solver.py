"""A nonlinear recurrence solved for all time steps at once by Newton's method (DEER, ELK).

The sequence ``s_t = f_t(s_{t-1})`` (``s`` the carry's ``k`` leaves stacked, ``[*batch, H,
k]``; ``f_t`` the cell at input ``x_t``, with the padding and resets of the sequential scan)
is a system of ``T`` equations in ``T`` unknowns. Newton's method linearises every step around
the current trajectory ``s^(i)`` and solves the linear recurrence that results,

``s_t^(i+1) = J_t s_{t-1}^(i+1) + (f_t(s_{t-1}^(i)) - J_t s_{t-1}^(i))``,

with ``J_t = df_t/ds`` at ``s_{t-1}^(i)``: a parallel scan, ``log T`` deep on an accelerator.
A cell with the ``diagonal_jacobian`` capability gives ``J_t`` exactly (diagonal, or ``k x k``
blocks per unit); a dense cell (``gru``, ``lstm``) runs quasi-Newton with the diagonal of its
Jacobian (quasi-DEER), optionally damped as ELK does (:func:`~rnnjax._src.newton.blocks.damp`).

The iteration stops when the residual ``max |s_t - f_t(s_{t-1})| / (1 + |f_t(s_{t-1})|)`` is
at most the tolerance; at the iteration cap without convergence (or on a non-finite residual)
the result comes from the sequential scan instead, never from an unconverged trajectory.

Derivatives: the solution ``s`` is defined implicitly by ``s_t = f_t(s_{t-1})``, so its
tangent solves ``ds_t = J_t ds_{t-1} + (df_t/dtheta) dtheta`` with the exact Jacobian at the
solution: a ``jax.custom_jvp`` whose tangent is that linear recurrence, and whose transpose
(reverse mode) is one reverse linear recurrence, as DEER and ParaRNN derive it. Nothing is
differentiated through the iterations, and ``jax.jvp`` works.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Cell, Params

Array = jax.Array
Evaluated = tuple[Array, Array, Array | None]
"""``(new, ys, jacobian)`` of every step at once: ``f_t``, ``y_t`` and ``J_t`` (or ``None``)."""


class NewtonInfo(NamedTuple):
    """How Newton's method went, from :func:`rnnjax.newton_rnn`.

    Attributes:
      iterations: int32 scalar, the Newton iterations run (one linear recurrence each).
      residual: scalar, ``max_t |s_t - f_t(s_{t-1})| / (1 + |f_t(s_{t-1})|)`` over every
        step, unit, carry array and sequence of the last Newton trajectory.
      converged: bool scalar, ``residual <= tolerance``. When false, the carry and outputs
        returned are the sequential scan's (the fallback), not Newton's.
    """

    iterations: Array
    residual: Array
    converged: Array


class Settings(NamedTuple):
    """The static settings of one Newton solve (hashable: a ``custom_jvp`` argument)."""

    quasi: bool
    damping: float
    tolerance: float
    max_iterations: int
    method: str
    unroll: int | bool


def default_tolerance(dtype: Any) -> float:
    """ELK's defaults: ``1e-7`` for float64, ``1e-4`` for float32, ``1e-2`` for 16-bit."""
    bits = jnp.finfo(dtype).bits
    return {64: 1e-7, 32: 1e-4}.get(bits, 1e-2)


def stack(carry: Carry) -> Array:
    """The carry's ``k`` leaves, each ``[*batch, H]``, as ``s [*batch, H, k]``."""
    return jnp.stack(jax.tree.leaves(carry), axis=-1)


def unstack(treedef: Any, s: Array) -> Carry:
    return jax.tree.unflatten(treedef, [s[..., i] for i in range(s.shape[-1])])


def _jacobian_step(cell: Cell, params: Params, treedef: Any, kind: str | None) -> Callable:
    """``(carry, x) -> ((carry, y), J)``: ``J`` exact (the cell's), the diagonal of a dense
    cell's Jacobian (``kind="quasi"``), or ``None`` (``kind=None``)."""
    if kind == "exact":
        assert cell.diagonal_jacobian is not None
        return functools.partial(cell.diagonal_jacobian.step, params)
    if kind == "quasi":
        return _quasi_step(cell, params, treedef)
    return lambda carry, x: (cell.step(params, carry, x), None)


def _quasi_step(cell: Cell, params: Params, treedef: Any) -> Callable:
    """A dense cell's step with the diagonal of its carry Jacobian ``[*batch, H, k]``.

    With ``gate_split`` (the built-in ``gru``, ``lstm``, ``simple_rnn``) the diagonal costs
    ``k`` elementwise tangents of the gates: unit ``u`` of the recurrent matmul's tangent keeps
    only ``U[u, slot * H + u]``, the recurrent kernel's diagonal in each gate's slot (the gates
    act unit by unit). Other cells: ``jax.jacfwd`` of the step per sequence, ``k H`` tangents.
    """
    if cell.projection is None or cell.gate_split is None:
        return functools.partial(_quasi_generic, cell, params, treedef)
    projection, split = cell.projection, cell.gate_split

    def step(carry: Carry, x: Array) -> tuple[tuple[Carry, Array], Array]:
        h = cell.output(carry)
        projected = projection.project(params, x)
        z = split.combine(projected, split.recurrent(params, h))
        new, y = split.gates(params, carry, z)
        own = _recurrent_diagonal(split.recurrent, params, h.shape[-1], h.dtype)
        leaves = jax.tree.leaves(carry)
        gates = lambda c, z: split.gates(params, c, z)[0]  # noqa: E731
        diagonal = []
        for j in range(len(leaves)):
            unit = [
                jnp.ones_like(leaf) if i == j else jnp.zeros_like(leaf)
                for i, leaf in enumerate(leaves)
            ]
            d_carry = jax.tree.unflatten(treedef, unit)
            d_h = jax.jvp(cell.output, (carry,), (d_carry,))[1]
            d_recurrent = jnp.tile(d_h, own.size // h.shape[-1])
            d_recurrent = d_recurrent * jnp.broadcast_to(own, d_recurrent.shape)
            d_z = split.combine(jnp.zeros_like(projected), d_recurrent)
            d_new = jax.jvp(gates, (carry, z), (d_carry, d_z))[1]
            diagonal.append(jax.tree.leaves(d_new)[j])
        return (new, y), jnp.stack(diagonal, axis=-1)

    return step


def _recurrent_diagonal(recurrent: Callable, params: Params, hidden: int, dtype: Any) -> Array:
    """``U[u, slot * H + u]`` as a ``[width]`` vector (zero elsewhere in each slot)."""
    eye = jnp.eye(hidden, dtype=dtype)
    matrix = recurrent(params, eye) - recurrent(params, jnp.zeros_like(eye))  # [H, width]
    slots = matrix.shape[-1] // hidden
    units = jnp.arange(hidden)
    return matrix.reshape(hidden, slots, hidden)[units, :, units].T.reshape(-1)


def _quasi_generic(
    cell: Cell, params: Params, treedef: Any, carry: Carry, x: Array
) -> tuple[tuple[Carry, Array], Array]:
    s = stack(carry)
    batch, (hidden, k) = s.shape[:-2], s.shape[-2:]

    def one(s1: Array, x1: Array) -> Array:
        def new(u: Array) -> Array:  # one sequence: [H, k] to [H, k]
            return stack(cell.step(params, unstack(treedef, u[None]), x1[None])[0])[0]

        return jnp.einsum("uiui->ui", jax.jacfwd(new)(s1))

    flat = jax.vmap(one)(s.reshape(-1, hidden, k), x.reshape(-1, x.shape[-1]))
    return cell.step(params, carry, x), flat.reshape(*batch, hidden, k)


def evaluate(
    cell: Cell,
    kind: str | None,
    treedef: Any,
    params: Params,
    prev: Array,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Array,
) -> Evaluated:
    """Every step at once from ``prev [T, *batch, H, k]`` (the state entering each step), as
    the sequential scan does it: a reset step starts from ``fresh`` (``J = 0``), a padded step
    keeps ``prev`` (``J = I``) and emits zeros."""
    entering = prev if flags is None else jnp.where(flags[..., None, None], fresh[None], prev)
    step = _jacobian_step(cell, params, treedef, kind)

    def one(s: Array, x: Array) -> tuple[Array, Array, Any]:
        (carry, y), jac = step(unstack(treedef, s), x)
        return stack(carry).astype(s.dtype), y, jac

    new, ys, jac = jax.vmap(one)(entering, inputs)
    if jac is not None:
        jac = _shaped(jac.astype(prev.dtype), new.shape, kind == "quasi")
        if flags is not None:
            jac = jnp.where(_expand(flags, jac), jnp.zeros_like(jac), jac)
    if valid is not None:
        new = jnp.where(valid[..., None, None], new, prev)
        ys = jnp.where(_expand(valid, ys), ys, jnp.zeros_like(ys))
        if jac is not None:
            jac = jnp.where(_expand(valid, jac), jac, _identity(jac, new))
    return new, ys, jac


def _shaped(jac: Array, shape: tuple[int, ...], quasi: bool) -> Array:
    """``J`` elementwise ``[T, *batch, H, k]`` when it is diagonal (``k = 1`` or quasi), else
    blocks ``[T, *batch, H, k, k]``."""
    if quasi or shape[-1] == 1:
        return jac.reshape(shape)
    return jac.reshape(*shape, shape[-1])


def _identity(jac: Array, new: Array) -> Array:
    if jac.ndim == new.ndim:
        return jnp.ones_like(jac)
    return jnp.broadcast_to(jnp.eye(new.shape[-1], dtype=jac.dtype), jac.shape)


def _expand(flag: Array, like: Array) -> Array:
    return flag.reshape(flag.shape + (1,) * (like.ndim - flag.ndim))


def shift(states: Array, initial: Array) -> Array:
    """The state entering each step: ``initial``, then ``states`` but the last."""
    return jnp.concatenate([initial[None], states[:-1]])[: states.shape[0]]  # T = 0 too


def residual(new: Array, states: Array) -> Array:
    """``max |states - new| / (1 + |new|)`` (0 for no steps)."""
    error = jnp.abs(states - new) / (1 + jnp.abs(new))
    # An exact no-op (the dtype's own bits) that keeps XLA's CPU backend from emitting the
    # elementwise work and the reduction as one slow loop: 2.5 ms against 65 ms for the
    # whole check at T=65536, H=32, more than a Newton iteration's evaluation costs.
    info = jnp.finfo(error.dtype)
    error = jax.lax.reduce_precision(error, info.nexp, info.nmant)
    return jnp.max(error, initial=0.0)
