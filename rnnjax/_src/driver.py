"""``rnn``: drives a cell over a sequence with ``jax.lax.scan``, with masking and reversal."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.cells import Carry, Cell, LSTMState, Params

Array = jax.Array


def _shape_error(argument: str, expected: str, actual: Any) -> ValueError:
    return ValueError(f"rnnjax.rnn: {argument} must have shape {expected}; got {actual}")


def _check_xs(xs: Any, params: Params, time_major: bool) -> tuple[int, tuple[int, ...]]:
    """Returns ``(time, batch_shape)`` after checking rank, dtype and feature size."""
    layout = "[time, *batch, features]" if time_major else "[*batch, time, features]"
    input_size = params.kernel.shape[0]
    expected = layout.replace("features", str(input_size))
    if not hasattr(xs, "shape") or xs.ndim < 2:
        raise _shape_error("xs", f"{expected} (rank >= 2)", getattr(xs, "shape", type(xs)))
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(
            f"rnnjax.rnn: xs must be floating point; got dtype {xs.dtype} with shape {xs.shape}"
            " (embed integer tokens first)"
        )
    if xs.shape[-1] != input_size:
        raise _shape_error("xs", f"{expected} (features = params.kernel.shape[0])", tuple(xs.shape))
    if time_major:
        return xs.shape[0], tuple(xs.shape[1:-1])
    return xs.shape[-2], tuple(xs.shape[:-2])


def _check_seq_lengths(seq_lengths: Any, batch_shape: tuple[int, ...], time: int) -> Array:
    shape = getattr(seq_lengths, "shape", None)
    if shape is None or tuple(shape) != batch_shape:
        raise _shape_error(
            "seq_lengths",
            f"{batch_shape} (the batch shape of xs)",
            type(seq_lengths) if shape is None else tuple(shape),
        )
    if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
        raise TypeError(
            f"rnnjax.rnn: seq_lengths must have an integer dtype; got {seq_lengths.dtype}"
            f" with shape {tuple(shape)}"
        )
    if not isinstance(seq_lengths, jax.core.Tracer):
        concrete = np.asarray(seq_lengths)
        if concrete.size and (concrete.min() < 0 or concrete.max() > time):
            raise ValueError(
                f"rnnjax.rnn: seq_lengths must lie in [0, {time}] (the length of xs);"
                f" got values from {concrete.min()} to {concrete.max()}"
            )
    return jnp.asarray(seq_lengths)


def _check_carry(initial_carry: Any, expected: Carry) -> Carry:
    """Returns ``initial_carry`` in the cell's carry structure, or raises naming the shapes."""
    if isinstance(expected, LSTMState) and isinstance(initial_carry, (tuple, list)):
        initial_carry = LSTMState(*initial_carry) if len(initial_carry) == 2 else initial_carry
    same_structure = jax.tree.structure(initial_carry) == jax.tree.structure(expected)  # type: ignore[operator]
    shapes = [tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves(initial_carry)]
    if not same_structure or shapes != [leaf.shape for leaf in jax.tree.leaves(expected)]:
        expected_shapes = jax.tree.map(lambda leaf: tuple(leaf.shape), expected)
        actual_shapes = jax.tree.map(lambda leaf: tuple(jnp.shape(leaf)), initial_carry)
        raise _shape_error("initial_carry", f"{expected_shapes} ([*batch, hidden])", actual_shapes)
    return initial_carry


def rnn(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs``: one ``lax.scan``, any JAX transformation.

    The input projection ``xs @ kernel + bias`` runs for all steps as one matmul before the
    scan, so each step does one ``[batch, H] x [H, gates * H]`` matmul and the gates.

    Args:
      cell: a :class:`~rnnjax.Cell`, e.g. ``rnnjax.lstm(128)``.
      params: the cell's params, from ``cell.init``.
      xs: ``[*batch, time, features]``, or ``[time, *batch, features]`` with
        ``time_major=True``; ``*batch`` is any number of axes, none included.
      initial_carry: the carry before the first step processed, ``[*batch, hidden]`` per
        array (an :class:`~rnnjax.LSTMState` or ``(h, c)`` for the LSTM). Default zeros.
      seq_lengths: integer ``[*batch]``. Steps ``t >= seq_lengths[b]`` are padding: they emit
        zeros, leave the carry unchanged, and their values never change any output, carry or
        gradient (even when they are NaN). Default: every step is valid.
      reverse: run each sequence's valid part from its last valid step back to step 0 (what
        PyTorch's packed bidirectional does). Outputs stay at their original positions and
        the final carry is the one after step 0.
      time_major: the layout of ``xs`` and ``ys``.
      unroll: passed to ``lax.scan``.
      remat: recompute each step's gate activations in the backward pass
        (``jax.checkpoint``), keeping only the carries: less memory, a little more compute.

    Returns:
      ``(final_carry, ys)``: the carry after the last valid step of each sequence (the
      initial carry where the length is 0), and the outputs ``[*batch, time, hidden]`` (or
      time-major), zero past each sequence's length. The carry keeps the dtype of the initial
      carry, which by default is that of ``xs`` and ``params`` promoted together.

    Raises:
      ValueError, TypeError: at trace time, naming the argument and the expected and actual
        shapes, for a wrong rank, feature size, carry, or ``seq_lengths``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jnp.ones((2, 5, 3))                       # [batch, time, features]
      >>> carry, ys = rnnjax.rnn(cell, params, xs, seq_lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.h.shape                        # outputs, final hidden state
      ((2, 5, 8), (2, 8))
      >>> bool((ys[1, 2:] == 0).all())                   # zeros past the length
      True
    """
    time, batch_shape = _check_xs(xs, params, time_major)
    xs = jnp.asarray(xs)  # a NumPy float64 array becomes float32 unless x64 is enabled
    dtype = jnp.result_type(xs, params.recurrent_kernel)
    expected_carry = jax.eval_shape(lambda: cell.initial_carry(params, batch_shape, dtype))
    if initial_carry is None:
        initial_carry = cell.initial_carry(params, batch_shape, dtype)
    else:
        initial_carry = _check_carry(initial_carry, expected_carry)

    time_axis = 0 if time_major else len(batch_shape)
    inputs = jnp.moveaxis(xs, time_axis, 0)  # [time, *batch, features]: the scan's layout
    if seq_lengths is None:
        valid = None
    else:
        lengths = _check_seq_lengths(seq_lengths, batch_shape, time)
        valid = jnp.arange(time).reshape((time,) + (1,) * len(batch_shape)) < lengths[None]
        # Zero the padding first, so no value there (not even NaN) reaches an output or a
        # gradient; padded steps then compute on finite inputs and are discarded.
        inputs = jnp.where(valid[..., None], inputs, 0)

    if _hoist_input_projection():
        inputs, step = cell.project(params, inputs), cell.projected_step
    else:
        step = cell.step
    if remat:
        step = jax.checkpoint(step, prevent_cse=False)

    def body(carry: Carry, inputs_t: tuple[Array, Array | None]) -> tuple[Carry, Array]:
        x_t, valid_t = inputs_t
        new_carry, y = step(params, carry, x_t)
        if valid_t is not None:
            keep = valid_t[..., None]
            new_carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
            y = jnp.where(keep, y, 0)
        new_carry = jax.tree.map(lambda new, old: new.astype(old.dtype), new_carry, carry)
        return new_carry, y

    final_carry, ys = jax.lax.scan(
        body, initial_carry, (inputs, valid), reverse=reverse, unroll=unroll
    )
    return final_carry, jnp.moveaxis(ys, 0, time_axis)


def _hoist_input_projection() -> bool:
    """Whether to run the input projection for all steps before the scan (the cuDNN way).

    On XLA's CPU backend the per-step projection measured faster (LSTM, B64 T256 I256 H256,
    forward+backward: 404 ms per-step against 669 ms hoisted; see benchmarks/README.md), so
    the CPU keeps it inside the step; accelerators hoist it into one large matmul.
    """
    return jax.default_backend() != "cpu"
