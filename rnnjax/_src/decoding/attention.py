r"""``attention``: a cell wrapper whose step attends over an encoder's outputs.

:func:`attention` returns a complete :class:`~rnnjax.Cell` around any cell (the optax pattern of
``optax.masked``): its params are :class:`AttentionParams` (the inner cell's params plus the
attention weights), its carry :class:`AttentionState` (the inner carry, the last attentional
output and the last attention weights). It closes over the encoder's outputs, so it is built
inside the function that has them (a loss, a decoding step), and runs through
:func:`rnnjax.rnn` (teacher forcing) and through its own ``step`` (decoding).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax._src.core.checks import check_carry, check_seq_lengths, shape_error
from rnnjax._src.core.contract import BatchShape, Carry, Cell, Params
from rnnjax._src.core.matmul import matmul
from rnnjax._src.core.validate import (
    check_cell,
    check_choice,
    check_floating,
    check_floating_dtype,
    check_int,
    check_key,
)

Array = jax.Array

KINDS: tuple[str, ...] = ("bahdanau", "luong")
WHERE = "rnnjax.attention"


class AttentionParams(NamedTuple):
    """Parameters of an :func:`attention` cell (``H``: the inner cell's hidden size, ``F``: the
    memory's features, ``A``: ``attention_size``).

    Attributes:
      cell: the inner cell's params, for inputs of size ``input_size + A`` (input feeding).
      query_kernel: ``W_q [H, A]`` (Bahdanau) or ``W_a [H, F]`` (Luong).
      memory_kernel: ``W_m [F, A]`` (Bahdanau); ``None`` (Luong).
      score_vector: ``v [A]`` (Bahdanau); ``None`` (Luong).
      output_kernel: ``W_c [F + H, A]``, applied to ``[context ; h]``.
    """

    cell: Params
    query_kernel: Array
    memory_kernel: Array | None
    score_vector: Array | None
    output_kernel: Array


class AttentionState(NamedTuple):
    """The carry of an :func:`attention` cell.

    Attributes:
      cell: the inner cell's carry (an :class:`~rnnjax.LSTMState` for the LSTM). A decoder
        usually starts from the encoder's final carry:
        ``att_cell.initial_carry(params, batch)._replace(cell=encoder_carry)``.
      attention: ``[*batch, A]``, the last attentional output ``y_{t-1}``, fed back into the
        next step's input (zeros before the first step).
      weights: ``[*batch, source_time]``, the attention weights of the last step (zeros before
        the first step); ``jax.lax.scan`` over ``step`` collects them for a heatmap.
    """

    cell: Carry
    attention: Array
    weights: Array


def _batch_tuple(batch_shape: BatchShape) -> tuple[int, ...]:
    return (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The static settings of one attention cell, checked once by :func:`attention`."""

    cell: Cell
    kind: str
    attention_size: int | None  # None: the inner cell's hidden size
    memory_batch: tuple[int, ...]
    source_time: int
    features: int

    @property
    def where(self) -> str:
        return f"{WHERE}({self.kind!r})"


class _Memory(NamedTuple):
    """The memory the step attends over: zero past each length, and the mask of valid
    positions (``None``: all are valid)."""

    values: Array  # [*batch, source_time, features]
    valid: Array | None  # bool [*batch, source_time]


def _check_arguments(
    cell: Any, memory: Any, memory_lengths: Any, kind: Any, attention_size: Any
) -> None:
    check_cell(WHERE, cell)
    check_choice(WHERE, "kind", kind, KINDS)
    if attention_size is not None:
        check_int(WHERE, "attention_size", attention_size)
    if not hasattr(memory, "shape") or jnp.ndim(memory) < 2:
        actual = getattr(memory, "shape", type(memory))
        raise shape_error("memory", "[*batch, source_time, features] (rank >= 2)", actual, WHERE)
    if not jnp.issubdtype(memory.dtype, jnp.floating):
        raise TypeError(
            f"{WHERE}: memory must be floating point; got {memory.dtype}{list(memory.shape)}"
        )
    if memory_lengths is not None:
        check_seq_lengths(
            memory_lengths,
            tuple(memory.shape[:-2]),
            memory.shape[-2],
            WHERE,
            "memory_lengths",
            f"memory {tuple(memory.shape)}",
        )


def _glorot(key: Array, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def _hidden_size(cell: Cell, params: Params | None = None) -> int:
    """The inner cell's hidden size, from shapes only."""
    if params is None:
        params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 1))
    h = jax.eval_shape(lambda: cell.output(cell.initial_carry(params, ())))
    return int(h.shape[-1])


def _init(
    settings: _Settings, key: Array, input_size: int, dtype: DTypeLike = jnp.float32
) -> AttentionParams:
    where = settings.where + ".init"
    key = check_key(where, "key", key)
    input_size = check_int(where, "input_size", input_size)
    dtype = check_floating_dtype(where, "dtype", dtype)
    hidden, features = _hidden_size(settings.cell), settings.features
    size = settings.attention_size or hidden
    k_cell, k_query, k_memory, k_vector, k_output = jax.random.split(key, 5)
    inner = settings.cell.init(k_cell, input_size + size, dtype)
    if settings.kind == "bahdanau":
        query_kernel = _glorot(k_query, (hidden, size), dtype)
        memory_kernel: Array | None = _glorot(k_memory, (features, size), dtype)
        bound = 1 / np.sqrt(size)
        score_vector: Array | None = jax.random.uniform(k_vector, (size,), dtype, -bound, bound)
    else:
        query_kernel = _glorot(k_query, (hidden, features), dtype)
        memory_kernel = score_vector = None
    output_kernel = _glorot(k_output, (features + hidden, size), dtype)
    return AttentionParams(inner, query_kernel, memory_kernel, score_vector, output_kernel)


def _input_size(settings: _Settings, params: Params) -> int:
    """The decoder's input size, after checking the params' structure and shapes."""
    where, features, bahdanau = settings.where, settings.features, settings.kind == "bahdanau"
    if not isinstance(params, AttentionParams):
        raise TypeError(
            f"{where}: params must be rnnjax.AttentionParams; got {type(params).__name__}"
        )
    hidden = _hidden_size(settings.cell, params.cell)
    size = settings.attention_size or hidden
    made = getattr(params.output_kernel, "shape", (None,))[-1]
    if made != size:
        built = "as built" if settings.attention_size else "the inner cell's hidden size"
        raise ValueError(
            f"{where}: params must be made for attention_size {size} ({built}); got params"
            f" with attention_size {made} (output_kernel {jnp.shape(params.output_kernel)}):"
            f" build the cell with attention_size={made}"
        )
    expected = {
        "query_kernel": (hidden, size if bahdanau else features),
        "memory_kernel": (features, size) if bahdanau else None,
        "score_vector": (size,) if bahdanau else None,
        "output_kernel": (features + hidden, size),
    }
    got = {
        name: None if getattr(params, name) is None else tuple(jnp.shape(getattr(params, name)))
        for name in expected
    }
    inner_input = settings.cell.input_size(params.cell)
    if got != expected or inner_input <= size:
        raise ValueError(
            f"{where}: params must be AttentionParams with {expected} for memory features"
            f" {features} and an inner cell taking more than {size} inputs; got {got} and"
            f" {inner_input} inputs"
        )
    return int(inner_input - size)


def _initial_carry(
    settings: _Settings,
    params: AttentionParams,
    batch_shape: BatchShape,
    dtype: DTypeLike | None = None,
) -> AttentionState:
    where, memory_batch = settings.where, settings.memory_batch
    batch = _batch_tuple(batch_shape)
    if batch != memory_batch:
        shape = (*memory_batch, settings.source_time, settings.features)
        raise ValueError(
            f"{where}: the batch shape must be memory's, {memory_batch}"
            f" (memory {shape}); got {batch}"
        )
    if dtype is not None:
        dtype = check_floating_dtype(where + ".initial_carry", "dtype", dtype)
    inner = settings.cell.initial_carry(params.cell, batch, dtype)
    dtype = dtype or params.output_kernel.dtype
    size = params.output_kernel.shape[-1]
    return AttentionState(
        inner, jnp.zeros((*batch, size), dtype), jnp.zeros((*batch, settings.source_time), dtype)
    )


def _check_step(settings: _Settings, params: Any, carry: Any, x: Any) -> None:
    """Params, carry and ``x`` of the structure, shapes and (real floating) dtypes the step
    takes; shapes and dtypes only, so this runs at trace time."""
    where = settings.where + ".step"
    size = _input_size(settings, params)
    check_floating(where, "params", params)
    memory_batch = settings.memory_batch
    if not hasattr(x, "shape") or tuple(x.shape) != (*memory_batch, size):
        actual = getattr(x, "shape", type(x))
        raise shape_error(
            "x", f"{(*memory_batch, size)} ([*memory batch, input_size])", actual, where
        )
    check_floating(where, "x", x)
    expected = jax.eval_shape(lambda: _initial_carry(settings, params, memory_batch))
    if isinstance(carry, AttentionState):  # the inner carry first: its own message
        check_carry(carry.cell, expected.cell, where, "carry.cell")
    check_carry(carry, expected, where, "carry")
    check_floating(where, "carry", carry)


def _scores(settings: _Settings, memory: Array, params: AttentionParams, h: Array) -> Array:
    """``e [*batch, source_time]``: additive (Bahdanau) or general (Luong) scores of ``h``."""
    if settings.kind == "bahdanau":
        assert params.memory_kernel is not None and params.score_vector is not None
        keys = matmul(memory, params.memory_kernel)  # [*batch, source_time, A]
        query = matmul(h, params.query_kernel)[..., None, :]
        hidden = jnp.tanh(keys + query.astype(keys.dtype))
        return matmul(hidden, params.score_vector[:, None])[..., 0]
    query = matmul(h, params.query_kernel)  # [*batch, features]
    return jnp.einsum("...f,...sf->...s", query, memory.astype(query.dtype))


def _attend(
    settings: _Settings, memory: _Memory, params: AttentionParams, h: Array
) -> tuple[Array, Array]:
    """The attention weights over the valid positions and the attentional output."""
    e = _scores(settings, memory.values, params, h)
    if memory.valid is not None:
        e = jnp.where(memory.valid, e, jnp.finfo(e.dtype).min)
    weights = jax.nn.softmax(e, axis=-1)
    if memory.valid is not None:
        weights = jnp.where(memory.valid, weights, 0)
    context = jnp.einsum("...s,...sf->...f", weights, memory.values.astype(weights.dtype))
    attended = jnp.concatenate([context, h.astype(context.dtype)], axis=-1)
    return weights, jnp.tanh(matmul(attended, params.output_kernel))


def _step(
    settings: _Settings,
    memory: _Memory,
    params: AttentionParams,
    carry: AttentionState,
    x: Array,
) -> tuple[AttentionState, Array]:
    _check_step(settings, params, carry, x)
    inner_in = jnp.concatenate([x, carry.attention.astype(x.dtype)], axis=-1)
    inner, h = settings.cell.step(params.cell, carry.cell, inner_in)
    weights, output = _attend(settings, memory, params, h)
    dtype = carry.attention.dtype
    return AttentionState(inner, output.astype(dtype), weights.astype(dtype)), output.astype(dtype)


def _attention_output(carry: AttentionState) -> Array:
    return carry.attention


def attention(
    cell: Cell,
    memory: Array,
    memory_lengths: Array | None = None,
    *,
    kind: Literal["bahdanau", "luong"] = "bahdanau",
    attention_size: int | None = None,
) -> Cell:
    r"""``cell`` with attention over ``memory`` and input feeding (Luong et al. 2015).

    With ``m_s`` the memory at source position ``s`` and ``h_t`` the inner cell's output:

    .. math::
        (\mathrm{carry}_t, h_t) = \mathrm{cell.step}(\mathrm{carry}_{t-1},
            [x_t ; \tilde y_{t-1}]), \\
        e_{ts} = v^\top \tanh(h_t W_q + m_s W_m) \;\text{(Bahdanau, additive)} \quad\text{or}
        \quad e_{ts} = h_t W_a m_s^\top \;\text{(Luong, "general")}, \\
        a_{ts} = \mathrm{softmax}_s(e_{ts}) \text{ over } s < \mathrm{memory\_lengths},
        \qquad a_{ts} = 0 \text{ for } s \ge \mathrm{memory\_lengths}, \\
        c_t = \textstyle\sum_s a_{ts} m_s, \qquad
        \tilde y_t = \tanh([c_t ; h_t] W_c), \qquad y_t = \tilde y_t

    Positions past a length get a score of the dtype's most negative value before the softmax
    and a weight of exactly 0 after it; the memory there is zeroed first, so no value in the
    padding (not even NaN) reaches an output or a gradient. A source of length 0 has all
    weights 0 and context ``c_t = 0``. The scores are computed from ``h_t`` (after the inner
    step), as in Luong et al.; ``m_s W_m`` is written inside the step (XLA hoists it out of a
    jitted forward scan; the backward pass accumulates its gradient step by step). For long
    sources ``kind="luong"`` is cheaper: its score ``(h_t W_a) \cdot m_s`` needs no matmul
    per source position.

    Args:
      cell: the inner :class:`~rnnjax.Cell` (e.g. ``rnnjax.lstm(64)``), or any cell.
      memory: ``[*batch, source_time, features]``, the encoder's outputs. The cell closes
        over it: build the attention cell inside the function that has the memory (the loss,
        the decoding step), not once globally.
      memory_lengths: integer ``[*batch]``; positions ``s >= memory_lengths[b]`` are padding.
        Default: all positions are valid.
      kind: ``"bahdanau"`` (additive) or ``"luong"`` (multiplicative, "general").
      attention_size: ``A``, the size of the attentional output ``y_t`` (and of Bahdanau's
        additive layer). Default: the inner cell's hidden size.

    Returns:
      A :class:`~rnnjax.Cell`: params :class:`AttentionParams` from ``init(key, input_size)``
      (the inner cell gets ``input_size + A`` inputs), carry :class:`AttentionState` (zeros
      for ``attention`` and ``weights`` from ``initial_carry``), output ``y_t [*batch, A]``.
      ``x_t`` must have the memory's batch shape.

    Raises:
      TypeError, ValueError: at trace time, naming ``rnnjax.attention`` and the argument: a
        ``cell`` that is not a :class:`~rnnjax.Cell`, a memory of rank < 2 or not real
        floating, ``memory_lengths`` whose shape is not memory's batch shape, not integer or
        (when concrete) outside ``[0, source_time]``, an unknown ``kind``, an
        ``attention_size`` that is not a positive int; ``init`` an ``input_size`` that is not
        a positive int, a dtype that is not floating or a key that is not a PRNG key;
        ``step`` params, carry or ``x`` of the wrong structure, shape or dtype (integer, bool
        and complex values are refused, never cast), and params made with another
        ``attention_size``. Under ``jax.jit`` the values of ``memory_lengths`` cannot be read:
        they are clamped to ``[0, source_time]`` (a longer length means the whole source, a
        negative one an empty source).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> memory = jnp.ones((2, 7, 5))                    # [batch, source_time, features]
      >>> att = rnnjax.attention(rnnjax.lstm(8), memory, jnp.array([7, 3]), kind="luong")
      >>> params = att.init(jax.random.key(0), 4)           # decoder inputs of size 4
      >>> carry, ys = rnnjax.rnn(att, params, jnp.ones((2, 6, 4)))   # teacher forcing
      >>> ys.shape, carry.weights.shape
      ((2, 6, 8), (2, 7))
      >>> bool((carry.weights[1, 3:] == 0).all()), float(carry.weights[1].sum())
      (True, 1.0)
    """
    _check_arguments(cell, memory, memory_lengths, kind, attention_size)
    memory = jnp.asarray(memory)
    settings = _Settings(
        cell,
        kind,
        None if attention_size is None else int(attention_size),
        tuple(memory.shape[:-2]),
        memory.shape[-2],
        memory.shape[-1],
    )
    valid = None
    if memory_lengths is not None:  # under jit: clamped to [0, source_time] by the comparison
        shape = (1,) * len(settings.memory_batch) + (settings.source_time,)
        positions = jnp.arange(settings.source_time).reshape(shape)
        valid = positions < jnp.asarray(memory_lengths)[..., None]
        memory = jnp.where(valid[..., None], memory, 0)  # padding never reaches a gradient
    return Cell(
        functools.partial(_init, settings),
        functools.partial(_initial_carry, settings),
        functools.partial(_step, settings, _Memory(memory, valid)),
        functools.partial(_input_size, settings),
        _attention_output,
    )
