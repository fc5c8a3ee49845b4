"""Running over chunks of time: segmented checkpointing and truncated BPTT (:func:`tbptt`).

:func:`in_chunks` runs a function chunk after chunk along the time axis, the full chunks in
one ``lax.scan`` over stacked slices and the remainder on its own, each chunk seeing its own
part of ``seq_lengths``. :func:`rnnjax.layer` uses it with ``jax.checkpoint`` around each
chunk (``remat="segments"``); :func:`tbptt` with ``jax.lax.stop_gradient`` between chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.core.checks import check_seq_lengths
from rnnjax._src.core.contract import Carry, Layer, Params

Array = jax.Array
Run = Callable[[Params, Array, Carry, Array | None], tuple[Carry, Any]]
Block = tuple[int, int, int]  # (start, length, count): ``count`` chunks of ``length`` steps


def _plan(time: int, size: int, reverse: bool, first_apart: bool) -> list[Block]:
    """The blocks of chunks in processing order; with ``first_apart`` the first chunk
    processed is a block of its own."""
    count, rest = divmod(time, size)
    blocks = ([(0, size, count)] if count else []) + ([(count * size, rest, 1)] if rest else [])
    order = blocks[::-1] if reverse else blocks
    start, length, n = order[0]
    if n > 1 and first_apart:
        head = (start + (n - 1) * length, length, 1) if reverse else (start, length, 1)
        tail = (start, length, n - 1) if reverse else (start + length, length, n - 1)
        order = [head, tail, *order[1:]]
    return order


def _stacked(x: Array, n: int, length: int, time_major: bool) -> Array:
    """``[..., n * length, ...]`` (the time axis) to ``[n, *one chunk's shape]``."""
    if time_major:
        return x.reshape(n, length, *x.shape[1:])
    return jnp.moveaxis(x.reshape(*x.shape[:-2], n, length, x.shape[-1]), -3, 0)


def _unstacked(y: Array, time_major: bool) -> Array:
    """The inverse of :func:`_stacked`."""
    if time_major:
        return y.reshape(-1, *y.shape[2:])
    return jnp.moveaxis(y, 0, -3).reshape(*y.shape[1:-2], -1, y.shape[-1])


def in_chunks(
    run: Run,
    params: Params,
    xs: Array,
    carry: Carry | None,
    seq_lengths: Array | None,
    *,
    size: int,
    time_major: bool = False,
    reverse: bool = False,
    between: Callable[[Carry], Carry] | None = None,
) -> tuple[Carry, Any]:
    """Runs ``run(params, xs_chunk, carry, lengths_chunk)`` over chunks of ``size`` steps.

    ``xs`` is ``[*batch, time, features]`` (``[time, *batch, features]`` with
    ``time_major``), and so is each chunk. When ``carry`` is ``None`` or ``between`` is
    given, the first chunk runs on its own, so that it can start from ``carry=None`` and no
    ``between`` applies before it. With ``reverse`` the chunks run from last to first, so
    each sequence's valid steps are visited from its last back to step 0.
    """
    axis = 0 if time_major else xs.ndim - 2
    batch_rank = xs.ndim - 2
    order = _plan(xs.shape[axis], size, reverse, carry is None or between is not None)

    def lengths_from(starts: Array, length: int) -> Array | None:
        if seq_lengths is None:
            return None
        lengths = seq_lengths.reshape((1,) * (starts.ndim - seq_lengths.ndim) + seq_lengths.shape)
        return jnp.clip(lengths - starts, 0, length)

    def body(carry: Carry, inputs: tuple[Array, Array | None]) -> tuple[Carry, Any]:
        if between is not None:
            carry = between(carry)
        return run(params, inputs[0], carry, inputs[1])

    pieces = {}
    for index, (start, length, n) in enumerate(order):
        chunk = jax.lax.slice_in_dim(xs, start, start + n * length, axis=axis)
        if n == 1:
            if index > 0 and between is not None:
                carry = between(carry)
            carry, ys = run(params, chunk, carry, lengths_from(jnp.asarray(start), length))
        else:
            starts = start + length * jnp.arange(n).reshape((n,) + (1,) * batch_rank)
            inputs = (_stacked(chunk, n, length, time_major), lengths_from(starts, length))
            carry, ys = jax.lax.scan(body, carry, inputs, reverse=reverse)
            ys = jax.tree.map(lambda y: _unstacked(y, time_major), ys)
        pieces[start] = ys
    parts = [pieces[start] for start in sorted(pieces)]
    if len(parts) == 1:
        return carry, parts[0]
    return carry, jax.tree.map(lambda *ys: jnp.concatenate(ys, axis=axis), *parts)


def tbptt(
    layer: Layer,
    params: Params,
    xs: Array,
    *,
    chunk_length: int,
    seq_lengths: Array | None = None,
    initial_carry: Carry | None = None,
    key: Array | None = None,
    deterministic: bool = True,
) -> tuple[Carry, Any]:
    """Runs a forward ``layer`` over ``xs`` in chunks, with truncated backpropagation.

    The layer runs chunk after chunk of ``chunk_length`` steps (the last chunk takes the
    remainder), each chunk starting from the previous one's final carry passed through
    ``jax.lax.stop_gradient``: the forward values are exactly one pass's, while gradients
    flow back at most one chunk (Keras ``stateful=True`` training, the TBPTT of Williams and
    Peng 1990). Every chunk uses the same ``key``, so dropout masks match one pass's.

    For stateful use across calls, pass the returned final carry as the next call's
    ``initial_carry``. To reset some sequences between calls, zero their entries; to reset
    within a call, see ``resets=`` of :func:`rnnjax.rnn`.

    Args:
      layer: a :class:`~rnnjax.Layer` that runs forward in time (not ``reverse``, not
        bidirectional: those read the future, which chunks cut off).
      params: the layer's params.
      xs: ``[*batch, time, features]``.
      chunk_length: ``K``, steps per chunk.
      seq_lengths, initial_carry, key, deterministic: as ``layer.apply``.

    Returns:
      ``(final_carry, ys)``, equal to ``layer.apply``'s on the whole sequence.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> lstm = rnnjax.layer(rnnjax.lstm(8))
      >>> params = lstm.init(jax.random.key(0), 3)
      >>> carry, ys = rnnjax.tbptt(lstm, params, jnp.ones((2, 100, 3)), chunk_length=16)
      >>> ys.shape
      (2, 100, 8)
    """
    where = "rnnjax.tbptt"
    if isinstance(chunk_length, bool) or not isinstance(chunk_length, int) or chunk_length < 1:
        raise ValueError(f"{where}: chunk_length must be a positive int; got {chunk_length!r}")
    if not hasattr(xs, "shape") or jnp.ndim(xs) < 2:
        raise ValueError(
            f"{where}: xs must have shape [*batch, time, features]; got"
            f" {getattr(xs, 'shape', type(xs))}"
        )
    xs = jnp.asarray(xs)
    if seq_lengths is not None:  # the whole sequence's lengths, as one pass would check them
        seq_lengths = check_seq_lengths(seq_lengths, xs.shape[:-2], xs.shape[-2], where)

    def run(p: Params, x: Array, c: Carry, lengths: Array | None) -> tuple[Carry, Any]:
        return layer.apply(
            p, x, seq_lengths=lengths, initial_carry=c, key=key, deterministic=deterministic
        )

    return in_chunks(
        run,
        params,
        xs,
        initial_carry,
        seq_lengths,
        size=chunk_length,
        between=jax.lax.stop_gradient,
    )


def in_segments(
    run: Run,
    params: Params,
    xs: Array,
    carry: Carry,
    seq_lengths: Array | None,
    *,
    segment_length: int | None,
    reverse: bool,
) -> tuple[Carry, Array]:
    """Segmented checkpointing: ``run`` over segments of ``xs [*batch, time, features]``,
    each under ``jax.checkpoint``, so the backward pass keeps one carry per segment plus one
    segment's activations (about ``2 sqrt(T)`` carries for the default length
    ``ceil(sqrt(T))``). ``run`` takes time-major chunks; slices along the leading axis need
    no copies."""
    size = segment_length or max(1, math.ceil(math.sqrt(xs.shape[-2])))
    final, ys = in_chunks(
        jax.checkpoint(run),
        params,
        jnp.moveaxis(xs, -2, 0),
        carry,
        seq_lengths,
        size=size,
        time_major=True,
        reverse=reverse,
    )
    return final, jnp.moveaxis(ys, 0, -2)
