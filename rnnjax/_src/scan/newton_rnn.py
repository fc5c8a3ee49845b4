"""``rnnjax.newton_rnn``: :func:`rnnjax.rnn` by Newton's method, with its options and report."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.newton.entry import check_newton, newton_scan, settings_for
from rnnjax._src.newton.solver import NewtonInfo
from rnnjax._src.scan.driver import check_xs, time_leading

Array = jax.Array


def newton_rnn(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    quasi: bool = False,
    damping: float = 0.0,
    tolerance: float | None = None,
    max_iterations: int = 50,
) -> tuple[Carry, Array, NewtonInfo]:
    r"""Runs ``cell`` over all time steps at once by Newton's method (DEER, quasi-DEER, ELK).

    The recurrence :math:`s_t = f(s_{t-1}, x_t)` holds for every :math:`t` at once; each
    Newton iteration linearises it around the current trajectory :math:`s^{(i)}` and solves

    .. math:: s^{(i+1)}_t = J_t\, s^{(i+1)}_{t-1} + f(s^{(i)}_{t-1}, x_t) - J_t\, s^{(i)}_{t-1},
       \qquad J_t = \partial f / \partial s \,\big|_{s^{(i)}_{t-1}},

    a linear recurrence (a parallel scan, ``log T`` deep on an accelerator). Exact Newton for
    a cell with the ``diagonal_jacobian`` capability (its ``J_t`` diagonal, or ``k x k``
    blocks per unit for a carry of ``k`` arrays); ``quasi=True`` runs any cell with the
    diagonal of its Jacobian (quasi-DEER), optionally damped (ELK). Values and gradients are
    those of :func:`rnnjax.rnn` (same masking, resets, reverse and initial carry), to the
    tolerance: when the iteration stops at ``max_iterations`` without reaching it, the result
    is the sequential scan's, and ``info.converged`` is false.

    Args:
      cell, params, xs, initial_carry, seq_lengths, resets, reverse, time_major: as for
        :func:`rnnjax.rnn`. The carry's arrays must all be ``[*batch, hidden]``.
      quasi: use the diagonal of the Jacobian, from autodiff: required for a cell without
        ``diagonal_jacobian`` (``gru``, ``lstm``), where it converges more slowly or not at
        all (measured in ``docs/guides/parallel_evaluation.md``).
      damping: ELK's :math:`\lambda \ge 0` (``quasi`` only): each iteration becomes a Kalman
        filter that observes the last trajectory with noise :math:`1/\lambda`, shrinking the
        linearisation where plain quasi-Newton overflows. ``0``: undamped.
      tolerance: stop when :math:`\max |s_t - f(s_{t-1}, x_t)| / (1 + |f(s_{t-1}, x_t)|)`
        is at most this. Default by the carry's dtype: ``1e-4`` float32, ``1e-7`` float64.
      max_iterations: the cap; exact Newton is exact after ``T`` iterations in exact
        arithmetic, and usually converges in a handful.

    Returns:
      ``(final_carry, ys, info)``: :func:`rnnjax.rnn`'s two results and a
      :class:`~rnnjax.NewtonInfo` (iterations run, final residual, converged).

    Raises:
      ValueError, TypeError: as :func:`rnnjax.rnn`, and for a cell without
        ``diagonal_jacobian`` unless ``quasi``, ``damping`` without ``quasi``, a negative
        tolerance or damping, a cap below 1, or carry arrays of different shapes.

    Differentiation: by implicit differentiation at the solution, not through the
    iterations: the tangent solves :math:`ds_t = J_t\, ds_{t-1} + (\partial f/\partial
    \theta)\, d\theta` with the exact Jacobian (a parallel linear recurrence for a
    ``diagonal_jacobian`` cell, a scan of Jacobian-vector products for a dense one), under a
    ``jax.custom_jvp``; reverse mode is its transpose, one reverse linear recurrence.
    ``jax.jvp``, ``grad`` and ``grad`` of ``grad`` work. Under ``jax.vmap`` the fallback's
    ``lax.cond`` becomes a select that runs the sequential scan too: batch with a batch
    axis instead.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 64, 3))
      >>> carry, ys, info = rnnjax.newton_rnn(cell, params, xs, quasi=True)
      >>> bool(info.converged), int(info.iterations) < 64
      (True, True)
      >>> _, reference = rnnjax.rnn(cell, params, xs)
      >>> bool(jnp.allclose(ys, reference, atol=1e-4))
      True
    """
    where = "rnnjax.newton_rnn"
    if not isinstance(quasi, bool):
        raise TypeError(f"{where}: quasi must be a bool; got {quasi!r}")
    check_newton(cell, False, where, quasi)
    check_xs(cell, params, xs, time_major, where)
    xs = jnp.asarray(xs)
    scan = time_leading(cell, params, xs, time_major, initial_carry, seq_lengths, resets, where)
    settings = settings_for(scan.initial_carry, quasi, damping, tolerance, max_iterations, 1, where)
    final_carry, ys, info = newton_scan(
        cell, settings, params, scan.initial_carry, scan.inputs, scan.valid, scan.flags,
        scan.fresh, reverse,
    )  # fmt: skip
    return final_carry, jnp.moveaxis(ys, 0, scan.time_axis), info
