"""``linear_recurrence``: ``h_t = a_t * h_{t-1} + b_t`` over a time axis, sequential or parallel.

The recurrence is elementwise (diagonal ``a``), so it needs no logarithms: a parallel scan
combines pairs ``(a, b)`` as ``(a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2)``, products of
numbers in ``[0, 1]`` underflow to zero rather than overflow, and nothing is subtracted, so
there is no cancellation. Padded steps become the identity ``(1, 0)``, which keeps the carry.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.checks import check_seq_lengths

Array = jax.Array
Method = Literal["sequential", "associative"]
METHODS = ("sequential", "associative")


def default_method() -> Method:
    """``"sequential"`` on CPU, where a scan of the elementwise update measured faster than
    ``jax.lax.associative_scan``; ``"associative"`` on accelerators (depth ``log T``)."""
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def _combine(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
    (a1, b1), (a2, b2) = earlier, later
    return a1 * a2, a2 * b1 + b2


def _scan(a: Array, b: Array, initial: Array, reverse: bool, method: Method) -> tuple[Array, Array]:
    """``(final, hs)`` of the recurrence over ``a, b [time, ...]`` from ``initial``."""
    if method == "sequential":

        def body(h: Array, ab: tuple[Array, Array]) -> tuple[Array, Array]:
            h = ab[0] * h + ab[1]
            return h, h

        # unroll=1: the loop body is one fused elementwise op; unrolling splits the fusion
        # and measured 2-3x slower on CPU.
        return jax.lax.scan(body, initial, (a, b), reverse=reverse)
    if reverse:
        a, b = jnp.flip(a, 0), jnp.flip(b, 0)
    b = jnp.concatenate([a[:1] * initial[None] + b[:1], b[1:]])  # the initial state enters step 0
    _, hs = jax.lax.associative_scan(_combine, (a, b), axis=0)
    hs = jnp.flip(hs, 0) if reverse else hs
    final = (hs[0] if reverse else hs[-1]) if hs.shape[0] else initial
    return final, hs


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _recurrence(
    a: Array, b: Array, initial: Array, reverse: bool, method: Method
) -> tuple[Array, Array]:
    return _scan(a, b, initial, reverse, method)


@_recurrence.defjvp
def _recurrence_jvp(
    reverse: bool, method: Method, primals: tuple[Array, ...], tangents: tuple[Array, ...]
) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """The tangent is the same recurrence: ``dh_t = a_t * dh_{t-1} + (da_t * h_{t-1} + db_t)``.

    Linear in the tangents, so reverse mode transposes it into one reverse scan of the
    cotangents with ``a`` as the only residual besides ``hs``: half the work of
    differentiating the scan body step by step, and ``jvp`` and ``hessian`` still work.
    """
    a, b, initial = primals
    da, db, dinitial = tangents
    final, hs = _scan(a, b, initial, reverse, method)
    d_b = _times_previous(da, hs, initial, reverse) + db
    dfinal, dhs = _scan(a, d_b, dinitial, reverse, method)
    return (final, hs), (dfinal, dhs)


def _times_previous(da: Array, hs: Array, initial: Array, reverse: bool) -> Array:
    """``da_t * h_{t-1}`` (``h_{t+1}`` with ``reverse``; ``initial`` before the first step).

    The shift is applied to ``da``, not to ``hs``: reverse mode then keeps ``hs`` itself (an
    output already) as the residual rather than a shifted copy of it.
    """
    zero = jnp.zeros_like(da[:1])
    if reverse:  # w_t = da_{t-1} h_t, so da_t h_{t+1} = w_{t+1}
        w = jnp.concatenate([zero, da[:-1]]) * hs
        return jnp.concatenate([w[1:], da[-1:] * initial[None]])
    w = jnp.concatenate([da[1:], zero]) * hs  # w_t = da_{t+1} h_t, so da_t h_{t-1} = w_{t-1}
    return jnp.concatenate([da[:1] * initial[None], w[:-1]])


def scan_time_leading(
    a: Array,
    b: Array,
    initial: Array,
    valid: Array | None,
    *,
    reverse: bool,
    method: Method,
) -> tuple[Array, Array]:
    """The recurrence over ``a, b [time, *batch, n]`` from ``initial [*batch, n]``; returns
    ``(final, hs)`` with ``hs`` zero where ``valid [time, *batch]`` is false, all in the
    dtype of ``a``, ``b`` and ``initial`` promoted together."""
    dtype = jnp.result_type(a, b, initial)
    a, b, initial = a.astype(dtype), b.astype(dtype), initial.astype(dtype)
    if valid is not None:
        keep = valid[..., None]
        a = jnp.where(keep, a, jnp.ones_like(a))  # padding: the identity, keeping the carry
        b = jnp.where(keep, b, jnp.zeros_like(b))
    final, hs = _recurrence(a, b, initial, reverse, method)
    if valid is not None:
        hs = jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return final, hs


def _check(a: Any, b: Any, time_major: bool) -> tuple[int, tuple[int, ...]]:
    where = "rnnjax.linear_recurrence"
    layout = "[time, *batch, n]" if time_major else "[*batch, time, n]"
    for name, value in (("a", a), ("b", b)):
        if not hasattr(value, "shape") or value.ndim < 2:
            shape = getattr(value, "shape", type(value))
            raise ValueError(f"{where}: {name} must have shape {layout} (rank >= 2); got {shape}")
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"{where}: {name} must be floating point; got dtype {value.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"{where}: a and b must have the same shape; got a {a.shape}, b {b.shape}")
    if time_major:
        return a.shape[0], tuple(a.shape[1:-1])
    return a.shape[-2], tuple(a.shape[:-2])


def linear_recurrence(
    a: Array,
    b: Array,
    *,
    initial: Array | None = None,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    method: Method | None = None,
) -> tuple[Array, Array]:
    r"""``h_t = a_t * h_{t-1} + b_t`` along the time axis (elementwise: a diagonal ``a``).

    The primitive under :func:`rnnjax.min_gru` and :func:`rnnjax.min_lstm`, and one to build
    an LRU- or S5-style layer on. Padding, reversal and the initial state follow
    :func:`rnnjax.rnn`: steps ``t >= seq_lengths[b]`` keep the state and emit zeros (their
    values, NaN included, never reach a result or a gradient), and ``reverse`` runs each
    sequence's valid part from its last valid step back to step 0.

    Args:
      a, b: ``[*batch, time, n]`` (``[time, *batch, n]`` with ``time_major``), same shape.
      initial: ``h`` before the first step processed, ``[*batch, n]``; default zeros.
      seq_lengths: integer ``[*batch]``; default every step valid.
      reverse: run each valid part backwards; outputs stay at their positions.
      time_major: the layout of ``a``, ``b`` and the returned ``hs``.
      method: ``"sequential"`` (one ``lax.scan`` of the elementwise update) or
        ``"associative"`` (``lax.associative_scan``, depth ``log T``). Both give the same
        values and gradients to rounding; default: sequential on CPU (measured faster there),
        associative on accelerators.

    Returns:
      ``(final, hs)``: the state after each sequence's last step processed (``initial``
      where the length is 0) and every state, ``hs`` in the layout of ``b``.

    Example:
      >>> import jax.numpy as jnp, rnnjax
      >>> a, b = jnp.full((1, 4, 1), 0.5), jnp.ones((1, 4, 1))
      >>> final, hs = rnnjax.linear_recurrence(a, b, initial=jnp.full((1, 1), 8.0))
      >>> hs[0, :, 0]                       # 0.5 * 8 + 1, 0.5 * 5 + 1, ...
      Array([5.   , 3.5  , 2.75 , 2.375], dtype=float32)
    """
    time, batch_shape = _check(a, b, time_major)
    if method is None:
        method = default_method()
    if method not in METHODS:
        raise ValueError(
            f"rnnjax.linear_recurrence: method must be one of {METHODS}; got {method!r}"
        )
    a, b = jnp.asarray(a), jnp.asarray(b)
    expected = (*batch_shape, a.shape[-1])
    if initial is None:
        initial = jnp.zeros(expected, b.dtype)
    elif np.shape(initial) != expected:
        raise ValueError(
            f"rnnjax.linear_recurrence: initial must have shape [*batch, n] = {expected};"
            f" got {np.shape(initial)}"
        )
    time_axis = 0 if time_major else len(batch_shape)
    a, b = jnp.moveaxis(a, time_axis, 0), jnp.moveaxis(b, time_axis, 0)
    valid = None
    if seq_lengths is not None:
        lengths = check_seq_lengths(seq_lengths, batch_shape, time, "rnnjax.linear_recurrence")
        valid = jnp.arange(time).reshape((time,) + (1,) * len(batch_shape)) < lengths[None]
    final, hs = scan_time_leading(a, b, jnp.asarray(initial), valid, reverse=reverse, method=method)
    return final, jnp.moveaxis(hs, 0, time_axis)


def split_complex(h: Array) -> Array:
    """A merged carry ``[..., 2N]`` (real parts, then imaginary parts) as complex ``[..., N]``."""
    real, imag = jnp.split(h.astype(jnp.promote_types(h.dtype, jnp.float32)), 2, axis=-1)
    return jax.lax.complex(real, imag)


def merge_complex(h: Array) -> Array:
    """A complex ``[..., N]`` as a merged real ``[..., 2N]``: real parts, then imaginary parts."""
    return jnp.concatenate([h.real, h.imag], axis=-1)
