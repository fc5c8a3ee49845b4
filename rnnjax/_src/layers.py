"""Sequence layers over the cells and :func:`rnnjax.rnn`, composed the optax way.

A :class:`~rnnjax.Layer` is a pair of pure functions, ``init(key, input_size) -> params`` and
``apply(params, xs, *, seq_lengths=None, initial_carry=None, key=None, deterministic=True)
-> (final_carry, ys)``, with every setting held in a closure. Layers compose into layers:
:func:`bidirectional` pairs a forward and a backward layer, :func:`stack` runs layers one
after another. Every layer runs its cell through :func:`rnnjax.rnn`, so there is one numerics
path; dropout and mixed precision are derived cells (:mod:`rnnjax._src.derived`) and casts of
the inputs, never a second copy of the cell equations.

``xs`` is batch-major everywhere here: ``[*batch, time, features]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.chunks import in_segments
from rnnjax._src.contract import Carry, Cell, Layer, Params
from rnnjax._src.derived import (
    RecurrentDropoutParams,
    with_compute_dtype,
    with_recurrent_dropout,
)
from rnnjax._src.driver import carry_dtype, check_carry, check_xs, rnn

Array = jax.Array
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")


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


def _output_size(where: str, layer: Layer, params: Params, input_size: int, index: int) -> int:
    xs = jax.ShapeDtypeStruct((1, 1, input_size), jnp.float32)
    ys = jax.eval_shape(lambda p, x: layer.apply(p, x)[1], params, xs)
    if not isinstance(ys, jax.ShapeDtypeStruct):
        raise ValueError(
            f"{where}: layer {index} returns {jax.tree.structure(ys)}, not one array, so no layer"
            " can follow it (a bidirectional layer with merge='none'?)"
        )
    return int(ys.shape[-1])


def merge_outputs(mode: str, forward: Any, backward: Any) -> Any:
    """Two directions' outputs merged: ``"concat"`` (last axis), ``"sum"``, ``"mul"``, ``"ave"``,
    or ``"none"`` for the pair."""
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


def check_merge(where: str, mode: Any) -> None:
    if mode not in MERGE_MODES:
        raise ValueError(f"{where}: merge must be one of {MERGE_MODES}; got {mode!r}")


# --- layer: a pipeline of small steps over one settings object -----------------------------


@dataclasses.dataclass(frozen=True)
class _LayerSettings:
    """Everything :func:`layer` was given, checked; ``run_cell`` computes in
    ``compute_dtype``."""

    cell: Cell
    reverse: bool
    dropout: float
    recurrent_dropout: float
    unroll: int | bool
    remat: bool | Literal["segments"]
    segment_length: int | None
    compute_dtype: Any
    fused_backward: bool
    hoist_projection: bool | None

    @property
    def run_cell(self) -> Cell:
        if self.compute_dtype is None:
            return self.cell
        return with_compute_dtype(self.cell, jnp.dtype(self.compute_dtype))


def _check_layer_settings(settings: _LayerSettings) -> None:
    where = "rnnjax.layer"
    _check_rate(where, "dropout", settings.dropout)
    _check_rate(where, "recurrent_dropout", settings.recurrent_dropout)
    remat, segment_length = settings.remat, settings.segment_length
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
    dtype = settings.compute_dtype
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{where}: compute_dtype must be a floating dtype; got {dtype!r}")
    if settings.recurrent_dropout > 0:
        with_recurrent_dropout(settings.run_cell)  # raises for a cell that cannot take it


def _cast_inputs(
    s: _LayerSettings, params: Params, xs: Array, carry: Carry | None, batch: tuple[int, ...]
) -> tuple[Array, Carry | None]:
    """Mixed precision: ``xs`` in ``compute_dtype``, the carry in the state's own dtype."""
    if s.compute_dtype is None:
        return xs, carry
    state = jax.eval_shape(lambda: s.cell.initial_carry(params, batch))
    if carry is None:
        carry = s.cell.initial_carry(params, batch)
    else:
        carry = check_carry(carry, state)
        carry = jax.tree.map(lambda c, like: jnp.asarray(c, like.dtype), carry, state)
    return xs.astype(s.compute_dtype), carry


def _hidden_like(
    cell: Cell, params: Params, xs: Array, carry: Carry | None, batch: tuple[int, ...]
) -> jax.ShapeDtypeStruct:
    """Shape and dtype of ``h`` in the carry the run will start from."""
    if carry is None:
        dtype = carry_dtype(cell, params, xs, batch)
        carry = jax.eval_shape(lambda: cell.initial_carry(params, batch, dtype))
    else:
        carry = check_carry(carry, jax.eval_shape(lambda: cell.initial_carry(params, batch)))
    h = cell.output(carry)
    return jax.ShapeDtypeStruct(jnp.shape(h), jnp.result_type(h))


def _draw_masks(
    s: _LayerSettings,
    params: Params,
    xs: Array,
    carry: Carry | None,
    batch: tuple[int, ...],
    key: Array | None,
) -> tuple[Cell, Params, Array]:
    """Variational dropout: one input mask and one recurrent mask per sequence, both fixed
    over time; the recurrent one travels in the params of a derived cell."""
    cell = s.run_cell
    input_key, recurrent_key = jax.random.split(_require_key("rnnjax.layer", key))
    if s.dropout > 0:
        mask = _keep_mask(input_key, s.dropout, (*batch, xs.shape[-1]), xs.dtype)
        xs = xs * mask[..., None, :]
    if s.recurrent_dropout > 0:
        h = _hidden_like(cell, params, xs, carry, batch)
        mask = _keep_mask(recurrent_key, s.recurrent_dropout, h.shape, h.dtype)
        cell, params = with_recurrent_dropout(cell), RecurrentDropoutParams(params, mask)
    return cell, params, xs


def _run(
    s: _LayerSettings,
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None,
    seq_lengths: Array | None,
) -> tuple[Carry, Array]:
    """:func:`rnnjax.rnn` over the whole sequence, or over checkpointed segments."""
    options: dict[str, Any] = dict(
        reverse=s.reverse,
        unroll=s.unroll,
        fused_backward=s.fused_backward,
        hoist_projection=s.hoist_projection,
    )
    if s.remat != "segments":
        return rnn(
            cell, params, xs, initial_carry=carry, seq_lengths=seq_lengths, remat=s.remat, **options
        )

    def run(p: Params, x: Array, c: Carry, lengths: Array | None) -> tuple[Carry, Array]:
        return rnn(cell, p, x, initial_carry=c, seq_lengths=lengths, time_major=True, **options)

    batch = xs.shape[:-2]
    if carry is None:  # rnnjax.rnn's default, made here so no segment is run apart
        carry = cell.initial_carry(params, batch, carry_dtype(cell, params, xs, batch))
    lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
    return in_segments(
        run,
        params,
        xs,
        carry,
        lengths,
        segment_length=s.segment_length,
        reverse=s.reverse,
    )


def _layer(s: _LayerSettings) -> Layer:
    def init(key: Array, input_size: int) -> Params:
        return s.cell.init(key, input_size)

    def apply(
        params: Params,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[Carry, Array]:
        _, batch = check_xs(s.cell, params, xs, time_major=False)
        xs, carry = _cast_inputs(s, params, jnp.asarray(xs), initial_carry, batch)
        cell, run_params = s.run_cell, params
        if not deterministic and (s.dropout > 0 or s.recurrent_dropout > 0):
            cell, run_params, xs = _draw_masks(s, params, xs, carry, batch, key)
        final, ys = _run(s, cell, run_params, xs, carry, seq_lengths)
        if s.compute_dtype is None:
            return final, ys
        state = jax.eval_shape(lambda: s.cell.initial_carry(params, batch))  # its own dtypes
        final = jax.tree.map(lambda c, like: c.astype(like.dtype), final, state)
        return final, ys.astype(s.cell.output(state).dtype)

    def flip() -> Layer:
        return _layer(dataclasses.replace(s, reverse=not s.reverse))

    return Layer(init, apply, flip)


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
    hoist_projection: bool | None = None,
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
      hoist_projection: passed to :func:`rnnjax.rnn`: where the input projection runs
        (default: the backend's measured choice).

    Returns:
      A :class:`Layer` whose params are the cell's params. ``apply`` returns
      ``(final_carry, ys)`` as :func:`rnnjax.rnn` does, ``ys [*batch, time, hidden]``.

    Raises:
      ValueError: for a rate outside ``[0, 1)``, a bad ``remat``/``segment_length``, or
        ``recurrent_dropout`` with a cell that has no ``projection`` capability (at
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
    settings = _LayerSettings(
        cell,
        reverse,
        dropout,
        recurrent_dropout,
        unroll,
        remat,
        segment_length,
        compute_dtype,
        fused_backward,
        hoist_projection,
    )
    _check_layer_settings(settings)
    return _layer(settings)


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
    check_merge(where, merge)
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
        carries = _per_layer(where, "a pair (forward, backward)", 2, initial_carry)
        keys: Any = (None, None) if key is None else jax.random.split(key)
        common = dict(seq_lengths=seq_lengths, deterministic=deterministic)
        carry_f, ys_f = forward.apply(
            params.forward, xs, initial_carry=carries[0], key=keys[0], **common
        )
        carry_b, ys_b = backward_layer.apply(
            params.backward, xs, initial_carry=carries[1], key=keys[1], **common
        )
        return (carry_f, carry_b), merge_outputs(merge, ys_f, ys_b)

    return Layer(init, apply)


def _per_layer(where: str, what: str, count: int, initial_carry: Any) -> tuple[Any, ...]:
    """``initial_carry`` as one entry per layer (``None`` entries: the default)."""
    if initial_carry is None:
        return (None,) * count
    if isinstance(initial_carry, (tuple, list)) and len(initial_carry) == count:
        return tuple(initial_carry)
    raise ValueError(
        f"{where}: initial_carry must be {what}; got {jax.tree.structure(initial_carry)}"
    )


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

    def layer_input(index: int, xs: Any, key: Array | None) -> Array:
        """What layer ``index`` reads: the previous output, with dropout when training."""
        if index == 0:
            return xs
        if not isinstance(xs, jax.Array):
            raise ValueError(
                f"{where}: layer {index - 1} returns {jax.tree.structure(xs)}, not one"
                " array, so no layer can follow it (a bidirectional with merge='none'?)"
            )
        if key is None:
            return xs
        mask = _keep_mask(key, dropout, (*xs.shape[:-2], xs.shape[-1]), xs.dtype)
        return xs * mask[..., None, :]  # one mask [*batch, features] for every step

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
        what = f"a tuple with one carry per layer ({depth})"
        carries = _per_layer(where, what, depth, initial_carry)
        between = not deterministic and dropout > 0 and depth > 1
        keys: Any = [None] * (2 * depth)
        if key is not None:
            keys = jax.random.split(key, 2 * depth)
        elif between:
            _require_key(where, key)
        finals = []
        for index, item in enumerate(layers):
            mask_key = keys[depth + index] if between else None
            carry, ys = item.apply(
                params[index],
                layer_input(index, xs, mask_key),
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
