"""The Newton path of ``rnnjax.rnn`` (``parallel="newton"``): its checks, settings and driver.

The numerics live in :mod:`rnnjax._src.newton.solver` (linearisation), :mod:`rnnjax._src.
newton_linear` (the linear recurrences) and :mod:`rnnjax._src.newton.fixed_point` (the
iteration, the fallback and the derivative); here are the entry points and their checks.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.linear.recurrence import default_method
from rnnjax._src.newton.fixed_point import fixed_point
from rnnjax._src.newton.solver import (
    NewtonInfo,
    Settings,
    default_tolerance,
    evaluate,
    shift,
    stack,
    unstack,
)

Array = jax.Array
NEWTON_MIN_TIME = 2048
"""On an accelerator, ``rnn(parallel=None)`` runs a ``diagonal_jacobian`` cell by Newton's
method from this many steps on; shorter sequences and the CPU keep the sequential scan."""


def default_newton(cell: Cell, time: int, remat: bool = False) -> bool:
    """Whether ``rnn(..., parallel=None)`` runs ``cell`` by Newton's method.

    Never on CPU, where the sequential scan measured 2-16x faster forward (Newton evaluates
    every step ``iterations + 2`` times, more arithmetic than one pass, and a CPU gains
    nothing from the parallelism; ``docs/guides/parallel_evaluation.md``). On an
    accelerator, for a ``diagonal_jacobian`` cell over at least ``NEWTON_MIN_TIME`` steps,
    where a sequential scan pays a per-step launch cost that Newton's few parallel passes do
    not. ``remat=True`` keeps the sequential scan, whose memory it is for.
    """
    return (
        not remat
        and jax.default_backend() != "cpu"
        and cell.diagonal_jacobian is not None
        and cell.linear_scan is None
        and time >= NEWTON_MIN_TIME
    )


def check_newton(cell: Cell, remat: bool, where: str = "rnnjax.rnn", quasi: bool = False) -> None:
    """The option checks of ``parallel="newton"`` (and of :func:`rnnjax.newton_rnn`)."""
    if cell.diagonal_jacobian is None and not quasi:
        raise ValueError(
            f'{where}: parallel="newton" needs a cell with the `diagonal_jacobian` capability'
            " (an exact Jacobian: indrnn, para_gru, para_lstm, or your own); this cell has"
            " none. For a dense cell (gru, lstm) use rnnjax.newton_rnn(..., quasi=True)"
        )
    if remat:
        raise ValueError(
            f'{where}: parallel="newton" does not take remat=True: Newton keeps the states'
            " only, and its backward pass recomputes each step from them anyway"
        )


@functools.partial(jax.jit, static_argnums=(0, 1, 8))
def newton_scan(
    cell: Cell,
    settings: Settings,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
    flags: Array | None,
    fresh: Carry,
    reverse: bool,
) -> tuple[Carry, Array, NewtonInfo]:
    """``rnn``'s Newton path over time-leading ``inputs [T, *batch, F]``; ``(final_carry, ys
    [T, *batch, H], info)``, jitted (called eagerly, it would run op by op)."""
    treedef = jax.tree.structure(initial_carry)
    initial, fresh_s = stack(initial_carry), stack(fresh).astype(stack(initial_carry).dtype)
    if reverse:
        inputs, valid, flags = jax.tree.map(lambda a: jnp.flip(a, 0), (inputs, valid, flags))
    states, iterations, error = fixed_point(
        cell, settings, treedef, params, initial, inputs, valid, flags, fresh_s
    )
    prev = shift(states, initial)
    ys = evaluate(cell, None, treedef, params, prev, inputs, valid, flags, fresh_s)[1]
    final = states[-1] if states.shape[0] else initial
    if reverse:
        ys = jnp.flip(ys, 0)
    final_carry = jax.tree.map(
        lambda new, old: new.astype(old.dtype), unstack(treedef, final), initial_carry
    )
    ys = ys.astype(cell.output(initial_carry).dtype)
    info = NewtonInfo(iterations, error, error <= settings.tolerance)
    return final_carry, ys, info


def check_carry_leaves(carry: Carry, where: str) -> None:
    """Newton stacks the carry's leaves per unit: they must all be ``[*batch, H]``."""
    shapes = {leaf.shape for leaf in jax.tree.leaves(carry)}
    if len(shapes) != 1:
        raise ValueError(
            f'{where}: parallel="newton" needs a carry whose arrays all have one shape'
            f" [*batch, hidden]; got shapes {sorted(shapes)}"
        )


def settings_for(
    carry: Carry,
    quasi: bool = False,
    damping: float = 0.0,
    tolerance: float | None = None,
    max_iterations: int = 50,
    unroll: int | bool = 1,
    where: str = "rnnjax.rnn",
) -> Settings:
    """The checked :class:`Settings`; ``tolerance=None`` is the carry dtype's default."""
    check_carry_leaves(carry, where)
    if tolerance is None:
        tolerance = default_tolerance(jax.tree.leaves(carry)[0].dtype)
    for name, value in (("tolerance", tolerance), ("damping", damping)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{where}: {name} must be a number >= 0; got {value!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise TypeError(f"{where}: max_iterations must be an int; got {max_iterations!r}")
    if max_iterations < 1:
        raise ValueError(f"{where}: max_iterations must be >= 1; got {max_iterations!r}")
    if damping and not quasi:
        raise ValueError(
            f"{where}: damping applies to quasi-Newton (quasi=True) only; exact Newton"
            f" converges without it; got damping={damping!r}"
        )
    return Settings(
        quasi, float(damping), float(tolerance), max_iterations, default_method(), unroll
    )


def newton_settings(cell: Cell, carry: Carry, remat: bool, unroll: Any) -> Settings:
    """``rnn(..., parallel="newton")``'s settings: exact Newton, the dtype's tolerance."""
    check_newton(cell, remat)
    return settings_for(carry, unroll=unroll)
