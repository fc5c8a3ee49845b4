"""The linear recurrences of Newton's method over a sequence, ``s_t = A_t s_{t-1} + b_t``.

``s [time, *batch, H, k]``: the carry's ``k`` leaves stacked per hidden unit. ``A`` is either
elementwise, ``[time, *batch, H, k]`` (a diagonal Jacobian, exact for ``k = 1`` and the
quasi-Newton approximation otherwise), or per-unit blocks ``[time, *batch, H, k, k]`` (the
exact Jacobian of a cell with ``k > 1`` carry arrays, ParaLSTM's ``(h, c)``). Either runs as
one ``lax.scan`` or as ``lax.associative_scan`` (depth ``log T``), whose pairs compose as
``(A1, b1) then (A2, b2) = (A2 A1, A2 b1 + b2)``.

Everything here is plain JAX (no custom derivatives): it is linear in ``b`` and in the initial
state, so the tangent rule of :mod:`rnnjax._src.newton.solver` uses it and JAX transposes it
into the reverse recurrence of the backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def apply(a: Array, s: Array) -> Array:
    """``A s`` for elementwise ``A`` (same rank as ``s``) or blocks (one axis more)."""
    if a.ndim == s.ndim:
        return a * s
    return jnp.einsum("...ij,...j->...i", a, s)


def _compose(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
    (a1, b1), (a2, b2) = earlier, later
    if a1.ndim == b1.ndim:
        return a2 * a1, a2 * b1 + b2
    return jnp.einsum("...ij,...jk->...ik", a2, a1), apply(a2, b1) + b2


def solve(a: Array, b: Array, initial: Array, method: str) -> Array:
    """Every ``s_t`` of ``s_t = A_t s_{t-1} + b_t`` over ``time`` (axis 0) from ``initial``.

    ``method`` is ``"sequential"`` (one scan) or ``"associative"``.
    """
    if method == "sequential":

        def body(s: Array, ab: tuple[Array, Array]) -> tuple[Array, Array]:
            s = apply(ab[0], s) + ab[1]
            return s, s

        return jax.lax.scan(body, initial, (a, b))[1]
    b = jnp.concatenate([apply(a[0], initial)[None] + b[:1], b[1:]])
    return jax.lax.associative_scan(_compose, (a, b), axis=0)[1]


def damp(a: Array, b: Array, iterate: Array, damping: float) -> tuple[Array, Array]:
    """ELK's damping (Gonzalez et al. 2024) of an elementwise Newton step.

    The Newton step is read as a linear-Gaussian state-space model, dynamics
    ``s_t = a_t s_{t-1} + b_t`` with unit noise, observing the current ``iterate`` with noise
    ``1 / damping``; the step is its Kalman filter's mean. Per element the gain ``K_t`` follows
    the Riccati recursion ``P_t^- = a_t^2 P_{t-1} + 1``, ``K_t = damping P_t^- / (damping
    P_t^- + 1)``, ``P_t = (1 - K_t) P_t^-`` (``P_0 = 0``: the initial carry is known), and the
    mean is again a linear recurrence, ``s_t = (1 - K_t) (a_t s_{t-1} + b_t) + K_t iterate_t``.
    Its fixed point is Newton's (the iterate that solves the recurrence is observed exactly);
    the gains shrink ``a_t`` (no overflow where ``|a_t| > 1``) and pull each step toward the
    last iterate: a trust region.
    """

    def riccati(variance: Array, a_t: Array) -> tuple[Array, Array]:
        prior = a_t * a_t * variance + 1
        gain = damping * prior / (damping * prior + 1)
        return (1 - gain) * prior, gain

    gains = jax.lax.scan(riccati, jnp.zeros_like(a[0]), a)[1]
    return (1 - gains) * a, (1 - gains) * b + gains * iterate
