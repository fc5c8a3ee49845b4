"""Sequence layers over the cells and :func:`rnnjax.rnn`, composed the optax way.

A :class:`Layer` is a pair of pure functions, ``init(key, input_size) -> params`` and
``apply(params, xs, *, seq_lengths=None, initial_carry=None, key=None, deterministic=True)
-> (final_carry, ys)``, with every setting held in a closure. Layers compose into layers:
:func:`bidirectional` pairs a forward and a backward layer, :func:`stack` runs layers one
after another. Every layer runs its cell through :func:`rnnjax.rnn`, so there is one numerics
path; dropout, resets and mixed precision are wrappers around the cell and its inputs, never
a second copy of the cell equations.

``xs`` is batch-major everywhere here: ``[*batch, time, features]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells import BatchShape, Carry, Cell, LSTMState, Params
from rnnjax._src.driver import _check_xs, rnn

Array = jax.Array
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")


class Layer(NamedTuple):
    """A sequence layer: an immutable bundle of pure functions (the optax pattern).

    Attributes:
      init: ``(key, input_size) -> params``, a pytree of arrays.
      apply: ``(params, xs, *, seq_lengths=None, initial_carry=None, key=None,
        deterministic=True) -> (final_carry, ys)`` with ``xs [*batch, time, input_size]``,
        ``seq_lengths`` integer ``[*batch]`` and ``ys [*batch, time, output_size]``, zero past
        each sequence's length. ``key`` draws the dropout masks; it is needed only when
        ``deterministic=False`` and some dropout rate is positive.
      flip: ``() -> Layer``, the same layer running the other way in time, which
        :func:`bidirectional` uses as its default backward layer; ``None`` where there is no
        such layer.
    """

    init: Callable[[Array, int], Params]
    apply: Callable[..., tuple[Carry, Any]]
    flip: Callable[[], Layer] | None = None


class BidirectionalParams(NamedTuple):
    """Parameters of :func:`bidirectional`: one pytree per direction."""

    forward: Params
    backward: Params


# --- Helpers -------------------------------------------------------------------------------


def _check_rate(where: str, name: str, rate: Any) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"{where}: {name} must be a number in [0, 1); got {rate!r}")


def _keep_mask(key: Array, rate: float, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    """Inverted-dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def _require_key(where: str, key: Array | None) -> Array:
    if key is None:
        raise ValueError(
            f"{where}: key is required when deterministic=False and a dropout rate is > 0;"
            " got key=None (pass key=jax.random.key(...), or deterministic=True to evaluate)"
        )
    return key


def _h_shape_dtype(cell: Cell, params: Params, batch_shape: tuple[int, ...], dtype: Any) -> Any:
    carry = jax.eval_shape(lambda: cell.initial_carry(params, batch_shape, dtype))
    return carry.h if isinstance(carry, LSTMState) else carry


def _output_size(where: str, layer: Layer, params: Params, input_size: int, index: int) -> int:
    xs = jax.ShapeDtypeStruct((1, 1, input_size), jnp.float32)
    ys = jax.eval_shape(lambda p, x: layer.apply(p, x)[1], params, xs)
    if not isinstance(ys, jax.ShapeDtypeStruct):
        raise ValueError(
            f"{where}: layer {index} returns {jax.tree.structure(ys)}, not one array, so no layer"
            " can follow it (a bidirectional layer with merge='none'?)"
        )
    return int(ys.shape[-1])


# --- Derived cells: recurrent dropout and resets, both through rnnjax.rnn ------------------
#
# rnnjax.rnn reads ``params.kernel.shape[0]`` (the input size) and ``params.recurrent_kernel``
# (the default carry dtype); the derived params below answer both for the cell they wrap.


class _MaskedParams(NamedTuple):
    """A cell's params plus a per-sequence recurrent dropout mask ``[*batch, hidden]``."""

    params: Params
    recurrent_mask: Array

    @property
    def kernel(self) -> Array:
        return self.params.kernel

    @property
    def recurrent_kernel(self) -> Array:
        return self.params.recurrent_kernel


@functools.cache
def _recurrent_dropout_cell(cell: Cell) -> Cell:
    """``cell`` with ``params.recurrent_mask`` passed to every step (Keras's recurrent dropout)."""

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> Params:
        raise TypeError("rnnjax.layer: a recurrent-dropout cell has no init; init the cell")

    def initial_carry(
        params: _MaskedParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> Carry:
        return cell.initial_carry(params.params, batch_shape, dtype)

    def project(params: _MaskedParams, xs: Array) -> Array:
        return cell.project(params.params, xs)

    def projected_step(
        params: _MaskedParams, carry: Carry, projected: Array
    ) -> tuple[Carry, Array]:
        return cell.projected_step(
            params.params, carry, projected, recurrent_mask=params.recurrent_mask
        )

    def step(params: _MaskedParams, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(params, carry, project(params, x))

    if cell.recurrent is None:
        return Cell(init, initial_carry, step, project, projected_step)
    base_recurrent = cell.recurrent

    def recurrent(params: _MaskedParams, h: Array) -> Array:
        # ``h`` is [*batch, hidden], or the fused backward pass's [time * batch, hidden] rows.
        mask = params.recurrent_mask
        return base_recurrent(
            params.params, (h.reshape(-1, *mask.shape) * mask[None]).reshape(h.shape)
        )

    return Cell(
        init, initial_carry, step, project, projected_step, recurrent, cell.combine, cell.gates
    )


@functools.cache
def _compute_dtype_cell(cell: Cell, compute_dtype: jnp.dtype) -> Cell:
    """``cell`` with its params cast to ``compute_dtype`` inside every function it runs.

    The scan then holds the params in their own dtype (float32), so autodiff accumulates
    their gradients over the time steps in float32, not in ``compute_dtype`` (in bfloat16,
    the recurrent kernel's gradient was 20% off after 1024 steps). XLA hoists the casts out
    of the loop.
    """

    def cast(params: Params) -> Params:
        return _cast_floating(params, compute_dtype)

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> Params:
        raise TypeError("rnnjax.layer: a mixed-precision cell has no init; init the cell")

    def project(params: Params, xs: Array) -> Array:
        return cell.project(cast(params), xs)

    def projected_step(params: Params, carry: Carry, projected: Array, *mask: Array) -> Any:
        return cell.projected_step(cast(params), carry, projected, *mask)

    def step(params: Params, carry: Carry, x: Array, *mask: Array) -> tuple[Carry, Array]:
        return cell.step(cast(params), carry, x, *mask)

    recurrent = None
    if cell.recurrent is not None:
        base_recurrent = cell.recurrent

        def recurrent(params: Params, h: Array) -> Array:
            return base_recurrent(cast(params), h)

    return Cell(
        init, cell.initial_carry, step, project, projected_step, recurrent, cell.combine, cell.gates
    )


class _ResetParams(NamedTuple):
    """A cell's params, for inputs that carry a reset flag as one extra last feature."""

    params: Params

    @property
    def kernel(self) -> jax.ShapeDtypeStruct:
        kernel = self.params.kernel
        return jax.ShapeDtypeStruct((kernel.shape[0] + 1, *kernel.shape[1:]), kernel.dtype)

    @property
    def recurrent_kernel(self) -> Array:
        return self.params.recurrent_kernel


@functools.cache
def _resetting_cell(cell: Cell) -> Cell:
    """``cell`` whose last input feature, when 1, resets the carry to ``cell.initial_carry``."""

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> Params:
        raise TypeError("rnnjax.rnn_with_resets: a resetting cell has no init; init the cell")

    def initial_carry(
        params: _ResetParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> Carry:
        return cell.initial_carry(params.params, batch_shape, dtype)

    def project(params: _ResetParams, xs: Array) -> Array:
        projected = cell.project(params.params, xs[..., :-1])
        return jnp.concatenate([projected, xs[..., -1:].astype(projected.dtype)], axis=-1)

    def projected_step(params: _ResetParams, carry: Carry, projected: Array) -> tuple[Carry, Array]:
        reset = projected[..., -1:] > 0.5  # [*batch, 1]
        first = jax.tree.leaves(carry)[0]
        fresh = cell.initial_carry(params.params, first.shape[:-1], first.dtype)
        carry = jax.tree.map(
            lambda new, old: jnp.where(reset, new.astype(old.dtype), old), fresh, carry
        )
        return cell.projected_step(params.params, carry, projected[..., :-1])

    def step(params: _ResetParams, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(params, carry, project(params, x))

    return Cell(init, initial_carry, step, project, projected_step)


# --- Running a layer over chunks of time: segmented checkpointing and truncated BPTT -------


def _in_chunks(
    run: Callable[[Params, Array, Carry, Array | None], tuple[Carry, Any]],
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
    ``time_major``), and so is each chunk. The full chunks run in one ``lax.scan``, the
    remainder of ``time / size`` on its own. When ``carry`` is ``None`` or ``between`` is
    given, the first chunk also runs on its own, so that it can start from ``carry=None``
    and no ``between`` applies before it. Each chunk sees its own part of ``seq_lengths``;
    with ``reverse`` the chunks run from last to first, so each sequence's valid steps are
    visited from its last back to step 0.
    """
    axis = 0 if time_major else xs.ndim - 2
    batch_shape = xs.shape[1:-1] if time_major else xs.shape[:-2]
    count, rest = divmod(xs.shape[axis], size)
    blocks = ([(0, size, count)] if count else []) + ([(count * size, rest, 1)] if rest else [])
    order = blocks[::-1] if reverse else blocks
    start, length, n = order[0]
    if n > 1 and (carry is None or between is not None):
        head = (start + (n - 1) * length, length, 1) if reverse else (start, length, 1)
        tail = (start, length, n - 1) if reverse else (start + length, length, n - 1)
        order = [head, tail, *order[1:]]

    def lengths_from(starts: Array, length: int) -> Array | None:
        if seq_lengths is None:
            return None
        lengths = seq_lengths.reshape((1,) * (starts.ndim - seq_lengths.ndim) + seq_lengths.shape)
        return jnp.clip(lengths - starts, 0, length)

    def stacked(x: Array, n: int, length: int) -> Array:  # [n, *chunk shape]
        if time_major:
            return x.reshape(n, length, *x.shape[1:])
        return jnp.moveaxis(x.reshape(*x.shape[:-2], n, length, x.shape[-1]), -3, 0)

    def unstacked(y: Array) -> Array:  # the inverse of ``stacked``
        if time_major:
            return y.reshape(-1, *y.shape[2:])
        return jnp.moveaxis(y, 0, -3).reshape(*y.shape[1:-2], -1, y.shape[-1])

    pieces = {}
    for index, (start, length, n) in enumerate(order):
        chunk = jax.lax.slice_in_dim(xs, start, start + n * length, axis=axis)
        if n == 1:
            if index > 0 and between is not None:
                carry = between(carry)
            carry, ys = run(params, chunk, carry, lengths_from(jnp.asarray(start), length))
        else:
            starts = start + length * jnp.arange(n).reshape((n,) + (1,) * len(batch_shape))

            def body(carry: Carry, inputs: tuple[Array, Array | None]) -> tuple[Carry, Any]:
                if between is not None:
                    carry = between(carry)
                return run(params, inputs[0], carry, inputs[1])

            inputs = (stacked(chunk, n, length), lengths_from(starts, length))
            carry, ys = jax.lax.scan(body, carry, inputs, reverse=reverse)
            ys = jax.tree.map(unstacked, ys)
        pieces[start] = ys
    if len(pieces) == 1:
        return carry, next(iter(pieces.values()))
    parts = [pieces[start] for start in sorted(pieces)]
    return carry, jax.tree.map(lambda *ys: jnp.concatenate(ys, axis=axis), *parts)


# --- Mixed precision -----------------------------------------------------------------------


def _cast_floating(tree: Any, dtype: DTypeLike) -> Any:
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


# --- Public layers -------------------------------------------------------------------------


def layer(
    cell: Cell,
    *,
    reverse: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    unroll: int | bool = 1,
    remat: bool | Literal["segments"] = False,
    segment_length: int | None = None,
    compute_dtype: DTypeLike | None = None,
    fused_backward: bool = False,
) -> Layer:
    """A cell run over a sequence by :func:`rnnjax.rnn`: Keras's ``LSTM``, ``GRU``, ``SimpleRNN``.

    Dropout follows Keras and Gal & Ghahramani (2016): ``dropout`` zeroes input features and
    ``recurrent_dropout`` zeroes entries of ``h`` where it enters the recurrent matmul
    (``(h * m) @ recurrent_kernel``; the LSTM's ``c`` is never dropped), each with one mask
    per sequence held fixed over all time steps, kept entries scaled by ``1 / (1 - rate)``.
    Masks are drawn once per call from ``key`` (never per step) and only when
    ``deterministic=False``.

    The recurrent mask reaches the cell's step as ``recurrent_mask`` and multiplies ``h``
    only where it enters the recurrent matmuls, as Keras does: the GRU's ``z * h`` term and
    the LSTM's ``c`` are never dropped.

    Mixed precision (``compute_dtype=jnp.bfloat16``, what ``torch.autocast`` does for its
    RNNs): ``xs`` is cast to ``compute_dtype``, and the params are cast inside the scan (XLA
    hoists the cast out of the loop), so their gradients accumulate over the time steps in
    their own dtype (float32). Every matmul (the input projection, the recurrent matmul, and
    their transposes in the backward pass) takes bfloat16 operands and accumulates in
    float32, while the gates and the whole recurrent state (``h`` and the LSTM's ``c``) stay
    in the params' dtype. ``ys``, the final carry and the gradients come back in the params'
    dtype. Against float32 compute, outputs stay within ``3e-2`` absolute and weight
    gradients within 2% relative over 512 steps (the tests' tolerances).

    Args:
      cell: a :class:`~rnnjax.Cell`, e.g. ``rnnjax.lstm(64)``.
      reverse: run each sequence's valid part from its last valid step back to step 0
        (Keras ``go_backwards`` with outputs at their original positions).
      dropout: rate of the input mask ``[*batch, features]``.
      recurrent_dropout: rate of the recurrent mask ``[*batch, hidden]``.
      unroll: passed to ``lax.scan``.
      remat: ``True`` recomputes each step's gate activations in the backward pass (memory
        ``~T`` carries); ``"segments"`` also checkpoints the scan in segments of
        ``segment_length`` steps, so the backward pass keeps one carry per segment plus one
        segment's activations (memory ``~2 sqrt(T)`` carries for the default length), at the
        cost of a second forward pass. Values and gradients equal the plain scan's.
      segment_length: steps per segment under ``remat="segments"``; default
        ``ceil(sqrt(time))``. A last shorter segment takes the remainder.
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision as above; ``None`` computes
        in the params' dtype.
      fused_backward: passed to :func:`rnnjax.rnn`: the hand-scheduled backward pass, faster
        and reverse mode only.

    Returns:
      A :class:`Layer` whose params are the cell's params. ``apply`` returns
      ``(final_carry, ys)`` as :func:`rnnjax.rnn` does, ``ys [*batch, time, hidden]``.

    Raises:
      ValueError: for a rate outside ``[0, 1)`` or a bad ``remat``/``segment_length`` (at
        construction), and in ``apply`` when ``deterministic=False``, a rate is positive and
        ``key`` is ``None``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> lstm = rnnjax.layer(rnnjax.lstm(8), dropout=0.1, recurrent_dropout=0.2)
      >>> params = lstm.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))                      # [batch, time, features]
      >>> carry, ys = lstm.apply(params, xs, seq_lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.h.shape
      ((2, 5, 8), (2, 8))
      >>> _, ys_train = lstm.apply(params, xs, key=jax.random.key(1), deterministic=False)
    """
    where = "rnnjax.layer"
    _check_rate(where, "dropout", dropout)
    _check_rate(where, "recurrent_dropout", recurrent_dropout)
    if remat not in (False, True, "segments"):
        raise ValueError(f"{where}: remat must be False, True or 'segments'; got {remat!r}")
    if segment_length is not None and (
        remat != "segments"
        or isinstance(segment_length, bool)
        or not isinstance(segment_length, int)
        or segment_length < 1
    ):
        raise ValueError(
            f"{where}: segment_length must be a positive int, used with remat='segments';"
            f" got segment_length={segment_length!r} with remat={remat!r}"
        )
    if compute_dtype is not None and not jnp.issubdtype(compute_dtype, jnp.floating):
        raise ValueError(f"{where}: compute_dtype must be a floating dtype; got {compute_dtype!r}")
    base_cell = (
        cell if compute_dtype is None else _compute_dtype_cell(cell, jnp.dtype(compute_dtype))
    )
    masked_cell = _recurrent_dropout_cell(base_cell)

    def init(key: Array, input_size: int) -> Params:
        return cell.init(key, input_size)

    def apply(
        params: Params,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[Carry, Array]:
        _, batch_shape = _check_xs(xs, params, time_major=False)
        xs = jnp.asarray(xs)
        run_cell, run_params, carry = base_cell, params, initial_carry
        if compute_dtype is not None:
            state_dtype = params.recurrent_kernel.dtype
            if carry is None:
                carry = cell.initial_carry(params, batch_shape, state_dtype)
            elif isinstance(jax.eval_shape(lambda: cell.initial_carry(params, 1)), LSTMState):
                carry = LSTMState(*carry)
            carry = _cast_floating(carry, state_dtype)
            xs = xs.astype(compute_dtype)

        if not deterministic and (dropout > 0 or recurrent_dropout > 0):
            input_key, recurrent_key = jax.random.split(_require_key(where, key))
            if dropout > 0:
                mask = _keep_mask(input_key, dropout, (*batch_shape, xs.shape[-1]), xs.dtype)
                xs = xs * mask[..., None, :]
            if recurrent_dropout > 0:
                if carry is None:
                    dtype = jnp.result_type(xs, run_params.recurrent_kernel)
                    h = _h_shape_dtype(cell, run_params, batch_shape, dtype)
                else:
                    h = carry.h if isinstance(carry, LSTMState) else carry
                    h = h if isinstance(h, jax.Array) else jnp.asarray(h)
                mask = _keep_mask(recurrent_key, recurrent_dropout, h.shape, h.dtype)
                run_cell, run_params = masked_cell, _MaskedParams(run_params, mask)

        if remat == "segments":
            # Time-major inside, so segments are slices along the leading axis (no copies).
            def run(p: Params, x: Array, c: Carry, lengths: Array | None) -> tuple[Carry, Array]:
                return rnn(
                    run_cell,
                    p,
                    x,
                    initial_carry=c,
                    seq_lengths=lengths,
                    reverse=reverse,
                    time_major=True,
                    unroll=unroll,
                    fused_backward=fused_backward,
                )

            if carry is None:  # rnnjax.rnn's default, made here so no segment is run apart
                dtype = jnp.result_type(xs, run_params.recurrent_kernel)
                carry = run_cell.initial_carry(run_params, batch_shape, dtype)
            size = segment_length or max(1, math.ceil(math.sqrt(xs.shape[-2])))
            final, ys = _in_chunks(
                jax.checkpoint(run),
                run_params,
                jnp.moveaxis(xs, -2, 0),
                carry,
                None if seq_lengths is None else jnp.asarray(seq_lengths),
                size=size,
                time_major=True,
                reverse=reverse,
            )
            ys = jnp.moveaxis(ys, 0, -2)
        else:
            final, ys = rnn(
                run_cell,
                run_params,
                xs,
                initial_carry=carry,
                seq_lengths=seq_lengths,
                reverse=reverse,
                unroll=unroll,
                remat=remat,
                fused_backward=fused_backward,
            )
        if compute_dtype is not None:
            final = _cast_floating(final, state_dtype)
            ys = ys.astype(state_dtype)
        return final, ys

    def flip() -> Layer:
        return layer(
            cell,
            reverse=not reverse,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            unroll=unroll,
            remat=remat,
            segment_length=segment_length,
            compute_dtype=compute_dtype,
            fused_backward=fused_backward,
        )

    return Layer(init, apply, flip)


def _merge(mode: str, forward: Array, backward: Array) -> Any:
    if mode == "none":
        return forward, backward
    if mode == "concat":
        return jnp.concatenate([forward, backward], axis=-1)
    if forward.shape != backward.shape:
        raise ValueError(
            f"rnnjax.bidirectional: merge={mode!r} needs equal output shapes; got forward"
            f" {forward.shape} and backward {backward.shape}"
        )
    if mode == "sum":
        return forward + backward
    if mode == "mul":
        return forward * backward
    return (forward + backward) / 2


def bidirectional(forward: Layer, backward: Layer | None = None, *, merge: str = "concat") -> Layer:
    """A forward and a backward layer over the same sequence, outputs merged (Keras's set).

    Under ``seq_lengths`` the backward layer reads each sequence's valid part only, from its
    last valid step back to step 0, as PyTorch's packed bidirectional RNNs do; both
    directions emit zeros past the length, so every merge does too.

    Args:
      forward: the forward layer, e.g. ``rnnjax.layer(rnnjax.lstm(32))``.
      backward: the backward layer, with its own params. Default ``forward.flip()``: the
        same kind of layer with ``reverse=True``.
      merge: ``"concat"`` (``ys [..., H_fwd + H_bwd]``), ``"sum"``, ``"mul"``, ``"ave"``, or
        ``"none"`` for the pair ``(ys_fwd, ys_bwd)``.

    Returns:
      A :class:`Layer` with :class:`BidirectionalParams`; ``initial_carry`` and the final
      carry are pairs ``(forward, backward)``, and ``key`` is split between the two.

    Raises:
      ValueError: for an unknown ``merge``, a forward layer with no ``flip`` and no
        ``backward``, and (at trace time) ``sum``/``mul``/``ave`` over unequal sizes.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> bi = rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(8)))
      >>> params = bi.init(jax.random.key(0), 3)
      >>> (h_fwd, h_bwd), ys = bi.apply(params, jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 3]))
      >>> ys.shape, h_bwd.shape
      ((2, 5, 16), (2, 8))
    """
    where = "rnnjax.bidirectional"
    if merge not in MERGE_MODES:
        raise ValueError(f"{where}: merge must be one of {MERGE_MODES}; got {merge!r}")
    if backward is None:
        if forward.flip is None:
            raise ValueError(
                f"{where}: forward has no flip(), so no default backward layer; pass backward="
            )
        backward = forward.flip()
    backward_layer = backward

    def init(key: Array, input_size: int) -> BidirectionalParams:
        forward_key, backward_key = jax.random.split(key)
        return BidirectionalParams(
            forward.init(forward_key, input_size), backward_layer.init(backward_key, input_size)
        )

    def apply(
        params: BidirectionalParams,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[tuple[Carry, Carry], Any]:
        if initial_carry is None:
            carries = (None, None)
        elif isinstance(initial_carry, (tuple, list)) and len(initial_carry) == 2:
            carries = tuple(initial_carry)
        else:
            raise ValueError(
                f"{where}: initial_carry must be a pair (forward, backward); got"
                f" {jax.tree.structure(initial_carry)}"
            )
        keys: Any = (None, None) if key is None else jax.random.split(key)
        common = dict(seq_lengths=seq_lengths, deterministic=deterministic)
        carry_f, ys_f = forward.apply(
            params.forward, xs, initial_carry=carries[0], key=keys[0], **common
        )
        carry_b, ys_b = backward_layer.apply(
            params.backward, xs, initial_carry=carries[1], key=keys[1], **common
        )
        return (carry_f, carry_b), _merge(merge, ys_f, ys_b)

    return Layer(init, apply)


def stack(*layers: Layer, dropout: float = 0.0, residual: bool = False) -> Layer:
    """Layers run one after another: PyTorch's ``num_layers`` with ``dropout``, any depth.

    Between layers (never after the last, as in PyTorch's multi-layer RNNs) ``dropout``
    zeroes features of each layer's output with kept entries scaled by ``1 / (1 - rate)``.
    The mask is variational like :func:`layer`'s: one per sequence, ``[*batch, features]``,
    fixed over time (Gal & Ghahramani 2016; PyTorch draws a fresh mask at every step), so
    every dropout mask in rnnjax is the same at every step and :func:`tbptt` in chunks
    equals one pass. With ``residual=True`` every layer after the first adds its input to
    its output (GNMT-style; ``ys_i = layer_i(dropout(x_i)) + x_i``), which needs each such
    layer to keep the size of its input.

    Args:
      *layers: one or more :class:`Layer`; each finds its input size from the previous one's
        output size (a bidirectional concat doubles it).
      dropout: rate between layers.
      residual: residual connections around every layer but the first.

    Returns:
      A :class:`Layer` whose params are a tuple with one entry per layer; ``initial_carry``
      (``None`` or a tuple, ``None`` entries meaning the default) and the final carry are
      tuples with one carry per layer. ``flip()`` flips every layer.

    Raises:
      ValueError: for no layers, a bad rate, and at init (or trace time) when
        ``residual=True`` meets a layer whose output size differs from its input size, or
        when ``params``/``initial_carry`` do not have one entry per layer.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> net = rnnjax.stack(
      ...     rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(8))),  # 3 -> 16 features
      ...     rnnjax.layer(rnnjax.gru(16)),                        # 16 -> 16
      ...     dropout=0.2, residual=True)
      >>> params = net.init(jax.random.key(0), 3)
      >>> carries, ys = net.apply(params, jnp.ones((2, 5, 3)))
      >>> ys.shape, len(carries)
      ((2, 5, 16), 2)
    """
    where = "rnnjax.stack"
    if not layers:
        raise ValueError(f"{where}: needs at least one layer; got none")
    for index, item in enumerate(layers):
        if not isinstance(item, Layer):
            raise TypeError(
                f"{where}: layer {index} must be a rnnjax.Layer (from rnnjax.layer,"
                f" bidirectional or stack); got {type(item).__name__}"
            )
    _check_rate(where, "dropout", dropout)
    depth = len(layers)

    def init(key: Array, input_size: int) -> tuple[Params, ...]:
        params, size = [], input_size
        for index, (item, item_key) in enumerate(
            zip(layers, jax.random.split(key, depth), strict=True)
        ):
            item_params = item.init(item_key, size)
            if index < depth - 1 or (residual and index > 0):
                output_size = _output_size(where, item, item_params, size, index)
                if residual and index > 0 and output_size != size:
                    raise ValueError(
                        f"{where}: residual=True needs layer {index} to keep the size of its"
                        f" input; got input size {size} and output size {output_size}"
                    )
                size = output_size
            params.append(item_params)
        return tuple(params)

    def apply(
        params: tuple[Params, ...],
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, ...] | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[tuple[Carry, ...], Any]:
        if not isinstance(params, (tuple, list)) or len(params) != depth:
            raise ValueError(
                f"{where}: params must be a tuple with one entry per layer ({depth}); got"
                f" {jax.tree.structure(params)}"
            )
        if initial_carry is None:
            carries: tuple[Carry, ...] = (None,) * depth
        elif isinstance(initial_carry, (tuple, list)) and len(initial_carry) == depth:
            carries = tuple(initial_carry)
        else:
            raise ValueError(
                f"{where}: initial_carry must be a tuple with one carry per layer ({depth});"
                f" got {jax.tree.structure(initial_carry)}"
            )
        between = not deterministic and dropout > 0 and depth > 1
        keys: Any = [None] * (2 * depth)
        if key is not None:
            keys = jax.random.split(key, 2 * depth)
        elif between:
            _require_key(where, key)
        finals = []
        for index, item in enumerate(layers):
            inputs = xs
            if index > 0:
                if not isinstance(xs, jax.Array):
                    raise ValueError(
                        f"{where}: layer {index - 1} returns {jax.tree.structure(xs)}, not one"
                        " array, so no layer can follow it (a bidirectional with merge='none'?)"
                    )
                if between:
                    shape = (*xs.shape[:-2], xs.shape[-1])  # [*batch, features]
                    mask = _keep_mask(keys[depth + index], dropout, shape, xs.dtype)
                    inputs = xs * mask[..., None, :]
            carry, ys = item.apply(
                params[index],
                inputs,
                seq_lengths=seq_lengths,
                initial_carry=carries[index],
                key=keys[index],
                deterministic=deterministic,
            )
            if residual and index > 0:
                if getattr(ys, "shape", None) != xs.shape:
                    raise ValueError(
                        f"{where}: residual=True needs layer {index} to keep the shape of its"
                        f" input; got input {xs.shape} and output {getattr(ys, 'shape', ys)}"
                    )
                ys = ys + xs
            finals.append(carry)
            xs = ys
        return tuple(finals), xs

    flips = [item.flip for item in layers]

    def flip() -> Layer:
        return stack(*(f() for f in flips if f is not None), dropout=dropout, residual=residual)

    return Layer(init, apply, flip if all(f is not None for f in flips) else None)


# --- Truncated BPTT and resets -------------------------------------------------------------


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
    within a call, see :func:`rnn_with_resets`.

    Args:
      layer: a :class:`Layer` that runs forward in time (not ``reverse``, not bidirectional:
        those read the future, which chunks cut off).
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
    if isinstance(chunk_length, bool) or not isinstance(chunk_length, int) or chunk_length < 1:
        raise ValueError(f"rnnjax.tbptt: chunk_length must be a positive int; got {chunk_length!r}")
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(
            f"rnnjax.tbptt: xs must have shape [*batch, time, features]; got {xs.shape}"
        )

    def run(p: Params, x: Array, c: Carry, lengths: Array | None) -> tuple[Carry, Any]:
        return layer.apply(
            p, x, seq_lengths=lengths, initial_carry=c, key=key, deterministic=deterministic
        )

    return _in_chunks(
        run,
        params,
        xs,
        initial_carry,
        None if seq_lengths is None else jnp.asarray(seq_lengths),
        size=chunk_length,
        between=jax.lax.stop_gradient,
    )


def rnn_with_resets(
    cell: Cell,
    params: Params,
    xs: Array,
    resets: Array,
    *,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
) -> tuple[Carry, Array]:
    """:func:`rnnjax.rnn` where ``resets[b, t]`` puts sequence ``b``'s carry back before step ``t``.

    Haiku's ``ResetCore`` semantics: where ``resets[b, t]`` is true, the carry entering step
    ``t`` is replaced by ``cell.initial_carry`` (zeros for the built-in cells, whatever
    ``initial_carry`` was), so the steps from ``t`` on see nothing of the steps before.
    Running sequences packed end to end with a reset at each start equals running them one
    by one. With ``reverse=True`` "before" means in processing order.

    Implemented as a derived cell that reads the flag as an extra last input feature, so
    the whole sequence is still one ``lax.scan`` in :func:`rnnjax.rnn` with the cell's own
    step; gradients do not flow across a reset.

    Args:
      cell, params, xs: as :func:`rnnjax.rnn`.
      resets: boolean ``[*batch, time]`` (``[time, *batch]`` with ``time_major``).
      initial_carry, seq_lengths, reverse, time_major, unroll, remat: as :func:`rnnjax.rnn`.

    Returns:
      ``(final_carry, ys)`` as :func:`rnnjax.rnn`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 6, 3))
      >>> resets = jnp.zeros((2, 6), bool).at[0, 3].set(True)
      >>> carry, ys = rnnjax.rnn_with_resets(cell, params, xs, resets)
      >>> bool(jnp.allclose(ys[0, 3:], ys[0, :3]))  # after the reset it starts afresh
      True
    """
    _check_xs(xs, params, time_major)
    xs = jnp.asarray(xs)
    if getattr(resets, "shape", None) != xs.shape[:-1]:
        layout = "[time, *batch]" if time_major else "[*batch, time]"
        raise ValueError(
            f"rnnjax.rnn_with_resets: resets must have shape {layout} = {xs.shape[:-1]} (xs"
            f" without features); got {getattr(resets, 'shape', type(resets))}"
        )
    if jnp.asarray(resets).dtype != jnp.bool_:
        raise TypeError(f"rnnjax.rnn_with_resets: resets must be boolean; got dtype {resets.dtype}")
    flagged = jnp.concatenate([xs, jnp.asarray(resets).astype(xs.dtype)[..., None]], axis=-1)
    return rnn(
        _resetting_cell(cell),
        _ResetParams(params),
        flagged,
        initial_carry=initial_carry,
        seq_lengths=seq_lengths,
        reverse=reverse,
        time_major=time_major,
        unroll=unroll,
        remat=remat,
    )
