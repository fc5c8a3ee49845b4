"""Sequence layers over the cells and :func:`rnnjax.rnn`, composed the optax way.

A :class:`~rnnjax.Layer` is a pair of pure functions, ``init(key, input_size) -> params`` and
``apply(params, xs, *, seq_lengths=None, initial_carry=None, key=None, deterministic=True)
-> (final_carry, ys)``, with every setting held in a closure. Layers compose into layers:
:func:`bidirectional` pairs a forward and a backward layer, :func:`stack` runs layers one
after another. Every layer runs its cell through :func:`rnnjax.rnn`, so there is one numerics
path; dropout and mixed precision are derived cells (:mod:`rnnjax._src.cells.derived`) and casts of
the inputs, never a second copy of the cell equations. :func:`layer` lives here; the layers
made of layers (:func:`bidirectional`, :func:`stack`) in :mod:`rnnjax._src.layers.compose`.

``xs`` is batch-major everywhere here: ``[*batch, time, features]``.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.derived import (
    RecurrentDropoutParams,
    with_compute_dtype,
    with_recurrent_dropout,
)
from rnnjax._src.core.checks import check_carry, check_seq_lengths
from rnnjax._src.core.contract import Carry, Cell, Layer, Params
from rnnjax._src.core.removed import refuses_removed
from rnnjax._src.core.settings import LayerSettings
from rnnjax._src.core.validate import check_bool, check_cell, check_int
from rnnjax._src.scan.chunks import in_segments
from rnnjax._src.scan.cudnn import check_backend_inputs
from rnnjax._src.scan.driver import carry_dtype, check_capabilities, check_xs, run

Array = jax.Array

CUDNN_LAYERS: weakref.WeakKeyDictionary[Callable[..., Any], tuple[Cell, LayerSettings]] = (
    weakref.WeakKeyDictionary()
)
"""The ``apply`` of each layer built with ``backend="cudnn"``, with its cell and settings:
what :func:`rnnjax.bidirectional` reads to run a pair as cuDNN's own two directions."""


# --- Helpers -------------------------------------------------------------------------------


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


def run_cell(cell: Cell, settings: LayerSettings) -> Cell:
    """The cell a layer runs: ``cell`` computing in ``settings.compute_dtype``, if set."""
    if settings.compute_dtype is None:
        return cell
    return with_compute_dtype(cell, jnp.dtype(settings.compute_dtype))


def _starts_documents(cell: Cell) -> bool:
    """Whether ``cell`` has a document-start rule (``LinearScan.start``): its first step is a
    start when the driver gets no initial carry, so a layer leaves ``None`` as it is."""
    return cell.linear_scan is not None and cell.linear_scan.start is not None


def _cast_inputs(
    cell: Cell,
    settings: LayerSettings,
    params: Params,
    xs: Array,
    carry: Carry | None,
    batch: tuple[int, ...],
) -> tuple[Array, Carry | None]:
    """Mixed precision: ``xs`` in ``compute_dtype``, the carry in the state's own dtype."""
    if settings.compute_dtype is None:
        return xs, carry
    state = jax.eval_shape(lambda: cell.initial_carry(params, batch))
    if carry is None and _starts_documents(cell):  # the driver's, in the state's dtype
        return xs.astype(settings.compute_dtype), None
    if carry is None:
        carry = cell.initial_carry(params, batch)
    else:
        carry = jax.tree.map(lambda c, like: jnp.asarray(c, like.dtype), carry, state)
    return xs.astype(settings.compute_dtype), carry


def _hidden_like(
    cell: Cell, params: Params, xs: Array, carry: Carry | None, batch: tuple[int, ...]
) -> jax.ShapeDtypeStruct:
    """Shape and dtype of ``h`` in the carry the run will start from."""
    if carry is None:
        dtype = carry_dtype(cell, params, xs, batch)
        return jax.eval_shape(lambda: cell.output(cell.initial_carry(params, batch, dtype)))
    return jax.eval_shape(cell.output, carry)


def _draw_masks(
    cell: Cell,
    settings: LayerSettings,
    params: Params,
    xs: Array,
    carry: Carry | None,
    key: Array | None,
) -> tuple[Cell, Params, Array]:
    """Variational dropout: one input mask and one recurrent mask per sequence, both fixed
    over time; the recurrent one travels in the params of a derived cell."""
    batch = xs.shape[:-2]
    input_key, recurrent_key = jax.random.split(require_key("rnnjax.layer", key))
    if settings.dropout > 0:
        mask = keep_mask(input_key, settings.dropout, (*batch, xs.shape[-1]), xs.dtype)
        xs = xs * mask[..., None, :]
    if settings.recurrent_dropout > 0:
        h = _hidden_like(cell, params, xs, carry, batch)
        mask = keep_mask(recurrent_key, settings.recurrent_dropout, h.shape, h.dtype)
        cell, params = with_recurrent_dropout(cell), RecurrentDropoutParams(params, mask)
    return cell, params, xs


def _run(
    cell: Cell,
    settings: LayerSettings,
    params: Params,
    xs: Array,
    carry: Carry | None,
    seq_lengths: Array | None,
) -> tuple[Carry, Array]:
    """The driver over the whole sequence, or over checkpointed segments."""
    if settings.remat != "segments":
        return run(cell, params, xs, settings, initial_carry=carry, seq_lengths=seq_lengths)
    scan_settings = dataclasses.replace(settings, remat=False)
    if xs.size == 0:  # no steps or no sequences: nothing to checkpoint
        return run(cell, params, xs, scan_settings, initial_carry=carry, seq_lengths=seq_lengths)

    def run_segment(p: Params, x: Array, c: Carry, lengths: Array | None) -> tuple[Carry, Array]:
        return run(cell, p, x, scan_settings, time_major=True, initial_carry=c, seq_lengths=lengths)

    batch = xs.shape[:-2]
    # The driver's default carry, made here so that no segment is run apart; not for a cell
    # with a document-start rule, whose first step is a start only from no carry at all.
    if carry is None and not _starts_documents(cell):
        carry = cell.initial_carry(params, batch, carry_dtype(cell, params, xs, batch))
    lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
    return in_segments(
        run_segment,
        params,
        xs,
        carry,
        lengths,
        segment_length=settings.segment_length,
        reverse=settings.reverse,
    )


def check_layer_inputs(
    where: str,
    cell: Cell,
    params: Params,
    xs: Any,
    initial_carry: Carry | None,
    seq_lengths: Any,
) -> None:
    """What a layer's ``apply`` checks before it runs: params, ``xs``, the initial carry and
    the lengths (the same checks :func:`rnnjax.rnn` makes, whichever path runs after)."""
    time, batch = check_xs(cell, params, xs, time_major=False, where=where)
    if initial_carry is not None:
        check_carry(initial_carry, jax.eval_shape(lambda: cell.initial_carry(params, batch)), where)
    if seq_lengths is not None:
        check_seq_lengths(seq_lengths, batch, time, where)


def apply_layer(
    cell: Cell,
    settings: LayerSettings,
    params: Params,
    xs: Array,
    *,
    seq_lengths: Array | None = None,
    initial_carry: Carry | None = None,
    key: Array | None = None,
    deterministic: bool = True,
) -> tuple[Carry, Array]:
    """A layer's ``apply`` after its checks: casts, dropout masks, the run, casts back."""
    batch = xs.shape[:-2]
    xs, carry = _cast_inputs(cell, settings, params, jnp.asarray(xs), initial_carry, batch)
    computing, run_params = run_cell(cell, settings), params
    if settings.draws_masks(deterministic):
        computing, run_params, xs = _draw_masks(computing, settings, params, xs, carry, key)
    final, ys = _run(computing, settings, run_params, xs, carry, seq_lengths)
    if settings.compute_dtype is None:
        return final, ys
    state = jax.eval_shape(lambda: cell.initial_carry(params, batch))  # its own dtypes
    final = jax.tree.map(lambda c, like: c.astype(like.dtype), final, state)
    return final, ys.astype(jax.eval_shape(cell.output, state).dtype)


def _layer(cell: Cell, settings: LayerSettings) -> Layer:
    where = "rnnjax.layer"

    def init(key: Array, input_size: int) -> Params:
        return cell.init(key, check_int(f"{where}(...).init", "input_size", input_size))

    def apply(
        params: Params,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> tuple[Carry, Array]:
        deterministic = check_bool(where, "deterministic", deterministic)
        check_layer_inputs(where, cell, params, xs, initial_carry, seq_lengths)
        check_backend_inputs(where, settings, params, xs, initial_carry)
        return apply_layer(
            cell, settings, params, jnp.asarray(xs), seq_lengths=seq_lengths,
            initial_carry=initial_carry, key=key, deterministic=deterministic,
        )  # fmt: skip

    def flip() -> Layer:
        return _layer(cell, dataclasses.replace(settings, reverse=not settings.reverse))

    if settings.backend == "cudnn":
        CUDNN_LAYERS[apply] = (cell, settings)
    return Layer(init, apply, flip)


# --- Public layers -------------------------------------------------------------------------


@refuses_removed("rnnjax.layer")
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
    hoist_projection: bool | None = None,
    parallel: bool | None = None,
    backend: Literal["auto", "xla", "cudnn"] = "auto",
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
      hoist_projection: passed to :func:`rnnjax.rnn`: where the input projection runs
        (default: the backend's measured choice).
      parallel: passed to :func:`rnnjax.rnn`: ``False`` steps a ``linear_scan`` cell
        (minGRU, minLSTM) one token at a time instead of over all steps at once.
      backend: passed to :func:`rnnjax.rnn`: ``"cudnn"`` runs a plain LSTM through cuDNN
        on an NVIDIA GPU (input ``dropout`` included; ``recurrent_dropout``,
        ``compute_dtype`` and ``remat`` are refused by name); ``"auto"`` means ``"xla"``.

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
    where = "rnnjax.layer"
    settings = LayerSettings(
        reverse=reverse, dropout=dropout, recurrent_dropout=recurrent_dropout, unroll=unroll,
        remat=remat, segment_length=segment_length, compute_dtype=compute_dtype,
        hoist_projection=hoist_projection, parallel=parallel, backend=backend,
    ).checked(where)  # fmt: skip
    cell = check_cell(where, cell)
    check_capabilities(where, cell, settings)
    if settings.recurrent_dropout > 0:
        with_recurrent_dropout(run_cell(cell, settings))  # raises for a cell that cannot take it
    return _layer(cell, settings)
