"""``rnn``: drives a cell over a sequence with ``jax.lax.scan``, with masking and reversal."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.cells import Carry, Cell, LSTMState, Params, hidden_state

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
    fused_backward: bool = False,
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs``: one ``lax.scan``, any JAX transformation.

    On accelerators the input projection ``xs @ kernel + bias`` runs for all steps as one
    matmul before the scan, so each step does one ``[batch, H] x [H, gates * H]`` matmul and
    the gates; on CPU each step projects its own input, which measured faster there.

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
      fused_backward: differentiate by a hand-scheduled backward pass (``jax.custom_vjp``)
        instead of autodiff of the scan: the reverse scan carries only the state's cotangent
        through ``recurrent_kernel``, and the weight and input gradients are three large
        matmuls over all steps after it. Same values and gradients to rounding; faster
        (most with bfloat16 weights; see benchmarks/README.md), but reverse mode only:
        ``jax.jvp`` and ``jax.jacfwd`` raise, and higher derivatives are those of the
        hand-written pass. Needs a cell with ``recurrent``, ``combine`` and ``gates`` (the built-in
        ``simple_rnn``, ``lstm`` and ``gru(reset_after=True)``).

    Returns:
      ``(final_carry, ys)``: the carry after the last valid step of each sequence (the
      initial carry where the length is 0), and the outputs ``[*batch, time, hidden]`` (or
      time-major), zero past each sequence's length. The carry keeps the dtype of the initial
      carry, which by default is that of ``xs`` and ``params`` promoted together.

    Raises:
      ValueError, TypeError: at trace time, naming the argument and the expected and actual
        shapes, for a wrong rank, feature size, carry, or ``seq_lengths``; and for
        ``fused_backward=True`` with a cell that has no ``recurrent``/``gates`` split.

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

    if fused_backward:
        if cell.recurrent is None or cell.combine is None or cell.gates is None:
            raise ValueError(
                "rnnjax.rnn: fused_backward=True needs a cell with `recurrent`, `combine` and"
                " `gates` (simple_rnn, lstm, gru(reset_after=True)); this cell has none"
            )
        final_carry, ys = _fused_scan(
            cell, reverse, unroll, remat, params, initial_carry, inputs, valid
        )
        return final_carry, jnp.moveaxis(ys, 0, time_axis)

    if _hoist_input_projection():
        inputs, step = cell.project(params, inputs), cell.projected_step
    else:
        step = cell.step
    if remat:
        step = jax.checkpoint(step, prevent_cse=False)

    def body(carry: Carry, inputs_t: tuple[Array, Array | None]) -> tuple[Carry, Array]:
        x_t, valid_t = inputs_t
        return _advance(carry, *step(params, carry, x_t), valid_t)

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


def _advance(
    carry: Carry, new_carry: Carry, y: Array, valid_t: Array | None
) -> tuple[Carry, Array]:
    """One scan update: a padded step keeps the carry and emits zeros; dtypes stay the carry's."""
    if valid_t is not None:
        keep = valid_t[..., None]
        new_carry = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
        y = jnp.where(keep, y, 0)
    new_carry = jax.tree.map(lambda new, old: new.astype(old.dtype), new_carry, carry)
    return new_carry, y.astype(hidden_state(carry).dtype)


# --- The fused backward pass -----------------------------------------------------------------
#
# Autodiff of the scan accumulates the weight gradients inside the reverse scan: per step,
# ``h_{t-1}^T dz_t`` and ``x_t^T dz_t``, small matmuls with the batch as the contraction. Here
# the reverse scan computes only ``dz_t`` (the cotangent of the pre-activations) and the
# state's cotangent through ``recurrent_kernel``; the gradients of the weights and inputs are
# then the VJPs of ``cell.project`` and ``cell.recurrent`` over all steps at once, as 2-D
# matmuls. The forward pass keeps each step's carry and pre-activations ``z`` (with ``remat``,
# the carry only, and the backward pass recomputes ``z``).


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _fused_scan(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
) -> tuple[Carry, Array]:
    outputs, _ = _fused_forward(cell, reverse, unroll, remat, params, initial_carry, inputs, valid)
    return outputs


def _preactivations(cell: Cell, params: Params, carry: Carry, x_t: Array) -> Array:
    assert cell.recurrent is not None and cell.combine is not None
    return cell.combine(cell.project(params, x_t), cell.recurrent(params, hidden_state(carry)))


def _fused_forward(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    params: Params,
    initial_carry: Carry,
    inputs: Array,
    valid: Array | None,
) -> tuple[tuple[Carry, Array], Any]:
    assert cell.gates is not None
    gates = cell.gates

    def body(carry: Carry, inputs_t: tuple[Array, Array | None]) -> tuple[Carry, Any]:
        x_t, valid_t = inputs_t
        z = _preactivations(cell, params, carry, x_t)
        new_carry, y = _advance(carry, *gates(carry, z), valid_t)
        return new_carry, (y, carry if remat else (carry, z))

    final_carry, (ys, saved) = jax.lax.scan(
        body, initial_carry, (inputs, valid), reverse=reverse, unroll=unroll
    )
    return (final_carry, ys), (params, inputs, valid, saved)


def _fused_backward(
    cell: Cell,
    reverse: bool,
    unroll: int | bool,
    remat: bool,
    residuals: Any,
    cotangents: tuple[Carry, Array],
) -> tuple[Params, Carry, Array, None]:
    assert cell.recurrent is not None and cell.combine is not None and cell.gates is not None
    recurrent, combine, gates = cell.recurrent, cell.combine, cell.gates
    params, inputs, valid, saved = residuals
    ct_final, ct_ys = cotangents
    carries = saved if remat else saved[0]  # the carry before each step, [time, *batch, ...]

    def split_cotangent(ct_z: Array, h: Array, x: Array) -> tuple[Array, Array]:
        """``combine``'s transpose: the cotangents of ``projected`` and ``recurrent``."""
        shapes = jax.eval_shape(lambda h, x: (cell.project(params, x), recurrent(params, h)), h, x)
        return jax.linear_transpose(combine, *shapes)(ct_z)

    def body(ct_carry: Carry, inputs_t: Any) -> tuple[Carry, Array]:
        x_t, valid_t, saved_t, ct_y = inputs_t
        carry, z = (saved_t, _preactivations(cell, params, saved_t, x_t)) if remat else saved_t
        ct_new, ct_kept = ct_carry, None
        if valid_t is not None:
            keep = valid_t[..., None]
            ct_y = jnp.where(keep, ct_y, 0)
            ct_new = jax.tree.map(lambda ct: jnp.where(keep, ct, 0), ct_carry)
            ct_kept = jax.tree.map(lambda ct: jnp.where(keep, 0, ct), ct_carry)
        outputs, gates_vjp = jax.vjp(gates, carry, z)
        ct_outputs = jax.tree.map(lambda ct, out: ct.astype(out.dtype), (ct_new, ct_y), outputs)
        ct_carry, ct_z = gates_vjp(ct_outputs)
        _, ct_recurrent = split_cotangent(ct_z, hidden_state(carry), x_t)
        _, through_matmul = jax.vjp(lambda c: recurrent(params, hidden_state(c)), carry)
        ct_carry = jax.tree.map(jnp.add, ct_carry, through_matmul(ct_recurrent)[0])
        if ct_kept is not None:
            ct_carry = jax.tree.map(jnp.add, ct_carry, ct_kept)
        return ct_carry, ct_z

    ct_initial, ct_zs = jax.lax.scan(
        body, ct_final, (inputs, valid, saved, ct_ys), reverse=not reverse, unroll=unroll
    )

    def rows(a: Array) -> Array:  # [time, *batch, n] -> [time * batch, n]: 2-D matmuls
        return a.reshape(-1, a.shape[-1])

    hs, xs = rows(hidden_state(carries)), rows(inputs)
    ct_projected, ct_recurrent = split_cotangent(rows(ct_zs), hs, xs)
    _, project_vjp = jax.vjp(cell.project, params, xs)
    ct_params, ct_inputs = project_vjp(ct_projected)
    _, recurrent_vjp = jax.vjp(lambda p: recurrent(p, hs), params)
    ct_params = jax.tree.map(jnp.add, ct_params, recurrent_vjp(ct_recurrent)[0])
    return ct_params, ct_initial, ct_inputs.reshape(inputs.shape), None


_fused_scan.defvjp(_fused_forward, _fused_backward)
