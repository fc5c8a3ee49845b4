"""Newton's iteration over a whole sequence, its sequential fallback and its implicit derivative.

All arrays are time-leading and in processing order (the caller flips them for ``reverse``):
``inputs [T, *batch, F]``, ``valid`` and ``flags`` (resets) ``[T, *batch]`` or ``None``, and
states stacked per unit, ``[T, *batch, H, k]`` (:mod:`rnnjax._src.newton.solver`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.contract import Cell, Params
from rnnjax._src.newton.blocks import apply, damp, solve
from rnnjax._src.newton.solver import Settings, evaluate, residual, shift, stack, unstack

Array = jax.Array


def _newton_step(
    settings: Settings, new: Array, jac: Array, prev: Array, states: Array, initial: Array
) -> Array:
    """One Newton iteration, ``s_t = J_t s_{t-1} + (f_t - J_t s_{t-1}^(i))``."""
    a, b = jac, new - apply(jac, prev)
    if settings.damping:
        a, b = damp(a, b, states, settings.damping)
    return solve(a, b, initial, settings.method)


def _iterate(
    cell: Cell,
    settings: Settings,
    treedef: Any,
    params: Params,
    initial: Array,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Array,
) -> tuple[Array, Array, Array]:
    """``(states, iterations, residual)`` of Newton's iteration from the guess ``s_t =
    initial``, stopping at the tolerance, the cap, or a non-finite residual."""
    kind = "quasi" if settings.quasi else "exact"

    def linearise(states: Array) -> tuple[Array, Array, Array]:
        prev = shift(states, initial)
        new, _, jac = evaluate(cell, kind, treedef, params, prev, inputs, valid, flags, fresh)
        assert jac is not None
        return new, jac, prev

    def keep_going(loop: tuple) -> Array:
        *_, iterations, error = loop
        converged = error <= settings.tolerance
        return ~converged & jnp.isfinite(error) & (iterations < settings.max_iterations)

    def body(loop: tuple) -> tuple:
        states, new, jac, prev, iterations, _ = loop
        states = _newton_step(settings, new, jac, prev, states, initial)
        new, jac, prev = linearise(states)
        return states, new, jac, prev, iterations + 1, residual(new, states)

    guess = jnp.broadcast_to(initial, inputs.shape[:1] + initial.shape)
    new, jac, prev = linearise(guess)
    start = (guess, new, jac, prev, jnp.int32(0), residual(new, guess))
    states, *_, iterations, error = jax.lax.while_loop(keep_going, body, start)
    return states, iterations, error


def _sequential(
    cell: Cell,
    settings: Settings,
    treedef: Any,
    params: Params,
    initial: Array,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Array,
) -> Array:
    """Every state by the sequential scan: the fallback."""

    def body(s: Array, inputs_t: tuple) -> tuple[Array, Array]:
        x_t, valid_t, flag_t = inputs_t
        entering = s if flag_t is None else jnp.where(flag_t[..., None, None], fresh, s)
        new = stack(cell.step(params, unstack(treedef, entering), x_t)[0]).astype(s.dtype)
        if valid_t is not None:
            new = jnp.where(valid_t[..., None, None], new, s)
        return new, new

    scanned = (inputs, valid, flags)
    return jax.lax.scan(body, initial, scanned, unroll=settings.unroll)[1]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def fixed_point(
    cell: Cell,
    settings: Settings,
    treedef: Any,
    params: Params,
    initial: Array,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Array,
) -> tuple[Array, Array, Array]:
    """``(states [T, *batch, H, k], iterations, residual)``: Newton's trajectory where it
    converged, the sequential scan's where it did not."""
    args = (cell, settings, treedef, params, initial, inputs, valid, flags, fresh)
    states, iterations, error = _iterate(*args)
    states = jax.lax.cond(error <= settings.tolerance, lambda: states, lambda: _sequential(*args))
    return states, iterations, error


@fixed_point.defjvp
def _fixed_point_jvp(
    cell: Cell, settings: Settings, treedef: Any, primals: tuple, tangents: tuple
) -> tuple[tuple, tuple]:
    """``ds_t = J_t ds_{t-1} + (df_t/dtheta) dtheta`` at the solution, ``J_t`` exact.

    The forcing ``(df_t/dtheta) dtheta`` (params, inputs and the reset carry) is one
    ``jax.jvp`` of every step at once; the recurrence is a parallel linear scan for a cell
    with ``diagonal_jacobian``, and a scan of Jacobian-vector products for a dense cell.
    Reverse mode transposes it into one reverse linear recurrence.
    """
    params, initial, inputs, valid, flags, fresh = primals
    d_params, d_initial, d_inputs, _, _, d_fresh = tangents
    out = fixed_point(cell, settings, treedef, *primals)
    prev = shift(out[0], initial)

    def forced(params: Params, inputs: Array, fresh: Array) -> Array:
        return evaluate(cell, None, treedef, params, prev, inputs, valid, flags, fresh)[0]

    forcing = jax.jvp(forced, (params, inputs, fresh), (d_params, d_inputs, d_fresh))[1]
    if settings.quasi:
        d_states = _dense_tangent(
            cell, treedef, params, prev, inputs, valid, flags, fresh, forcing, d_initial
        )
    else:
        jac = evaluate(cell, "exact", treedef, params, prev, inputs, valid, flags, fresh)[2]
        assert jac is not None
        d_states = solve(jac, forcing, d_initial, settings.method)
    zero_iterations = np.zeros((), jax.dtypes.float0)
    return out, (d_states, zero_iterations, jnp.zeros_like(out[2]))


def _dense_tangent(
    cell: Cell,
    treedef: Any,
    params: Params,
    prev: Array,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Array,
    forcing: Array,
    d_initial: Array,
) -> Array:
    """``ds_t = J_t ds_{t-1} + forcing_t`` with a dense cell's full Jacobian: a scan of
    Jacobian-vector products (recomputed in the backward pass, ``jax.checkpoint``)."""
    entering = prev if flags is None else jnp.where(flags[..., None, None], fresh[None], prev)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def jvp(s: Array, x_t: Array, d_s: Array) -> Array:
        step = lambda u: stack(cell.step(params, unstack(treedef, u), x_t)[0]).astype(u.dtype)  # noqa: E731
        return jax.jvp(step, (s,), (d_s,))[1]

    def body(d_s: Array, inputs_t: tuple) -> tuple[Array, Array]:
        s, x_t, valid_t, flag_t, forcing_t = inputs_t
        d_in = d_s if flag_t is None else jnp.where(flag_t[..., None, None], 0, d_s)
        d_new = jvp(s, x_t, d_in)
        if valid_t is not None:
            d_new = jnp.where(valid_t[..., None, None], d_new, d_s)
        d_new = d_new + forcing_t
        return d_new, d_new

    scanned = (entering, inputs, valid, flags, forcing)
    return jax.lax.scan(body, d_initial, scanned)[1]
