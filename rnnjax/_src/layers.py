"""Sequence layers over the cells and :func:`rnnjax.rnn`, composed the optax way.

A :class:`~rnnjax.Layer` is a pair of pure functions, ``init(key, input_size) -> params`` and
``apply(params, xs, *, seq_lengths=None, initial_carry=None, key=None, deterministic=True)
-> (final_carry, ys)``, with every setting held in a closure. Layers compose into layers:
:func:`bidirectional` pairs a forward and a backward layer, :func:`stack` runs layers one
after another. Every layer runs its cell through :func:`rnnjax.rnn`, so there is one numerics
path; dropout and mixed precision are derived cells (:mod:`rnnjax._src.derived`) and casts of
the inputs, never a second copy of the cell equations. :func:`layer` lives here; the layers
made of layers (:func:`bidirectional`, :func:`stack`) in :mod:`rnnjax._src.compose`.

``xs`` is batch-major everywhere here: ``[*batch, time, features]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.checks import check_carry
from rnnjax._src.chunks import in_segments
from rnnjax._src.contract import Carry, Cell, Layer, Params
from rnnjax._src.derived import (
    RecurrentDropoutParams,
    with_compute_dtype,
    with_recurrent_dropout,
)
from rnnjax._src.driver import carry_dtype, check_xs, rnn, warn_fused_backward

Array = jax.Array


# --- Helpers -------------------------------------------------------------------------------


def check_rate(where: str, name: str, rate: Any) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"{where}: {name} must be a number in [0, 1); got {rate!r}")


def keep_mask(key: Array, rate: float, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    """Inverted-dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def require_key(where: str, key: Array | None) -> Array:
    if key is None:
        raise ValueError(
            f"{where}: key is required when deterministic=False and a dropout rate is > 0;"
            " got key=None (pass key=jax.random.key(...), or deterministic=True to evaluate)"
        )
    return key


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
    hoist_projection: bool | None
    parallel: bool | None

    @property
    def run_cell(self) -> Cell:
        if self.compute_dtype is None:
            return self.cell
        return with_compute_dtype(self.cell, jnp.dtype(self.compute_dtype))


def _check_layer_settings(settings: _LayerSettings) -> None:
    where = "rnnjax.layer"
    check_rate(where, "dropout", settings.dropout)
    check_rate(where, "recurrent_dropout", settings.recurrent_dropout)
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
        return jax.eval_shape(lambda: cell.output(cell.initial_carry(params, batch, dtype)))
    carry = check_carry(carry, jax.eval_shape(lambda: cell.initial_carry(params, batch)))
    return jax.eval_shape(cell.output, carry)


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
    input_key, recurrent_key = jax.random.split(require_key("rnnjax.layer", key))
    if s.dropout > 0:
        mask = keep_mask(input_key, s.dropout, (*batch, xs.shape[-1]), xs.dtype)
        xs = xs * mask[..., None, :]
    if s.recurrent_dropout > 0:
        h = _hidden_like(cell, params, xs, carry, batch)
        mask = keep_mask(recurrent_key, s.recurrent_dropout, h.shape, h.dtype)
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
        hoist_projection=s.hoist_projection,
        parallel=s.parallel,
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
        return final, ys.astype(jax.eval_shape(s.cell.output, state).dtype)

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
    fused_backward: bool | None = None,
    hoist_projection: bool | None = None,
    parallel: bool | None = None,
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
      fused_backward: deprecated, no effect (see :func:`rnnjax.rnn`).
      hoist_projection: passed to :func:`rnnjax.rnn`: where the input projection runs
        (default: the backend's measured choice).
      parallel: passed to :func:`rnnjax.rnn`: ``False`` steps a ``linear_scan`` cell
        (minGRU, minLSTM) one token at a time instead of over all steps at once.

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
    warn_fused_backward(fused_backward, "rnnjax.layer")
    settings = _LayerSettings(
        cell,
        reverse,
        dropout,
        recurrent_dropout,
        unroll,
        remat,
        segment_length,
        compute_dtype,
        hoist_projection,
        parallel,
    )
    _check_layer_settings(settings)
    return _layer(settings)
